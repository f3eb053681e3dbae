"""Deployment, smoke test, teardown and the endpoint sweeper against moto."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
import requests
from airflow.sdk.exceptions import TaskDeferred
from aws_stand_ins import REGION, ROLE_ARN
from detection_airflow import DetectionEndpointOperator, StoppableSageMakerTrigger
from shared_data import BCCD_IMAGES

from include.sagemaker.naming import RunIdentity, keep_until, run_token
from include.sagemaker.requests import deployment_request
from include.sagemaker.teardown import sweep_expired_endpoints, teardown_run
from include.serving.smoke import SmokeTestError, sagemaker_invoker, smoke_test

AWS = {"aws_conn_id": None, "region_name": REGION}
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
MODEL_DATA = "s3://detection-test-bucket/output/train-x/output/model.tar.gz"
IMAGES = sorted(BCCD_IMAGES.glob("BloodImage_0000*.jpg"))[:3]
GOOD = {"prediction": [[0.0, 0.91, 0.1, 0.2, 0.4, 0.5], [2.0, 0.35, 0.5, 0.5, 0.9, 0.95]]}


def deploy_builder(keep_minutes: int = 0):
    def build(context: Any, run: RunIdentity) -> dict[str, Any]:
        return deployment_request(
            run,
            model_data_url=MODEL_DATA,
            role_arn=ROLE_ARN,
            region=REGION,
            instance_type="ml.m5.xlarge",
            keep_until=keep_until(NOW, keep_minutes),
        )

    return build


def queue_endpoint_answers(answers: list[dict[str, Any]], moto_api: str = "http://motoapi.amazonaws.com") -> None:
    """Tell moto what InvokeEndpoint answers next (moto's documented API for sagemaker-runtime results)."""
    results = [
        {
            "Body": json.dumps(a),
            "ContentType": "application/json",
            "InvokedProductionVariant": "AllTraffic",
            "CustomAttributes": "",
        }
        for a in answers
    ]
    response = requests.post(
        f"{moto_api}/moto-api/static/sagemaker/endpoint-results",
        json={"account_id": "123456789012", "region": REGION, "results": results},
        timeout=10,
    )
    response.raise_for_status()


def _inventory() -> dict[str, list[str]]:
    client = boto3.client("sagemaker")
    return {
        "models": sorted(m["ModelName"] for m in client.list_models()["Models"]),
        "endpoint_configs": sorted(c["EndpointConfigName"] for c in client.list_endpoint_configs()["EndpointConfigs"]),
        "endpoints": sorted(e["EndpointName"] for e in client.list_endpoints()["Endpoints"]),
    }


def _deploy(context: dict[str, Any], keep_minutes: int = 0) -> dict[str, Any]:
    op = DetectionEndpointOperator(
        task_id="deploy", request_builder=deploy_builder(keep_minutes), check_interval=1, deferrable=False, **AWS
    )
    return op.execute(context)


def test_deploy_creates_the_stack_and_a_rerun_adopts_it(aws, task_context) -> None:
    result = _deploy(task_context())
    names = RunIdentity("detection_pipeline", task_context()["run_id"], 1)
    assert result == {
        "backend": "sagemaker",
        "endpoint_name": names.name("endpoint"),
        "endpoint_config_name": names.name("epconf"),
        "model_names": [names.name("model")],
        "status": "InService",
    }
    client = boto3.client("sagemaker")
    model = client.describe_model(ModelName=names.name("model"))
    assert model["PrimaryContainer"]["ModelDataUrl"] == MODEL_DATA
    assert model["PrimaryContainer"]["Image"].endswith("/object-detection:1")
    arn = client.describe_endpoint(EndpointName=result["endpoint_name"])["EndpointArn"]
    tags = {t["Key"]: t["Value"] for t in client.list_tags(ResourceArn=arn)["Tags"]}
    assert tags["keep-until"] == NOW.isoformat() and tags["airflow-try-number"] == "1"

    assert _deploy(task_context()) == result  # same try again: adopts, does not fail on the names
    assert _inventory() == {
        "models": [result["model_names"][0]],
        "endpoint_configs": [result["endpoint_config_name"]],
        "endpoints": [result["endpoint_name"]],
    }
    retry = _deploy(task_context(2))
    assert retry["endpoint_name"].endswith("-t2")
    assert all(len(names) == 2 for names in _inventory().values())


def test_deferred_deployment_polls_for_the_whole_wait(aws, task_context) -> None:
    op = DetectionEndpointOperator(
        task_id="deploy", request_builder=deploy_builder(), max_ingestion_time=5400, deferrable=True, **AWS
    )
    with pytest.raises(TaskDeferred) as deferred:
        op.execute(task_context())
    trigger = deferred.value.trigger
    assert isinstance(trigger, StoppableSageMakerTrigger) and trigger.job_type == "endpoint"
    assert trigger.attempts * trigger.waiter_delay >= 5400 and deferred.value.timeout == timedelta(seconds=5400)
    name = trigger.job_name
    result = op.execute_complete(task_context(), {"status": "success", "job_name": name})
    assert result["endpoint_name"] == name and result["status"] == "InService"


def test_invalid_deployment_is_refused_before_any_call(aws, task_context) -> None:
    def bad(context: Any, run: RunIdentity) -> dict[str, Any]:
        request = deploy_builder()(context, run)
        request["EndpointConfig"]["ProductionVariants"][0]["InitialInstanceCount"] = 0
        return request

    op = DetectionEndpointOperator(task_id="deploy", request_builder=bad, deferrable=False, **AWS)
    with pytest.raises(ValueError, match="InitialInstanceCount"):
        op.execute(task_context())
    assert _inventory() == {"models": [], "endpoint_configs": [], "endpoints": []}


def test_smoke_test_then_teardown_leaves_nothing_even_after_a_failed_smoke_test(
    aws, invoke_calls, task_context
) -> None:
    endpoint = _deploy(task_context())["endpoint_name"]
    _deploy(task_context(2))  # a second try's stack: teardown removes every try's
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
    assert _inventory() == {"models": [], "endpoint_configs": [], "endpoints": []}
    again = teardown_run("detection_pipeline", task_context()["run_id"], client=boto3.client("sagemaker"))
    assert again["deleted"] == {"endpoints": [], "endpoint_configs": [], "models": []}


def test_teardown_stops_only_this_runs_running_jobs(
    aws, jobs_start_in_progress, stop_calls, training_spec, hyperparameters, task_context
) -> None:
    from include.sagemaker.requests import training_job_request, tuning_job_request
    from include.sagemaker.tuning_ranges import default_ranges

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
            ranges=default_ranges(),
            tags=ours.tags(),
        )
    )

    done = teardown_run(ours.dag_id, ours.run_id, client=client)

    assert sorted(done["stopped_jobs"]) == sorted([ours.name("train"), ours.name("tune")])
    assert client.describe_training_job(TrainingJobName=ours.name("train"))["TrainingJobStatus"] == "Stopped"
    assert client.describe_training_job(TrainingJobName=other.name("train"))["TrainingJobStatus"] == "InProgress"
    assert run_token(ours.dag_id, ours.run_id) not in other.name("train")


def test_kept_endpoints_stay_until_the_sweeper_finds_them_expired(aws, task_context) -> None:
    kept = _deploy(task_context(1), keep_minutes=60)
    dropped = _deploy(task_context(2), keep_minutes=0)
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
    assert sorted(_inventory()["endpoints"]) == sorted([kept["endpoint_name"], "someone-elses", "odd-tag"])
    assert kept["model_names"][0] in _inventory()["models"]

    assert sweep_expired_endpoints(NOW + timedelta(minutes=59), client=client) == []
    assert sweep_expired_endpoints(NOW + timedelta(minutes=60), client=client) == [kept["endpoint_name"]]
    assert _inventory() == {
        "models": ["someone-elses"],
        "endpoint_configs": ["odd-tag", "someone-elses"],
        "endpoints": ["odd-tag", "someone-elses"],
    }
    with pytest.raises(ValueError, match="timezone-aware"):
        sweep_expired_endpoints(datetime(2026, 1, 1), client=client)
