"""Endpoints on either backend: deploy, invoke, smoke-test and tear down.

The SageMaker backend sends CreateModel / CreateEndpointConfig / CreateEndpoint (the DAG through
the provider's operators, the CLI through boto3) and deletes them again; the local backend runs
the same combined request as a managed HTTP server process (:mod:`include.serving.endpoint`)
that honours the SageMaker container contract.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from include import storage
from include.configs.loader import PROJECT_ROOT

if TYPE_CHECKING:
    from include.configs import PipelineConfig
    from include.sagemaker.naming import RunIdentity

log = logging.getLogger(__name__)


def state_dir(cfg: PipelineConfig) -> Path:
    """Where local endpoints record their PID, URL and keep-until time."""
    path = Path(cfg.local.endpoint_state_dir)
    return path if path.is_absolute() else PROJECT_ROOT / path


def model_artifact_uri(training: dict[str, Any] | str) -> str:
    """The model.tar.gz of a training result (XCom/training.json record), folder or archive URI."""
    if isinstance(training, dict):
        return training.get("artifact_uri") or training["ModelArtifacts"]["S3ModelArtifacts"]
    uri = storage.normalize(training)
    return uri if uri.endswith(".tar.gz") else storage.join(uri, "model.tar.gz")


def deployment_request(cfg: PipelineConfig, run: RunIdentity, model_uri: str, keep_minutes: int) -> dict[str, Any]:
    """The combined ``{"Model", "EndpointConfig", "Endpoint"}`` request for this run."""
    from include.sagemaker.naming import keep_until
    from include.sagemaker.requests import deployment_request as build
    from include.training.pipeline_training import LOCAL_ROLE_ARN

    sm = cfg.sagemaker
    return build(
        run,
        model_data_url=model_uri,
        role_arn=sm.role_arn or LOCAL_ROLE_ARN,
        region=sm.region,
        instance_type=sm.endpoint_instance_type,
        instance_count=sm.endpoint_instance_count,
        keep_until=keep_until(datetime.now(UTC), keep_minutes),
    )


def run_local_deployment(request: dict[str, Any]) -> dict[str, Any]:
    """Execute a combined deployment request here; answers DescribeEndpoint/-Config-shaped dicts.

    This is the ``local_runner`` of the DAG's deploy operator: the model is served by a managed
    HTTP server on 127.0.0.1 that lives until teardown (or the sweeper, after ``keep-until``).
    """
    from include.configs import load_config
    from include.sagemaker.teardown import parse_keep_until
    from include.serving.endpoint import start_endpoint

    cfg = load_config()
    endpoint = request["Endpoint"]
    tags = {t["Key"]: t["Value"] for t in endpoint.get("Tags", [])}
    keep_until = parse_keep_until(tags["keep-until"]) if "keep-until" in tags else None
    keep_for_s = max((keep_until - datetime.now(UTC)).total_seconds(), 0.0) if keep_until else None
    state = start_endpoint(
        request["Model"]["PrimaryContainer"]["ModelDataUrl"],
        endpoint["EndpointName"],
        state_dir(cfg),
        host=cfg.local.host,
        max_body_bytes=int(cfg.deploy.max_body_mb * 1024 * 1024),
        keep_for_s=keep_for_s,
    )
    log.info("local endpoint %s serving at %s (pid %s)", state["name"], state["url"], state["pid"])
    variant = request["EndpointConfig"]["ProductionVariants"][0]
    return {
        "Endpoint": {
            "EndpointName": endpoint["EndpointName"],
            "EndpointConfigName": endpoint["EndpointConfigName"],
            "EndpointStatus": "InService",
            "EndpointUrl": state["url"],
            "ServerPid": state["pid"],
        },
        "EndpointConfig": {
            "EndpointConfigName": request["EndpointConfig"]["EndpointConfigName"],
            "ProductionVariants": [{"VariantName": variant["VariantName"], "ModelName": variant["ModelName"]}],
        },
    }


def sagemaker_client(cfg: PipelineConfig) -> Any:
    from include.sagemaker.teardown import sagemaker_client

    return sagemaker_client(cfg.sagemaker.region)


def invoker(cfg: PipelineConfig, endpoint: str) -> Any:
    """``invoke(body, content_type) -> bytes`` for an endpoint name (either backend) or URL."""
    from include.serving.smoke import http_invoker, sagemaker_invoker

    if endpoint.startswith(("http://", "https://")):
        return http_invoker(endpoint)
    if cfg.backend == "local":
        from include.serving.endpoint import endpoint_url

        return http_invoker(endpoint_url(endpoint, state_dir(cfg)))
    import boto3

    return sagemaker_invoker(endpoint, boto3.client("sagemaker-runtime", region_name=cfg.sagemaker.region))


def validation_images(quality_uri: str, count: int) -> list[str]:
    """URIs of the first ``count`` validation images of the gated table (for smoke tests)."""
    from include.preprocess.annotations import read_table

    table = read_table(quality_uri)
    uris = table.loc[table["split"] == "validation", "image_uri"].drop_duplicates().sort_values()
    return uris.head(count).tolist()


def smoke_test(cfg: PipelineConfig, endpoint: str, image_uris: list[str], num_classes: int) -> dict[str, Any]:
    """Send validation images and check every answer against the contract; raises on failure."""
    from include.serving.smoke import smoke_test as run

    result = run(
        invoker(cfg, endpoint),
        image_uris,
        num_classes=num_classes,
        max_body_bytes=int(cfg.deploy.max_body_mb * 1024 * 1024),
    )
    log.info("smoke test: %d detections in %d images", result["detections"], result["images"])
    return result


def teardown_run(cfg: PipelineConfig, dag_id: str, run_id: str, keep_unexpired: bool) -> dict[str, Any]:
    """Remove every endpoint this run created (and on SageMaker stop its jobs still running)."""
    from include.sagemaker.naming import run_token

    if cfg.backend == "sagemaker":
        from include.sagemaker.teardown import teardown_run as sagemaker_teardown

        return sagemaker_teardown(dag_id, run_id, client=sagemaker_client(cfg), keep_unexpired=keep_unexpired)
    from include.serving.endpoint import list_endpoints, stop_endpoint

    token, now = run_token(dag_id, run_id), datetime.now(UTC)
    result: dict[str, Any] = {"stopped": [], "kept_endpoints": []}
    for state in list_endpoints(state_dir(cfg)):
        if token not in state["name"]:
            continue
        keep = state.get("keep_until")
        if keep_unexpired and keep and datetime.fromisoformat(keep) > now and state.get("alive"):
            result["kept_endpoints"].append(state["name"])
            continue
        result["stopped"].append(stop_endpoint(state["name"], state_dir(cfg)))
    return result


def expired_endpoints(cfg: PipelineConfig) -> dict[str, list[str]]:
    """Local endpoints whose keep-until time has passed (what :func:`sweep` would stop locally)."""
    from include.serving.endpoint import list_endpoints

    now = datetime.now(UTC)
    return {
        "local": [
            s["name"] for s in list_endpoints(state_dir(cfg))
            if s.get("keep_until") and datetime.fromisoformat(s["keep_until"]) <= now
        ]
    }


def sweep(cfg: PipelineConfig) -> dict[str, list[str]]:
    """Tear down endpoints whose keep-until time has passed (local always; SageMaker when configured)."""
    from include.serving.endpoint import sweep_expired

    now = datetime.now(UTC)
    swept = {"local": sweep_expired(state_dir(cfg), now), "sagemaker": []}
    if cfg.sagemaker.role_arn:
        from include.sagemaker.teardown import sweep_expired_endpoints

        swept["sagemaker"] = sweep_expired_endpoints(now, client=sagemaker_client(cfg))
    return swept


# --- the CLI's deploy / invoke / teardown ------------------------------------------------


def deploy_artifact(cfg: PipelineConfig, input_uri: str, name: str | None = None, keep_minutes: int = 0) -> dict:
    """Start an endpoint serving a training output (``detection-pipeline deploy``)."""
    from include.sagemaker.naming import RunIdentity

    run_id = name or f"cli-{datetime.now(UTC):%Y%m%dT%H%M%S}"
    run = RunIdentity(dag_id="cli", run_id=run_id, try_number=1)
    request = deployment_request(cfg, run, model_artifact_uri(input_uri), keep_minutes)
    if name:
        request["Endpoint"]["EndpointName"] = name
    if cfg.backend == "local":
        return run_local_deployment(request)["Endpoint"]
    client = sagemaker_client(cfg)
    client.create_model(**request["Model"])
    client.create_endpoint_config(**request["EndpointConfig"])
    client.create_endpoint(**request["Endpoint"])
    endpoint = request["Endpoint"]["EndpointName"]
    client.get_waiter("endpoint_in_service").wait(EndpointName=endpoint, WaiterConfig={"Delay": 30, "MaxAttempts": 120})
    return {"EndpointName": endpoint, "EndpointStatus": "InService"}


def invoke_endpoint(
    cfg: PipelineConfig, endpoint: str, image: str, draw: str | None = None, threshold: float = 0.5
) -> dict[str, Any]:
    """Send one image and return the detections; optionally draw them (``detection-pipeline invoke``)."""
    import json

    from include.serving.contract import check_prediction_schema, content_type_for

    body = storage.read_bytes(image)
    answer = json.loads(invoker(cfg, endpoint)(body, content_type_for(body)))
    check_prediction_schema(answer)
    if draw:
        from include.serving.draw import read_classes, save_drawing
        from include.serving.endpoint import describe_endpoint

        described = None if cfg.backend != "local" else describe_endpoint(endpoint, state_dir(cfg))
        classes = read_classes(described["model_uri"]) if described else None
        answer["drawing"] = save_drawing(body, answer["prediction"], draw, classes, threshold=threshold)
    return answer


def teardown_endpoints(cfg: PipelineConfig, endpoint: str | None = None) -> dict[str, Any]:
    """Remove one endpoint, or every local endpoint deploy recorded (``detection-pipeline teardown``)."""
    if cfg.backend == "sagemaker":
        from include.sagemaker.teardown import delete_endpoint_stack

        if not endpoint:
            raise ValueError("--endpoint is required with the sagemaker backend")
        return delete_endpoint_stack(sagemaker_client(cfg), endpoint)
    from include.serving.endpoint import list_endpoints, stop_endpoint

    names = [endpoint] if endpoint else [s["name"] for s in list_endpoints(state_dir(cfg))]
    return {"stopped": [stop_endpoint(n, state_dir(cfg)) for n in names]}
