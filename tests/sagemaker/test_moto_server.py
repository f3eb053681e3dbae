"""The SageMaker path end to end against moto's HTTP server (127.0.0.1, free port, AWS_ENDPOINT_URL).

Every call goes over HTTP as it would to AWS, except the ones moto cannot answer (Stop*,
binary InvokeEndpoint), which the stand-ins of :mod:`aws_stand_ins` answer client-side.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
import requests
from detection_airflow import DetectionEndpointOperator, DetectionTrainingOperator, DetectionTuningOperator

from include.endpoints.invocation import sagemaker_invoker
from include.endpoints.sagemaker import teardown_run
from include.sagemaker import metrics
from include.sagemaker.naming import RunIdentity, keep_until
from include.sagemaker.requests import deployment_request
from include.sagemaker.training_metrics import LOG_GROUP, training_job_metrics
from include.serving.smoke import SmokeTestError, smoke_test
from tests.support.aws_stand_ins import BUCKET, REGION, ROLE_ARN
from tests.support.shared_data import BCCD_IMAGES

IMAGES = sorted(BCCD_IMAGES.glob("BloodImage_0001*.jpg"))[:2]
AWS = {"aws_conn_id": None, "region_name": REGION}


def test_training_tuning_deployment_smoke_test_and_teardown_over_http(
    moto_endpoint: str, stop_calls, invoke_calls, task_context, training_builder, tuning_builder, hyperparameters
) -> None:
    s3 = boto3.client("s3")
    assert s3.meta.endpoint_url == moto_endpoint
    s3.create_bucket(Bucket=BUCKET)
    for key in ("data/train/train-0.rec", "data/validation/validation-0.rec"):
        s3.put_object(Bucket=BUCKET, Key=key, Body=b"\x0a\x23\xd7\x3e")
    context = task_context()

    trained = DetectionTrainingOperator(
        task_id="train", request_builder=training_builder, check_interval=1, deferrable=False, **AWS
    ).execute(context)
    tuned = DetectionTuningOperator(
        task_id="tune", request_builder=tuning_builder, check_interval=1, deferrable=False, **AWS
    ).execute(context)
    client = boto3.client("sagemaker")
    assert client.describe_training_job(TrainingJobName=trained["job_name"])["HyperParameters"] == hyperparameters
    assert (
        client.describe_hyper_parameter_tuning_job(HyperParameterTuningJobName=tuned["tuning_job_name"])[
            "HyperParameterTuningJobConfig"
        ]["Strategy"]
        == "Bayesian"
    )

    logs = boto3.client("logs")
    logs.create_log_group(logGroupName=LOG_GROUP)
    stream = f"{trained['job_name']}/algo-1-1767225600"
    logs.create_log_stream(logGroupName=LOG_GROUP, logStreamName=stream)
    lines = [metrics.format_line(metrics.VALIDATION_MAP, 0.1 * e, epoch=e) for e in range(8)]
    start = int(time.time() * 1000) - 60_000
    logs.put_log_events(
        logGroupName=LOG_GROUP,
        logStreamName=stream,
        logEvents=[{"timestamp": start + i, "message": line} for i, line in enumerate(lines)],
    )
    curves = training_job_metrics(trained["job_name"], sagemaker_client=client, logs_client=logs, page_size=3)
    assert [round(row[metrics.VALIDATION_MAP], 6) for row in curves["epochs"]] == [round(0.1 * e, 6) for e in range(8)]

    def deploy(context: Any, run: RunIdentity) -> dict[str, Any]:
        return deployment_request(
            run,
            model_data_url=trained["artifact_uri"],
            role_arn=ROLE_ARN,
            region=REGION,
            instance_type="ml.m5.xlarge",
            keep_until=keep_until(datetime.now(UTC), 0),
        )

    deployed = DetectionEndpointOperator(
        task_id="deploy", request_builder=deploy, check_interval=1, deferrable=False, **AWS
    ).execute(context)
    assert deployed["status"] == "InService"
    results = [
        {
            "Body": '{"prediction": []}',
            "ContentType": "application/json",
            "InvokedProductionVariant": "AllTraffic",
            "CustomAttributes": "",
        }
    ] * len(IMAGES)
    requests.post(
        f"{moto_endpoint}/moto-api/static/sagemaker/endpoint-results",
        json={"region": REGION, "results": results},
        timeout=10,
    ).raise_for_status()
    with pytest.raises(SmokeTestError, match="0 detections"):
        smoke_test(sagemaker_invoker(deployed["endpoint_name"]), [str(p) for p in IMAGES])
    assert [kind for _, kind, _ in invoke_calls.requests] == ["image/jpeg"] * len(IMAGES)

    done = teardown_run(context["ti"].dag_id, context["run_id"], client=client)
    assert done["deleted"]["endpoints"] == [deployed["endpoint_name"]]
    assert client.list_endpoints()["Endpoints"] == []
    assert client.list_endpoint_configs()["EndpointConfigs"] == []
    assert client.list_models()["Models"] == []
    assert stop_calls.calls == []  # moto's jobs were already complete: nothing left to stop
