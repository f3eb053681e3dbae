"""Label Studio: a task list to import (``tasks.json``), its labelling config and the images.

Each task holds one annotation whose regions are the boxes in percent of the image
(``original_width``/``original_height`` the real size), so the boxes arrive as annotations a
person reviews and corrects. A flagged box carries ``"meta": {"text": [flag]}``, which Label
Studio shows in the region's details panel; the task's ``data.quality_flags`` counts them (a
Data Manager column to filter on). Objects the model found that no box covers are the task's
``predictions`` (pre-annotations, shown apart from the labels, accepted with one click).

Images are referenced as ``<image root URL><path in the export>``: by default
``/data/local-files/?d=images/...`` for Label Studio's local-files storage with
``LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT`` set to the export folder.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote
from xml.sax.saxutils import quoteattr

from include import storage
from include.preprocess.writers.base import ExportData, flag_of, images_of

TASKS_JSON = "tasks.json"
CONFIG_XML = "label_config.xml"
LOCAL_FILES = "/data/local-files/?d="


def _percent(box: tuple[float, float, float, float], width: float, height: float) -> dict[str, float]:
    x0, y0, x1, y1 = box
    return {
        "x": 100 * x0 / width,
        "y": 100 * y0 / height,
        "width": 100 * (x1 - x0) / width,
        "height": 100 * (y1 - y0) / height,
        "rotation": 0,
    }


def region(region_id: str, box: tuple, name: str, width: int, height: int) -> dict[str, Any]:
    """A rectangle region of the pixel box ``(xmin, ymin, xmax, ymax)`` in percent of the image, labelled ``name``."""
    return {
        "id": region_id,
        "type": "rectanglelabels",
        "from_name": "label",
        "to_name": "image",
        "original_width": width,
        "original_height": height,
        "image_rotation": 0,
        "value": {**_percent(box, width, height), "rectanglelabels": [name]},
    }


def label_config(classes: dict[int, str]) -> str:
    labels = "".join(f"\n    <Label value={quoteattr(name)}/>" for _, name in sorted(classes.items()))
    return (
        f'<View>\n  <Image name="image" value="$image"/>\n  <RectangleLabels name="label" toName="image">{labels}'
        "\n  </RectangleLabels>\n</View>\n"
    )


def write_labelstudio(data: ExportData, output_uri: str, image_root_url: str = LOCAL_FILES) -> tuple[dict, list]:
    targets, tasks = {}, []
    suggestions: dict[str, list[dict[str, Any]]] = {}
    for s in data.suggestions:
        suggestions.setdefault(s["image"], []).append(s)
    for task_id, (path, rows) in enumerate(images_of(data.table), start=1):
        first = rows[0]
        width, height = int(first.width), int(first.height)
        result = []
        for k, r in enumerate(rows, start=1):
            labelled = region(f"t{task_id}r{k}", (r.xmin, r.ymin, r.xmax, r.ymax), r.class_name, width, height)
            if flag_of(r.quality_issue):
                labelled["meta"] = {"text": [r.quality_issue]}
            result.append(labelled)
        predicted = [
            {
                **region(f"t{task_id}p{k}", tuple(s["predicted_box"]), s["predicted_class"], width, height),
                "score": s["predicted_score"],
                "meta": {"text": [s["description"]]},
            }
            for k, s in enumerate(suggestions.get(first.image, []), start=1)
        ]
        flags = sum(flag_of(r.quality_issue) is not None for r in rows) + len(predicted)
        tasks.append(
            {
                "id": task_id,
                "data": {
                    "image": image_root_url + quote(f"images/{path}"),
                    "split": first.split,
                    "quality_flags": flags,
                },
                "annotations": [{"result": result, "was_cancelled": False, "ground_truth": False}],
                "predictions": [{"model_version": "detection-pipeline label issues", "result": predicted}]
                if predicted
                else [],
            }
        )
        targets[first.image_uri] = storage.join(output_uri, "images", path)
    files = [
        storage.write_text(storage.join(output_uri, TASKS_JSON), json.dumps(tasks, indent=1)),
        storage.write_text(storage.join(output_uri, CONFIG_XML), label_config(data.classes)),
    ]
    return targets, files
