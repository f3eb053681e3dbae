"""Airflow-facing code of the detection pipeline (``plugins/`` is on ``sys.path``: import ``detection_airflow``).

The operators subclass the Amazon provider's SageMaker operators and hand their request to the
pipeline's one execution path (:func:`include.execution.execute`): to SageMaker through the
provider, or to the local executor when their ``backend`` is ``local``. Importing the package
makes every AWS client of the pipeline use the ``aws_default`` connection inside a task
(:mod:`detection_airflow.credentials`), and every step cache outcome reach its task instance
(:mod:`detection_airflow.notes`).
"""

from detection_airflow.credentials import aws_default_session
from detection_airflow.deployment import DetectionEndpointOperator
from detection_airflow.jobs import DetectionTrainingOperator, DetectionTuningOperator
from detection_airflow.notes import record_cache_outcome
from detection_airflow.triggers import StoppableSageMakerTrigger
from include.cache import add_listener
from include.sagemaker.client import use_session_factory

use_session_factory(aws_default_session)
add_listener(record_cache_outcome)

__all__ = [
    "DetectionEndpointOperator",
    "DetectionTrainingOperator",
    "DetectionTuningOperator",
    "StoppableSageMakerTrigger",
]
