"""Reader for Label Studio's JSON export (a list of tasks) and its JSON-MIN export, with rectangle labels.

A task::

    {"id": 12, "data": {"image": "/data/upload/1/8c2a1f4e-cells.jpg"},
     "annotations": [{"id": 31, "was_cancelled": false, "ground_truth": false, "updated_at": "...",
                      "result": [{"id": "Dx_aB9", "type": "rectanglelabels", "original_width": 640,
                                  "original_height": 480, "value": {"x": 40.5, "y": 36.7, "width": 36.1,
                                  "height": 41.5, "rotation": 0, "rectanglelabels": ["WBC"]}}]}],
     "predictions": [...]}

``x``, ``y``, ``width`` and ``height`` are percent of the image, so boxes are read as fractions
that ingest scales by the verified size; ``original_width``/``original_height`` are kept as the
annotated size. A ``rectangle`` region labelled by a separate ``labels`` result with the same id
(a Rectangle tag with a Labels tag) is read too. One annotation per task: the ``ground_truth``
one, else the latest (cancelled ones never); predictions are not labels and are not read.

Images: ``/data/upload/<project>/<8 hex>-<name>`` (an upload) and ``/data/local-files/?d=<path>``
(local storage) are looked up under the export's folder (the path, its longest suffix that
exists, or the file name without the upload prefix, in ``images/`` or anywhere below, when that
name is unique); other URLs by their file name. Images must be copied next to the export.

Label Studio has no split; a task's ``data.split`` (train, validation, test: what
``detection-pipeline export`` writes) is read as its split. A box's source is the export file
and the task's 1-based position in it (reasons name the task
and region ids). Reported: rotated rectangles and non-box regions (polygons, brushes, keypoints),
regions with no or several labels, tasks without a usable annotation, images not found.
"""

from __future__ import annotations

import posixpath
import re
from collections import defaultdict
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

from include import storage
from include.preprocess.issues import Issue
from include.preprocess.readers.base import (
    AnnotationFormatError,
    BoxRows,
    SourceData,
    annotated_size,
    files_under,
    inside,
    load_json,
    number,
    split_of,
)

UPLOAD_PREFIX = re.compile(r"^[0-9a-f]{8}-")
BOX_TYPES = ("rectanglelabels", "rectangle", "labels")
#: Region types that are objects but not boxes (reported); other result types (choices, text) are not objects.
OTHER_SHAPES = (
    "polygonlabels",
    "polygon",
    "brushlabels",
    "brush",
    "keypointlabels",
    "keypoint",
    "ellipselabels",
    "ellipse",
    "polylinelabels",
    "bitmasklabels",
    "vectorlabels",
)


def is_labelstudio(document: object) -> bool:
    """A Label Studio export: a list of tasks with ``data`` (JSON) or ``image`` and ``label`` (JSON-MIN)."""
    if not isinstance(document, list) or not document or not isinstance(document[0], dict):
        return False
    first = document[0]
    return ("data" in first and any(k in first for k in ("annotations", "predictions", "completions"))) or (
        "image" in first and "label" in first
    )


class ImageFinder:
    """Resolves Label Studio image references to files under the export's folder."""

    def __init__(self, files: set[str]) -> None:
        self.files = files
        self.by_name: dict[str, list[str]] = defaultdict(list)
        for f in sorted(files):
            self.by_name[posixpath.basename(f)].append(f)

    def find(self, ref: str) -> tuple[str | None, str]:
        """``(image path, "")`` or ``(None, why not)``."""
        url = urlparse(ref)
        if "d" in parse_qs(url.query):  # /data/local-files/?d=<path>
            path = parse_qs(url.query)["d"][0]
            return self._path_or_suffix(path) or self._by_name(path)
        path = unquote(url.path)
        if path.startswith("/data/upload/"):
            rest = path[len("/data/upload/") :]
            for candidate in (f"upload/{rest}", f"media/upload/{rest}", rest):
                if candidate in self.files:
                    return candidate, ""
            return self._by_name(path, strip_upload_prefix=True)
        if not url.scheme and not path.startswith("/"):
            found = inside("", path)
            if found in self.files:
                return found, ""
        return self._by_name(path)

    def _path_or_suffix(self, path: str) -> tuple[str, str] | None:
        parts = [p for p in path.replace("\\", "/").split("/") if p]
        for i in range(len(parts)):
            candidate = "/".join(parts[i:])
            if candidate in self.files:
                return candidate, ""
        return None

    def _by_name(self, path: str, strip_upload_prefix: bool = False) -> tuple[str | None, str]:
        name = posixpath.basename(path)
        names = [name, UPLOAD_PREFIX.sub("", name)] if strip_upload_prefix else [name]
        for candidate in names:
            found = self.by_name.get(candidate, [])
            if len(found) == 1:
                return found[0], ""
            if len(found) > 1:
                return None, f"image {path} matches several files under the export folder: {', '.join(found[:3])}"
        return None, f"image {path} not found under the export folder (copy the images next to the export)"


def _chosen(task: dict[str, Any], notes: dict[str, int]) -> dict[str, Any] | None:
    """The annotation to read: the ground truth one, else the latest that was not cancelled."""
    annotations = [
        a
        for a in task.get("annotations") or task.get("completions") or []
        if isinstance(a, dict) and not a.get("was_cancelled") and not a.get("skipped")
    ]
    if len(annotations) > 1:
        notes["tasks_with_several_annotations"] = notes.get("tasks_with_several_annotations", 0) + 1
    truth = [a for a in annotations if a.get("ground_truth")]
    latest = sorted(annotations, key=lambda a: str(a.get("updated_at") or a.get("created_at") or ""))
    return (truth or latest or [None])[-1]


def _regions(results: list[Any]) -> list[dict[str, Any]]:
    """Results merged by region id: a region's geometry, labels, type and original size."""
    merged: dict[str, dict[str, Any]] = {}
    for k, result in enumerate(results):
        if not isinstance(result, dict):
            continue
        region = merged.setdefault(str(result.get("id", f"#{k}")), {"id": result.get("id", f"#{k}"), "labels": []})
        value = result.get("value") or {}
        kind = str(result.get("type", ""))
        for key in ("rectanglelabels", "labels", *OTHER_SHAPES):
            if isinstance(value.get(key), list):
                region["labels"] += [str(v) for v in value[key]]
        if kind in OTHER_SHAPES or kind in ("rectanglelabels", "rectangle"):
            region.setdefault("type", kind)
            region["value"] = value
            region["size"] = (result.get("original_width"), result.get("original_height"))
    return list(merged.values())


def _min_task(item: dict[str, Any]) -> dict[str, Any]:
    """A JSON-MIN record as a task with one annotation."""
    labels = item.get("label") or []
    results = [
        {
            "id": f"#{k}",
            "type": "rectanglelabels",
            "value": r,
            "original_width": r.get("original_width"),
            "original_height": r.get("original_height"),
        }
        for k, r in enumerate(labels if isinstance(labels, list) else [])
        if isinstance(r, dict)
    ]
    return {"id": item.get("id"), "data": {"image": item.get("image")}, "annotations": [{"result": results}]}


def _image_ref(task: dict[str, Any]) -> str | None:
    data = task.get("data") or {}
    if isinstance(data.get("image"), str):
        return data["image"]
    strings = [v for v in data.values() if isinstance(v, str)]
    return strings[0] if len(strings) == 1 else None


def _box(value: dict[str, Any], file: str, line: int, where: str) -> tuple[float, float, float, float]:
    x, y, w, h = (number(value.get(k), file, line, f"{where} {k}") / 100 for k in ("x", "y", "width", "height"))
    return x, y, x + w, y + h


class _Reader:
    def __init__(self, root: str, files: set[str]) -> None:
        self.root, self.finder = root, ImageFinder(files)
        self.rows, self.issues, self.notes = BoxRows(), [], {}
        self.names: set[str] = set()
        self.pending: list[tuple] = []  # rows before class keys are known

    def task(self, rel: str, line: int, task: Any) -> None:
        if not isinstance(task, dict):
            raise AnnotationFormatError(rel, line, f"task {line} is not a JSON object")
        task = task if "data" in task else _min_task(task)
        where = f"task {line} (id {task.get('id')})"
        ref = _image_ref(task)
        if ref is None:
            raise AnnotationFormatError(rel, line, f"{where}: data names no image (expected data.image)")
        annotation = _chosen(task, self.notes)
        if annotation is None:
            self.issues.append(Issue(rel, line, ref, "images_have_boxes", f"{where} has no annotation that counts"))
            return
        image, why = self.finder.find(ref)
        split = split_of(str((task.get("data") or {}).get("split") or ""))
        regions = _regions(annotation.get("result") or [])
        for region in regions:
            self._region(rel, line, where, ref, (image, split), why, region)
        if not any(r.get("type") for r in regions):
            reason = f"{where}: its annotation holds no region: a background image"
            self.issues.append(Issue(rel, line, ref, "background_images", reason))

    def _region(self, rel: str, line: int, where: str, ref: str, found: tuple, why: str, region: dict) -> None:
        image, split = found
        what = f"{where} region {region['id']}"
        labels, kind = region["labels"], region.get("type")
        name = labels[0] if len(labels) == 1 else None
        if kind is None:
            return  # choices, text and the like: not objects
        value = region.get("value") or {}
        if kind in OTHER_SHAPES:
            self._issue(rel, line, ref, "boxes_supported", f"{what} is a {kind} region, not a box", name)
        elif len(labels) != 1:
            reason = f"{what} has {len(labels)} labels {labels}: a box needs exactly one class"
            self._issue(rel, line, ref, "boxes_supported" if labels else "class_ids_known", reason, None)
        elif number(value.get("rotation", 0) or 0, rel, line, f"{what} rotation") % 360:
            reason = f"{what} is rotated by {value.get('rotation')} degrees; the detector needs axis-aligned boxes"
            self._issue(rel, line, ref, "boxes_supported", reason, name)
        elif image is None:
            self._issue(rel, line, ref, "image_files", why, name)
        else:
            box = _box(value, rel, line, what)
            self.pending.append((image, annotated_size(*region["size"]), name, box, split, rel, line))

    def _issue(self, rel: str, line: int, ref: str, check: str, reason: str, name: str | None) -> None:
        self.names.update([name] if name else [])
        self.issues.append(Issue(rel, line, ref, check, reason, name))

    def source(self) -> SourceData:
        names = sorted({p[2] for p in self.pending} | self.names)
        keys = {name: k for k, name in enumerate(names)}
        for image, size, name, box, split, rel, line in self.pending:
            self.rows.add(image, storage.join(self.root, image), size, keys[name], name, box, split, rel, line)
        return SourceData(
            self.root, self.rows.frame(), dict(enumerate(names)), self.issues, self.notes, box_units="fraction"
        )


def _exports(uri: str) -> tuple[str, list[str]]:
    """The export's folder and its export files (relative): the file itself or the folder's Label Studio JSONs."""
    if uri.endswith(".json"):
        if not storage.exists(uri):
            raise FileNotFoundError(f"Label Studio export not found: {uri}")
        root, name = uri.rsplit("/", 1)
        return root, [name]
    if not storage.isdir(uri):
        raise FileNotFoundError(f"Label Studio export folder not found: {uri}")
    names = sorted(u.rsplit("/", 1)[-1] for u in storage.listdir(uri) if u.endswith(".json"))
    exports = [n for n in names if is_labelstudio(load_json(n, storage.read_bytes(storage.join(uri, n))))]
    if not exports:
        raise FileNotFoundError(f"{uri}: no Label Studio JSON export (a list of tasks) in the folder")
    return uri, exports


def read_labelstudio(source_uri: str) -> SourceData:
    """Read a Label Studio JSON or JSON-MIN export (the file, or the folder holding it and the images)."""
    root, exports = _exports(storage.normalize(source_uri))
    reader = _Reader(root, files_under(root))
    for rel in exports:
        document = load_json(rel, storage.read_bytes(storage.join(root, rel)))
        if not isinstance(document, list):
            raise AnnotationFormatError(rel, None, "a Label Studio export is a JSON list of tasks")
        for line, task in enumerate(document, start=1):
            reader.task(rel, line, task)
    return reader.source()
