"""Reader for COCO object-detection JSON (``images``, ``annotations``, ``categories``).

One file, or a folder holding them in one of the layouts the tools write:

- ``annotations/instances_<split>.json`` with the images in ``<split>/``, ``images/<split>/``,
  ``images/`` or the folder itself (COCO, datumaro, CVAT's COCO export);
- ``<split>/_annotations.coco.json`` with the images beside it (Roboflow);
- any other ``*.json`` COCO file, images under its folder or ``images/``.

The split comes from the file or folder name (``train2017`` -> train, ``val``/``valid`` ->
validation, ``test`` -> the held-out split); a single file has no split of its own.

``bbox`` is ``[x, y, width, height]`` in pixels with a top-left origin, so a box is
``(x, y, x + w, y + h)`` as for CUB and Ground Truth. ``class_key`` is the category id
(COCO's ids are arbitrary: 1..90 with gaps in COCO itself). A box's source is its file and its
1-based position in ``annotations`` (COCO files are often one line; the reasons name the ids).

Reported, not read: crowd regions (``iscrowd: 1``, a region of many objects, not a box),
annotations of an image id or category id the file does not list, images without
annotations (background images). A category no annotation uses that is another category's
``supercategory`` is the synthetic root Roboflow prepends; it is left out (``notes``) rather
than becoming a class without boxes. Duplicate ids and malformed sections are errors.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass
from typing import Any

from include import storage
from include.preprocess.issues import Issue
from include.preprocess.readers.base import (
    AnnotationFormatError,
    BoxRows,
    SourceData,
    annotated_size,
    files_under,
    inside,
    integer,
    load_json,
    number,
    split_of,
)

ROBOFLOW_FILE = "_annotations.coco.json"
INSTANCES_PREFIX = "instances_"


@dataclass(frozen=True)
class CocoFile:
    """One annotation file: where it is, the folders its ``file_name``s are relative to, its split."""

    rel: str  # relative to the data set root
    image_bases: tuple[str, ...]
    split: str | None


def is_coco(document: object) -> bool:
    """A COCO detection document: an object with ``images`` and ``annotations`` lists."""
    return isinstance(document, dict) and isinstance(document.get("images"), list) and "annotations" in document


def _layout(root: str, files: set[str]) -> list[CocoFile]:
    """The annotation files of a data set folder and their image folders."""
    found = []
    for rel in sorted(f for f in files if f.endswith(".json")):
        folder, name = posixpath.split(rel)
        if name == ROBOFLOW_FILE:
            found.append(CocoFile(rel, (folder,), split_of(posixpath.basename(folder))))
        elif name.startswith(INSTANCES_PREFIX):
            found.append(_instances_file(rel))
    if not found:
        candidates = sorted(f for f in files if f.endswith(".json") and f.count("/") <= 1)
        found = [
            CocoFile(rel, _bases(posixpath.dirname(rel)), None)
            for rel in candidates
            if is_coco(load_json(rel, storage.read_bytes(storage.join(root, rel))))
        ]
    if not found:
        raise FileNotFoundError(
            f"{root}: no COCO annotation file (annotations/instances_<split>.json, <split>/{ROBOFLOW_FILE} or a "
            "*.json with 'images' and 'annotations')"
        )
    splits = {f.split for f in found}
    if None in splits and len(found) > 1:  # files whose names give no split cannot be told apart
        raise AnnotationFormatError(
            found[0].rel, None, f"several COCO files and not all named after a split: {', '.join(f.rel for f in found)}"
        )
    return found


def _instances_file(rel: str) -> CocoFile:
    """``[annotations/]instances_<tag>.json``: images in ``<tag>/``, ``images/<tag>/``, ``images/`` or beside."""
    folder, name = posixpath.split(rel)
    tag = name[len(INSTANCES_PREFIX) : -len(".json")]
    parent = posixpath.dirname(folder) if posixpath.basename(folder) == "annotations" else folder
    return CocoFile(rel, _bases(parent, tag), split_of(tag))


def _bases(parent: str, tag: str | None = None) -> tuple[str, ...]:
    """Folders (relative to the root) an image's ``file_name`` may be relative to, most specific first."""

    def join(*parts: str) -> str:
        return "/".join(p for p in parts if p)

    named = [join(parent, tag), join(parent, "images", tag)] if tag else []
    return tuple(dict.fromkeys([*named, join(parent, "images"), parent]))


def _section(document: dict[str, Any], key: str, rel: str) -> list[Any]:
    value = document.get(key, [])
    if not isinstance(value, list):
        raise AnnotationFormatError(rel, None, f"'{key}' must be a list, got {type(value).__name__}")
    return value


def _records(section: list[Any], key: str, rel: str) -> dict[int, tuple[int, dict[str, Any]]]:
    """``{id: (1-based position, record)}`` of a section; repeated or non-integer ids are errors."""
    out: dict[int, tuple[int, dict[str, Any]]] = {}
    for k, record in enumerate(section, start=1):
        if not isinstance(record, dict):
            raise AnnotationFormatError(rel, k, f"{key}[{k - 1}] is not a JSON object")
        record_id = integer(record.get("id"), rel, k, f"{key}[{k - 1}] id")
        if record_id in out:
            raise AnnotationFormatError(
                rel, k, f"{key}[{k - 1}] repeats id {record_id} of {key}[{out[record_id][0] - 1}]"
            )
        out[record_id] = (k, record)
    return out


def _categories(section: list[Any], used: set[int], rel: str, notes: dict[str, int]) -> dict[int, str]:
    """Category id -> name, without a grouping root that no annotation uses (Roboflow's)."""
    records = _records(section, "categories", rel)
    parents = {str(r.get("supercategory")) for _, r in records.values() if r.get("supercategory")}
    out = {}
    for category_id, (k, record) in records.items():
        name = str(record.get("name", "")).strip()
        if not name:
            raise AnnotationFormatError(rel, k, f"categories[{k - 1}] (id {category_id}) has no name")
        if category_id not in used and name in parents:
            notes["grouping_categories_left_out"] = notes.get("grouping_categories_left_out", 0) + 1
            continue
        out[category_id] = name
    return out


def _image_path(bases: tuple[str, ...], file_name: str, files: set[str]) -> str | None:
    """The image a ``file_name`` names: under the first base folder that has it (else the first candidate)."""
    candidates = [c for c in (inside(base, file_name) for base in bases) if c]
    if not candidates:
        return None
    return next((c for c in candidates if c in files), candidates[0])


def _bbox(annotation: dict[str, Any], rel: str, k: int) -> tuple[float, float, float, float]:
    bbox = annotation.get("bbox")
    if not isinstance(bbox, list) or len(bbox) != 4:
        raise AnnotationFormatError(rel, k, f"annotations[{k - 1}] bbox must be [x, y, width, height], got {bbox!r}")
    x, y, w, h = (number(v, rel, k, f"annotations[{k - 1}] bbox") for v in bbox)
    return x, y, x + w, y + h


class _Reader:
    """State shared by the files of one data set: classes across files, images seen in each split."""

    def __init__(self, root: str, files: set[str]) -> None:
        self.root, self.files = root, files
        self.rows, self.issues, self.notes = BoxRows(), [], {}
        self.classes: dict[int, str] = {}
        self.image_split: dict[str, tuple[str | None, str]] = {}

    def read(self, coco: CocoFile) -> None:
        rel = coco.rel
        document = load_json(rel, storage.read_bytes(storage.join(self.root, rel)))
        if not is_coco(document):
            raise AnnotationFormatError(rel, None, "not a COCO detection file: it needs 'images' and 'annotations'")
        images = _records(_section(document, "images", rel), "images", rel)
        annotations = _section(document, "annotations", rel)
        used = {a.get("category_id") for a in annotations if isinstance(a, dict)}
        for category_id, name in _categories(_section(document, "categories", rel), used, rel, self.notes).items():
            if self.classes.setdefault(category_id, name) != name:
                raise AnnotationFormatError(
                    rel, None, f"category {category_id} is {name!r} here, {self.classes[category_id]!r} in another file"
                )
        paths = {image_id: self._image(coco, image_id, k, record) for image_id, (k, record) in images.items()}
        annotated: set[int] = set()
        _records(annotations, "annotations", rel)  # ids must be unique
        for k, annotation in enumerate(annotations, start=1):
            image_id = annotation.get("image_id")
            if image_id in paths:
                annotated.add(image_id)
            self._box(coco, k, annotation, images, paths)
        for image_id, (k, record) in images.items():
            if image_id not in annotated:
                self.issues.append(
                    Issue(
                        rel,
                        0,
                        str(record.get("file_name")),
                        "background_images",
                        f"images[{k - 1}] (id {image_id}) has no annotation: a background image",
                    )
                )

    def _image(self, coco: CocoFile, image_id: int, k: int, record: dict[str, Any]) -> str | None:
        file_name = record.get("file_name")
        if not isinstance(file_name, str) or not file_name.strip():
            raise AnnotationFormatError(coco.rel, k, f"images[{k - 1}] (id {image_id}) has no file_name")
        image = _image_path(coco.image_bases, file_name, self.files)
        if image is not None:
            split, where = self.image_split.setdefault(image, (coco.split, coco.rel))
            if split != coco.split:
                raise AnnotationFormatError(coco.rel, k, f"image {image} is also listed in {where} ({split})")
        return image

    def _box(self, coco: CocoFile, k: int, annotation: Any, images: dict, paths: dict) -> None:
        rel = coco.rel
        if not isinstance(annotation, dict):
            raise AnnotationFormatError(rel, k, f"annotations[{k - 1}] is not a JSON object")
        what = f"annotations[{k - 1}] (id {annotation.get('id')})"
        image_id, category_id = annotation.get("image_id"), annotation.get("category_id")
        name = self.classes.get(category_id) if isinstance(category_id, int) else None
        if image_id not in images:
            self.issues.append(
                Issue(
                    rel,
                    k,
                    f"image id {image_id}",
                    "image_files",
                    f"{what} refers to image id {image_id}, which 'images' does not list",
                    name,
                )
            )
            return
        record = images[image_id][1]
        file_name = str(record["file_name"])
        box = _bbox(annotation, rel, k)
        if name is None:
            self.issues.append(
                Issue(
                    rel,
                    k,
                    file_name,
                    "class_ids_known",
                    f"{what} has category_id {category_id!r}, which 'categories' does not list",
                )
            )
        elif annotation.get("iscrowd") in (1, True):
            self.issues.append(
                Issue(
                    rel,
                    k,
                    file_name,
                    "boxes_supported",
                    f"{what} is a crowd region (iscrowd 1), not one object's box",
                    name,
                )
            )
        elif paths[image_id] is None:
            self.issues.append(
                Issue(rel, k, file_name, "image_files", f"path outside data set root: {file_name}", name)
            )
        else:
            size = annotated_size(record.get("width"), record.get("height"))
            image = paths[image_id]
            self.rows.add(image, storage.join(self.root, image), size, category_id, name, box, coco.split, rel, k)


def read_coco(source_uri: str) -> SourceData:
    """Read a COCO data set: one annotation file, or a folder in one of the layouts above."""
    uri = storage.normalize(source_uri)
    if uri.endswith(".json"):
        if not storage.exists(uri):
            raise FileNotFoundError(f"COCO annotation file not found: {uri}")
        root, name = uri.rsplit("/", 1)
        if posixpath.basename(root) == "annotations":  # annotations/x.json: images beside the folder
            root, name = root.rsplit("/", 1)[0], f"annotations/{name}"
        files = files_under(root)
        instances = posixpath.basename(name).startswith(INSTANCES_PREFIX)
        layout = [_instances_file(name) if instances else CocoFile(name, _bases(posixpath.dirname(name)), None)]
    else:
        if not storage.isdir(uri):
            raise FileNotFoundError(f"COCO data set folder not found: {uri}")
        root, files = uri, files_under(uri)
        layout = _layout(root, files)
    reader = _Reader(root, files)
    for coco in layout:
        reader.read(coco)
    return SourceData(
        root=root, boxes=reader.rows.frame(), classes=reader.classes, issues=reader.issues, notes=reader.notes
    )
