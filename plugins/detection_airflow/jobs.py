"""Training and tuning operators: the provider's SageMaker operators, made safe for long jobs and retries.

On top of ``SageMakerTrainingOperator`` / ``SageMakerTuningOperator`` they

* build the request at execute time (``request_builder(context, run)``) and hand it to the
  pipeline's one execution path (:func:`include.execution.execute`), which validates it offline
  against botocore's SageMaker model before anything is sent and runs it on this machine instead
  when ``backend == "local"``;
* name the job from the DAG run, not the try, and re-attach on a retry (:mod:`include.reattach`):
  a job of the run still running is waited for again (deferred as before), a completed one is
  taken without a new one, and only after a failed or stopped one does a new job start, named
  ``...-t<try>`` (the provider's timestamp rename would cut the run token off, break the
  32-character limit of tuning job names, and pay for a second job);
* reuse an earlier run's job of the same request on the same data (``cache_builder``, :mod:`include.cache`);
* wait as long as the job may run: the wait is at least the request's own limit
  (``StoppingCondition``, tuning waves) plus ``wait_margin``, and in deferrable mode the
  trigger's poll count is sized from it (the provider's defaults give up after 30 minutes for
  training and 4 hours for tuning);
* stop the cloud job when the task is killed (``on_kill`` on the worker, the trigger's
  ``on_kill`` while deferred) or its wait fails (timeout, API error);
* return a small result, the same keys for both backends (:mod:`include.sagemaker.results`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from airflow.providers.amazon.aws.operators.sagemaker import (
    SageMakerTrainingOperator,
    SageMakerTuningOperator,
    serialize,
)
from airflow.providers.amazon.aws.triggers.sagemaker import SageMakerTrigger
from airflow.providers.common.compat.sdk import TaskDeferred

from detection_airflow.base import DetectionOperatorMixin, run_identity
from include.execution import TRAINING, TUNING
from include.reattach import find_job
from include.sagemaker.client import JobKind, is_missing_error, stop_job
from include.sagemaker.naming import TRAINING as TRAINING_KIND
from include.sagemaker.naming import TUNING as TUNING_KIND
from include.sagemaker.requests import max_duration_seconds
from include.sagemaker.results import training_result, tuning_result

if TYPE_CHECKING:
    from airflow.sdk import Context

    from include.cache import JobCache

#: ``(context) -> JobCache | None``: the request's step cache, built at execute time (from XCom, config).
CacheBuilder = Callable[["Context"], "JobCache | None"]

DEFAULT_WAIT_MARGIN = 3600


@dataclass(frozen=True)
class JobSpec:
    """One kind of SageMaker job: its request's name key, how it is named, described, stopped and reported."""

    operation: str  # include.execution's
    name_key: str  # the request's job name field
    name_kind: str  # include.sagemaker.naming's kind
    stop_kind: JobKind
    result_key: str  # the provider operator's result key
    describe_method: str  # the provider hook's Describe* method
    result_of: Callable[..., dict[str, Any]]
    status_key: str  # the Describe* answer's status field
    trigger_type: str  # SageMakerTrigger's job_type


TRAINING_JOB = JobSpec(
    TRAINING, "TrainingJobName", TRAINING_KIND, "training", "Training", "describe_training_job", training_result,
    "TrainingJobStatus", "training",
)  # fmt: skip
TUNING_JOB = JobSpec(
    TUNING, "HyperParameterTuningJobName", TUNING_KIND, "tuning", "Tuning", "describe_tuning_job", tuning_result,
    "HyperParameterTuningJobStatus", "tuning",
)  # fmt: skip


class _JobOperatorMixin(DetectionOperatorMixin):
    """What the training and tuning operators share; mixed in before the provider's operator class.

    :param wait_margin: seconds allowed on top of the request's limit (provisioning, image download, upload).
    :param cache_builder: ``(context) -> JobCache | None``: reuse a job of the same request on the same data
        (both backends), record a finished one.
    """

    job: ClassVar[JobSpec]

    max_ingestion_time: int | None

    @property
    def execution_operation(self) -> str:  # type: ignore[override]
        return self.job.operation

    def __init__(
        self, *, wait_margin: int = DEFAULT_WAIT_MARGIN, cache_builder: CacheBuilder | None = None, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.wait_margin = wait_margin
        self.cache_builder = cache_builder

    def job_cache(self, context: Context) -> JobCache | None:
        """The request's cache from ``cache_builder`` (None: no caching)."""
        return self.cache_builder(context) if self.cache_builder is not None else None

    def execute(self, context: Context) -> dict[str, Any]:
        return self.execute_request(context, cache=self.job_cache(context))

    def name_kind(self) -> str:
        """The kind in this task's job names (:func:`include.sagemaker.naming.job_name`)."""
        return self.job.name_kind

    def build_request(self, context: Context) -> dict[str, Any]:
        request = super().build_request(context)
        self.job_part(request).setdefault(self.job.name_key, run_identity(context).name(self.name_kind()))
        return request

    def job_part(self, request: dict[str, Any]) -> dict[str, Any]:
        """The part of the request that creates the job (all of it, but for a combined request)."""
        return request

    def job_wait_seconds(self, request: dict[str, Any]) -> int:
        """The longest the request's job may run (the wait is this plus ``wait_margin``)."""
        return max_duration_seconds(request)

    def provider_config(self, request: dict[str, Any]) -> dict[str, Any]:
        """The config the provider's operator sends (the request; a subclass may leave out what exists)."""
        return request

    def _describe(self, name: str) -> Mapping[str, Any] | None:
        """The job's Describe* answer, None when there is no job of that name."""
        from botocore.exceptions import ClientError

        try:
            return getattr(self.hook, self.job.describe_method)(name)  # type: ignore[attr-defined]
        except ClientError as err:
            if is_missing_error(err):
                return None
            raise

    def send_to_sagemaker(self, context: Context, request: dict[str, Any]) -> Mapping[str, Any]:
        """Re-attach to this run's job still running, take its completed one, or start one (:mod:`include.reattach`)."""
        run = run_identity(context)
        part = self.job_part(request)
        found = find_job(self._describe, part[self.job.name_key], self.job.status_key, run.try_number)
        self.log.info("%s", found.message(f"{self.job.stop_kind} job"))  # type: ignore[attr-defined]
        part[self.job.name_key] = found.name
        self.config = self.provider_config(request)
        self.max_ingestion_time = max(self.max_ingestion_time or 0, self.job_wait_seconds(request) + self.wait_margin)
        if found.action == "take":
            return serialize(found.description)
        try:
            if found.action == "attach":
                return self._wait_for(found.name)
            result = self.provider_execute(context)
        except TaskDeferred:
            raise
        except Exception:  # a failed wait (timeout, API error) must not leave the job running
            self._stop_after_failure()
            raise
        return result[self.job.result_key]

    def _wait_for(self, name: str) -> Mapping[str, Any]:
        """Wait for a job an earlier try started: deferred on it as on a new one, or polled here."""
        if self.deferrable:  # type: ignore[attr-defined]
            self.defer(  # the mixin sizes the trigger from max_ingestion_time and makes it stoppable
                trigger=SageMakerTrigger(job_name=name, job_type=self.job.trigger_type,
                                         aws_conn_id=self.aws_conn_id),  # type: ignore[attr-defined]
                method_name="execute_complete",
            )  # fmt: skip
        describe = getattr(self.hook, self.job.describe_method)  # type: ignore[attr-defined]
        self.hook.check_status(name, self.job.status_key, describe, self.check_interval, self.max_ingestion_time)  # type: ignore[attr-defined]
        return serialize(describe(name))

    def _stop_after_failure(self) -> None:
        try:
            self.on_kill()
        except Exception:
            self.log.exception("could not stop %s job %s", self.job.stop_kind,  # type: ignore[attr-defined]
                               self.job_part(self.config).get(self.job.name_key))  # fmt: skip

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> dict[str, Any]:
        result = super().execute_complete(context, event)  # type: ignore[misc]
        answer = self.job.result_of(result[self.job.result_key], backend="sagemaker")
        if (cache := self.job_cache(context)) is not None:  # the request again: its key ignores the job's name
            cache.record(self.job.operation, self.build_request(context), answer)
        return self.handle_result(context, answer)

    def on_kill(self) -> None:
        """Stop the SageMaker job this task started (the provider's operators leave it running)."""
        name = self.job_part(self.config).get(self.job.name_key) if self.backend == "sagemaker" else None
        if name:
            stop_job(self.hook.conn, self.job.stop_kind, name)  # type: ignore[attr-defined]


class DetectionTrainingOperator(_JobOperatorMixin, SageMakerTrainingOperator):
    """Run a CreateTrainingJob request on SageMaker (provider operator) or locally; return a small result.

    Parameters as :class:`~detection_airflow.base.DetectionOperatorMixin`, plus ``wait_margin`` and
    ``print_log``: copy the job's CloudWatch log into the task log while waiting; default: when not
    deferrable (deferred, the provider would only block one ``check_interval`` to print the first lines).

    :return: ``{"backend", "job_name", "status", "artifact_uri", "final_metrics", "hyperparameters"}``.
    """

    template_fields = (*SageMakerTrainingOperator.template_fields, "backend")
    job = TRAINING_JOB

    def __init__(self, **kwargs: Any) -> None:  # wrapped by Airflow's metaclass (see detection_airflow.base)
        super().__init__(**kwargs)

    @classmethod
    def provider_arguments(cls, deferrable: bool, kwargs: dict[str, Any]) -> dict[str, Any]:
        print_log = kwargs.pop("print_log", None)
        return {"print_log": not deferrable if print_log is None else print_log, "check_if_job_exists": False, **kwargs}


class DetectionTuningOperator(_JobOperatorMixin, SageMakerTuningOperator):
    """Run a CreateHyperParameterTuningJob request on SageMaker (provider operator) or locally.

    Parameters as :class:`DetectionTrainingOperator` (a ``local_runner`` answers
    DescribeHyperParameterTuningJob-shaped).

    :return: the best training job as a training result (``job_name``, ``artifact_uri``,
        ``final_metrics`` with the objective, ``hyperparameters`` static + tuned) plus
        ``tuning_job_name`` and ``tuned_hyperparameters``.
    """

    template_fields = (*SageMakerTuningOperator.template_fields, "backend")
    job = TUNING_JOB

    def __init__(self, **kwargs: Any) -> None:  # wrapped by Airflow's metaclass (see detection_airflow.base)
        super().__init__(**kwargs)
