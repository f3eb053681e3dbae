"""The production endpoint on SageMaker (moto's server): created, then updated blue/green with automatic rollback
on the alarms the release creates, old parts deleted only after success; a rollback reported by the endpoint fails
the release and keeps the old model; rollback; the sweeper and run teardowns never find it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import boto3
import pytest

from include.configs import load_config
from include.endpoints import production
from include.endpoints.lifecycle import teardown_endpoints
from include.endpoints.production_sagemaker import ProductionRollbackError
from include.endpoints.sagemaker import sweep_expired_endpoints, teardown_run
from include.sagemaker.validation import validate_request
from tests.support.aws_stand_ins import BUCKET, REGION, ROLE_ARN

NAME = "detector-prod"
FIRST = f"s3://{BUCKET}/runs/a/training/job-a/output/model.tar.gz"
SECOND = f"s3://{BUCKET}/runs/b/training/job-b/output/model.tar.gz"


@pytest.fixture
def cfg(moto_endpoint):
    boto3.client("s3", region_name=REGION).create_bucket(Bucket=BUCKET)
    return load_config(overrides={
        "backend": "sagemaker",
        "storage": {"base_uri": f"s3://{BUCKET}/pipeline"},
        "sagemaker": {"role_arn": ROLE_ARN, "bucket": BUCKET, "region": REGION},
        "deploy": {"capture": {"enabled": True, "percent": 20}, "production": {"baking_seconds": 600}},
    })  # fmt: skip


def _release(cfg, uri, version):
    return production.release(cfg, production.Release(uri, version), by="test", reason=f"v{version}")


def _names(sm) -> dict[str, list[str]]:
    return {
        "models": sorted(m["ModelName"] for m in sm.list_models()["Models"]),
        "configs": sorted(c["EndpointConfigName"] for c in sm.list_endpoint_configs()["EndpointConfigs"]),
        "endpoints": sorted(e["EndpointName"] for e in sm.list_endpoints()["Endpoints"]),
    }


def test_a_release_creates_then_updates_blue_green_on_its_alarms_and_deletes_the_old_parts(cfg, endpoint_updates):
    sm, cw = boto3.client("sagemaker", region_name=REGION), boto3.client("cloudwatch", region_name=REGION)
    first = _release(cfg, FIRST, 1)
    assert first["created"] and not endpoint_updates.requests
    config = sm.describe_endpoint_config(EndpointConfigName=first["endpoint_config"])
    assert config["DataCaptureConfig"]["DestinationS3Uri"] == f"s3://{BUCKET}/pipeline/data-capture"
    assert sm.describe_model(ModelName=first["model_name"])["PrimaryContainer"]["ModelDataUrl"] == FIRST
    tags = {
        t["Key"]: t["Value"]
        for t in sm.list_tags(ResourceArn=sm.describe_endpoint(EndpointName=NAME)["EndpointArn"])["Tags"]
    }
    assert tags["detection-role"] == "production" and "keep-until" not in tags

    alarms = {a["AlarmName"]: a for a in cw.describe_alarms(AlarmNamePrefix=NAME)["MetricAlarms"]}
    assert set(alarms) == {f"{NAME}-invocation-5xx", f"{NAME}-model-latency"}
    errors, latency = alarms[f"{NAME}-invocation-5xx"], alarms[f"{NAME}-model-latency"]
    assert (errors["Namespace"], errors["MetricName"], errors["Statistic"]) == (
        "AWS/SageMaker",
        "Invocation5XXErrors",
        "Sum",
    )
    assert latency["MetricName"] == "ModelLatency" and latency["Threshold"] == 2000.0 * 1000  # microseconds
    assert {d["Name"]: d["Value"] for d in latency["Dimensions"]} == {"EndpointName": NAME, "VariantName": "AllTraffic"}
    assert latency["TreatMissingData"] == "notBreaching"

    second = _release(cfg, SECOND, 2)
    (update,) = endpoint_updates.requests
    validate_request("UpdateEndpoint", update)
    assert update["EndpointConfigName"] == second["endpoint_config"]
    policy = update["DeploymentConfig"]["BlueGreenUpdatePolicy"]
    assert policy["TrafficRoutingConfiguration"] == {"Type": "ALL_AT_ONCE", "WaitIntervalInSeconds": 600}
    assert policy["TerminationWaitInSeconds"] == 120 and policy["MaximumExecutionTimeoutInSeconds"] == 1800
    assert update["DeploymentConfig"]["AutoRollbackConfiguration"] == {"Alarms": [{"AlarmName": n} for n in alarms]}
    assert sm.describe_endpoint(EndpointName=NAME)["EndpointConfigName"] == second["endpoint_config"]
    assert second["deleted"] == {"endpoint_configs": [first["endpoint_config"]], "models": [first["model_name"]]}
    assert _names(sm) == {"models": [second["model_name"]], "configs": [second["endpoint_config"]], "endpoints": [NAME]}
    assert [(e["action"], e["model_id"]) for e in production.history(cfg, NAME)] == [
        ("create", "v1"),
        ("rollout", "v2"),
    ]


def test_a_rollback_reported_by_the_endpoint_fails_the_release_and_keeps_the_old_model(cfg, endpoint_updates):
    sm = boto3.client("sagemaker", region_name=REGION)
    first = _release(cfg, FIRST, 1)
    endpoint_updates.rollback = True
    with pytest.raises(ProductionRollbackError, match=r"rolled back; it serves .*-v1-.* again: .*invocation-5xx"):
        _release(cfg, SECOND, 2)
    assert sm.describe_endpoint(EndpointName=NAME)["EndpointConfigName"] == first["endpoint_config"]
    assert _names(sm) == {"models": [first["model_name"]], "configs": [first["endpoint_config"]], "endpoints": [NAME]}
    assert [e["model_id"] for e in production.history(cfg, NAME)] == ["v1"]


def test_rollback_puts_the_previous_model_back_the_same_way(cfg, endpoint_updates):
    sm = boto3.client("sagemaker", region_name=REGION)
    _release(cfg, FIRST, 1)
    _release(cfg, SECOND, 2)
    back = production.rollback(cfg, by="test", reason="v2 misbehaves")
    assert back["release"]["action"] == "rollback" and back["release"]["model_id"] == "v1"
    assert len(endpoint_updates.requests) == 2 and "DeploymentConfig" in endpoint_updates.requests[-1]
    served = sm.describe_endpoint_config(
        EndpointConfigName=sm.describe_endpoint(EndpointName=NAME)["EndpointConfigName"]
    )
    assert (
        sm.describe_model(ModelName=served["ProductionVariants"][0]["ModelName"])["PrimaryContainer"]["ModelDataUrl"]
        == FIRST
    )


def test_sweeper_and_run_teardowns_never_find_it_and_a_named_teardown_removes_it_all(cfg, endpoint_updates):
    sm, cw = boto3.client("sagemaker", region_name=REGION), boto3.client("cloudwatch", region_name=REGION)
    first = _release(cfg, FIRST, 1)
    assert sweep_expired_endpoints(datetime.now(UTC) + timedelta(days=3650), client=sm) == []
    assert teardown_run("object_detection_pipeline", "any run", client=sm)["deleted"]["endpoints"] == []
    assert _names(sm)["endpoints"] == [NAME]

    removed = teardown_endpoints(cfg, NAME)
    assert removed["endpoints"] == [NAME] and removed["models"] == [first["model_name"]]
    assert sorted(removed["alarms"]) == [f"{NAME}-invocation-5xx", f"{NAME}-model-latency"]
    assert _names(sm) == {"models": [], "configs": [], "endpoints": []}
    assert cw.describe_alarms(AlarmNamePrefix=NAME)["MetricAlarms"] == []
