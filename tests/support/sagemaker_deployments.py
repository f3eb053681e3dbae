"""Deployments on moto through the deploy operator, and what moto then holds (for the operator and teardown tests)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import boto3
import requests
from detection_airflow import DetectionEndpointOperator

from include.sagemaker.naming import ENDPOINT, ENDPOINT_CONFIG, MODEL, RunIdentity, keep_until
from include.sagemaker.requests import deployment_request
from tests.support.aws_stand_ins import REGION, ROLE_ARN
from tests.support.shared_data import BCCD_IMAGES

AWS = {"aws_conn_id": None, "region_name": REGION}
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
MODEL_DATA = "s3://detection-test-bucket/output/train-x/output/model.tar.gz"
IMAGES = sorted(BCCD_IMAGES.glob("BloodImage_0000*.jpg"))[:3]
GOOD = {"prediction": [[0.0, 0.91, 0.1, 0.2, 0.4, 0.5], [2.0, 0.35, 0.5, 0.5, 0.9, 0.95]]}


def deploy_builder(keep_minutes: int = 0, try_names: bool = False):
    """The deployment request of the run; ``try_names``: named for the try (``...-t<try>``), a second stack."""

    def build(context: Any, run: RunIdentity) -> dict[str, Any]:
        request = deployment_request(
            run,
            model_data_url=MODEL_DATA,
            role_arn=ROLE_ARN,
            region=REGION,
            instance_type="ml.m5.xlarge",
            keep_until=keep_until(NOW, keep_minutes),
        )
        if not try_names:
            return request
        text = json.dumps(request)
        for kind in (MODEL, ENDPOINT_CONFIG, ENDPOINT):
            text = text.replace(f'"{run.name(kind)}"', f'"{run.try_name(kind)}"')
        return json.loads(text)

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


def inventory() -> dict[str, list[str]]:
    client = boto3.client("sagemaker")
    return {
        "models": sorted(m["ModelName"] for m in client.list_models()["Models"]),
        "endpoint_configs": sorted(c["EndpointConfigName"] for c in client.list_endpoint_configs()["EndpointConfigs"]),
        "endpoints": sorted(e["EndpointName"] for e in client.list_endpoints()["Endpoints"]),
    }


def deploy(context: dict[str, Any], keep_minutes: int = 0, try_names: bool = False) -> dict[str, Any]:
    op = DetectionEndpointOperator(
        task_id="deploy", request_builder=deploy_builder(keep_minutes, try_names), check_interval=1,
        deferrable=False, **AWS,
    )  # fmt: skip
    return op.execute(context)
