"""The batch transform task: a CreateTransformJob through the provider's ``SageMakerTransformOperator``, or run here.

``DetectionTransformOperator`` has what the training operator has (offline validation through
:func:`include.execution.execute`, the local executor on ``backend="local"``, a job named after the run
that a retry re-attaches to or takes, a wait sized from the request, the job stopped when the task is killed,
also while deferred) for the combined ``{"Model", "Transform"}`` request
(:func:`include.sagemaker.requests.transform_request`). The run's model is created with the job unless it
exists (an earlier try's): the provider would otherwise create a second one under a timestamped name.
The wait is sized from the image count: every invocation of every image timing out on every try.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from airflow.providers.amazon.aws.operators.sagemaker import SageMakerTransformOperator

from detection_airflow.jobs import JobSpec, _JobOperatorMixin
from include.execution import TRANSFORM
from include.sagemaker.naming import TRANSFORM as TRANSFORM_KIND
from include.sagemaker.results import transform_result

if TYPE_CHECKING:
    from airflow.sdk import Context

TRANSFORM_JOB = JobSpec(
    TRANSFORM, "TransformJobName", TRANSFORM_KIND, "transform", "Transform", "describe_transform_job",
    transform_result, "TransformJobStatus", "transform",
)  # fmt: skip


class DetectionTransformOperator(_JobOperatorMixin, SageMakerTransformOperator):
    """Score every image of the request's input with its model on SageMaker (provider operator) or locally.

    Parameters as :class:`~detection_airflow.jobs.DetectionTrainingOperator`; ``request_builder`` returns the
    combined ``{"Model", "Transform"}`` request; ``local_options_builder(context)`` the local executor's keyword
    arguments (``workers``).

    :return: ``{"backend", "job_name", "status", "model_name", "input_uri", "input_type", "output_uri", "counts"}``
        (``counts`` from the local executor; on SageMaker the ``result_handler`` adds them).
    """

    template_fields = (*SageMakerTransformOperator.template_fields, "backend")
    job = TRANSFORM_JOB

    def __init__(  # wrapped by Airflow's metaclass (see detection_airflow.base)
        self, *, local_options_builder: Callable[[Context], Mapping[str, Any]] | None = None, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.local_options_builder = local_options_builder

    def execute(self, context: Context) -> dict[str, Any]:
        options = self.local_options_builder(context) if self.local_options_builder is not None else {}
        return self.execute_request(context, local_options=dict(options))

    @classmethod
    def provider_arguments(cls, deferrable: bool, kwargs: dict[str, Any]) -> dict[str, Any]:
        # the mixin names (or re-attaches to) the job, and provider_config decides about the model
        return {"check_if_job_exists": False, "check_if_model_exists": False, **kwargs}

    def job_part(self, request: dict[str, Any]) -> dict[str, Any]:
        return request.get("Transform", request)

    def job_wait_seconds(self, request: dict[str, Any]) -> int:
        from include.transform.sagemaker_job import transform_wait_seconds

        return transform_wait_seconds(self.job_part(request))

    def provider_config(self, request: dict[str, Any]) -> dict[str, Any]:
        """The request without its ``Model`` part when the run's model exists already (a retry)."""
        from include.transform.sagemaker_job import model_exists

        model = request.get("Model")
        if model and model_exists(self.hook.describe_model, model["ModelName"]):  # type: ignore[attr-defined]
            return {"Transform": request["Transform"]}
        return request
