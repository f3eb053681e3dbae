"""Label Studio's task import format for pre-annotated images, as a JSON Schema, plus the checks its backend makes
against a project's labelling config.

Written from Label Studio's "Import pre-annotated data" documentation (a task's ``data`` and ``predictions``,
each prediction's ``result`` regions of type ``rectanglelabels`` with ``value`` in percent of the image).
label-studio-sdk's own validator (``LabelInterface.validate_prediction``) was not used: label-studio-sdk 2.1.2
depends on ``numpy>=2.2,<3`` (uv: no solution with the project's ``numpy>=1.23,<1.24``, which MXNet 1.9 needs).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any

PERCENT = {"type": "number", "minimum": 0, "maximum": 100}

REGION = {
    "type": "object",
    "required": ["id", "from_name", "to_name", "type", "value", "original_width", "original_height"],
    "properties": {
        "id": {"type": "string", "minLength": 1},
        "from_name": {"type": "string", "minLength": 1},
        "to_name": {"type": "string", "minLength": 1},
        "type": {"const": "rectanglelabels"},
        "original_width": {"type": "integer", "minimum": 1},
        "original_height": {"type": "integer", "minimum": 1},
        "image_rotation": {"type": "number"},
        "score": {"type": "number", "minimum": 0, "maximum": 1},
        "value": {
            "type": "object",
            "required": ["x", "y", "width", "height", "rectanglelabels"],
            "properties": {
                "x": PERCENT, "y": PERCENT, "width": PERCENT, "height": PERCENT,
                "rotation": {"type": "number"},
                "rectanglelabels": {"type": "array", "items": {"type": "string"}, "minItems": 1},
            },
        },
    },
}  # fmt: skip

PREDICTION = {
    "type": "object",
    "required": ["result"],
    "properties": {
        "model_version": {"type": "string"},
        "score": {"type": "number"},
        "result": {"type": "array", "items": REGION},
    },
}

TASKS = {
    "type": "array",
    "items": {
        "type": "object",
        "required": ["data"],
        "properties": {
            "data": {"type": "object", "minProperties": 1},
            "predictions": {"type": "array", "items": PREDICTION},
        },
    },
}


def config_names(config_xml: str) -> dict[str, Any]:
    """The image's name, its data variable, the RectangleLabels control's name, target and labels."""
    root = ET.fromstring(config_xml)
    image, control = root.find("Image"), root.find("RectangleLabels")
    assert image is not None and control is not None, config_xml
    return {
        "image": image.get("name"),
        "variable": (image.get("value") or "").removeprefix("$"),
        "control": control.get("name"),
        "to": control.get("toName"),
        "labels": {label.get("value") for label in control.findall("Label")},
    }


def task_problems(tasks: list[dict[str, Any]], config_xml: str) -> list[str]:
    """Everything Label Studio would refuse in ``tasks`` for a project with ``config_xml``: the schema, then the
    names, labels and boxes against the config (a box must lie inside the image)."""
    import jsonschema

    problems = [
        f"{'/'.join(map(str, e.path))}: {e.message}" for e in jsonschema.Draft7Validator(TASKS).iter_errors(tasks)
    ]
    names = config_names(config_xml)
    for t, task in enumerate(tasks):
        if names["variable"] not in task.get("data", {}):
            problems.append(f"task {t}: data has no {names['variable']!r} (the config's $-variable)")
        for prediction in task.get("predictions", []):
            for region in prediction.get("result", []):
                where, value = f"task {t} region {region.get('id')}", region.get("value", {})
                if (region.get("from_name"), region.get("to_name")) != (names["control"], names["image"]):
                    problems.append(f"{where}: from/to names are not the config's")
                for label in value.get("rectanglelabels", []):
                    if label not in names["labels"]:
                        problems.append(f"{where}: label {label!r} is not one of {sorted(names['labels'])}")
                if value.get("x", 0) + value.get("width", 0) > 100 + 1e-6 or (
                    value.get("y", 0) + value.get("height", 0) > 100 + 1e-6
                ):
                    problems.append(f"{where}: the box leaves the image")
    return problems
