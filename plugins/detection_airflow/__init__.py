"""Airflow-facing code of the detection pipeline (``plugins/`` is on ``sys.path``: import ``detection_airflow``).

The operators subclass the Amazon provider's SageMaker operators; each also runs the same
request on this machine when its ``backend`` is ``local``.
"""

from detection_airflow.deployment import DetectionEndpointOperator
from detection_airflow.jobs import DetectionTrainingOperator, DetectionTuningOperator
from detection_airflow.triggers import StoppableSageMakerTrigger

__all__ = [
    "DetectionEndpointOperator",
    "DetectionTrainingOperator",
    "DetectionTuningOperator",
    "StoppableSageMakerTrigger",
]
