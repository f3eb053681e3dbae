"""Training and tuning operators: the provider's SageMaker operators, made safe for long jobs and retries.

On top of ``SageMakerTrainingOperator`` / ``SageMakerTuningOperator`` they

* build the request at execute time (``request_builder(context, run)``) and hand it to the
  pipeline's one execution path (:func:`include.execution.execute`), which validates it offline
  against botocore's SageMaker model before anything is sent and runs it on this machine instead
  when ``backend == "local"``;
* name the job per DAG run and try, taking another name of the same try if it is taken
  (the provider's timestamp rename would cut the run token off, and breaks the 32-character
  limit of tuning job names);
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

from airflow.providers.amazon.aws.operators.sagemaker import SageMakerTrainingOperator, SageMakerTuningOperator

from detection_airflow.base import DetectionOperatorMixin, run_identity
from include.execution import TRAINING, TUNING
from include.sagemaker.client import JobKind, is_missing_error, stop_job
from include.sagemaker.naming import TRAINING as TRAINING_KIND
from include.sagemaker.naming import TUNING as TUNING_KIND
from include.sagemaker.naming import RunIdentity
from include.sagemaker.requests import max_duration_seconds
from include.sagemaker.results import training_result, tuning_result

if TYPE_CHECKING:
    from airflow.sdk import Context

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


TRAINING_JOB = JobSpec(
    TRAINING, "TrainingJobName", TRAINING_KIND, "training", "Training", "describe_training_job", training_result
)
TUNING_JOB = JobSpec(
    TUNING, "HyperParameterTuningJobName", TUNING_KIND, "tuning", "Tuning", "describe_tuning_job", tuning_result
)


class _JobOperatorMixin(DetectionOperatorMixin):
    """What the training and tuning operators share; mixed in before the provider's operator class.

    :param wait_margin: seconds allowed on top of the request's limit (provisioning, image download, upload).
    """

    job: ClassVar[JobSpec]

    max_ingestion_time: int | None

    @property
    def execution_operation(self) -> str:  # type: ignore[override]
        return self.job.operation

    def __init__(self, *, wait_margin: int = DEFAULT_WAIT_MARGIN, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.wait_margin = wait_margin

    def name_kind(self) -> str:
        """The kind in this task's job names (:func:`include.sagemaker.naming.job_name`)."""
        return self.job.name_kind

    def build_request(self, context: Context) -> dict[str, Any]:
        request = super().build_request(context)
        request.setdefault(self.job.name_key, run_identity(context).name(self.name_kind()))
        return request

    def _job_exists(self, name: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            getattr(self.hook, self.job.describe_method)(name)  # type: ignore[attr-defined]
        except ClientError as err:
            if is_missing_error(err):
                return False
            raise
        return True

    def _free_name(self, run: RunIdentity, proposed: str) -> str:
        """``proposed``, or the next attempt name of this try while a job already has the name."""
        name, attempt = proposed, 0
        while self._job_exists(name):
            attempt += 1
            name = run.name(self.name_kind(), attempt)
            self.log.warning("a %s job named %s exists already; using %s", self.job.stop_kind, proposed, name)  # type: ignore[attr-defined]
        return name

    def send_to_sagemaker(self, context: Context, request: dict[str, Any]) -> Mapping[str, Any]:
        request[self.job.name_key] = self._free_name(run_identity(context), request[self.job.name_key])
        self.config = request
        self.max_ingestion_time = max(self.max_ingestion_time or 0, max_duration_seconds(request) + self.wait_margin)
        try:
            result = self.provider_execute(context)
        except Exception:  # a failed wait (timeout, API error) must not leave the job running
            self._stop_after_failure()
            raise
        return result[self.job.result_key]

    def _stop_after_failure(self) -> None:
        try:
            self.on_kill()
        except Exception:
            self.log.exception("could not stop %s job %s", self.job.stop_kind, self.config.get(self.job.name_key))  # type: ignore[attr-defined]

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> dict[str, Any]:
        result = super().execute_complete(context, event)  # type: ignore[misc]
        return self.job.result_of(result[self.job.result_key], backend="sagemaker")

    def on_kill(self) -> None:
        """Stop the SageMaker job this task started (the provider's operators leave it running)."""
        name = self.config.get(self.job.name_key) if self.backend == "sagemaker" else None
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
