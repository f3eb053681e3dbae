"""The deploy operator against moto: create, adopt on a rerun, recreate a Failed endpoint, deferral, validation."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import boto3
import pytest
from airflow.sdk.exceptions import TaskDeferred
from detection_airflow import DetectionEndpointOperator, StoppableSageMakerTrigger

from include.sagemaker.naming import RunIdentity
from tests.support.aws_fixtures import registered
from tests.support.sagemaker_deployments import AWS, MODEL_DATA, NOW, deploy, deploy_builder, inventory


def test_deploy_creates_the_stack_and_a_rerun_adopts_it(aws, task_context) -> None:
    result = deploy(task_context())
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

    assert deploy(task_context()) == result  # same try again: adopts, does not fail on the names
    assert inventory() == {
        "models": [result["model_names"][0]],
        "endpoint_configs": [result["endpoint_config_name"]],
        "endpoints": [result["endpoint_name"]],
    }
    assert deploy(task_context(2)) == result  # a retry: the names are the run's, so it adopts the stack too
    assert all(len(names) == 1 for names in inventory().values())


def test_a_retry_deletes_an_endpoint_left_failed_and_creates_it_again(aws, task_context) -> None:
    from moto.sagemaker.models import sagemaker_backends

    from tests.support.aws_stand_ins import ACCOUNT, REGION

    first = deploy(task_context())
    failed = sagemaker_backends[ACCOUNT][REGION].endpoints[first["endpoint_name"]]
    failed.endpoint_status, failed.failure_reason = "Failed", "CapacityError: no ml.m5.xlarge capacity"
    calls: list[str] = []
    sent = [(f"before-call.sagemaker.{operation}", lambda model, **_: calls.append(model.name))
            for operation in ("DeleteEndpoint", "CreateEndpoint", "UpdateEndpoint", "CreateModel",
                              "CreateEndpointConfig")]  # fmt: skip
    with registered(sent):
        again = deploy(task_context(2))  # the retry
    assert again == first  # the same name, InService: neither adopted Failed nor a second endpoint under another name
    assert calls == ["DeleteEndpoint", "CreateEndpoint"]  # the model and config are the run's, adopted
    assert inventory() == {
        "models": first["model_names"],
        "endpoint_configs": [first["endpoint_config_name"]],
        "endpoints": [first["endpoint_name"]],
    }
    endpoint = sagemaker_backends[ACCOUNT][REGION].endpoints[first["endpoint_name"]]
    assert endpoint is not failed and endpoint.endpoint_status == "InService"


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
    assert inventory() == {"models": [], "endpoint_configs": [], "endpoints": []}
