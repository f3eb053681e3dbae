"""SageMaker endpoints: deploy with reuse, delete, tear a run down, sweep expired endpoints.

:func:`plan_deployment` decides what of a combined deployment request (``{"Model",
"EndpointConfig", "Endpoint"}``) still has to be created: a model or endpoint config that exists
already is adopted (a retried task), an endpoint already on the request's config is only waited
for, one on another config is updated, and one an earlier try left ``Failed`` (SageMaker will neither
serve nor update it) is deleted and created again under the same name. The deploy operator sends the
rest through the provider's ``SageMakerEndpointOperator``; :func:`deploy` (the CLI) sends it with boto3.

A run's resources are found by its run token (:func:`naming.run_token`), which every name of
the run contains, so teardown needs no XCom from the tasks that created them and still works
when those tasks failed half-way. Deleting something already gone is not an error.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from include.sagemaker.client import is_missing_error, names_containing, paged, sagemaker_client, stop_run_jobs
from include.sagemaker.naming import KEEP_UNTIL_TAG, parse_keep_until, run_token

log = logging.getLogger(__name__)

#: Seconds between polls while an endpoint is created or updated (``deploy``).
POLL_S = 30


def _describe(call: Any, **name: str) -> dict[str, Any] | None:
    """The answer of a ``Describe*`` call, or None when the resource does not exist."""
    from botocore.exceptions import ClientError

    try:
        return call(**name)
    except ClientError as err:
        if is_missing_error(err):
            return None
        raise


@dataclass
class DeploymentPlan:
    """What of a deployment request is left to send, and what already exists."""

    request: dict[str, Any]
    adopted: list[str] = field(default_factory=list)
    #: the endpoint exists on the request's endpoint config: only wait until it is InService
    endpoint_ready: bool = False
    #: the endpoint exists on another config: UpdateEndpoint instead of CreateEndpoint
    update: bool = False
    #: a ``Failed`` endpoint of that name was deleted: CreateEndpoint makes it again
    replaced_failed: bool = False


def plan_deployment(sm: Any, request: dict[str, Any]) -> DeploymentPlan:
    """Adopt what exists of ``request`` (a retried task), delete a ``Failed`` endpoint; the parts still to create."""
    plan = DeploymentPlan(dict(request))
    model = request.get("Model")
    if model and _describe(sm.describe_model, ModelName=model["ModelName"]):
        plan.adopted.append(f"model {model['ModelName']}")
        del plan.request["Model"]
    config = request.get("EndpointConfig")
    if config and _describe(sm.describe_endpoint_config, EndpointConfigName=config["EndpointConfigName"]):
        plan.adopted.append(f"endpoint config {config['EndpointConfigName']}")
        del plan.request["EndpointConfig"]
    endpoint = request["Endpoint"]
    existing = _describe(sm.describe_endpoint, EndpointName=endpoint["EndpointName"])
    if existing and existing["EndpointStatus"] == "Failed":
        log.warning("endpoint %s was left Failed (%s); deleting it to create it again", endpoint["EndpointName"],
                    existing.get("FailureReason", "no reason given"))  # fmt: skip
        _delete(sm, "endpoint", endpoint["EndpointName"])
        sm.get_waiter("endpoint_deleted").wait(EndpointName=endpoint["EndpointName"])
        existing, plan.replaced_failed = None, True
    if existing:
        plan.endpoint_ready = existing["EndpointConfigName"] == endpoint["EndpointConfigName"]
        plan.update = not plan.endpoint_ready
        if plan.endpoint_ready:
            plan.adopted.append(f"endpoint {endpoint['EndpointName']}")
    for what in plan.adopted:
        log.info("%s exists already; not created again", what)
    return plan


def describe_deployment(sm: Any, endpoint_name: str) -> dict[str, Any]:
    """``{"Endpoint": DescribeEndpoint, "EndpointConfig": DescribeEndpointConfig}`` of an endpoint."""
    endpoint = sm.describe_endpoint(EndpointName=endpoint_name)
    config = sm.describe_endpoint_config(EndpointConfigName=endpoint["EndpointConfigName"])
    return {"Endpoint": endpoint, "EndpointConfig": config}


def wait_in_service(sm: Any, endpoint_name: str, max_wait_s: int, poll_s: int = POLL_S) -> None:
    """Wait until the endpoint is InService (botocore's waiter; it raises when creation failed)."""
    attempts = -(-max_wait_s // poll_s) + 1
    sm.get_waiter("endpoint_in_service").wait(
        EndpointName=endpoint_name, WaiterConfig={"Delay": poll_s, "MaxAttempts": attempts}
    )


def deploy(sm: Any, request: dict[str, Any], max_wait_s: int = 3600, poll_s: int = POLL_S) -> dict[str, Any]:
    """Create (or adopt, or update) the request's model, endpoint config and endpoint; wait until InService."""
    plan = plan_deployment(sm, request)
    if "Model" in plan.request:
        sm.create_model(**plan.request["Model"])
    if "EndpointConfig" in plan.request:
        sm.create_endpoint_config(**plan.request["EndpointConfig"])
    endpoint = request["Endpoint"]
    if plan.update:
        sm.update_endpoint(EndpointName=endpoint["EndpointName"], EndpointConfigName=endpoint["EndpointConfigName"])
    elif not plan.endpoint_ready:
        sm.create_endpoint(**endpoint)
    wait_in_service(sm, endpoint["EndpointName"], max_wait_s, poll_s)
    return describe_deployment(sm, endpoint["EndpointName"])


def _delete(sm: Any, kind: str, name: str) -> bool:
    """Delete one endpoint/endpoint config/model; False when it was already gone."""
    from botocore.exceptions import ClientError

    call, key = {
        "endpoint": (sm.delete_endpoint, "EndpointName"),
        "endpoint_config": (sm.delete_endpoint_config, "EndpointConfigName"),
        "model": (sm.delete_model, "ModelName"),
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


def _keep_until(client: Any, endpoint_arn: str) -> str | None:
    for tag in paged(client, "list_tags", "Tags", ResourceArn=endpoint_arn):
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


def endpoint_lifetime(client: Any, endpoint_name: str, ended: datetime, still_running: bool) -> dict[str, Any] | None:
    """The endpoint's instance type and count and its life from ``CreationTime`` to ``ended`` (None: gone)."""
    from include.cost import endpoint_lifetime as lifetime

    endpoint = _describe(client.describe_endpoint, EndpointName=endpoint_name)
    if endpoint is None:
        return None
    config = client.describe_endpoint_config(EndpointConfigName=endpoint["EndpointConfigName"])
    variants = config["ProductionVariants"]
    types = sorted({v.get("InstanceType", "serverless") for v in variants})
    count = sum(int(v.get("InitialInstanceCount") or 1) for v in variants)
    return lifetime(endpoint_name, "+".join(types), count, endpoint["CreationTime"], ended, still_running)


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
    Returns the names stopped, deleted and kept, and ``endpoint_lifetimes``: each endpoint's life from its
    creation to now (its deletion; a kept one ``still_running``), which the run's cost prices.
    """
    client = client or sagemaker_client()
    now = now or datetime.now(UTC)
    token = run_token(dag_id, run_id)
    result: dict[str, Any] = {
        "stopped_jobs": stop_run_jobs(client, token),
        "kept_endpoints": [],
        "deleted": {"endpoints": [], "endpoint_configs": [], "models": []},
        "endpoint_lifetimes": [],
    }
    kept_configs: set[str] = set()
    kept_models: set[str] = set()
    for endpoint in names_containing(client, "list_endpoints", "Endpoints", "EndpointName", token):
        kept = keep_unexpired and _is_kept(client, endpoint, now)
        life = endpoint_lifetime(client, endpoint, now, still_running=kept)
        result["endpoint_lifetimes"] += [life] if life else []
        if kept:
            config_name, models = _endpoint_parts(client, endpoint)
            kept_configs.update([config_name] if config_name else [])
            kept_models.update(models)
            result["kept_endpoints"].append(endpoint)
            continue
        for kind, names in delete_endpoint_stack(client, endpoint).items():
            result["deleted"][kind].extend(names)
    configs = names_containing(client, "list_endpoint_configs", "EndpointConfigs", "EndpointConfigName", token)
    for config_name in configs:
        if config_name not in kept_configs and _delete(client, "endpoint_config", config_name):
            result["deleted"]["endpoint_configs"].append(config_name)
    for model in names_containing(client, "list_models", "Models", "ModelName", token):
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
    for summary in paged(client, "list_endpoints", "Endpoints"):
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
