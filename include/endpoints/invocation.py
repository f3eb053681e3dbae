"""Reaching an endpoint on either backend: invokers, the CLI's ``invoke``, the pipeline's smoke test.

An invoker is ``invoke(body, content_type) -> bytes``: :func:`http_invoker` POSTs to a local
server's ``/invocations`` (the SageMaker container contract), :func:`sagemaker_invoker` calls
InvokeEndpoint. :func:`invoker` picks one for an endpoint name (on the configured backend) or a
URL. What an answer must look like is the serving contract's business (:mod:`include.serving`).
"""

from __future__ import annotations

import json
import logging
import os
import urllib.error
import urllib.request
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from include import storage
from include.endpoints.errors import EndpointError, InvocationError
from include.serving import contract
from include.serving.smoke import Invoke

if TYPE_CHECKING:
    from include.configs import PipelineConfig

log = logging.getLogger(__name__)


def post_invocation(
    url: str, body: bytes, content_type: str, accept: str, timeout_s: float = 60.0, query: str = ""
) -> bytes:
    """POST ``body`` to ``<url>/invocations``; the answer's bytes.

    Raises :class:`InvocationError` (with the status and the server's message) on an error
    status and :class:`EndpointError` when nothing answers.
    """
    request = urllib.request.Request(
        f"{url.rstrip('/')}/invocations{query}",
        data=body,
        method="POST",
        headers={"Content-Type": content_type, "Accept": accept},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return response.read()
    except urllib.error.HTTPError as exc:
        raw = exc.read().decode("utf-8", "replace")
        try:
            message = json.loads(raw).get("error", raw)
        except (json.JSONDecodeError, AttributeError):
            message = raw
        raise InvocationError(url, exc.code, message) from None
    except (urllib.error.URLError, OSError) as exc:
        raise EndpointError(f"{url} is not reachable: {getattr(exc, 'reason', exc)}") from None


def invoke(
    endpoint: str,
    image_bytes: bytes,
    content_type: str,
    accept: str = contract.JSON_ACCEPT,
    *,
    state_dir: str | os.PathLike[str] | None = None,
    threshold: float | None = None,
    timeout_s: float = 60.0,
) -> dict:
    """POST an image to ``/invocations`` of a local endpoint (name, looked up under ``state_dir``, or URL).

    Returns the decoded JSON answer; raises :class:`InvocationError` (with the status and the
    server's message) on an error status and :class:`EndpointError` when nothing answers.
    """
    from include.endpoints.local import endpoint_url

    url = endpoint_url(endpoint, state_dir)
    query = "" if threshold is None else "?" + urlencode({"threshold": threshold})
    return json.loads(post_invocation(url, image_bytes, content_type, accept, timeout_s, query))


def http_invoker(base_url: str, timeout: float = 60.0, accept: str = contract.JSON_ACCEPT) -> Invoke:
    """POST to ``<base_url>/invocations`` (the SageMaker inference container contract), asking for ``accept``."""

    def invoke(body: bytes, content_type: str) -> bytes:
        return post_invocation(base_url, body, content_type, accept, timeout)

    return invoke


def sagemaker_invoker(endpoint_name: str, client: Any | None = None, region: str | None = None) -> Invoke:
    """Invoke a SageMaker endpoint (``sagemaker-runtime`` InvokeEndpoint, JSON answer)."""
    if client is None:
        from include.sagemaker.client import client as aws_client

        client = aws_client("sagemaker-runtime", region)

    def invoke(body: bytes, content_type: str) -> bytes:
        response = client.invoke_endpoint(
            EndpointName=endpoint_name, ContentType=content_type, Accept=contract.JSON_ACCEPT, Body=body
        )
        return response["Body"].read()

    return invoke


def runtime_invoker(cfg: PipelineConfig, endpoint_name: str, url: str | None = None) -> Invoke:
    """InvokeEndpoint through boto3's ``sagemaker-runtime`` client, as an application calls the endpoint:
    SageMaker's, or a local endpoint's at ``url`` (default: the URL recorded for the name)."""
    if cfg.backend == "sagemaker":
        return sagemaker_invoker(endpoint_name, region=cfg.sagemaker.region)
    from include.endpoints.local import endpoint_url, state_dir
    from include.sagemaker.client import local_runtime_client

    address = url or endpoint_url(endpoint_name, state_dir(cfg))
    return sagemaker_invoker(endpoint_name, client=local_runtime_client(address, cfg.sagemaker.region))


def invoker(cfg: PipelineConfig, endpoint: str) -> Invoke:
    """The invoker of an endpoint given by name (on ``cfg.backend``) or by URL."""
    if endpoint.startswith(("http://", "https://")):
        return http_invoker(endpoint)
    if cfg.backend == "local":
        from include.endpoints.local import endpoint_url, state_dir

        return http_invoker(endpoint_url(endpoint, state_dir(cfg)))
    return sagemaker_invoker(endpoint, region=cfg.sagemaker.region)


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


def detection_summary(prediction: list[list[float]], classes: dict[int, str] | None, threshold: float) -> dict:
    """Detections per class name at ``threshold``, the best one and the total: what a person asks of an answer."""
    names = classes or {}

    def name(class_id: float) -> str:
        return names.get(int(class_id), f"class {int(class_id)}")

    per_class: dict[str, int] = {}
    for row in prediction:
        if row[1] >= threshold:
            per_class[name(row[0])] = per_class.get(name(row[0]), 0) + 1
    best = max(prediction, key=lambda row: row[1], default=None)
    return {
        "threshold": threshold,
        "detections": len(prediction),
        "per_class": dict(sorted(per_class.items(), key=lambda kv: -kv[1])),
        "best": {"class": name(best[0]), "score": best[1]} if best else None,
    }


def invoke_endpoint(
    cfg: PipelineConfig, endpoint: str, image: str, draw: str | None = None, threshold: float = 0.5
) -> dict[str, Any]:
    """Send one image (``detection-pipeline invoke``): the endpoint's answer, a per-class summary, a drawing.

    Class names come from the served model's ``classes.json`` (local endpoints; SageMaker's
    answer holds ids only, shown as ``class <id>``).
    """
    from include.serving.contract import check_prediction_schema, content_type_for

    body = storage.read_bytes(image)
    answer = json.loads(invoker(cfg, endpoint)(body, content_type_for(body)))
    check_prediction_schema(answer)
    classes = None
    if cfg.backend == "local" or endpoint.startswith(("http://", "https://")):
        from include.endpoints.local import describe_endpoint, state_dir
        from include.serving.draw import read_classes

        described = describe_endpoint(endpoint, state_dir(cfg))
        classes = read_classes(described["model_uri"]) if described else None
    answer["summary"] = detection_summary(answer["prediction"], classes, threshold)
    if draw:
        from include.serving.draw import save_drawing

        answer["drawing"] = save_drawing(body, answer["prediction"], draw, classes, threshold=threshold)
    return answer
