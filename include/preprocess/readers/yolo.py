"""Reader for the Ultralytics YOLO detection layout (``data.yaml``, ``images/`` and ``labels/``).

``data.yaml`` (or the one ``*.yaml`` with ``names`` in the folder)::

    path: .                # the data set root, relative to the YAML's folder (default: that folder)
    train: images/train    # a folder, a .txt list of images, or a list of either
    val: images/val
    test: images/test      # optional: the held-out split
    names: {0: cat, 1: dog}  # or a list; nc, when given, must equal its length

These are resolved as Ultralytics does (``ultralytics/data/utils.py``): relative to ``path``;
a ``../x`` that does not exist is retried as ``x`` (Roboflow writes ``train: ../train/images``);
list-file lines starting ``./`` are relative to the list's folder. An image's label file is
its path with the last ``/images/`` replaced by ``/labels/`` and the suffix by ``.txt``; each
line is ``class cx cy w h`` normalized to the image, so the boxes are fractions that ingest
scales by the verified size. A line with more values is a polygon (``class x1 y1 x2 y2 ...``),
read as its envelope as Ultralytics does. A box's source is its label file and line.

Reported: an empty label file (a background image, which the table cannot hold), a missing
label file, a label file under ``labels/`` whose image no split lists, a class index outside
``names``, a line of six values (a prediction with a score, not a label).
"""

from __future__ import annotations

import posixpath
from typing import Any

import yaml

from include import storage
from include.preprocess.issues import Issue
from include.preprocess.readers.base import (
    AnnotationFormatError,
    BoxRows,
    SourceData,
    files_under,
    inside,
    integer,
    number,
    split_of,
)

NO_SIZE = (float("nan"), float("nan"), float("nan"))
#: Ultralytics' image suffixes (``IMG_FORMATS``) that Pillow reads.
IMAGE_SUFFIXES = (".bmp", ".jpeg", ".jpg", ".mpo", ".png", ".tif", ".tiff", ".webp")
SPLIT_KEYS = ("train", "val", "test")


def find_yaml(folder: str) -> str:
    """The data set's YAML in ``folder``: ``data.yaml``, else the one ``*.yaml`` with ``names``."""
    if storage.exists(storage.join(folder, "data.yaml")):
        return storage.join(folder, "data.yaml")
    candidates = [u for u in storage.listdir(folder) if u.endswith((".yaml", ".yml"))]
    named = [u for u in candidates if "names" in (_safe_yaml(u) or {})]
    if len(named) == 1:
        return named[0]
    found = ", ".join(u.rsplit("/", 1)[-1] for u in named) or "none"
    raise FileNotFoundError(
        f"{folder}: a YOLO data set needs one data.yaml with 'names' (YAML files with names: {found})"
    )


def _safe_yaml(uri: str) -> dict[str, Any] | None:
    try:
        data = yaml.safe_load(storage.read_text(uri))
    except (yaml.YAMLError, UnicodeDecodeError):
        return None
    return data if isinstance(data, dict) else None


def _config(uri: str) -> dict[str, Any]:
    name = uri.rsplit("/", 1)[-1]
    try:
        data = yaml.safe_load(storage.read_text(uri))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise AnnotationFormatError(name, mark.line + 1 if mark else None, f"not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise AnnotationFormatError(name, None, "the data set YAML must be a mapping")
    return data


def class_names(names: Any, nc: Any, file: str) -> dict[int, str]:
    """``names`` as ``{index: name}`` with indices 0..n-1 (Ultralytics' ``check_class_names``)."""
    if isinstance(names, list):
        out = {i: str(n) for i, n in enumerate(names)}
    elif isinstance(names, dict):
        out = {integer(k, file, 0, "class index in names"): str(v) for k, v in names.items()}
    else:
        raise AnnotationFormatError(file, None, "'names' must be a list or a mapping of class index to name")
    if sorted(out) != list(range(len(out))):
        raise AnnotationFormatError(
            file, None, f"class indices in 'names' must be 0..{len(out) - 1}, got {sorted(out)}"
        )
    if nc is not None and integer(nc, file, 0, "nc") != len(out):
        raise AnnotationFormatError(file, None, f"nc is {nc} but names has {len(out)} classes")
    return out


def label_path(image: str) -> str:
    """The label file of an image: the last ``images/`` folder becomes ``labels/``, the suffix ``.txt``."""
    head, sep, tail = f"/{image}".rpartition("/images/")
    path = f"{head}/labels/{tail}" if sep else f"/{image}"
    return posixpath.splitext(path)[0].lstrip("/") + ".txt"


def _entry(ref: str) -> str | None:
    """A ``train:``/``val:`` entry relative to the root, with Ultralytics' ``../`` retry; None if outside."""
    found = inside("", ref)
    if found is None and ref.startswith("../"):
        found = inside("", ref[3:])
    return found


def _images_of(entry: str, files: set[str], root: str, yaml_name: str) -> list[tuple[str, str, int]]:
    """``(image, listed in, line)`` for a folder (every image under it) or a ``.txt`` list of images."""
    if entry in files and entry.endswith(".txt"):
        out = []
        base = posixpath.dirname(entry)
        for n, text in enumerate(storage.read_text(storage.join(root, entry)).splitlines(), start=1):
            line = text.strip()
            if not line:
                continue
            image = inside(base, line[2:]) if line.startswith("./") else inside("", line)
            if image is not None and image not in files and not line.startswith("./"):
                image = inside(base, line) or image  # datumaro writes paths relative to the list's folder
            if image is None:
                raise AnnotationFormatError(entry, n, f"image path outside the data set root: {line}")
            out.append((image, entry, n))
        return out
    prefix = f"{entry}/" if entry else ""
    images = sorted(f for f in files if f.startswith(prefix) and f.lower().endswith(IMAGE_SUFFIXES))
    if not images:
        raise FileNotFoundError(f"{storage.join(root, entry)}: no images (named by {yaml_name})")
    return [(image, yaml_name, 0) for image in images]


def _lines(root: str, label: str) -> list[tuple[int, list[str]]]:
    text = storage.read_text(storage.join(root, label))
    return [(n, t.split()) for n, t in enumerate(text.splitlines(), start=1) if t.strip()]


def _box(values: list[str], label: str, line: int) -> tuple[float, float, float, float]:
    """Corners in fractions of the image from ``cx cy w h``, or a polygon's envelope."""
    numbers = [number(v, label, line, "coordinate") for v in values]
    if len(numbers) == 4:
        cx, cy, w, h = numbers
        return cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2
    xs, ys = numbers[0::2], numbers[1::2]
    return min(xs), min(ys), max(xs), max(ys)


def _read_label(
    root: str, image: str, split: str | None, classes: dict[int, str], rows: BoxRows, issues: list[Issue]
) -> None:
    label = label_path(image)
    lines = _lines(root, label)
    if not lines:
        issues.append(Issue(label, 0, image, "background_images", "empty label file: a background image"))
    for n, values in lines:
        key = integer(values[0], label, n, "class index")
        name = classes.get(key)
        if name is None:
            issues.append(Issue(label, n, image, "class_ids_known", f"class index {key} is not in names"))
        elif len(values) == 6:
            reason = "6 values: a prediction with a confidence, not a label (class cx cy w h)"
            issues.append(Issue(label, n, image, "boxes_supported", reason, name))
        elif len(values) < 5 or len(values) % 2 == 0:
            raise AnnotationFormatError(label, n, f"expected 'class cx cy w h' or a polygon, got {len(values)} values")
        else:
            rows.add(image, storage.join(root, image), NO_SIZE, key, name, _box(values[1:], label, n), split, label, n)


def _orphan_labels(root: str, files: set[str], read: set[str]) -> list[Issue]:
    """An issue per line of each label file under a ``labels/`` folder whose image no split lists."""
    issues = []
    for label in sorted(f for f in files if f.endswith(".txt") and "/labels/" in f"/{f}" and f not in read):
        head, _, tail = f"/{label}".rpartition("/labels/")
        image = f"{head}/images/{posixpath.splitext(tail)[0]}".lstrip("/")
        reason = f"label file without an image: no {image}.* is listed in a split"
        issues += [Issue(label, n, f"{image}.*", "image_files", reason) for n, _ in _lines(root, label) or [(0, [])]]
    return issues


def read_yolo(source_uri: str) -> SourceData:
    """Read an Ultralytics YOLO data set: its ``data.yaml`` (or the folder holding it)."""
    uri = storage.normalize(source_uri)
    if not uri.endswith((".yaml", ".yml")):
        if not storage.isdir(uri):
            raise FileNotFoundError(f"YOLO data set folder not found: {uri}")
        uri = find_yaml(uri)
    elif not storage.exists(uri):
        raise FileNotFoundError(f"YOLO data set file not found: {uri}")
    yaml_folder, yaml_name = uri.rsplit("/", 1)
    config = _config(uri)
    root = yaml_folder
    if config.get("path"):
        path = str(config["path"])
        root = storage.normalize(path) if posixpath.isabs(path) or "://" in path else storage.join(yaml_folder, path)
    classes = class_names(config.get("names"), config.get("nc"), yaml_name)
    files = files_under(root)
    entries = {key: config[key] for key in SPLIT_KEYS if config.get(key)}
    if not entries:
        raise AnnotationFormatError(yaml_name, None, "names no split: it needs train and val (folders or lists)")
    rows, issues = BoxRows(), []
    seen: dict[str, str] = {}
    for key, value in entries.items():
        split = split_of(key) if len(entries) > 1 else None
        for ref in value if isinstance(value, list) else [value]:
            entry = _entry(str(ref))
            if entry is None:
                raise AnnotationFormatError(yaml_name, None, f"{key}: {ref} is outside the data set root {root}")
            for image, where, line in _images_of(entry, files, root, yaml_name):
                if seen.setdefault(image, key) != key:
                    raise AnnotationFormatError(where, line, f"image {image} is in {key} and in {seen[image]}")
                if label_path(image) in files:
                    _read_label(root, image, split, classes, rows, issues)
                else:
                    issues.append(
                        Issue(where, line, image, "annotation_files", f"missing label file {label_path(image)}")
                    )
    issues += _orphan_labels(root, files, {label_path(image) for image in seen})
    return SourceData(root=root, boxes=rows.frame(), classes=classes, issues=issues, box_units="fraction")
