"""Reader for the CUB-200-2011 layout (the birds notebook's data set).

Space-separated text files with 1-based ids, next to an ``images/`` folder::

    images.txt              <image_id> <path under images/>
    classes.txt             <class_id> <class_name>          (e.g. ``17 017.Cardinal``)
    image_class_labels.txt  <image_id> <class_id>
    bounding_boxes.txt      <image_id> <x> <y> <width> <height>   (pixels, one line per box)
    train_test_split.txt    <image_id> <1 train | 0 test>   (optional; ingest draws validation from train)

The source may be the ``CUB_200_2011`` folder itself or its parent. Image sizes are not in
the data set; they are read from the images during verification. Each box's source is its
``bounding_boxes.txt`` line.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from include import storage
from include.preprocess.issues import Issue
from include.preprocess.readers.base import (
    AnnotationFormatError,
    BoxRows,
    SourceData,
    annotated_size,
    dataset_root,
    inside,
    integer,
    number,
)

IMAGES = "images.txt"
CLASSES = "classes.txt"
LABELS = "image_class_labels.txt"
BOXES = "bounding_boxes.txt"
SPLIT = "train_test_split.txt"
NO_SIZE = annotated_size(None, None, None)
T = TypeVar("T")


def _lines(root: str, name: str, fields: int) -> list[tuple[int, list[str]]]:
    """``(line number, fields)`` of a space-separated file; the last field keeps any spaces."""
    uri = storage.join(root, name)
    if not storage.exists(uri):
        raise FileNotFoundError(f"{uri}: the CUB-200-2011 layout needs {name}")
    out = []
    for number_, text in enumerate(storage.read_text(uri).splitlines(), start=1):
        if not text.strip():
            continue
        parts = text.split(maxsplit=fields - 1)
        if len(parts) != fields:
            raise AnnotationFormatError(name, number_, f"expected {fields} space-separated fields, got {text!r}")
        out.append((number_, parts))
    return out


def _id_map(root: str, name: str, parse_value: Callable[[str, int], T]) -> dict[int, tuple[int, T]]:
    """``{id: (line, parsed value)}`` from a two-column file, rejecting repeated ids."""
    out: dict[int, tuple[int, T]] = {}
    for line, (key, value) in _lines(root, name, 2):
        ident = integer(key, name, line, "id")
        if ident in out:
            raise AnnotationFormatError(name, line, f"id {ident} repeats line {out[ident][0]}")
        out[ident] = (line, parse_value(value, line))
    return out


def _split_value(value: str, line: int) -> str:
    if value.strip() not in ("0", "1"):
        raise AnnotationFormatError(SPLIT, line, f"is_training_image must be 0 or 1, got {value!r}")
    return "train" if value.strip() == "1" else "test"


def read_cub(source_uri: str) -> SourceData:
    """Read a CUB-200-2011 layout from a local folder or URI."""
    root = dataset_root(source_uri, IMAGES, "CUB_200_2011")
    images = _id_map(root, IMAGES, lambda value, line: value.strip())
    classes = {k: v for k, (_, v) in _id_map(root, CLASSES, lambda value, line: value.strip()).items()}
    labels = _id_map(root, LABELS, lambda value, line: integer(value, LABELS, line, "class id"))
    has_split = storage.exists(storage.join(root, SPLIT))
    splits = _id_map(root, SPLIT, _split_value) if has_split else {}
    for name, table in ((LABELS, labels), (SPLIT, splits)):
        for image_id, (line, _) in table.items():
            if image_id not in images:
                raise AnnotationFormatError(name, line, f"image id {image_id} is not in {IMAGES}")
    if has_split:
        missing = sorted(set(images) - set(splits))
        if missing:
            raise AnnotationFormatError(SPLIT, None, f"image ids without a split line: {missing[:5]}")

    rows, issues, boxed = BoxRows(), [], set()
    images_root = storage.join(root, "images")
    for line, (key, x, y, w, h) in _lines(root, BOXES, 5):
        image_id = integer(key, BOXES, line, "image id")
        if image_id not in images:
            raise AnnotationFormatError(BOXES, line, f"image id {image_id} is not in {IMAGES}")
        boxed.add(image_id)
        path = images[image_id][1]
        rel = inside("", path)
        label = labels.get(image_id)
        if rel is None:
            name = classes.get(label[1]) if label else None
            issues.append(Issue(BOXES, line, path, "image_files", f"path outside data set root: {path}", name))
            continue
        if label is None:
            issues.append(Issue(BOXES, line, path, "class_ids_known", f"image id {image_id} has no line in {LABELS}"))
            continue
        class_key = label[1]
        if class_key not in classes:
            issues.append(Issue(BOXES, line, path, "class_ids_known", f"class id {class_key} is not in {CLASSES}"))
            continue
        x0, y0 = number(x, BOXES, line, "x"), number(y, BOXES, line, "y")
        box = (x0, y0, x0 + number(w, BOXES, line, "width"), y0 + number(h, BOXES, line, "height"))
        split = splits[image_id][1] if has_split else None
        rows.add(rel, storage.join(images_root, rel), NO_SIZE, class_key, classes[class_key], box, split, BOXES, line)
    for image_id in sorted(set(images) - boxed):
        line, path = images[image_id]
        issues.append(Issue(IMAGES, line, path, "images_have_boxes", f"image id {image_id} has no line in {BOXES}"))
    return SourceData(root=root, boxes=rows.frame(), classes=classes, issues=issues)
