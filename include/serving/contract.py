"""The SageMaker object-detection inference contract: request types, response schemas and their checks.

Shared by the local endpoint (which answers in these shapes) and by every client that checks an
answer (the local smoke test and the SageMaker one): a response is either
``{"prediction": [[class_id, score, xmin, ymin, xmax, ymax], ...]}`` with coordinates normalized
to [0, 1], or, when asked with ``Accept: application/json;annotation=1``,
``{"image_size": [{"width", "height", "depth"}], "annotations": [{"class_id", "score", "left", "top",
"width", "height"}]}`` in absolute pixels.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

#: Request content types the endpoint accepts (as SageMaker's built-in algorithm does).
CONTENT_TYPES = ("image/jpeg", "image/png", "application/x-image")
#: The plain JSON answer and the annotation variant.
JSON_ACCEPT = "application/json"
ANNOTATION_ACCEPT = "application/json;annotation=1"
#: SageMaker real-time endpoints refuse payloads over 6 MB.
DEFAULT_MAX_BODY_BYTES = 6 * 1024 * 1024

_PREDICTION_FIELDS = ("class_id", "score", "xmin", "ymin", "xmax", "ymax")
_ANNOTATION_FIELDS = ("class_id", "score", "left", "top", "width", "height")
_SIZE_FIELDS = ("width", "height", "depth")
_EPS = 1e-6


def _number(value: Any, where: str) -> float:
    """``value`` as a finite float, or ``ValueError`` naming ``where``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{where} is {value!r}, expected a finite number")
    return float(value)


def _in_range(value: Any, where: str, low: float, high: float) -> float:
    number = _number(value, where)
    if not low - _EPS <= number <= high + _EPS:
        raise ValueError(f"{where} is {number}, expected a value in [{low}, {high}]")
    return number


def _class_id(value: Any, where: str, num_classes: int | None) -> None:
    number = _number(value, where)
    if number < 0 or number != int(number):
        raise ValueError(f"{where} is {value!r}, expected a non-negative whole number")
    if num_classes is not None and number >= num_classes:
        raise ValueError(f"{where} is {value!r}, expected a class id below num_classes={num_classes}")


def _list(body: Any, key: str) -> list:
    if not isinstance(body, dict):
        raise ValueError(f"the response is a {type(body).__name__}, expected a JSON object")
    if key not in body:
        raise ValueError(f"the response has no {key!r} key (keys: {sorted(body)})")
    value = body[key]
    if not isinstance(value, list):
        raise ValueError(f"{key} is a {type(value).__name__}, expected a list")
    return value


def content_type_for(data: bytes) -> str:
    """The request content type for image bytes: ``image/png``, ``image/jpeg``, else ``application/x-image``."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    return "application/x-image"


def check_prediction_schema(body: Any, num_classes: int | None = None) -> None:
    """Check a ``{"prediction": [...]}`` answer; ``ValueError`` names the first offending entry.

    With ``num_classes``, class ids must also be below it.
    """
    for i, row in enumerate(_list(body, "prediction")):
        where = f"prediction[{i}]"
        if not isinstance(row, list) or len(row) != len(_PREDICTION_FIELDS):
            raise ValueError(f"{where} is {row!r}, expected [{', '.join(_PREDICTION_FIELDS)}]")
        _class_id(row[0], f"{where}[0] (class_id)", num_classes)
        _in_range(row[1], f"{where}[1] (score)", 0.0, 1.0)
        xmin, ymin, xmax, ymax = (
            _in_range(v, f"{where}[{j}] ({_PREDICTION_FIELDS[j]})", 0.0, 1.0) for j, v in enumerate(row[2:], start=2)
        )
        if xmax < xmin - _EPS or ymax < ymin - _EPS:
            raise ValueError(f"{where} has xmax < xmin or ymax < ymin: {row!r}")


def check_annotation_schema(body: Any, num_classes: int | None = None) -> None:
    """Check an ``annotation=1`` answer; ``ValueError`` names the first offending entry (see ``num_classes`` above)."""
    sizes = _list(body, "image_size")
    if len(sizes) != 1 or not isinstance(sizes[0], dict):
        raise ValueError(f"image_size is {sizes!r}, expected one {{width, height, depth}} object")
    size = sizes[0]
    for key in _SIZE_FIELDS:
        value = size.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ValueError(f"image_size[0].{key} is {value!r}, expected a positive integer")
    for i, ann in enumerate(_list(body, "annotations")):
        where = f"annotations[{i}]"
        if not isinstance(ann, dict) or set(ann) != set(_ANNOTATION_FIELDS):
            raise ValueError(f"{where} is {ann!r}, expected keys {list(_ANNOTATION_FIELDS)}")
        _class_id(ann["class_id"], f"{where}.class_id", num_classes)
        _in_range(ann["score"], f"{where}.score", 0.0, 1.0)
        left = _in_range(ann["left"], f"{where}.left", 0.0, size["width"])
        top = _in_range(ann["top"], f"{where}.top", 0.0, size["height"])
        _in_range(ann["width"], f"{where}.width", 0.0, size["width"] - left)
        _in_range(ann["height"], f"{where}.height", 0.0, size["height"] - top)


def to_prediction(detections: Sequence[Sequence[float]]) -> dict:
    """The ``{"prediction": ...}`` answer for normalized ``[class_id, score, xmin, ymin, xmax, ymax]`` rows."""
    return {"prediction": [[float(v) for v in row] for row in detections]}


def to_annotations(detections: Sequence[Sequence[float]], width: int, height: int, depth: int) -> dict:
    """The ``annotation=1`` answer: the same detections in absolute pixels of a ``width`` x ``height`` image."""
    annotations = [
        {
            "class_id": int(cls),
            "score": float(score),
            "left": float(xmin) * width,
            "top": float(ymin) * height,
            "width": (float(xmax) - float(xmin)) * width,
            "height": (float(ymax) - float(ymin)) * height,
        }
        for cls, score, xmin, ymin, xmax, ymax in detections
    ]
    size = {"width": int(width), "height": int(height), "depth": int(depth)}
    return {"image_size": [size], "annotations": annotations}
