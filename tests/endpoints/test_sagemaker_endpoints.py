"""SageMaker endpoints against moto: deploy with reuse (the CLI's path), smoke test, teardown, the sweeper."""

from __future__ import annotations

from datetime import datetime, timedelta

import boto3
import pytest

from include.endpoints.invocation import sagemaker_invoker
from include.endpoints.sagemaker import deploy as deploy_with_boto3
from include.endpoints.sagemaker import sweep_expired_endpoints, teardown_run
from include.sagemaker.naming import RunIdentity, run_token
from include.serving.smoke import SmokeTestError, smoke_test
from tests.support.aws_stand_ins import ROLE_ARN
from tests.support.sagemaker_deployments import (
    GOOD,
    IMAGES,
    MODEL_DATA,
    NOW,
    deploy,
    deploy_builder,
    inventory,
    queue_endpoint_answers,
)


def test_boto3_deployment_adopts_what_exists(aws, task_context) -> None:
    sm = boto3.client("sagemaker")
    run = RunIdentity("cli", "my-endpoint", 1)
    request = deploy_builder()(task_context(), run)
    first = deploy_with_boto3(sm, request, poll_s=1)
    assert first["Endpoint"]["EndpointStatus"] == "InService"
    assert first["EndpointConfig"]["ProductionVariants"][0]["ModelName"] == run.name("model")
    again = deploy_with_boto3(sm, deploy_builder()(task_context(), run), poll_s=1)
    assert again["Endpoint"]["EndpointName"] == request["Endpoint"]["EndpointName"]  # adopted, not refused
    assert inventory() == {
        "models": [run.name("model")],
        "endpoint_configs": [run.name("epconf")],
        "endpoints": [run.name("endpoint")],
    }
    assert sm.describe_model(ModelName=run.name("model"))["PrimaryContainer"]["ModelDataUrl"] == MODEL_DATA


def test_smoke_test_then_teardown_leaves_nothing_even_after_a_failed_smoke_test(
    aws, invoke_calls, task_context
) -> None:
    endpoint = deploy(task_context())["endpoint_name"]
    deploy(task_context(2))  # a second try's stack: teardown removes every try's
    invoke = sagemaker_invoker(endpoint, boto3.client("sagemaker-runtime"))
    queue_endpoint_answers([GOOD, {"prediction": []}])
    summary = smoke_test(invoke, [str(p) for p in IMAGES[:2]], num_classes=3)
    assert summary["detections"] == 2 and summary["best_score"] == pytest.approx(0.91)
    assert summary["per_image"] == {str(IMAGES[0]): 2, str(IMAGES[1]): 0}
    assert invoke_calls.requests == [(endpoint, "image/jpeg", p.stat().st_size) for p in IMAGES[:2]]

    queue_endpoint_answers([{"prediction": []}])
    with pytest.raises(SmokeTestError, match="0 detections in 1 images"):
        smoke_test(invoke, [str(IMAGES[2])])

    done = teardown_run("detection_pipeline", task_context()["run_id"], client=boto3.client("sagemaker"))
    assert len(done["deleted"]["endpoints"]) == 2 and len(done["deleted"]["models"]) == 2
    assert inventory() == {"models": [], "endpoint_configs": [], "endpoints": []}
    again = teardown_run("detection_pipeline", task_context()["run_id"], client=boto3.client("sagemaker"))
    assert again["deleted"] == {"endpoints": [], "endpoint_configs": [], "models": []}


def test_teardown_stops_only_this_runs_running_jobs(
    aws, jobs_start_in_progress, stop_calls, training_spec, hyperparameters, task_context
) -> None:
    from include.sagemaker.requests import training_job_request, tuning_job_request
    from include.sagemaker.tuning_ranges import documented_ranges

    client = boto3.client("sagemaker")
    ours = RunIdentity("detection_pipeline", task_context()["run_id"], 1)
    other = RunIdentity("detection_pipeline", "manual__2026-01-03T00:00:00+00:00", 1)
    for run in (ours, other):
        client.create_training_job(
            **training_job_request(
                training_spec, name=run.name("train"), hyperparameters=hyperparameters, tags=run.tags()
            )
        )
    client.create_hyper_parameter_tuning_job(
        **tuning_job_request(
            training_spec,
            name=ours.name("tune"),
            hyperparameters=hyperparameters,
            ranges=documented_ranges(),
            tags=ours.tags(),
        )
    )

    done = teardown_run(ours.dag_id, ours.run_id, client=client)

    assert sorted(done["stopped_jobs"]) == sorted([ours.name("train"), ours.name("tune")])
    assert client.describe_training_job(TrainingJobName=ours.name("train"))["TrainingJobStatus"] == "Stopped"
    assert client.describe_training_job(TrainingJobName=other.name("train"))["TrainingJobStatus"] == "InProgress"
    assert run_token(ours.dag_id, ours.run_id) not in other.name("train")


def test_kept_endpoints_stay_until_the_sweeper_finds_them_expired(aws, task_context) -> None:
    kept = deploy(task_context(1), keep_minutes=60)
    dropped = deploy(task_context(2), keep_minutes=0)
    client = boto3.client("sagemaker")
    # endpoints that are not this pipeline's (no keep-until tag) or carry an unreadable one
    client.create_model(ModelName="someone-elses", PrimaryContainer={"Image": "img"}, ExecutionRoleArn=ROLE_ARN)
    for name, tags in (("someone-elses", []), ("odd-tag", [{"Key": "keep-until", "Value": "next tuesday"}])):
        client.create_endpoint_config(
            EndpointConfigName=name,
            ProductionVariants=[
                {
                    "VariantName": "AllTraffic",
                    "ModelName": "someone-elses",
                    "InstanceType": "ml.m5.xlarge",
                    "InitialInstanceCount": 1,
                }
            ],
        )
        client.create_endpoint(EndpointName=name, EndpointConfigName=name, Tags=tags)

    done = teardown_run("detection_pipeline", task_context()["run_id"], client=client, keep_unexpired=True, now=NOW)
    assert done["kept_endpoints"] == [kept["endpoint_name"]]
    assert done["deleted"]["endpoints"] == [dropped["endpoint_name"]]
    assert sorted(inventory()["endpoints"]) == sorted([kept["endpoint_name"], "someone-elses", "odd-tag"])
    assert kept["model_names"][0] in inventory()["models"]

    assert sweep_expired_endpoints(NOW + timedelta(minutes=59), client=client) == []
    assert sweep_expired_endpoints(NOW + timedelta(minutes=60), client=client) == [kept["endpoint_name"]]
    assert inventory() == {
        "models": ["someone-elses"],
        "endpoint_configs": ["odd-tag", "someone-elses"],
        "endpoints": ["odd-tag", "someone-elses"],
    }
    with pytest.raises(ValueError, match="timezone-aware"):
        sweep_expired_endpoints(datetime(2026, 1, 1), client=client)
