"""One path for executing a SageMaker request on either backend.

The DAG's operators, ``detection-pipeline run`` and the CLI's stage commands all hand their
request to :func:`execute`. It validates the request offline against botocore's SageMaker model,
then runs it with the local executor (``backend="local"``) or sends it to SageMaker, and returns
the small result the operators keep in XCom (:mod:`include.sagemaker.results`), the same keys for
both backends. The operators pass their own ``send`` (the provider's operator: deferrable, waits
sized from the request, stoppable); without one the request goes out through boto3
(:mod:`include.sagemaker.client`) and is waited for here.

The local executors are imported when called, so importing this module (DAG files do, through
the operators) costs nothing.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from include.sagemaker.results import (
    compilation_result,
    deployment_result,
    processing_result,
    training_result,
    transform_result,
    tuning_result,
)
from include.sagemaker.validation import validate_request

if TYPE_CHECKING:
    from include.cache import JobCache

log = logging.getLogger(__name__)

TRAINING = "CreateTrainingJob"
TUNING = "CreateHyperParameterTuningJob"
#: SageMaker Neo; no local executor (the local backend exports ONNX instead).
COMPILATION = "CreateCompilationJob"
#: A RecordIO shard on the project's image; no local executor (the local backend builds shards in the task).
PROCESSING = "CreateProcessingJob"
#: The combined ``{"Model", "EndpointConfig", "Endpoint"}`` request (:func:`sagemaker.requests.deployment_request`).
DEPLOYMENT = "Deployment"
#: The combined ``{"Model", "Transform"}`` request (:func:`sagemaker.requests.transform_request`): a batch transform.
TRANSFORM = "CreateTransformJob"
BACKENDS = ("sagemaker", "local")
#: Parts of the combined deployment request and the operation each one is.
DEPLOYMENT_PARTS = {"Model": "CreateModel", "EndpointConfig": "CreateEndpointConfig", "Endpoint": "CreateEndpoint"}
#: Parts of the combined transform request (``Model`` left out: the model exists on SageMaker already).
TRANSFORM_PARTS = {"Model": "CreateModel", "Transform": TRANSFORM}
#: Operations whose request combines parts, the part that must be there, and each part's operation.
COMBINED = {DEPLOYMENT: ("Endpoint", DEPLOYMENT_PARTS), TRANSFORM: ("Transform", TRANSFORM_PARTS)}


@dataclass(frozen=True)
class JobCalls:
    """How boto3 creates, describes and (where the wait should) stops one kind of job."""

    noun: str
    name_key: str
    create: str
    describe: str
    status_key: str
    stop: str | None = None


#: The jobs :func:`send_with_boto3` waits for. Training and tuning jobs are stopped by the DAG's operators
#: (``on_kill``) and teardown; compilation, processing and transform jobs are also stopped when the wait here is
#: interrupted. A transform request is combined (``{"Model", "Transform"}``): the model is created first.
JOBS = {
    TRAINING: JobCalls("training job", "TrainingJobName", "create_training_job", "describe_training_job",
                       "TrainingJobStatus"),
    TUNING: JobCalls("tuning job", "HyperParameterTuningJobName", "create_hyper_parameter_tuning_job",
                     "describe_hyper_parameter_tuning_job", "HyperParameterTuningJobStatus"),
    COMPILATION: JobCalls("Neo compilation job", "CompilationJobName", "create_compilation_job",
                          "describe_compilation_job", "CompilationJobStatus", "stop_compilation_job"),
    PROCESSING: JobCalls("processing job", "ProcessingJobName", "create_processing_job", "describe_processing_job",
                         "ProcessingJobStatus", "stop_processing_job"),
    TRANSFORM: JobCalls("transform job", "TransformJobName", "create_transform_job", "describe_transform_job",
                        "TransformJobStatus", "stop_transform_job"),
}  # fmt: skip
#: Seconds between polls while waiting for a job sent with boto3.
POLL_S = 30
#: Seconds a job sent with boto3 may take beyond its own limit (provisioning, image download, upload).
WAIT_MARGIN_S = 3600

#: ``(request) -> Describe*-shaped answer``
Runner = Callable[[dict[str, Any]], Mapping[str, Any]]


class JobFailedError(RuntimeError):
    """A job sent to SageMaker ended Failed or Stopped; the message has its FailureReason."""


def check_backend(backend: str, where: str = "") -> str:
    """``backend`` when it is one of :data:`BACKENDS`; ``ValueError`` naming ``where`` otherwise."""
    if backend not in BACKENDS:
        prefix = f"{where}: " if where else ""
        raise ValueError(f"{prefix}backend must be one of {', '.join(BACKENDS)} (got {backend!r})")
    return backend


def validate(operation: str, request: Mapping[str, Any], *, backend: str) -> None:
    """Check ``request`` against botocore's model of ``operation`` (each part of a deployment or transform
    request)."""
    local = backend == "local"
    if operation not in COMBINED:
        validate_request(operation, request, local_uris=local)
        return
    required, parts = COMBINED[operation]
    if required not in request:
        article = "an" if required[0] in "AEIOU" else "a"
        raise ValueError(f"the {operation} request needs {article} {required!r} part (it has {sorted(request)})")
    for part, part_operation in parts.items():
        if part in request:
            validate_request(part_operation, request[part], local_uris=local)


# --- the local backend ----------------------------------------------------------------------


def run_locally(operation: str, request: dict[str, Any], **options: Any) -> Mapping[str, Any]:
    """Execute ``request`` on this machine; its Describe*-shaped answer. ``options`` go to the executor."""
    if operation == TRAINING:
        from include.training.local_executor import run_training_job

        return run_training_job(request, **options)
    if operation == TUNING:
        from include.training.local_tuner import run_tuning_job

        return run_tuning_job(request, **options)
    if operation == DEPLOYMENT:
        from include.endpoints.local import run_local_deployment

        return run_local_deployment(request, **options)
    if operation == TRANSFORM:
        from include.transform.local_job import run_transform_job

        return run_transform_job(request, **options)
    raise ValueError(f"no local executor for {operation!r}")


# --- SageMaker through boto3 (the CLI; the DAG's operators send through the provider) -------


def _wait_for_job(
    describe: Callable[[], Mapping[str, Any]],
    status_key: str,
    max_wait_s: int,
    poll_s: int,
    stop: Callable[[], Any] | None = None,
) -> Any:
    """Poll until the job ends; ``stop`` (best effort) when the wait ends otherwise (interrupted, timed out)."""
    deadline = time.monotonic() + max_wait_s
    try:
        while True:
            answer = describe()
            status = answer[status_key]
            if status.capitalize() in ("Completed", "Failed", "Stopped"):  # Neo's statuses are upper case
                if status.capitalize() != "Completed":
                    raise JobFailedError(f"{status}: {answer.get('FailureReason', 'no reason given')}")
                return answer
            if time.monotonic() > deadline:
                raise TimeoutError(f"still {status} after {max_wait_s} s")
            time.sleep(poll_s)
    except JobFailedError:
        raise
    except BaseException:
        if stop is not None:
            with contextlib.suppress(Exception):
                stop()
        raise


def send_with_boto3(
    operation: str, request: dict[str, Any], *, region: str | None = None, poll_s: int = POLL_S
) -> Mapping[str, Any]:
    """Send ``request`` to SageMaker and wait for it; its Describe*-shaped answer."""
    from include.sagemaker.client import sagemaker_client
    from include.sagemaker.requests import max_duration_seconds

    sm = sagemaker_client(region)
    if operation == DEPLOYMENT:
        from include.endpoints.sagemaker import deploy

        return deploy(sm, request, poll_s=poll_s)
    if operation not in JOBS:
        raise ValueError(f"cannot send {operation!r}")
    if operation == TRANSFORM:  # the model first (unless it exists), then the job
        from include.transform.sagemaker_job import create_model_unless_exists, transform_wait_seconds

        create_model_unless_exists(sm, request)
        request = request["Transform"]
        max_wait_s = transform_wait_seconds(request)
    else:
        max_wait_s = max_duration_seconds(request)
    job = JOBS[operation]
    name = request[job.name_key]
    getattr(sm, job.create)(**request)
    log.info("%s %s sent to SageMaker; waiting for it", job.noun, name)
    stop = (lambda: getattr(sm, job.stop)(**{job.name_key: name})) if job.stop else None
    return _wait_for_job(
        lambda: getattr(sm, job.describe)(**{job.name_key: name}),
        job.status_key,
        max_wait_s + WAIT_MARGIN_S,
        poll_s,
        stop,
    )


RESULTS: dict[str, Callable[..., dict[str, Any]]] = {
    TRAINING: training_result,
    TUNING: tuning_result,
    DEPLOYMENT: deployment_result,
    COMPILATION: compilation_result,
    PROCESSING: processing_result,
    TRANSFORM: transform_result,
}


def execute_request(
    operation: str,
    request: dict[str, Any],
    *,
    backend: str,
    send: Runner | None = None,
    region: str | None = None,
    local_options: Mapping[str, Any] | None = None,
    local_runner: Runner | None = None,
) -> Mapping[str, Any]:
    """Validate ``request`` and run it here or on SageMaker; the Describe*-shaped answer.

    ``send`` takes the validated request to SageMaker (default: :func:`send_with_boto3` in
    ``region``). ``local_runner`` replaces the local executor (tests); ``local_options`` are
    keyword arguments for the local executor.
    """
    check_backend(backend)
    validate(operation, request, backend=backend)
    if backend == "local":
        if local_runner is not None:
            return local_runner(request)
        return run_locally(operation, request, **(local_options or {}))
    if send is not None:
        return send(request)
    return send_with_boto3(operation, request, region=region)


def execute(
    operation: str, request: dict[str, Any], *, backend: str, cache: JobCache | None = None, **options: Any
) -> dict[str, Any]:
    """:func:`execute_request`, answered with the small result the operators keep in XCom.

    With ``cache`` (training and tuning), a job of the same request on the same data that finished
    before is reused instead of run (the result says so under ``cache``), and a job run here is
    recorded for later runs. A deferred operator records its job when it completes.
    """
    if cache is not None:
        validate(operation, request, backend=backend)
        if (reused := cache.lookup(operation, request)) is not None:
            return reused
    result = RESULTS[operation](execute_request(operation, request, backend=backend, **options), backend=backend)
    if cache is not None:
        cache.record(operation, request, result)
    return result
