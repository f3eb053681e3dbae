"""Training and tuning operators against moto: requests reach SageMaker, retries, waits, on_kill, local dispatch."""

from __future__ import annotations

import asyncio
import textwrap
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from typing import Any

import boto3
import pytest
from airflow.sdk.exceptions import TaskDeferred
from detection_airflow import DetectionTrainingOperator, DetectionTuningOperator, StoppableSageMakerTrigger
from detection_airflow.triggers import waiter_attempts

from include.sagemaker.naming import RunIdentity
from include.sagemaker.requests import training_job_request
from include.sagemaker.validation import RequestValidationError
from tests.support.aws_stand_ins import BUCKET, REGION, set_training_status
from tests.support.sagemaker_stand_ins import registered

AWS = {"aws_conn_id": None, "region_name": REGION}


def _run(context: dict[str, Any]) -> RunIdentity:
    ti = context["ti"]
    return RunIdentity(ti.dag_id, ti.run_id, ti.try_number)


def test_training_request_reaches_sagemaker(aws, task_context, training_builder, hyperparameters) -> None:
    context = task_context()
    op = DetectionTrainingOperator(
        task_id="train", request_builder=training_builder, check_interval=1, deferrable=False, **AWS
    )
    result = op.execute(context)

    name = _run(context).name("train")
    assert result == {
        "backend": "sagemaker",
        "job_name": name,
        "status": "Completed",
        "artifact_uri": f"s3://{BUCKET}/output/{name}/output/model.tar.gz",
        "final_metrics": {"train:progress": 100.0},
        "hyperparameters": hyperparameters,
    }
    client = boto3.client("sagemaker")
    described = client.describe_training_job(TrainingJobName=name)
    assert described["HyperParameters"] == hyperparameters
    assert [c["ChannelName"] for c in described["InputDataConfig"]] == ["train", "validation"]
    assert described["ResourceConfig"]["InstanceType"] == "ml.p3.2xlarge"
    tags = {t["Key"]: t["Value"] for t in client.list_tags(ResourceArn=described["TrainingJobArn"])["Tags"]}
    assert tags["airflow-try-number"] == "1" and tags["airflow-dag-id"] == "detection_pipeline"
    assert op.max_ingestion_time == 4 * 3600 + 3600  # the job's own limit plus the margin


def test_a_jumpstart_fine_tuning_request_reaches_sagemaker(jumpstart, task_context, training_spec) -> None:
    """training.algorithm jumpstart: JumpStart's own request, through the same operator, to moto."""
    from include.sagemaker.jumpstart import jumpstart_training_request
    from tests.support import jumpstart_metadata as js

    def build(context: Any, run: RunIdentity) -> dict[str, Any]:
        spec = replace(training_spec, train_uri=f"s3://{BUCKET}/data/jumpstart/training/")
        return jumpstart_training_request(spec, name=run.name("train"), model_id=js.MODEL_ID,
                                          model_version=js.VERSION, hyperparameters={"epochs": "3"}, tags=run.tags())

    boto3.client("s3").put_object(Bucket=BUCKET, Key="data/jumpstart/training/annotations.json", Body=b"{}")
    context = task_context()
    op = DetectionTrainingOperator(task_id="train", request_builder=build, check_interval=1, deferrable=False, **AWS)
    result = op.execute(context)
    described = boto3.client("sagemaker").describe_training_job(TrainingJobName=result["job_name"])
    assert described["AlgorithmSpecification"]["TrainingImage"] == js.GPU_IMAGE
    assert [c["ChannelName"] for c in described["InputDataConfig"]] == ["training", "model"]
    assert described["HyperParameters"]["epochs"] == "3"
    tags = {t["Key"]: t["Value"] for t in boto3.client("sagemaker").list_tags(
        ResourceArn=described["TrainingJobArn"])["Tags"]}
    assert tags["sagemaker-sdk:jumpstart-model-id"] == js.MODEL_ID and tags["airflow-try-number"] == "1"


@pytest.fixture
def creates() -> Iterator[list[str]]:
    """The names of every CreateTrainingJob sent (moto accepts a taken name, where SageMaker answers ResourceInUse)."""
    sent: list[str] = []

    def count(params: dict[str, Any], **_: Any) -> None:
        sent.append(params["TrainingJobName"])

    with registered([("before-parameter-build.sagemaker.CreateTrainingJob", count)]):
        yield sent


def test_a_task_killed_after_create_training_job_reattaches_when_retried(
    aws, jobs_start_in_progress, creates, task_context, training_builder
) -> None:
    def run(try_number: int) -> Any:
        op = DetectionTrainingOperator(task_id="train", request_builder=training_builder, deferrable=True, **AWS)
        return op.execute(task_context(try_number))

    with pytest.raises(TaskDeferred) as first:  # try 1 created the job and deferred; then its worker died
        run(1)
    name = first.value.trigger.job_name
    assert name == _run(task_context()).name("train") and creates == [name]

    with pytest.raises(TaskDeferred) as again:  # try 2 finds it still running: waits on it again
        run(2)
    assert isinstance(again.value.trigger, StoppableSageMakerTrigger) and again.value.trigger.job_name == name
    assert again.value.trigger.attempts * again.value.trigger.waiter_delay >= 5 * 3600
    assert creates == [name]

    set_training_status(name, "Completed")  # try 3 (the job finished meanwhile) takes the result
    assert run(3)["job_name"] == name and creates == [name]

    set_training_status(name, "Failed")  # after a failure, a new job named for the try
    with pytest.raises(TaskDeferred) as fresh:
        run(4)
    assert fresh.value.trigger.job_name == f"{name}-t4" and creates == [name, f"{name}-t4"]
    set_training_status(f"{name}-t4", "Completed")
    assert run(5)["job_name"] == f"{name}-t4" and len(creates) == 2  # the newest job of the run decides


def test_a_retry_without_deferral_waits_for_the_running_job(
    aws, jobs_start_in_progress, creates, task_context, training_builder
) -> None:
    name = _run(task_context()).name("train")
    client = boto3.client("sagemaker")
    client.create_training_job(**training_builder(task_context(), _run(task_context())))
    creates.clear()

    def finish(**_: Any) -> None:  # the job ends while the retried task polls it
        set_training_status(name, "Completed")

    with registered([("after-call.sagemaker.DescribeTrainingJob", finish)]):
        op = DetectionTrainingOperator(
            task_id="train", request_builder=training_builder, deferrable=False, check_interval=1, **AWS
        )
        result = op.execute(task_context(2))
    assert result["job_name"] == name and result["status"] == "Completed" and creates == []


def test_deferred_training_waits_as_long_as_the_job_may_run_and_on_kill_stops_it(
    aws, jobs_start_in_progress, stop_calls, task_context, training_builder
) -> None:
    op = DetectionTrainingOperator(task_id="train", request_builder=training_builder, deferrable=True, **AWS)
    with pytest.raises(TaskDeferred) as deferred:
        op.execute(task_context())

    trigger = deferred.value.trigger
    assert isinstance(trigger, StoppableSageMakerTrigger)
    assert trigger.waiter_delay == 60 and trigger.attempts * trigger.waiter_delay >= 5 * 3600  # not 60 x 30 s
    assert deferred.value.timeout == timedelta(seconds=5 * 3600)
    name = op.config["TrainingJobName"]
    client = boto3.client("sagemaker")
    assert client.describe_training_job(TrainingJobName=name)["TrainingJobStatus"] == "InProgress"

    op.on_kill()
    assert stop_calls.calls == [("StopTrainingJob", name)]
    assert client.describe_training_job(TrainingJobName=name)["TrainingJobStatus"] == "Stopped"
    op.on_kill()  # already stopped: SageMaker refuses, the task does not fail on it
    assert len(stop_calls.calls) == 2

    finished = op.execute_complete(task_context(), {"status": "success", "job_name": name})
    assert finished["job_name"] == name and finished["status"] == "Stopped"


def test_a_killed_deferred_task_stops_its_job_from_the_trigger(
    aws, jobs_start_in_progress, stop_calls, task_context, tuning_builder
) -> None:
    op = DetectionTuningOperator(
        task_id="tune", request_builder=tuning_builder, deferrable=True, check_interval=30, **AWS
    )
    with pytest.raises(TaskDeferred) as deferred:
        op.execute(task_context())
    trigger = deferred.value.trigger
    assert op.max_ingestion_time == 2 * 4 * 3600 + 3600  # two waves of 4-hour jobs, plus the margin
    assert trigger.attempts == waiter_attempts(op.max_ingestion_time, 30) and trigger.attempts > 480

    classpath, kwargs = trigger.serialize()
    assert classpath == "detection_airflow.triggers.StoppableSageMakerTrigger"
    revived = StoppableSageMakerTrigger(**kwargs)  # what the triggerer does
    asyncio.run(revived.on_kill())

    name = op.config["HyperParameterTuningJobName"]
    assert stop_calls.calls == [("StopHyperParameterTuningJob", name)]
    status = boto3.client("sagemaker").describe_hyper_parameter_tuning_job(HyperParameterTuningJobName=name)
    assert status["HyperParameterTuningJobStatus"] == "Stopped"


def test_tuning_takes_the_runs_completed_job(aws, task_context, tuning_builder) -> None:
    context = task_context()
    taken = tuning_builder(context, _run(context))
    boto3.client("sagemaker").create_hyper_parameter_tuning_job(**taken)

    op = DetectionTuningOperator(
        task_id="tune", request_builder=tuning_builder, check_interval=1, deferrable=False, **AWS
    )
    result = op.execute(context)

    name = result["tuning_job_name"]
    assert name == _run(context).name("tune") and len(name) <= 32  # the run's job, complete: taken, not started again
    assert len(boto3.client("sagemaker").list_hyper_parameter_tuning_jobs()["HyperParameterTuningJobSummaries"]) == 1
    # moto's tuning jobs report a canned best job ("FakeTrainingJobName", metric "Accuracy" = 1)
    assert result["job_name"] == "FakeTrainingJobName"
    assert result["artifact_uri"] == f"s3://{BUCKET}/output/FakeTrainingJobName/output/model.tar.gz"
    assert result["final_metrics"] == {"Accuracy": 1.0}
    assert result["hyperparameters"]["base_network"] == "resnet-50" and "learning_rate" not in result["hyperparameters"]
    described = boto3.client("sagemaker").describe_hyper_parameter_tuning_job(HyperParameterTuningJobName=name)
    assert described["HyperParameterTuningJobConfig"] == taken["HyperParameterTuningJobConfig"]


def test_invalid_requests_stop_before_anything_is_sent(aws, task_context, training_builder) -> None:
    def bad(context: Any, run: RunIdentity) -> dict[str, Any]:
        request = training_builder(context, run)
        request["ResourceConfig"]["InstanceType"] = "ml.p3.2xl"
        return request

    op = DetectionTrainingOperator(task_id="train", request_builder=bad, deferrable=False, **AWS)
    with pytest.raises(RequestValidationError, match="ml.p3.2xl"):
        op.execute(task_context())
    assert boto3.client("sagemaker").list_training_jobs()["TrainingJobSummaries"] == []
    with pytest.raises(ValueError, match="backend must be one of sagemaker, local"):
        DetectionTrainingOperator(task_id="t", request_builder=bad, backend="ec2", **AWS).execute(task_context())
    with pytest.raises(ValueError, match="request_builder or a config"):
        DetectionTrainingOperator(task_id="t", **AWS).execute(task_context())


def test_local_backend_runs_the_same_request_through_the_local_runner(
    aws, task_context, training_spec, hyperparameters, tmp_path, monkeypatch
) -> None:
    # Stands in for include.training.local_executor (another part of the project): it answers
    # with a DescribeTrainingJob-shaped dict, as the contract says.
    (tmp_path / "runner_under_test.py").write_text(
        textwrap.dedent("""
        REQUESTS = []

        def run_training_job(request):
            REQUESTS.append(request)
            output = request["OutputDataConfig"]["S3OutputPath"]
            return {
                "TrainingJobName": request["TrainingJobName"],
                "TrainingJobStatus": "Completed",
                "ModelArtifacts": {"S3ModelArtifacts": f"{output}/{request['TrainingJobName']}/output/model.tar.gz"},
                "FinalMetricDataList": [{"MetricName": "validation:mAP", "Value": 0.5}],
                "HyperParameters": request["HyperParameters"],
            }
    """)
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    local_spec = replace(
        training_spec,
        train_uri="file:///runs/r/train",
        validation_uri="file:///runs/r/validation",
        output_uri="file:///runs/r/output",
    )

    def build(context: Any, run: RunIdentity) -> dict[str, Any]:
        return training_job_request(
            local_spec, name=run.name("train"), hyperparameters=hyperparameters, tags=run.tags()
        )

    import runner_under_test

    op = DetectionTrainingOperator(
        task_id="train",
        request_builder=build,
        backend="{{ params.backend }}",
        local_runner=runner_under_test.run_training_job,
        **AWS,
    )
    context = {**task_context(), "params": {"backend": "local"}}
    op.render_template_fields(context)  # the backend is picked at run time
    result = op.execute(context)

    assert runner_under_test.REQUESTS == [build(task_context(), _run(task_context()))]
    assert result["backend"] == "local" and result["final_metrics"] == {"validation:mAP": 0.5}
    assert result["artifact_uri"] == f"file:///runs/r/output/{result['job_name']}/output/model.tar.gz"
    assert boto3.client("sagemaker").list_training_jobs()["TrainingJobSummaries"] == []
