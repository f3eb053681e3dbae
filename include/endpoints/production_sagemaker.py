"""The production endpoint on SageMaker: a blue/green update guarded by CloudWatch alarms, old parts deleted after.

A release creates a model and an endpoint config of its own (names from the endpoint's name, the
model version and the time: never a run token, so no run's teardown finds them; no ``keep-until``
tag, so the sweeper leaves them alone), makes sure the endpoint's two alarms exist (invocation 5xx
errors and model latency; ``PutMetricAlarm`` is an upsert), then creates the endpoint or sends
``UpdateEndpoint`` with a blue/green ``DeploymentConfig`` and ``AutoRollbackConfiguration`` on those
alarms. Every request is validated against botocore's model first.

A rolled-back update does not fail anything on its own: the endpoint returns to ``InService`` on its
*old* config (botocore's ``endpoint_in_service`` waiter and the provider's update operator report
success, and the waiter never stops on ``UpdateRollbackFailed``). So the wait here is its own poll,
and success means ``InService`` on the config this release sent; anything else raises with
SageMaker's ``FailureReason``. Only after a successful update are the old config and its models
deleted; after a rollback the release's unused config and model are deleted instead.

Why boto3 here and not the provider's ``SageMakerEndpointOperator(operation="update")``: its result
describes the config it sent even after a rollback, and the provider has no CloudWatch alarm
operator, so the checks and the alarms would be this code anyway; the task that calls
:func:`roll_out` gets its credentials from the Airflow connection all the same
(:mod:`include.sagemaker.client`).
"""

from __future__ import annotations

import hashlib
import logging
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from include.sagemaker.client import client, is_missing_error, sagemaker_client
from include.sagemaker.naming import tag_value
from include.sagemaker.validation import validate_request

if TYPE_CHECKING:
    from include.configs import PipelineConfig
    from include.endpoints.production import Release

log = logging.getLogger(__name__)

ROLE_TAG = "detection-role"
#: Endpoint statuses an update passes through; anything else ends the wait.
MOVING = ("Creating", "Updating", "SystemUpdating", "RollingBack")
POLL_S = 30


class ProductionRollbackError(RuntimeError):
    """The update did not take: SageMaker rolled it back (an alarm fired) or it failed; the message says why."""


def resource_name(endpoint: str, model: Release, now: datetime) -> str:
    """``<endpoint>-v<version>-<UTC time>`` (or the archive's digest for a model without a version), 63 at most."""
    digest = hashlib.sha256(model.model_uri.encode()).hexdigest()[:8]
    what = f"v{model.version}" if model.version is not None else digest
    tail = f"-{what}-{now:%Y%m%dt%H%M%S}"
    return endpoint[: 63 - len(tail)].rstrip("-") + tail


def alarm_names(endpoint: str) -> list[str]:
    return [f"{endpoint}-invocation-5xx", f"{endpoint}-model-latency"]


def ensure_alarms(cw: Any, cfg: PipelineConfig, endpoint: str) -> list[str]:
    """Create (or update) the alarms a release of ``endpoint`` rolls back on; their names."""
    from include.sagemaker.requests import alarm_requests

    p = cfg.deploy.production
    tags = [{"Key": ROLE_TAG, "Value": "production"}, {"Key": "endpoint", "Value": endpoint}]
    names = []
    for request in alarm_requests(endpoint, errors_5xx=p.alarm_5xx_errors, latency_ms=p.alarm_latency_ms, tags=tags):
        validate_request("PutMetricAlarm", request, service="cloudwatch")
        cw.put_metric_alarm(**request)
        names.append(request["AlarmName"])
    return names


def delete_alarms(cw: Any, endpoint: str) -> list[str]:
    """Delete the endpoint's rollback alarms (those that exist); their names."""
    existing = [a["AlarmName"] for a in cw.describe_alarms(AlarmNames=alarm_names(endpoint))["MetricAlarms"]]
    if existing:
        cw.delete_alarms(AlarmNames=existing)
    return existing


def _requests(cfg: PipelineConfig, endpoint: str, model: Release, now: datetime) -> dict[str, dict[str, Any]]:
    from include.endpoints.production import capture_destination
    from include.sagemaker.requests import builtin_image, data_capture_config, endpoint_config_request, model_request

    sm = cfg.sagemaker
    if not sm.role_arn:
        raise ValueError("sagemaker.role_arn is required to release to a SageMaker endpoint")
    name = resource_name(endpoint, model, now)
    tags = [{"Key": ROLE_TAG, "Value": "production"}, {"Key": "endpoint", "Value": endpoint},
            {"Key": "model", "Value": tag_value(model.model_id)}]  # fmt: skip
    c = cfg.deploy.capture
    capture = (
        data_capture_config(capture_destination(cfg), c.percent, c.json_content_types)
        if c.enabled and c.percent > 0
        else None
    )
    requests = {
        "Model": model_request(
            name=name, model_data_url=model.model_uri, role_arn=sm.role_arn, image=builtin_image(sm.region),
            tags=tags, model_package_arn=model.model_package_arn,
        ),
        "EndpointConfig": endpoint_config_request(
            name=name, model_name=name, instance_type=sm.endpoint_instance_type,
            instance_count=sm.endpoint_instance_count, tags=tags, data_capture=capture,
        ),
    }  # fmt: skip
    validate_request("CreateModel", requests["Model"])
    validate_request("CreateEndpointConfig", requests["EndpointConfig"])
    return requests


def _describe_endpoint(sm: Any, endpoint: str) -> dict[str, Any] | None:
    from botocore.exceptions import ClientError

    try:
        return sm.describe_endpoint(EndpointName=endpoint)
    except ClientError as err:
        if is_missing_error(err):
            return None
        raise


def wait_for_update(sm: Any, endpoint: str, config_name: str, max_wait_s: float, poll_s: float = POLL_S) -> dict:
    """Poll until the endpoint stops moving; its description when it is InService on ``config_name``.

    Raises :class:`ProductionRollbackError` when it is InService on another config (rolled back), or
    Failed / UpdateRollbackFailed, with SageMaker's ``FailureReason``; ``TimeoutError`` after ``max_wait_s``.
    """
    deadline = time.monotonic() + max_wait_s
    while True:
        described = sm.describe_endpoint(EndpointName=endpoint)
        status = described["EndpointStatus"]
        if status not in MOVING:
            break
        if time.monotonic() > deadline:
            raise TimeoutError(f"endpoint {endpoint} still {status} after {max_wait_s:.0f} s")
        time.sleep(poll_s)
    reason = described.get("FailureReason") or "no reason given"
    if status == "InService" and described["EndpointConfigName"] == config_name:
        return described
    if status == "InService":
        raise ProductionRollbackError(
            f"the update of {endpoint} to {config_name} was rolled back; it serves "
            f"{described['EndpointConfigName']} again: {reason}"
        )
    raise ProductionRollbackError(f"endpoint {endpoint} is {status} after the update to {config_name}: {reason}")


def _delete_config_and_models(sm: Any, config_name: str) -> dict[str, list[str]]:
    from include.endpoints.sagemaker import _delete

    try:
        variants = sm.describe_endpoint_config(EndpointConfigName=config_name)["ProductionVariants"]
    except Exception as err:
        if is_missing_error(err):
            return {"endpoint_configs": [], "models": []}
        raise
    deleted = {"endpoint_configs": [config_name] if _delete(sm, "endpoint_config", config_name) else []}
    deleted["models"] = [v["ModelName"] for v in variants if _delete(sm, "model", v["ModelName"])]
    return deleted


def roll_out(cfg: PipelineConfig, endpoint: str, model: Release, poll_s: float = POLL_S) -> dict[str, Any]:
    """Create ``endpoint`` serving ``model``, or update it blue/green with automatic rollback (module docstring).

    Returns ``{"created", "endpoint_config", "model_name", "alarms", "deleted", "status"}``; raises
    :class:`ProductionRollbackError` when SageMaker rolled the update back (the old model still serves).
    """
    from include.sagemaker.requests import deployment_config

    sm = sagemaker_client(cfg.sagemaker.region)
    if model.model_package_arn:
        from include.sagemaker.model_packages import approved_model_data

        approved_model_data(sm, model.model_package_arn)  # SageMaker deploys only an approved package
    requests = _requests(cfg, endpoint, model, datetime.now(UTC))
    config_name = requests["EndpointConfig"]["EndpointConfigName"]
    alarms = ensure_alarms(client("cloudwatch", cfg.sagemaker.region), cfg, endpoint)
    p = cfg.deploy.production
    existing = _describe_endpoint(sm, endpoint)
    sm.create_model(**requests["Model"])
    sm.create_endpoint_config(**requests["EndpointConfig"])
    max_wait = p.max_execution_seconds + p.termination_wait_seconds + 900
    if existing is None:
        request = {"EndpointName": endpoint, "EndpointConfigName": config_name, "Tags": requests["Model"]["Tags"]}
        validate_request("CreateEndpoint", request)
        sm.create_endpoint(**request)
        described = wait_for_update(sm, endpoint, config_name, max_wait, poll_s)
        log.info("production endpoint %s created on %s", endpoint, config_name)
        return {"created": True, "endpoint_config": config_name, "model_name": config_name, "alarms": alarms,
                "deleted": {}, "status": described["EndpointStatus"]}  # fmt: skip
    old_config = existing["EndpointConfigName"]
    request = {
        "EndpointName": endpoint,
        "EndpointConfigName": config_name,
        "DeploymentConfig": deployment_config(
            traffic=p.traffic, step_percent=p.step_percent, baking_seconds=p.baking_seconds,
            termination_wait_seconds=p.termination_wait_seconds, max_execution_seconds=p.max_execution_seconds,
            alarms=alarms, instance_count=cfg.sagemaker.endpoint_instance_count,
        ),
    }  # fmt: skip
    validate_request("UpdateEndpoint", request)
    sm.update_endpoint(**request)
    log.info("production endpoint %s updating from %s to %s (blue/green, alarms %s)", endpoint, old_config,
             config_name, ", ".join(alarms))  # fmt: skip
    try:
        described = wait_for_update(sm, endpoint, config_name, max_wait, poll_s)
    except ProductionRollbackError:
        _delete_config_and_models(sm, config_name)  # the release's parts never took traffic for good
        raise
    deleted = _delete_config_and_models(sm, old_config)
    return {"created": False, "endpoint_config": config_name, "model_name": config_name, "alarms": alarms,
            "deleted": deleted, "previous_config": old_config, "status": described["EndpointStatus"]}  # fmt: skip


def describe_production(cfg: PipelineConfig, endpoint: str) -> dict[str, Any] | None:
    """DescribeEndpoint and the state of its rollback alarms, or None when the endpoint does not exist."""
    described = _describe_endpoint(sagemaker_client(cfg.sagemaker.region), endpoint)
    if described is None:
        return None
    cw = client("cloudwatch", cfg.sagemaker.region)
    alarms = cw.describe_alarms(AlarmNames=alarm_names(endpoint))["MetricAlarms"]
    keys = ("EndpointName", "EndpointConfigName", "EndpointStatus", "FailureReason", "LastModifiedTime")
    return {**{k: described.get(k) for k in keys}, "alarms": {a["AlarmName"]: a["StateValue"] for a in alarms}}
