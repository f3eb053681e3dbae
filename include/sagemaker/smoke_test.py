"""Smoke test of a deployed detector: send images, check the answers' schema, require detections.

The check is the inference contract of the built-in object-detection algorithm: the request
body is the image (``ContentType: image/jpeg`` or ``image/png``), the answer is
``{"prediction": [[class_id, score, xmin, ymin, xmax, ymax], ...]}`` with coordinates in
[0, 1]. The same check runs against a SageMaker endpoint (:func:`sagemaker_invoker`, InvokeEndpoint)
and against the local server (:func:`http_invoker`, ``POST /invocations``).
"""

from __future__ import annotations

import json
import math
import urllib.request
from collections.abc import Callable, Sequence
from typing import Any

from include import storage

Invoke = Callable[[bytes, str], bytes]

CONTENT_TYPES = {".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".png": "image/png"}
MAX_BODY_BYTES = 6 * 1024 * 1024  # SageMaker's InvokeEndpoint payload limit
_EPS = 1e-6


class SmokeTestError(ValueError):
    """The endpoint's answer breaks the contract, or no detections came back."""


def sagemaker_invoker(endpoint_name: str, client: Any | None = None) -> Invoke:
    """Invoke a SageMaker endpoint (``sagemaker-runtime`` InvokeEndpoint, JSON answer)."""
    if client is None:
        import boto3

        client = boto3.client("sagemaker-runtime")

    def invoke(body: bytes, content_type: str) -> bytes:
        response = client.invoke_endpoint(
            EndpointName=endpoint_name, ContentType=content_type, Accept="application/json", Body=body
        )
        return response["Body"].read()

    return invoke


def http_invoker(base_url: str, timeout: float = 60.0) -> Invoke:
    """POST to ``<base_url>/invocations`` (the SageMaker inference container contract)."""
    url = base_url.rstrip("/") + "/invocations"

    def invoke(body: bytes, content_type: str) -> bytes:
        request = urllib.request.Request(
            url, data=body, method="POST", headers={"Content-Type": content_type, "Accept": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.read()

    return invoke


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def parse_prediction(body: bytes, source: str, num_classes: int | None = None) -> list[list[float]]:
    """The detections of one answer; :class:`SmokeTestError` naming ``source`` and the row when off-contract."""
    try:
        answer = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise SmokeTestError(f"{source}: the answer is not JSON ({err}): {body[:200]!r}") from None
    if not isinstance(answer, dict) or not isinstance(answer.get("prediction"), list):
        raise SmokeTestError(f"{source}: the answer has no 'prediction' list: {str(answer)[:200]}")
    rows = answer["prediction"]
    for i, row in enumerate(rows):
        where = f"{source}: prediction[{i}] = {row!r}"
        if not isinstance(row, list) or len(row) != 6 or not all(_number(v) for v in row):
            raise SmokeTestError(f"{where}: expected 6 finite numbers [class, score, xmin, ymin, xmax, ymax]")
        cls, score, xmin, ymin, xmax, ymax = row
        if cls < 0 or cls != int(cls) or (num_classes is not None and cls >= num_classes):
            raise SmokeTestError(f"{where}: class id must be a whole number in [0, {num_classes or 'num_classes'})")
        if not -_EPS <= score <= 1 + _EPS:
            raise SmokeTestError(f"{where}: score outside [0, 1]")
        if not all(-_EPS <= v <= 1 + _EPS for v in (xmin, ymin, xmax, ymax)) or xmin > xmax or ymin > ymax:
            raise SmokeTestError(f"{where}: box is not normalized (0 <= xmin <= xmax <= 1, same for y)")
    return rows


def smoke_test(
    invoke: Invoke,
    image_uris: Sequence[str],
    *,
    num_classes: int | None = None,
    min_detections: int = 1,
    max_body_bytes: int = MAX_BODY_BYTES,
) -> dict[str, Any]:
    """Send each image, check every answer, and require at least ``min_detections`` detections in all.

    Returns ``{"images", "detections", "per_image": {uri: count}, "best_score"}``.
    """
    if not image_uris:
        raise SmokeTestError("the smoke test needs at least one image")
    per_image: dict[str, int] = {}
    best = 0.0
    for uri in image_uris:
        suffix = "." + uri.rsplit(".", 1)[-1].lower() if "." in uri else ""
        if suffix not in CONTENT_TYPES:
            raise SmokeTestError(f"{uri}: not a .jpg/.jpeg/.png image")
        body = storage.read_bytes(uri)
        if len(body) > max_body_bytes:
            raise SmokeTestError(f"{uri}: {len(body)} bytes, over the {max_body_bytes}-byte request limit")
        rows = parse_prediction(invoke(body, CONTENT_TYPES[suffix]), uri, num_classes)
        per_image[uri] = len(rows)
        best = max([best, *(row[1] for row in rows)])
    total = sum(per_image.values())
    if total < min_detections:
        raise SmokeTestError(f"{total} detections in {len(image_uris)} images, at least {min_detections} expected")
    return {"images": len(image_uris), "detections": total, "per_image": per_image, "best_score": best}
