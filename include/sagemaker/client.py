"""One home for AWS access: boto3 sessions and clients, SageMaker's error codes, stopping a run's jobs.

**Credentials, in one place.** Every AWS client the pipeline creates outside the provider's
operators (teardown, the smoke test, CloudWatch metrics, the sweeper, the CLI) comes from
:func:`client`. Under Airflow the plugin (:mod:`detection_airflow`) installs a session factory
that takes the ``aws_default`` connection's credentials, the same identity the provider's
operators use (a connection without keys, or none at all, falls back to boto3's chain);
everywhere else it is boto3's default chain (environment, shared config, instance role).
``AWS_ENDPOINT_URL`` is honoured either way (the tests point it at moto). Files on S3 go through
s3fs (:mod:`include.storage`), which reads the same default chain.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any, Literal

log = logging.getLogger(__name__)

JobKind = Literal["training", "tuning", "compilation", "processing", "transform"]
#: ``(region) -> boto3.Session``; installed by the Airflow plugin (see the module docstring).
SessionFactory = Callable[[str | None], Any]

_session_factory: SessionFactory | None = None


def use_session_factory(factory: SessionFactory | None) -> None:
    """Make :func:`client` take its sessions from ``factory`` (None: boto3's default chain again)."""
    global _session_factory
    _session_factory = factory


def session(region: str | None = None) -> Any:
    """A boto3 session with the pipeline's credentials (see the module docstring)."""
    if _session_factory is not None:
        return _session_factory(region)
    import boto3

    return boto3.Session(region_name=region)


def client(service: str, region: str | None = None) -> Any:
    """A boto3 client of ``service`` (``sagemaker``, ``sagemaker-runtime``, ``logs``, ...) in ``region``."""
    return session(region).client(service, region_name=region)


def local_runtime_client(url: str, region: str | None = None) -> Any:
    """A ``sagemaker-runtime`` client of a local endpoint at ``url`` (it ignores signatures: any credentials do)."""
    import boto3

    return boto3.client("sagemaker-runtime", endpoint_url=url, region_name=region or "us-east-1",
                        aws_access_key_id="local", aws_secret_access_key="local")  # fmt: skip


def sagemaker_client(region: str | None = None) -> Any:
    """A SageMaker client (:func:`client`)."""
    return client("sagemaker", region)


def jumpstart_session(region: str) -> Any:
    """A SageMaker SDK session for JumpStart's metadata look-ups, with the pipeline's credentials.

    The SDK keeps a process-wide metadata cache with its own S3 client; it is reset here to one
    from the same session, so the look-ups read JumpStart's bucket with the pipeline's identity.
    """
    from sagemaker.core.helper.session_helper import Session
    from sagemaker.core.jumpstart.accessors import JumpStartModelsAccessor

    boto = session(region)
    JumpStartModelsAccessor.reset_cache({"s3_client": boto.client("s3", region_name=region)}, region)
    return Session(boto_session=boto)


def error_code(err: Exception) -> tuple[str, str]:
    """``(code, message)`` of a botocore ``ClientError`` (empty strings for anything else)."""
    response = getattr(err, "response", None) or {}
    error = response.get("Error", {})
    return str(error.get("Code", "")), str(error.get("Message", ""))


def is_missing_error(err: Exception) -> bool:
    """True for SageMaker's "not found" errors (``ResourceNotFound``, ``ValidationException: Could not find``)."""
    code, message = error_code(err)
    return code in ("ResourceNotFound", "ResourceNotFoundException") or (
        code == "ValidationException" and ("Could not find" in message or "does not exist" in message)
    )


def paged(sm: Any, operation: str, result_key: str, **kwargs: Any) -> Iterator[dict[str, Any]]:
    """Every item of a paginated ``List*`` call."""
    for page in sm.get_paginator(operation).paginate(**kwargs):
        yield from page.get(result_key, [])


def names_containing(sm: Any, operation: str, result_key: str, name_key: str, token: str, **kwargs: Any) -> list[str]:
    """Names from a ``List*`` call that contain ``token`` (filtered here too: not every server honours NameContains)."""
    items = paged(sm, operation, result_key, NameContains=token, **kwargs)
    return sorted({item[name_key] for item in items if token in item[name_key]})


def stop_job(sm: Any, kind: JobKind, name: str) -> bool:
    """Ask SageMaker to stop a training, tuning, compilation, processing or transform job; False when it is gone or
    not running."""
    from botocore.exceptions import ClientError

    try:
        if kind == "training":
            sm.stop_training_job(TrainingJobName=name)
        elif kind == "compilation":
            sm.stop_compilation_job(CompilationJobName=name)
        elif kind == "processing":
            sm.stop_processing_job(ProcessingJobName=name)
        elif kind == "transform":
            sm.stop_transform_job(TransformJobName=name)
        else:
            sm.stop_hyper_parameter_tuning_job(HyperParameterTuningJobName=name)
    except ClientError as err:
        code, message = error_code(err)
        if code in ("ValidationException", "ResourceNotFound"):
            log.info("%s job %s not stopped: %s", kind, name, message)
            return False
        raise
    log.info("stopping %s job %s", kind, name)
    return True


def stop_run_jobs(sm: Any, token: str) -> list[str]:
    """Stop the training, tuning, processing and Neo compilation jobs still running whose names hold the run token."""
    stopped = []
    for name in names_containing(
        sm,
        "list_hyper_parameter_tuning_jobs",
        "HyperParameterTuningJobSummaries",
        "HyperParameterTuningJobName",
        token,
        StatusEquals="InProgress",
    ):
        if stop_job(sm, "tuning", name):
            stopped.append(name)
    for name in names_containing(
        sm, "list_training_jobs", "TrainingJobSummaries", "TrainingJobName", token, StatusEquals="InProgress"
    ):
        if stop_job(sm, "training", name):
            stopped.append(name)
    for name in names_containing(
        sm, "list_processing_jobs", "ProcessingJobSummaries", "ProcessingJobName", token, StatusEquals="InProgress"
    ):
        if stop_job(sm, "processing", name):
            stopped.append(name)
    for status in ("STARTING", "INPROGRESS"):
        for name in names_containing(
            sm, "list_compilation_jobs", "CompilationJobSummaries", "CompilationJobName", token, StatusEquals=status
        ):
            if stop_job(sm, "compilation", name):
                stopped.append(name)
    return stopped
