"""Reader for the training channel of SageMaker JumpStart's object-detection models.

The channel is a folder with ``images/`` and ``annotations.json``::

    {"images": [{"file_name": "abc.jpg", "height": 480, "width": 640, "id": 0}, ...],
     "annotations": [{"image_id": 0, "bbox": [xmin, ymin, xmax, ymax], "category_id": 1}, ...]}

with absolute pixel corners (not COCO's ``[x, y, width, height]``); ``file_name`` is relative to
``images/``. The format names no classes: class ids run from 0 to the largest ``category_id``, named
by a ``classes.json`` (``{"0": "name", ...}``) beside ``annotations.json`` or its folder's parent
(where the pipeline writes it, outside the channel), else ``class_<id>``. There is no split. A box's
source is ``annotations.json`` and its 1-based position in ``annotations``.
"""

from __future__ import annotations

import json
from typing import Any

from include import storage
from include.preprocess.issues import Issue
from include.preprocess.readers.base import (
    AnnotationFormatError,
    BoxRows,
    SourceData,
    annotated_size,
    inside,
    integer,
    number,
)
from include.run_layout import CLASSES_FILE

ANNOTATIONS = "annotations.json"
IMAGES = "images"


def jumpstart_annotations(images: list[dict[str, Any]], boxes: list[dict[str, Any]]) -> dict[str, Any]:
    """The ``annotations.json`` document: ``images`` (file_name, height, width, id), ``boxes``
    (image_id, bbox as [xmin, ymin, xmax, ymax] pixels, category_id)."""
    return {"images": images, "annotations": boxes}


def _document(root: str) -> dict[str, Any]:
    uri = storage.join(root, ANNOTATIONS)
    if not storage.exists(uri):
        raise FileNotFoundError(f"{root}: no {ANNOTATIONS} (a JumpStart object-detection channel has images/ and it)")
    try:
        document = json.loads(storage.read_bytes(uri))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise AnnotationFormatError(ANNOTATIONS, getattr(exc, "lineno", None), f"not valid JSON: {exc}") from None
    if not isinstance(document, dict) or not all(isinstance(document.get(k), list) for k in ("images", "annotations")):
        raise AnnotationFormatError(ANNOTATIONS, None, "needs 'images' and 'annotations' lists")
    return document


def _class_names(root: str, largest: int) -> dict[int, str]:
    """Names of class ids 0..``largest``: from the first classes.json beside the file or one folder up."""
    parent = root.rstrip("/").rsplit("/", 1)[0]
    for folder in (root, parent):
        uri = storage.join(folder, CLASSES_FILE)
        if storage.exists(uri):
            try:
                named = {int(k): str(v) for k, v in json.loads(storage.read_text(uri)).items()}
            except (ValueError, AttributeError) as exc:
                raise AnnotationFormatError(uri, None, "not a JSON object of class id -> name") from exc
            return {i: named.get(i, f"class_{i}") for i in range(max(largest, max(named, default=-1)) + 1)}
    return {i: f"class_{i}" for i in range(largest + 1)}


def _images(document: dict[str, Any]) -> dict[int, tuple[str, tuple[float, float, float]]]:
    out: dict[int, tuple[str, tuple[float, float, float]]] = {}
    for k, entry in enumerate(document["images"], start=1):
        where = f"images[{k}]"
        if not isinstance(entry, dict) or not isinstance(entry.get("file_name"), str):
            raise AnnotationFormatError(ANNOTATIONS, k, f"{where} needs a 'file_name' string")
        image_id = integer(entry.get("id"), ANNOTATIONS, k, f"{where} id")
        if image_id in out:
            raise AnnotationFormatError(ANNOTATIONS, k, f"{where} repeats image id {image_id}")
        out[image_id] = (entry["file_name"], annotated_size(entry.get("width"), entry.get("height")))
    return out


def read_jumpstart(source_uri: str) -> SourceData:
    """Read a JumpStart object-detection channel folder (``images/`` + ``annotations.json``)."""
    root = storage.normalize(source_uri)
    if not storage.isdir(root):
        raise FileNotFoundError(f"JumpStart channel folder not found: {root}")
    document = _document(root)
    images = _images(document)
    entries = document["annotations"]
    parsed = []
    for k, ann in enumerate(entries, start=1):
        if not isinstance(ann, dict):
            raise AnnotationFormatError(ANNOTATIONS, k, f"annotations[{k}] is not a JSON object")
        bbox = ann.get("bbox")
        if not isinstance(bbox, list) or len(bbox) != 4:
            raise AnnotationFormatError(ANNOTATIONS, k, f"annotations[{k}] bbox must be [xmin, ymin, xmax, ymax]")
        box = tuple(number(v, ANNOTATIONS, k, f"annotations[{k}] bbox") for v in bbox)
        category = integer(ann.get("category_id"), ANNOTATIONS, k, f"annotations[{k}] category_id")
        if category < 0:
            raise AnnotationFormatError(ANNOTATIONS, k, f"annotations[{k}] category_id {category} is negative")
        parsed.append((k, integer(ann.get("image_id"), ANNOTATIONS, k, f"annotations[{k}] image_id"), box, category))
    classes = _class_names(root, max((c for *_, c in parsed), default=-1))
    rows, issues = BoxRows(), []
    boxed = {image_id for _, image_id, _, _ in parsed}
    for image_id, (file_name, _) in images.items():
        if image_id not in boxed:
            issues.append(Issue(ANNOTATIONS, 0, file_name, "images_have_boxes", "image has no boxes"))
    for k, image_id, box, category in parsed:
        if image_id not in images:
            raise AnnotationFormatError(ANNOTATIONS, k, f"annotations[{k}] image_id {image_id} is not in 'images'")
        file_name, size = images[image_id]
        image = inside(IMAGES, file_name)
        if image is None:
            issues.append(Issue(ANNOTATIONS, k, file_name, "image_files", f"path outside images/: {file_name}"))
            continue
        rows.add(image, storage.join(root, image), size, category, classes[category], box, None, ANNOTATIONS, k)
    return SourceData(root, rows.frame(), classes, issues)
