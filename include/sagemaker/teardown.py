"""Teardown of a run's SageMaker resources, and the sweeper of endpoints whose keep time has passed.

A run's resources are found by its run token (:func:`naming.run_token`), which every name of
the run contains, so teardown needs no XCom from the tasks that created them and still works
when those tasks failed half-way. Deleting something already gone is not an error.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any, Literal

from include.sagemaker.naming import KEEP_UNTIL_TAG, run_token

log = logging.getLogger(__name__)

JobKind = Literal["training", "tuning"]


def sagemaker_client(region: str | None = None) -> Any:
    """A boto3 SageMaker client (default credentials chain; ``AWS_ENDPOINT_URL`` is honoured)."""
    import boto3

    return boto3.client("sagemaker", region_name=region)


def _error(err: Exception) -> tuple[str, str]:
    response = getattr(err, "response", None) or {}
    error = response.get("Error", {})
    return str(error.get("Code", "")), str(error.get("Message", ""))


def is_missing_error(err: Exception) -> bool:
    """True for SageMaker's "not found" errors (``ResourceNotFound``, ``ValidationException: Could not find``)."""
    code, message = _error(err)
    return code in ("ResourceNotFound", "ResourceNotFoundException") or (
        code == "ValidationException" and ("Could not find" in message or "does not exist" in message)
    )


def _delete(client: Any, kind: str, name: str) -> bool:
    """Delete one endpoint/endpoint config/model; False when it was already gone."""
    from botocore.exceptions import ClientError

    call, key = {
        "endpoint": (client.delete_endpoint, "EndpointName"),
        "endpoint_config": (client.delete_endpoint_config, "EndpointConfigName"),
        "model": (client.delete_model, "ModelName"),
    }[kind]
    try:
        call(**{key: name})
    except ClientError as err:
        if is_missing_error(err):
            log.info("%s %s was already deleted", kind, name)
            return False
        raise
    log.info("deleted %s %s", kind, name)
    return True


def stop_job(client: Any, kind: JobKind, name: str) -> bool:
    """Ask SageMaker to stop a training or tuning job; False when it is gone or no longer running."""
    from botocore.exceptions import ClientError

    try:
        if kind == "training":
            client.stop_training_job(TrainingJobName=name)
        else:
            client.stop_hyper_parameter_tuning_job(HyperParameterTuningJobName=name)
    except ClientError as err:
        code, message = _error(err)
        if code in ("ValidationException", "ResourceNotFound"):
            log.info("%s job %s not stopped: %s", kind, name, message)
            return False
        raise
    log.info("stopping %s job %s", kind, name)
    return True


def _paged(client: Any, operation: str, result_key: str, **kwargs: Any) -> Iterator[dict[str, Any]]:
    for page in client.get_paginator(operation).paginate(**kwargs):
        yield from page.get(result_key, [])


def _run_names(client: Any, operation: str, result_key: str, name_key: str, token: str, **kwargs: Any) -> list[str]:
    """Names from a ``List*`` call that contain ``token`` (filtered here too: not every server honours NameContains)."""
    items = _paged(client, operation, result_key, NameContains=token, **kwargs)
    return sorted({item[name_key] for item in items if token in item[name_key]})


def stop_run_jobs(client: Any, dag_id: str, run_id: str) -> list[str]:
    """Stop the run's training and tuning jobs that are still in progress; the names stopped."""
    token = run_token(dag_id, run_id)
    stopped = []
    for name in _run_names(
        client,
        "list_hyper_parameter_tuning_jobs",
        "HyperParameterTuningJobSummaries",
        "HyperParameterTuningJobName",
        token,
        StatusEquals="InProgress",
    ):
        if stop_job(client, "tuning", name):
            stopped.append(name)
    for name in _run_names(
        client, "list_training_jobs", "TrainingJobSummaries", "TrainingJobName", token, StatusEquals="InProgress"
    ):
        if stop_job(client, "training", name):
            stopped.append(name)
    return stopped


def _endpoint_parts(client: Any, endpoint_name: str) -> tuple[str | None, list[str]]:
    """The endpoint's config name and the models that config serves (``None``, [] when gone)."""
    from botocore.exceptions import ClientError

    try:
        config_name = client.describe_endpoint(EndpointName=endpoint_name)["EndpointConfigName"]
        variants = client.describe_endpoint_config(EndpointConfigName=config_name)["ProductionVariants"]
    except ClientError as err:
        if is_missing_error(err):
            return None, []
        raise
    return config_name, [variant["ModelName"] for variant in variants]


def delete_endpoint_stack(client: Any, endpoint_name: str) -> dict[str, list[str]]:
    """Delete an endpoint, its endpoint config and the config's models (whatever of them still exists)."""
    config_name, models = _endpoint_parts(client, endpoint_name)
    deleted: dict[str, list[str]] = {"endpoints": [], "endpoint_configs": [], "models": []}
    if _delete(client, "endpoint", endpoint_name):
        deleted["endpoints"].append(endpoint_name)
    if config_name and _delete(client, "endpoint_config", config_name):
        deleted["endpoint_configs"].append(config_name)
    deleted["models"] = [model for model in models if _delete(client, "model", model)]
    return deleted


def parse_keep_until(value: str) -> datetime:
    """A ``keep-until`` tag value as an aware datetime (naive times are UTC); ``ValueError`` when unreadable."""
    moment = datetime.fromisoformat(value)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _keep_until(client: Any, endpoint_arn: str) -> str | None:
    for tag in _paged(client, "list_tags", "Tags", ResourceArn=endpoint_arn):
        if tag["Key"] == KEEP_UNTIL_TAG:
            return tag["Value"]
    return None


def _is_kept(client: Any, endpoint_name: str, now: datetime) -> bool:
    arn = client.describe_endpoint(EndpointName=endpoint_name)["EndpointArn"]
    value = _keep_until(client, arn)
    if value is None:
        return False
    try:
        return parse_keep_until(value) > now
    except ValueError:
        log.warning("endpoint %s: unreadable %s tag %r, not kept", endpoint_name, KEEP_UNTIL_TAG, value)
        return False


def teardown_run(
    dag_id: str,
    run_id: str,
    *,
    client: Any | None = None,
    keep_unexpired: bool = False,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Stop the run's running jobs and delete its endpoints, endpoint configs and models.

    With ``keep_unexpired`` an endpoint whose ``keep-until`` tag is still ahead of ``now`` stays,
    with its config and models (the sweeper removes them later); otherwise everything goes.
    Returns the names stopped, deleted and kept.
    """
    client = client or sagemaker_client()
    now = now or datetime.now(UTC)
    token = run_token(dag_id, run_id)
    result: dict[str, Any] = {
        "stopped_jobs": stop_run_jobs(client, dag_id, run_id),
        "kept_endpoints": [],
        "deleted": {"endpoints": [], "endpoint_configs": [], "models": []},
    }
    kept_configs: set[str] = set()
    kept_models: set[str] = set()
    for endpoint in _run_names(client, "list_endpoints", "Endpoints", "EndpointName", token):
        if keep_unexpired and _is_kept(client, endpoint, now):
            config_name, models = _endpoint_parts(client, endpoint)
            kept_configs.update([config_name] if config_name else [])
            kept_models.update(models)
            result["kept_endpoints"].append(endpoint)
            continue
        for kind, names in delete_endpoint_stack(client, endpoint).items():
            result["deleted"][kind].extend(names)
    for config_name in _run_names(client, "list_endpoint_configs", "EndpointConfigs", "EndpointConfigName", token):
        if config_name not in kept_configs and _delete(client, "endpoint_config", config_name):
            result["deleted"]["endpoint_configs"].append(config_name)
    for model in _run_names(client, "list_models", "Models", "ModelName", token):
        if model not in kept_models and _delete(client, "model", model):
            result["deleted"]["models"].append(model)
    return result


def sweep_expired_endpoints(now: datetime, *, client: Any | None = None) -> list[str]:
    """Delete every endpoint (with its config and models) whose ``keep-until`` tag is not after ``now``.

    Endpoints without the tag are not this pipeline's and are left alone. Returns the endpoints deleted.
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    client = client or sagemaker_client()
    swept = []
    for summary in _paged(client, "list_endpoints", "Endpoints"):
        if summary.get("EndpointStatus") == "Deleting":
            continue
        value = _keep_until(client, summary["EndpointArn"])
        if value is None:
            continue
        try:
            expired = parse_keep_until(value) <= now
        except ValueError:
            log.warning("endpoint %s: unreadable %s tag %r, left alone", summary["EndpointName"], KEEP_UNTIL_TAG, value)
            continue
        if expired:
            delete_endpoint_stack(client, summary["EndpointName"])
            swept.append(summary["EndpointName"])
    return swept
