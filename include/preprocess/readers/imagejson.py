"""Reader (and record writer) for SageMaker's image + JSON annotation format (one JSON per image).

Each JSON file is::

    {"file": "<image path>", "image_size": [{"width", "height", "depth"}],
     "annotations": [{"class_id", "left", "top", "width", "height"}],
     "categories": [{"class_id", "name"}]}

with absolute pixel boxes. Two layouts are read:

- SageMaker's channels: ``train_annotation/`` and ``validation_annotation/`` (and the
  pipeline's held-out ``test_annotation/``) hold the JSON files and ``file`` is relative to the
  ``train/`` / ``validation/`` / ``test/`` image channel; the channel gives the split.
- Flat: every ``*.json`` under the source folder, ``file`` relative to that folder; no split.

The class names are the union of every file's ``categories``. A box's source is its JSON
file and its 1-based position in ``annotations``.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from include import storage
from include.preprocess.annotations import SPLITS
from include.preprocess.issues import Issue
from include.preprocess.readers.base import (
    AnnotationFormatError,
    BoxRows,
    SourceData,
    declare_class,
    inside,
    integer,
    ltwh_box,
    ltwh_label,
    ltwh_label_size,
)

CHANNELS = SPLITS


def imagejson_record(
    file: str,
    size: tuple[int, int, int],
    objects: list[tuple[int, float, float, float, float]],
    class_map: dict[int, str],
) -> dict[str, Any]:
    """One image's annotation; ``objects`` are ``(class_id, left, top, width, height)`` in pixels."""
    return {
        "file": file,
        **ltwh_label(size, objects),
        "categories": [{"class_id": k, "name": v} for k, v in sorted(class_map.items())],
    }


def _layout(root: str) -> list[tuple[str, str, str | None]]:
    """``(annotation file, image base folder, split)`` for every JSON file, both relative to ``root``."""
    files = sorted(storage.relative(u, root) for u in storage.walk_files(root) if u.endswith(".json"))
    channel_files = [
        (rel, channel, channel) for channel in CHANNELS for rel in files if rel.startswith(f"{channel}_annotation/")
    ]
    return channel_files or [(rel, "", None) for rel in files]


def _load(name: str, data: bytes) -> dict[str, Any]:
    try:
        record = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise AnnotationFormatError(name, None, f"not valid JSON: {exc}") from None
    if not isinstance(record, dict) or not isinstance(record.get("file"), str):
        raise AnnotationFormatError(name, None, "an image+JSON annotation needs a 'file' string")
    if not isinstance(record.get("annotations", []), list):
        raise AnnotationFormatError(name, None, "'annotations' must be a list")
    return record


def _categories(records: list[tuple[str, dict[str, Any]]]) -> dict[int, str]:
    """The union of every file's categories; a class id named two ways is an error."""
    classes: dict[int, str] = {}
    for name, record in records:
        for k, category in enumerate(record.get("categories") or [], start=1):
            if not isinstance(category, dict):
                raise AnnotationFormatError(name, k, "a category is not a JSON object")
            declare_class(classes, category.get("class_id"), category.get("name", category.get("class_id")), name, k)
    return classes


def read_imagejson(source_uri: str, workers: int = 8) -> SourceData:
    """Read an image+JSON data set (channel or flat layout) from a folder URI."""
    root = storage.normalize(source_uri)
    if not storage.isdir(root):
        raise FileNotFoundError(f"image+JSON data set folder not found: {root}")
    layout = _layout(root)
    if not layout:
        raise FileNotFoundError(f"{root}: no *.json annotation files")
    with ThreadPoolExecutor(workers) as pool:
        contents = list(pool.map(lambda entry: storage.read_bytes(storage.join(root, entry[0])), layout))
    records = [(name, _load(name, data)) for (name, _, _), data in zip(layout, contents, strict=True)]
    classes = _categories(records)

    rows, issues = BoxRows(), []
    for (name, base, split), (_, record) in zip(layout, records, strict=True):
        file = record["file"]
        image = inside(base, file)
        annotations = record.get("annotations") or []
        if not annotations:
            issues.append(Issue(name, 0, file, "images_have_boxes", "annotation has no boxes"))
        size = ltwh_label_size(record)
        for k, ann in enumerate(annotations, start=1):
            box = ltwh_box(ann, name, k, "annotation")
            class_id = integer(ann.get("class_id"), name, k, "class_id")
            if image is None:
                reason = f"path outside data set root: {file}"
                issues.append(Issue(name, k, file, "image_files", reason, classes.get(class_id)))
                continue
            if class_id not in classes:
                issues.append(Issue(name, k, file, "class_ids_known", f"class_id {class_id} is not in the categories"))
                continue
            rows.add(image, storage.join(root, image), size, class_id, classes[class_id], box, split, name, k)
    return SourceData(root=root, boxes=rows.frame(), classes=classes, issues=issues)
