"""Fixtures for the SageMaker tests: fake credentials, moto, and the stand-ins of :mod:`aws_stand_ins`.

Registered for every test by the root conftest. The test folders that talk to AWS make
:func:`aws_credentials` autouse in their own conftest.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from types import SimpleNamespace
from typing import Any

import pytest

from include.sagemaker.naming import RunIdentity
from tests.support.aws_stand_ins import (
    BUCKET,
    REGION,
    ROLE_ARN,
    STOPS,
    CompilationStandIn,
    InvokeStandIn,
    StopStandIn,
    TrialListStandIn,
    UpdateEndpointStandIn,
    start_in_progress,
)


@pytest.fixture
def aws_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fake credentials and region; nothing may reach real AWS."""
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_SECURITY_TOKEN": "testing",
        "AWS_DEFAULT_REGION": REGION,
    }.items():
        monkeypatch.setenv(name, value)
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def aws(aws_credentials: None) -> Iterator[None]:
    """moto in-process, with a bucket holding the training channels."""
    import boto3
    from moto import mock_aws

    with mock_aws():
        s3 = boto3.client("s3", region_name=REGION)
        s3.create_bucket(Bucket=BUCKET)
        for key in (
            "data/train/train-0.rec",
            "data/validation/validation-0.rec",
            "manifests/train.manifest",
            "manifests/validation.manifest",
        ):
            s3.put_object(Bucket=BUCKET, Key=key, Body=b"\x0a\x23\xd7\x3e")
        yield


@contextlib.contextmanager
def registered(handlers: list[tuple[str, Any]]) -> Iterator[None]:
    import boto3
    from botocore.handlers import BUILTIN_HANDLERS

    BUILTIN_HANDLERS.extend(handlers)  # every botocore session created from now on gets them
    boto3.DEFAULT_SESSION = None
    try:
        yield
    finally:
        for handler in handlers:
            BUILTIN_HANDLERS.remove(handler)
        boto3.DEFAULT_SESSION = None


@pytest.fixture
def stop_calls() -> Iterator[StopStandIn]:
    """The Stop* stand-in; yields it so tests can see which stops were asked for."""
    stand_in = StopStandIn()
    with registered([(f"before-call.sagemaker.{op}", stand_in) for op in STOPS]):
        yield stand_in


@pytest.fixture
def invoke_calls() -> Iterator[InvokeStandIn]:
    """The binary InvokeEndpoint stand-in; yields it so tests can see what was sent."""
    stand_in = InvokeStandIn()
    with registered([("before-call.sagemaker-runtime.InvokeEndpoint", stand_in)]):
        yield stand_in


@pytest.fixture
def endpoint_updates() -> Iterator[UpdateEndpointStandIn]:
    """The UpdateEndpoint stand-in; yields it so tests can see the requests and play a rollback."""
    stand_in = UpdateEndpointStandIn()
    with registered([("before-call.sagemaker.UpdateEndpoint", stand_in)]):
        yield stand_in


@pytest.fixture
def neo_jobs() -> Iterator[CompilationStandIn]:
    """The Neo stand-in (a new compilation job's status, its stop); yields it so tests can set the status."""
    stand_in = CompilationStandIn()
    with registered(
        [
            ("after-call.sagemaker.CreateCompilationJob", stand_in.created),
            ("before-call.sagemaker.StopCompilationJob", stand_in.stop),
        ]
    ):
        yield stand_in


@pytest.fixture
def tuning_trials() -> Iterator[TrialListStandIn]:
    """ListTrainingJobsForHyperParameterTuningJob on moto (two trials a page); yields the stand-in."""
    stand_in = TrialListStandIn()
    with registered([("before-call.sagemaker.ListTrainingJobsForHyperParameterTuningJob", stand_in)]):
        yield stand_in


@pytest.fixture
def jobs_start_in_progress() -> Iterator[None]:
    with registered(
        [
            ("after-call.sagemaker.CreateTrainingJob", start_in_progress),
            ("after-call.sagemaker.CreateHyperParameterTuningJob", start_in_progress),
        ]
    ):
        yield


DAG_ID = "detection_pipeline"
RUN_ID = "manual__2026-01-02T03:04:05+00:00"


@pytest.fixture
def task_context() -> Callable[..., dict[str, Any]]:
    """Builds the part of an Airflow context the operators read: the task instance's run fields."""

    def make(try_number: int = 1, run_id: str = RUN_ID) -> dict[str, Any]:
        ti = SimpleNamespace(dag_id=DAG_ID, run_id=run_id, try_number=try_number)
        return {"ti": ti, "run_id": run_id}

    return make


@pytest.fixture
def training_spec() -> Any:
    from include.sagemaker.requests import TrainingSpec

    return TrainingSpec(
        role_arn=ROLE_ARN,
        region=REGION,
        train_uri=f"s3://{BUCKET}/data/train/",
        validation_uri=f"s3://{BUCKET}/data/validation/",
        output_uri=f"s3://{BUCKET}/output",
        instance_type="ml.p3.2xlarge",
        max_runtime_seconds=4 * 3600,
    )


@pytest.fixture
def hyperparameters() -> dict[str, str]:
    from include.training.hyperparameters import validate_hyperparameters

    hp = {"base_network": "resnet-50", "epochs": "30", "mini_batch_size": "16", "num_classes": "3",
          "num_training_samples": "300", "label_width": "350"}
    validate_hyperparameters(hp, num_classes=3, num_training_samples=300, max_objects=40, for_sagemaker=True)
    return hp


@pytest.fixture
def training_builder(training_spec: Any, hyperparameters: dict[str, str]) -> Callable[..., dict[str, Any]]:
    """The training operators' ``request_builder``: a CreateTrainingJob request named after the run."""
    from include.sagemaker.requests import training_job_request

    def build(context: Any, run: RunIdentity) -> dict[str, Any]:
        return training_job_request(
            training_spec, name=run.name("train"), hyperparameters=hyperparameters, tags=run.tags()
        )

    return build


@pytest.fixture
def tuning_builder(training_spec: Any, hyperparameters: dict[str, str]) -> Callable[..., dict[str, Any]]:
    """The tuning operators' ``request_builder``: a CreateHyperParameterTuningJob request, 4 jobs, 2 at a time."""
    from include.sagemaker.requests import tuning_job_request
    from include.sagemaker.tuning_ranges import documented_ranges

    def build(context: Any, run: RunIdentity) -> dict[str, Any]:
        return tuning_job_request(
            training_spec,
            name=run.name("tune"),
            hyperparameters=hyperparameters,
            ranges=documented_ranges(),
            tags=run.tags(),
            max_jobs=4,
            max_parallel_jobs=2,
        )

    return build
