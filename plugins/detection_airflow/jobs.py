"""Training and tuning operators: the provider's SageMaker operators, made safe for long jobs and retries.

On top of ``SageMakerTrainingOperator`` / ``SageMakerTuningOperator`` they

* build the request at execute time (``request_builder(context, run)``) and validate it offline
  against botocore's SageMaker model before anything is sent;
* run it on this machine instead when ``backend == "local"`` (``local_runner``, imported then);
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
from typing import TYPE_CHECKING, Any, ClassVar

from airflow.providers.amazon.aws.operators.sagemaker import SageMakerTrainingOperator, SageMakerTuningOperator
from airflow.providers.common.compat.sdk import conf

from detection_airflow.runtime import RequestBuilder, build_request, check_backend, load_callable, run_identity
from detection_airflow.triggers import SizedDeferralMixin
from include.sagemaker.naming import TRAINING, TUNING, RunIdentity
from include.sagemaker.requests import max_duration_seconds
from include.sagemaker.results import training_result, tuning_result
from include.sagemaker.teardown import JobKind, is_missing_error, stop_job
from include.sagemaker.validation import validate_request

if TYPE_CHECKING:
    from airflow.sdk import Context

LOCAL_TRAINING_RUNNER = "include.training.local_executor:run_training_job"
LOCAL_TUNING_RUNNER = "include.training.local_tuner:run_tuning_job"
DEFAULT_CHECK_INTERVAL = 60
DEFAULT_WAIT_MARGIN = 3600


class _JobOperatorMixin(SizedDeferralMixin):
    """What the training and tuning operators share; mixed in before the provider's operator class."""

    operation: ClassVar[str]
    name_key: ClassVar[str]
    name_kind: ClassVar[str]
    stop_kind: ClassVar[JobKind]
    result_key: ClassVar[str]
    describe_method: ClassVar[str]
    result_of: ClassVar[Callable[..., dict[str, Any]]]

    backend: str
    request_builder: RequestBuilder | None
    local_runner: str
    wait_margin: int
    config: dict[str, Any]
    task_id: str

    def _job_exists(self, name: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            getattr(self.hook, self.describe_method)(name)  # type: ignore[attr-defined]
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
            name = run.name(self.name_kind, attempt)
            self.log.warning("a %s job named %s exists already; using %s", self.stop_kind, proposed, name)  # type: ignore[attr-defined]
        return name

    def _run_job(self, context: Context, provider_execute: Callable[[Context], Mapping[str, Any]]) -> dict[str, Any]:
        backend = check_backend(self.backend, self.task_id)
        run = run_identity(context)
        request = build_request(context, run, task_id=self.task_id, builder=self.request_builder, config=self.config)
        request.setdefault(self.name_key, run.name(self.name_kind))
        validate_request(self.operation, request, local_uris=backend == "local")
        if backend == "local":
            return self.result_of(load_callable(self.local_runner)(request), backend="local")
        request[self.name_key] = self._free_name(run, request[self.name_key])
        self.config = request
        self.max_ingestion_time = max(self.max_ingestion_time or 0, max_duration_seconds(request) + self.wait_margin)
        try:
            result = provider_execute(context)
        except Exception:  # a failed wait (timeout, API error) must not leave the job running
            self._stop_after_failure()
            raise
        return self.result_of(result[self.result_key], backend="sagemaker")

    def _stop_after_failure(self) -> None:
        try:
            self.on_kill()
        except Exception:
            self.log.exception("could not stop %s job %s", self.stop_kind, self.config.get(self.name_key))  # type: ignore[attr-defined]

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> dict[str, Any]:
        result = super().execute_complete(context, event)  # type: ignore[misc]
        return self.result_of(result[self.result_key], backend="sagemaker")

    def on_kill(self) -> None:
        """Stop the SageMaker job this task started (the provider's operators leave it running)."""
        name = self.config.get(self.name_key) if self.backend == "sagemaker" else None
        if name:
            stop_job(self.hook.conn, self.stop_kind, name)  # type: ignore[attr-defined]


class DetectionTrainingOperator(_JobOperatorMixin, SageMakerTrainingOperator):
    """Run a CreateTrainingJob request on SageMaker (provider operator) or locally; return a small result.

    :param request_builder: ``(context, run) -> request``, called at execute time (preferred).
    :param config: a ready request instead (templated), as the provider's operator takes it.
    :param backend: ``"sagemaker"`` or ``"local"`` (templated: picked at run time).
    :param local_runner: ``"module:function"`` taking the request and returning a
        DescribeTrainingJob-shaped dict, used when ``backend == "local"``.
    :param check_interval: seconds between status polls.
    :param max_ingestion_time: least seconds to wait; raised to the request's own limit plus ``wait_margin``.
    :param wait_margin: seconds allowed on top of the request's limit (provisioning, image download, upload).
    :param print_log: copy the job's CloudWatch log into the task log while waiting; default: when not
        deferrable (deferred, the provider would only block one ``check_interval`` to print the first lines).
    :return: ``{"backend", "job_name", "status", "artifact_uri", "final_metrics", "hyperparameters"}``.
    """

    template_fields = (*SageMakerTrainingOperator.template_fields, "backend")
    operation = "CreateTrainingJob"
    name_key = "TrainingJobName"
    name_kind = TRAINING
    stop_kind: ClassVar[JobKind] = "training"
    result_key = "Training"
    describe_method = "describe_training_job"
    result_of = staticmethod(training_result)

    def __init__(
        self,
        *,
        request_builder: RequestBuilder | None = None,
        config: dict[str, Any] | None = None,
        backend: str = "sagemaker",
        local_runner: str = LOCAL_TRAINING_RUNNER,
        check_interval: int = DEFAULT_CHECK_INTERVAL,
        max_ingestion_time: int | None = None,
        wait_margin: int = DEFAULT_WAIT_MARGIN,
        print_log: bool | None = None,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        **kwargs: Any,
    ) -> None:
        super().__init__(
            config=config or {},
            wait_for_completion=True,
            print_log=not deferrable if print_log is None else print_log,
            check_interval=check_interval,
            max_ingestion_time=max_ingestion_time,
            check_if_job_exists=False,
            deferrable=deferrable,
            **kwargs,
        )
        self.request_builder = request_builder
        self.backend = backend
        self.local_runner = local_runner
        self.wait_margin = wait_margin

    def execute(self, context: Context) -> dict[str, Any]:
        return self._run_job(context, super().execute)


class DetectionTuningOperator(_JobOperatorMixin, SageMakerTuningOperator):
    """Run a CreateHyperParameterTuningJob request on SageMaker (provider operator) or locally.

    Parameters as :class:`DetectionTrainingOperator` (``local_runner`` returns a
    DescribeHyperParameterTuningJob-shaped dict).

    :return: the best training job as a training result (``job_name``, ``artifact_uri``,
        ``final_metrics`` with the objective, ``hyperparameters`` static + tuned) plus
        ``tuning_job_name`` and ``tuned_hyperparameters``.
    """

    template_fields = (*SageMakerTuningOperator.template_fields, "backend")
    operation = "CreateHyperParameterTuningJob"
    name_key = "HyperParameterTuningJobName"
    name_kind = TUNING
    stop_kind: ClassVar[JobKind] = "tuning"
    result_key = "Tuning"
    describe_method = "describe_tuning_job"
    result_of = staticmethod(tuning_result)

    def __init__(
        self,
        *,
        request_builder: RequestBuilder | None = None,
        config: dict[str, Any] | None = None,
        backend: str = "sagemaker",
        local_runner: str = LOCAL_TUNING_RUNNER,
        check_interval: int = DEFAULT_CHECK_INTERVAL,
        max_ingestion_time: int | None = None,
        wait_margin: int = DEFAULT_WAIT_MARGIN,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        **kwargs: Any,
    ) -> None:
        super().__init__(
            config=config or {},
            wait_for_completion=True,
            check_interval=check_interval,
            max_ingestion_time=max_ingestion_time,
            deferrable=deferrable,
            **kwargs,
        )
        self.request_builder = request_builder
        self.backend = backend
        self.local_runner = local_runner
        self.wait_margin = wait_margin

    def execute(self, context: Context) -> dict[str, Any]:
        return self._run_job(context, super().execute)
