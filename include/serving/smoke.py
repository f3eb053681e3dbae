"""The smoke test of a freshly deployed local endpoint: real images in, contract-shaped detections out."""

from __future__ import annotations

import os
import statistics
import time

from include.serving import contract
from include.serving.endpoint import EndpointError, endpoint_url, invoke


class SmokeTestError(RuntimeError):
    """The endpoint failed the smoke test; the message lists every failing image."""


def _check_one(
    url: str, data: bytes, min_detections: int, min_score: float, num_classes: int | None, timeout_s: float
) -> tuple[int, float, float]:
    """Invoke with one image and check the answer; returns (detections kept, best score, latency ms)."""
    started = time.perf_counter()
    body = invoke(url, data, contract.content_type_for(data), timeout_s=timeout_s)
    latency_ms = (time.perf_counter() - started) * 1000
    contract.check_prediction_schema(body, num_classes)
    scores = [row[1] for row in body["prediction"]]
    kept = sum(score >= min_score for score in scores)
    if kept < min_detections:
        raise ValueError(f"{kept} detections scored at least {min_score}, expected at least {min_detections}")
    return kept, max(scores, default=0.0), latency_ms


def _check_annotation(url: str, data: bytes, num_classes: int | None, timeout_s: float) -> None:
    """The ``annotation=1`` answer: schema, the image's real size, as many boxes as the plain answer."""
    from include.model_artifact import decode_image

    content_type = contract.content_type_for(data)
    body = invoke(url, data, content_type, accept=contract.ANNOTATION_ACCEPT, timeout_s=timeout_s)
    contract.check_annotation_schema(body, num_classes)
    height, width = decode_image(data).shape[:2]
    size = body["image_size"][0]
    if (size["width"], size["height"]) != (width, height):
        raise ValueError(f"image_size is {size['width']}x{size['height']}, the image is {width}x{height}")
    plain = invoke(url, data, content_type, timeout_s=timeout_s)
    if len(body["annotations"]) != len(plain["prediction"]):
        raise ValueError(f"{len(body['annotations'])} annotations but {len(plain['prediction'])} predictions")


def smoke_test(
    endpoint: str,
    images: list[bytes],
    *,
    state_dir: str | os.PathLike[str] | None = None,
    min_detections: int = 1,
    min_score: float = 0.0,
    num_classes: int | None = None,
    timeout_s: float = 60.0,
) -> dict:
    """Send each image (content type from its bytes) to the endpoint (name under ``state_dir``, or URL).

    Every answer must pass :func:`contract.check_prediction_schema` (class ids below ``num_classes``
    when given) and hold at least ``min_detections`` detections scoring ``min_score`` or more; the
    first image is also asked for the ``annotation=1`` answer, which must match its size and box
    count. Raises :class:`SmokeTestError` listing every failure; returns ``endpoint``, ``images``,
    ``detections`` and ``best_scores`` (per image) and ``latency_ms`` (``p50``, ``max``).
    """
    if not images:
        raise ValueError("smoke_test needs at least one image")
    url = endpoint_url(endpoint, state_dir)
    failures, detections, best_scores, latencies = [], [], [], []
    for index, data in enumerate(images):
        try:
            kept, best, latency_ms = _check_one(url, data, min_detections, min_score, num_classes, timeout_s)
        except (ValueError, EndpointError) as exc:
            failures.append(f"image {index}: {exc}")
            continue
        detections.append(kept)
        best_scores.append(best)
        latencies.append(latency_ms)
    try:
        _check_annotation(url, images[0], num_classes, timeout_s)
    except (ValueError, EndpointError) as exc:
        failures.append(f"image 0 (annotation=1): {exc}")
    if failures:
        raise SmokeTestError(f"{url} failed the smoke test on {len(failures)} check(s):\n" + "\n".join(failures))
    return {
        "endpoint": url,
        "images": len(images),
        "detections": detections,
        "best_scores": best_scores,
        "latency_ms": {"p50": round(statistics.median(latencies), 2), "max": round(max(latencies), 2)},
    }
