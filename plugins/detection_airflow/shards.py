"""The RecordIO shard task: built on the worker, or as a SageMaker Processing job on the project's image.

``DetectionShardOperator`` is mapped over ``plan_recordio``'s specs (one task per shard). On the
local backend, and on the sagemaker backend unless ``sagemaker.shard_processing.enabled``, it
builds its shard in the task (:func:`include.stages.build_recordio_shard`). Otherwise it sends the
shard's CreateProcessingJob request (:func:`include.stages.shard_processing_request`) through the
provider's ``SageMakerProcessingOperator`` with everything the training operator has (offline
validation, names per run, try and shard, a wait sized from the request, the job stopped when the
task is killed), and returns the result the job uploaded: the same dict a shard built in the task
returns, so ``merge_recordio`` does not know the difference.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

from airflow.providers.amazon.aws.operators.sagemaker import SageMakerProcessingOperator

from detection_airflow.base import RequestBuilder, run_identity
from detection_airflow.jobs import JobSpec, _JobOperatorMixin
from include.execution import PROCESSING, check_backend, execute
from include.sagemaker.results import processing_result

if TYPE_CHECKING:
    from airflow.sdk import Context

PROCESSING_JOB = JobSpec(
    PROCESSING, "ProcessingJobName", "shard", "processing", "Processing", "describe_processing_job", processing_result,
    "ProcessingJobStatus", "processing",
)  # fmt: skip


class DetectionShardOperator(_JobOperatorMixin, SageMakerProcessingOperator):
    """Build one RecordIO shard (``spec``, templated: mapped over ``plan_recordio``'s output) here or on SageMaker.

    ``request_builder(context, run)`` returns the CreateProcessingJob request, or None to build the
    shard in the task. Other parameters as :class:`~detection_airflow.jobs.DetectionTrainingOperator`.

    :return: the shard's result for ``merge_recordio`` (plus ``processing_job`` when a job built it).
    """

    template_fields = (*SageMakerProcessingOperator.template_fields, "backend", "spec")
    job = PROCESSING_JOB

    def __init__(
        self,
        *,
        spec: dict[str, Any] | None = None,
        request_builder: RequestBuilder | None = None,
        backend: str = "sagemaker",
        **kwargs: Any,
    ) -> None:
        # wrapped by Airflow's metaclass (see detection_airflow.base); the mixin's arguments are named here
        # too, as .partial() accepts only what the wrapped __init__ methods name
        super().__init__(request_builder=request_builder, backend=backend, **kwargs)
        self.spec = spec

    @classmethod
    def provider_arguments(cls, deferrable: bool, kwargs: dict[str, Any]) -> dict[str, Any]:
        # the mixin re-attaches to the run's job or names a fresh one: a taken name here means a race, and failing
        # is right then
        return {"action_if_job_exists": "fail", **kwargs}

    def name_kind(self) -> str:
        return f"shard-{self._spec()['shard']}"

    def _spec(self) -> dict[str, Any]:
        if not isinstance(self.spec, dict):
            raise ValueError(f"task {self.task_id}: spec must be a shard spec from plan_recordio (got {self.spec!r})")
        return self.spec

    def execute(self, context: Context) -> dict[str, Any]:
        from include.stages import build_recordio_shard

        spec = self._spec()
        backend = check_backend(self.backend, f"task {self.task_id}")
        request = self.request_builder(context, run_identity(context)) if self.request_builder else None
        if backend == "local" or request is None:
            return build_recordio_shard(spec)
        job = execute(PROCESSING, request, backend=backend, send=functools.partial(self.send_to_sagemaker, context))
        return self._shard_result(job)

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> dict[str, Any]:
        return self._shard_result(super().execute_complete(context, event))

    def _shard_result(self, job: dict[str, Any]) -> dict[str, Any]:
        """What the job uploaded to its ``shard`` output: the shard task's result."""
        from include.preprocess.shard_job import read_result

        self.log.info("shard %s built by processing job %s", self._spec()["shard"], job["job_name"])
        return {**read_result(self._spec(), job["outputs"]["shard"]), "processing_job": job["job_name"]}
