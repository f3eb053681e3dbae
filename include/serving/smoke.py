"""Smoke test of a deployed detector, on either backend: send images, check the answers, require detections.

The request body is the image (``ContentType: image/jpeg`` or ``image/png``); every answer must
pass :func:`contract.check_prediction_schema`. The same test runs against a SageMaker endpoint
and against the local server through an invoker (:mod:`include.endpoints.invocation`); the
``annotation=1`` answer can be checked too (``annotation_invoke``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

from include import storage
from include.serving import contract

#: ``invoke(body, content_type) -> answer bytes`` (:mod:`include.endpoints.invocation` makes them).
Invoke = Callable[[bytes, str], bytes]

CONTENT_TYPES = {".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".png": "image/png"}


class SmokeTestError(ValueError):
    """The endpoint's answer breaks the contract, or no detections came back."""


def _answer(body: bytes, source: str, check: Callable[[Any, int | None], None], num_classes: int | None) -> Any:
    """The JSON answer, checked by ``check``; :class:`SmokeTestError` naming ``source`` and what is wrong."""
    try:
        answer = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise SmokeTestError(f"{source}: the answer is not JSON ({err}): {body[:200]!r}") from None
    try:
        check(answer, num_classes)
    except ValueError as err:
        raise SmokeTestError(f"{source}: {err}") from None
    return answer


def parse_prediction(body: bytes, source: str, num_classes: int | None = None) -> list[list[float]]:
    """The detections of one answer; :class:`SmokeTestError` naming ``source`` and the row when off-contract."""
    return _answer(body, source, contract.check_prediction_schema, num_classes)["prediction"]


def check_annotation(
    invoke: Invoke, body: bytes, content_type: str, source: str, detections: int, num_classes: int | None = None
) -> None:
    """The ``annotation=1`` answer (``invoke`` asks for it) to an image with ``detections`` plain detections.

    It must pass :func:`contract.check_annotation_schema`, give the image's real size and hold as
    many boxes as the plain answer; :class:`SmokeTestError` naming ``source`` otherwise.
    """
    from include.model_artifact import decode_image

    source = f"{source} (annotation=1)"
    answer = _answer(invoke(body, content_type), source, contract.check_annotation_schema, num_classes)
    height, width = decode_image(body).shape[:2]
    size = answer["image_size"][0]
    if (size["width"], size["height"]) != (width, height):
        raise SmokeTestError(f"{source}: image_size is {size['width']}x{size['height']}, the image is {width}x{height}")
    if len(answer["annotations"]) != detections:
        raise SmokeTestError(f"{source}: {len(answer['annotations'])} annotations but {detections} predictions")


def smoke_test(
    invoke: Invoke,
    image_uris: Sequence[str],
    *,
    num_classes: int | None = None,
    min_detections: int = 1,
    max_body_bytes: int = contract.DEFAULT_MAX_BODY_BYTES,
    annotation_invoke: Invoke | None = None,
) -> dict[str, Any]:
    """Send each image, check every answer, and require at least ``min_detections`` detections in all.

    Stops at the first answer off the contract. With ``annotation_invoke`` (an invoker asking for
    ``application/json;annotation=1``), the first image's annotation answer is checked as well
    (:func:`check_annotation`). Returns ``{"images", "detections", "per_image": {uri: count}, "best_score"}``.
    """
    if not image_uris:
        raise SmokeTestError("the smoke test needs at least one image")
    per_image: dict[str, int] = {}
    best = 0.0
    for index, uri in enumerate(image_uris):
        suffix = "." + uri.rsplit(".", 1)[-1].lower() if "." in uri else ""
        if suffix not in CONTENT_TYPES:
            raise SmokeTestError(f"{uri}: not a .jpg/.jpeg/.png image")
        body = storage.read_bytes(uri)
        if len(body) > max_body_bytes:
            raise SmokeTestError(f"{uri}: {len(body)} bytes, over the {max_body_bytes}-byte request limit")
        rows = parse_prediction(invoke(body, CONTENT_TYPES[suffix]), uri, num_classes)
        if annotation_invoke is not None and index == 0:
            check_annotation(annotation_invoke, body, CONTENT_TYPES[suffix], uri, len(rows), num_classes)
        per_image[uri] = len(rows)
        best = max([best, *(row[1] for row in rows)])
    total = sum(per_image.values())
    if total < min_detections:
        raise SmokeTestError(f"{total} detections in {len(image_uris)} images, at least {min_detections} expected")
    return {"images": len(image_uris), "detections": total, "per_image": per_image, "best_score": best}
