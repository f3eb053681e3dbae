"""What the pipeline's operators share: their arguments, their request, one path to either backend.

Each operator is this mixin before one of the provider's SageMaker operators. The mixin takes the
pipeline's arguments (``request_builder``, ``backend``, ``local_runner``) and passes the rest to
the provider's operator; at execute time it builds the request and hands it to
:func:`include.execution.execute`, which validates it offline and runs it with the local
executor or calls the subclass's :meth:`send_to_sagemaker` (the provider's ``execute``: create,
defer or wait). In deferrable mode the provider's trigger is replaced by one that polls for the
whole wait and can stop the job (:class:`~detection_airflow.triggers.SizedDeferralMixin`).

An operator class still defines ``__init__(self, **kwargs)``, passing everything on: Airflow's
operator metaclass wraps only an ``__init__`` the class itself defines (applying the DAG's
``default_args``), and the provider's wrapped ``__init__`` expects the instance's to be wrapped.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from airflow.providers.common.compat.sdk import conf

from detection_airflow.triggers import SizedDeferralMixin
from include.execution import check_backend, execute
from include.sagemaker.naming import RunIdentity

if TYPE_CHECKING:
    from airflow.sdk import Context

#: ``(context, run) -> request``: builds the request at execute time (from XCom, params, config).
RequestBuilder = Callable[["Context", RunIdentity], dict[str, Any]]
#: ``(request) -> Describe*-shaped answer``: runs a request on the local backend instead of the executor.
LocalRunner = Callable[[dict[str, Any]], Mapping[str, Any]]
#: ``(context, result) -> result``: what the task does with its small result before returning it (tracking).
ResultHandler = Callable[["Context", dict[str, Any]], dict[str, Any]]


def run_identity(context: Context) -> RunIdentity:
    """The DAG id, run id and try number of the running task instance."""
    ti = context["ti"]
    return RunIdentity(dag_id=ti.dag_id, run_id=ti.run_id, try_number=int(ti.try_number))


class DetectionOperatorMixin(SizedDeferralMixin):
    """The pipeline's arguments and execute path; mixed in before the provider's operator class.

    :param request_builder: ``(context, run) -> request``, called at execute time (preferred).
    :param config: a ready request instead (templated), as the provider's operator takes it.
    :param backend: ``"sagemaker"`` or ``"local"`` (templated: picked at run time).
    :param local_runner: runs the request on the local backend instead of the pipeline's local
        executor (:func:`include.execution.run_locally`); it answers Describe*-shaped.
    :param result_handler: ``(context, result) -> result``, applied to the small result on either
        backend, also when a deferred task resumes (the pipeline records it in its tracking run).
    :param check_interval: seconds between status polls.
    :param max_ingestion_time: seconds to wait (jobs: the least wait, raised to the request's own limit).
    """

    #: The :mod:`include.execution` operation the operator runs.
    execution_operation: ClassVar[str]
    default_check_interval: ClassVar[int] = 60
    default_max_ingestion_time: ClassVar[int | None] = None

    config: dict[str, Any]
    task_id: str

    def __init__(
        self,
        *,
        request_builder: RequestBuilder | None = None,
        config: dict[str, Any] | None = None,
        backend: str = "sagemaker",
        local_runner: LocalRunner | None = None,
        result_handler: ResultHandler | None = None,
        check_interval: int | None = None,
        max_ingestion_time: int | None = None,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        **kwargs: Any,
    ) -> None:
        super().__init__(  # type: ignore[call-arg]
            config=config or {},
            wait_for_completion=True,
            check_interval=check_interval or self.default_check_interval,
            max_ingestion_time=max_ingestion_time or self.default_max_ingestion_time,
            deferrable=deferrable,
            **self.provider_arguments(deferrable, kwargs),
        )
        self.request_builder = request_builder
        self.backend = backend
        self.local_runner = local_runner
        self.result_handler = result_handler

    @classmethod
    def provider_arguments(cls, deferrable: bool, kwargs: dict[str, Any]) -> dict[str, Any]:
        """Arguments for the provider's operator beyond the shared ones (``kwargs``: the caller's)."""
        return kwargs

    def build_request(self, context: Context) -> dict[str, Any]:
        """The request from ``request_builder`` (called now, with the context) or else the rendered ``config``."""
        if self.request_builder is not None:
            return self.request_builder(context, run_identity(context))
        if self.config:
            return dict(self.config)
        raise ValueError(f"task {self.task_id}: give the operator a request_builder or a config")

    def execute(self, context: Context) -> dict[str, Any]:
        return self.execute_request(context)

    def execute_request(self, context: Context, **options: Any) -> dict[str, Any]:
        """The request through :func:`include.execution.execute` (``options``: its further keywords)."""
        backend = check_backend(self.backend, f"task {self.task_id}")
        result = execute(
            self.execution_operation,
            self.build_request(context),
            backend=backend,
            send=functools.partial(self.send_to_sagemaker, context),
            local_runner=self.local_runner,
            **options,
        )
        return self.handle_result(context, result)

    def handle_result(self, context: Context, result: dict[str, Any]) -> dict[str, Any]:
        """The task's result after ``result_handler`` (unchanged without one)."""
        return result if self.result_handler is None else self.result_handler(context, result)

    def send_to_sagemaker(self, context: Context, request: dict[str, Any]) -> Mapping[str, Any]:
        """Send the validated request through the provider's operator; the Describe*-shaped answer."""
        raise NotImplementedError

    def provider_execute(self, context: Context) -> Any:
        """The provider operator's own ``execute`` on ``self.config``: create, then wait or defer."""
        return super().execute(context)  # type: ignore[misc]
