"""The life of an endpoint on either backend: its request, deployment, teardown and the sweeper.

One module for both backends and every caller (the DAG's deploy operator and teardown task, the
``endpoint_sweeper`` DAG, ``detection-pipeline run``, the CLI's ``deploy`` and ``teardown``):

* **create / reuse / update**: the combined ``{"Model", "EndpointConfig", "Endpoint"}`` request
  (:func:`deployment_request`) goes through :func:`include.execution.execute`. Locally it starts a
  server process (:mod:`include.endpoints.local`), reusing a healthy one that serves the same model
  and replacing any other; on SageMaker what exists is adopted and an endpoint on another config is
  updated (:func:`include.endpoints.sagemaker.plan_deployment`), through the provider's operator in
  the DAG and boto3 elsewhere.
* **delete**: :func:`teardown_run` (a run's endpoints, found by its run token), :func:`teardown_endpoints`
  (by name), :func:`sweep` (those whose keep-until time has passed).

The standing production endpoint (:mod:`include.endpoints.production`) is none of these: its names
hold no run token and it has no keep-until time, so a run's teardown and the sweeper never find it,
and :func:`teardown_endpoints` removes it only when it is named.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from include import storage

if TYPE_CHECKING:
    from include.configs import PipelineConfig
    from include.sagemaker.naming import RunIdentity

log = logging.getLogger(__name__)


def model_artifact_uri(training: dict[str, Any] | str) -> str:
    """The model.tar.gz of a training result (XCom/training.json record), or of any path ``evaluate`` takes:
    a training output folder, a job folder, a training or tuning root, a tuning job's folder, an archive."""
    if isinstance(training, dict):
        return training.get("artifact_uri") or training["ModelArtifacts"]["S3ModelArtifacts"]
    from include.evaluation.training_run import resolve_training

    resolved = resolve_training(training)
    log.info("%s", resolved.describe(training))
    return resolved.model_uri


def serving_model_uri(uri: str, runtime: str) -> str:
    """The model file ``runtime`` serves from a training output, export folder or the file itself.

    MXNet: ``model.tar.gz`` (:func:`model_artifact_uri`). ONNX Runtime: a ``.onnx`` file, or the ONNX
    model an export folder recorded (``export.json``).
    """
    if runtime == "mxnet":
        return model_artifact_uri(uri)
    from include.export.model_export import onnx_model_uri

    uri = storage.normalize(uri)
    return uri if uri.endswith(".onnx") else onnx_model_uri(uri)


def deployment_request(
    cfg: PipelineConfig,
    run: RunIdentity,
    model_uri: str,
    keep_minutes: int | None,
    runtime: str | None = None,
    model_package_arn: str | None = None,
) -> dict[str, Any]:
    """The combined ``{"Model", "EndpointConfig", "Endpoint"}`` request for this run and configuration.

    The model is served on ``runtime`` (default ``deploy.runtime``; named in the container's environment),
    from the approved model package ``model_package_arn`` when given.
    The endpoint's ``keep-until`` tag is ``keep_minutes`` from now (0: already past, so a run's
    endpoint that its teardown missed is the sweeper's at once); ``None`` leaves it out: the
    endpoint stays until someone tears it down by name (``detection-pipeline deploy`` with 0).
    """
    from include.sagemaker.naming import keep_until
    from include.sagemaker.requests import LOCAL_ROLE_ARN
    from include.sagemaker.requests import deployment_request as build

    sm = cfg.sagemaker
    return build(
        run,
        model_data_url=model_uri,
        role_arn=sm.role_arn or LOCAL_ROLE_ARN,
        region=sm.region,
        instance_type=sm.endpoint_instance_type,
        instance_count=sm.endpoint_instance_count,
        keep_until=None if keep_minutes is None else keep_until(datetime.now(UTC), keep_minutes),
        runtime=runtime or cfg.deploy.runtime,
        model_package_arn=model_package_arn,
    )


def deploy_artifact(
    cfg: PipelineConfig,
    input_uri: str,
    name: str | None = None,
    keep_minutes: int | None = None,
    runtime: str | None = None,
) -> dict:
    """Serve a training output as an endpoint (``detection-pipeline deploy``); the deployment result.

    ``runtime`` defaults to ``deploy.runtime``; for ``onnxruntime`` the input is an export folder or a
    ``.onnx`` file (a local endpoint serves it with ONNX Runtime). The result
    has the DAG's keys (:func:`include.sagemaker.results.deployment_result`): the endpoint's name,
    config, models and status, and a local endpoint's URL and PID.
    """
    from include.execution import DEPLOYMENT, execute
    from include.sagemaker.naming import RunIdentity

    run_id = name or f"cli-{datetime.now(UTC):%Y%m%dT%H%M%S}"
    run = RunIdentity(dag_id="cli", run_id=run_id, try_number=1)
    runtime = runtime or cfg.deploy.runtime
    if runtime != "mxnet" and cfg.backend != "local":
        raise ValueError(f"only local endpoints serve the ONNX export; on {cfg.backend} the runtime is mxnet")
    request = deployment_request(cfg, run, serving_model_uri(input_uri, runtime), keep_minutes, runtime)
    if name:
        request["Endpoint"]["EndpointName"] = name
    return execute(DEPLOYMENT, request, backend=cfg.backend, region=cfg.sagemaker.region, local_options={"cfg": cfg})


def teardown_run(cfg: PipelineConfig, dag_id: str, run_id: str, keep_unexpired: bool) -> dict[str, Any]:
    """Remove every endpoint this run created (and on SageMaker stop its jobs still running); each endpoint's life
    from its creation to its removal is in ``endpoint_lifetimes`` (the run's cost prices it)."""
    from include.sagemaker.naming import run_token

    if cfg.backend == "sagemaker":
        from include.endpoints.sagemaker import teardown_run as sagemaker_teardown
        from include.sagemaker.client import sagemaker_client

        return sagemaker_teardown(
            dag_id, run_id, client=sagemaker_client(cfg.sagemaker.region), keep_unexpired=keep_unexpired
        )
    from include.cost import endpoint_lifetime
    from include.endpoints.local import is_production, list_endpoints, state_dir, stop_endpoint

    token, now = run_token(dag_id, run_id), datetime.now(UTC)
    result: dict[str, Any] = {"stopped": [], "kept_endpoints": [], "endpoint_lifetimes": []}
    for state in list_endpoints(state_dir(cfg)):
        if token not in state["name"] or is_production(state):
            continue
        keep = state.get("keep_until")
        kept = bool(keep_unexpired and keep and datetime.fromisoformat(keep) > now and state.get("alive"))
        if kept:
            result["kept_endpoints"].append(state["name"])
        else:
            result["stopped"].append(stop_endpoint(state["name"], state_dir(cfg)))
        ended = now if kept else datetime.now(UTC)
        created = datetime.fromisoformat(state["started_at"])
        result["endpoint_lifetimes"].append(endpoint_lifetime(state["name"], "local", 1, created, ended, kept))
    return result


def expired_endpoints(cfg: PipelineConfig) -> dict[str, list[str]]:
    """Local endpoints whose keep-until time has passed (what :func:`sweep` would stop locally)."""
    from include.endpoints.local import is_production, list_endpoints, state_dir

    now = datetime.now(UTC)
    return {
        "local": [
            s["name"]
            for s in list_endpoints(state_dir(cfg))
            if not is_production(s) and s.get("keep_until") and datetime.fromisoformat(s["keep_until"]) <= now
        ]
    }


def sweep(cfg: PipelineConfig) -> dict[str, list[str]]:
    """Tear down endpoints whose keep-until time has passed (local always; SageMaker when configured)."""
    from include.endpoints.local import state_dir, sweep_expired

    now = datetime.now(UTC)
    swept = {"local": sweep_expired(state_dir(cfg), now), "sagemaker": []}
    if cfg.sagemaker.role_arn:
        from include.endpoints.sagemaker import sweep_expired_endpoints
        from include.sagemaker.client import sagemaker_client

        swept["sagemaker"] = sweep_expired_endpoints(now, client=sagemaker_client(cfg.sagemaker.region))
    return swept


def describe_endpoints(cfg: PipelineConfig) -> list[dict[str, Any]]:
    """Every endpoint of the configured backend: local servers (their records), or SageMaker endpoints."""
    if cfg.backend == "sagemaker":
        from include.sagemaker.client import paged, sagemaker_client
        from include.sagemaker.naming import KEEP_UNTIL_TAG

        sm = sagemaker_client(cfg.sagemaker.region)
        out = []
        for summary in paged(sm, "list_endpoints", "Endpoints"):
            tags = {t["Key"]: t["Value"] for t in paged(sm, "list_tags", "Tags", ResourceArn=summary["EndpointArn"])}
            out.append({"name": summary["EndpointName"], "status": summary["EndpointStatus"],
                        "keep_until": tags.get(KEEP_UNTIL_TAG)})
        return out
    from include.endpoints.local import list_endpoints, state_dir

    keys = ("name", "kind", "url", "pid", "model_uri", "keep_until", "log_path")
    return [{**{k: s.get(k) for k in keys}, "status": "InService" if s["alive"] else "Stopped (process gone)"}
            for s in list_endpoints(state_dir(cfg))]


def teardown_endpoints(cfg: PipelineConfig, endpoint: str | None = None) -> dict[str, Any]:
    """Remove one endpoint, or every local per-run endpoint deploy recorded (``detection-pipeline teardown``).

    A production endpoint goes only when named: locally its router and model servers, on SageMaker
    also its rollback alarms.
    """
    if cfg.backend == "sagemaker":
        from include.endpoints.production_sagemaker import delete_alarms
        from include.endpoints.sagemaker import delete_endpoint_stack
        from include.sagemaker.client import client, sagemaker_client

        if not endpoint:
            raise ValueError("--endpoint is required with the sagemaker backend")
        deleted = delete_endpoint_stack(sagemaker_client(cfg.sagemaker.region), endpoint)
        deleted["alarms"] = delete_alarms(client("cloudwatch", cfg.sagemaker.region), endpoint)
        return deleted
    from include.endpoints.local import describe_endpoint, is_production, list_endpoints, state_dir, stop_endpoint
    from include.endpoints.production_local import remove

    root = state_dir(cfg)
    if endpoint:
        state = describe_endpoint(endpoint, root)
        if state is not None and state.get("kind") == "production":
            return remove(root, state["name"])
        return {"stopped": [stop_endpoint(endpoint, root)]}
    names = [s["name"] for s in list_endpoints(root) if not is_production(s)]
    return {"stopped": [stop_endpoint(n, root) for n in names]}
