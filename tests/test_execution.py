"""One path for a request: validated before anything runs, then the local executor or SageMaker (boto3 on moto)."""

from __future__ import annotations

from typing import Any

import boto3
import pytest

from include.execution import DEPLOYMENT, TRAINING, TUNING, JobFailedError, execute, execute_request
from include.sagemaker.naming import RunIdentity
from include.sagemaker.requests import training_job_request, tuning_job_request
from include.sagemaker.tuning_ranges import documented_ranges
from include.sagemaker.validation import RequestValidationError

RUN = RunIdentity("cli", "run-1", 1)


@pytest.fixture(autouse=True)
def _fake_aws(aws_credentials: None) -> None:
    """Nothing here may reach real AWS."""


def _training(training_spec: Any, hyperparameters: dict[str, str]) -> dict[str, Any]:
    return training_job_request(training_spec, name=RUN.name("train"), hyperparameters=hyperparameters, tags=[])


def test_a_training_request_goes_to_sagemaker_and_is_waited_for(aws, training_spec, hyperparameters) -> None:
    result = execute(TRAINING, _training(training_spec, hyperparameters), backend="sagemaker", region="us-east-1")
    jobs = boto3.client("sagemaker").list_training_jobs()["TrainingJobSummaries"]
    assert [j["TrainingJobName"] for j in jobs] == [RUN.name("train")]
    assert result["backend"] == "sagemaker" and result["status"] == "Completed"
    assert result["artifact_uri"].endswith(f"{RUN.name('train')}/output/model.tar.gz")


def test_a_tuning_request_goes_to_sagemaker(aws, training_spec, hyperparameters) -> None:
    request = tuning_job_request(
        training_spec, name=RUN.name("tune"), hyperparameters=hyperparameters, ranges=documented_ranges(), tags=[]
    )
    answer = execute_request(TUNING, request, backend="sagemaker", region="us-east-1")
    assert answer["HyperParameterTuningJobName"] == RUN.name("tune")


def test_nothing_is_sent_or_run_when_the_request_is_invalid(aws, training_spec, hyperparameters) -> None:
    request = _training(training_spec, hyperparameters)
    request["ResourceConfig"]["InstanceType"] = "ml.p3.2xl"
    ran: list[dict] = []
    for backend in ("sagemaker", "local"):
        with pytest.raises(RequestValidationError, match="ml.p3.2xl"):
            execute(TRAINING, request, backend=backend, local_runner=ran.append, send=ran.append)
    assert ran == [] and boto3.client("sagemaker").list_training_jobs()["TrainingJobSummaries"] == []
    with pytest.raises(ValueError, match="needs an 'Endpoint' part"):
        execute(DEPLOYMENT, {"Model": {}}, backend="local")
    with pytest.raises(ValueError, match="backend must be one of sagemaker, local"):
        execute(TRAINING, request, backend="ec2")


def test_the_local_backend_gets_the_same_request(training_spec, hyperparameters) -> None:
    request = _training(training_spec, hyperparameters)
    seen: list[dict] = []

    def runner(received: dict[str, Any]) -> dict[str, Any]:
        seen.append(received)
        return {**received, "TrainingJobStatus": "Completed", "ModelArtifacts": {"S3ModelArtifacts": "s3://b/m.tar.gz"}}

    result = execute(TRAINING, request, backend="local", local_runner=runner)
    assert seen == [request] and result["backend"] == "local" and result["artifact_uri"] == "s3://b/m.tar.gz"


def test_a_failed_job_is_reported_with_its_reason(aws, training_spec, hyperparameters, monkeypatch) -> None:
    from include.sagemaker import client as aws_client

    real = aws_client.sagemaker_client

    def failing(region: str | None = None) -> Any:
        sm = real(region)
        describe = sm.describe_training_job
        sm.describe_training_job = lambda **kw: {
            **describe(**kw),
            "TrainingJobStatus": "Failed",
            "FailureReason": "AlgorithmError: out of memory",
        }
        return sm

    monkeypatch.setattr(aws_client, "sagemaker_client", failing)
    with pytest.raises(JobFailedError, match="Failed: AlgorithmError: out of memory"):
        execute(TRAINING, _training(training_spec, hyperparameters), backend="sagemaker")
