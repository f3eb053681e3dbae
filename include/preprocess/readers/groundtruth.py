"""Reader (and line writer) for SageMaker Ground Truth bounding-box output manifests (JSON Lines).

Each line holds ``source-ref`` (the image), the label attribute
(``{"image_size": [...], "annotations": [{"class_id", "left", "top", "width", "height"}]}``)
and ``<label attribute>-metadata`` with the ``class-map``. The label attribute is found
automatically (the key whose ``-metadata`` twin has type ``groundtruth/object-detection``,
or whose value has ``image_size`` and ``annotations``) unless it is named.

The source is a manifest file, or a folder of ``*.manifest`` / ``*.jsonl`` files; when those
are named after splits (``train``, ``validation``/``val``, ``test``) they give the split.
``source-ref`` may be an ``s3://`` or ``file://`` URI or an absolute local path (taken as
written, as Ground Truth writes full URIs), or a path relative to the manifest's folder
(which must not climb out of it). ``image`` is the path relative to the deepest folder
holding the manifest folder and every image. Each box's source is its manifest line.
"""

from __future__ import annotations

import json
import posixpath
from typing import Any

from include import storage
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
    split_of,
)

OBJECT_DETECTION = "groundtruth/object-detection"
MANIFEST_SUFFIXES = (".manifest", ".jsonl")


def groundtruth_line(
    source_ref: str,
    size: tuple[int, int, int],
    objects: list[tuple[int, float, float, float, float]],
    class_map: dict[int, str],
    label_attribute: str,
    job_name: str,
    creation_date: str,
    confidences: list[float] | None = None,
    human_annotated: bool = True,
) -> str:
    """One output-manifest line; ``objects`` are ``(class_id, left, top, width, height)`` in pixels.

    ``confidences``: one per object (default 1.0, a person's box); a model's pre-labels pass their scores and
    ``human_annotated=False``.
    """
    if confidences is not None and len(confidences) != len(objects):
        raise ValueError(f"{len(confidences)} confidences for {len(objects)} objects")
    record = {
        "source-ref": source_ref,
        label_attribute: ltwh_label(size, objects),
        f"{label_attribute}-metadata": {
            "objects": [{"confidence": c} for c in (confidences if confidences is not None else [1.0] * len(objects))],
            "class-map": {str(k): v for k, v in sorted(class_map.items())},
            "type": OBJECT_DETECTION,
            "human-annotated": "yes" if human_annotated else "no",
            "creation-date": creation_date,
            "job-name": job_name,
        },
    }
    return json.dumps(record)


def _manifests(source_uri: str) -> tuple[str, list[str], dict[str, str]]:
    """(root folder, manifest URIs, {manifest URI: split}) for a manifest file or a folder of them."""
    uri = storage.normalize(source_uri)
    if not storage.exists(uri):
        raise FileNotFoundError(f"Ground Truth manifest not found: {uri}")
    if not storage.isdir(uri):
        return uri.rsplit("/", 1)[0], [uri], {}
    manifests = [u for u in storage.listdir(uri) if u.endswith(MANIFEST_SUFFIXES)]
    if not manifests:
        raise FileNotFoundError(f"{uri}: no *.manifest or *.jsonl file in the folder")
    stems = {u: posixpath.splitext(posixpath.basename(u))[0].lower() for u in manifests}
    named = {u: split_of(s) for u, s in stems.items() if split_of(s)}
    if named and len(named) != len(manifests):
        others = sorted(posixpath.basename(u) for u in manifests if u not in named)
        raise ValueError(f"{uri}: manifests named after splits next to others ({', '.join(others)}); keep one kind")
    return uri, manifests, named


def _records(uri: str, name: str) -> list[tuple[int, dict[str, Any]]]:
    out = []
    for line, text in enumerate(storage.read_text(uri).splitlines(), start=1):
        if not text.strip():
            continue
        try:
            record = json.loads(text)
        except json.JSONDecodeError as exc:
            raise AnnotationFormatError(name, line, f"not valid JSON: {exc.msg} at column {exc.colno}") from None
        if not isinstance(record, dict) or not isinstance(record.get("source-ref"), str):
            raise AnnotationFormatError(name, line, "a manifest line needs a 'source-ref' string")
        out.append((line, record))
    return out


def find_label_attribute(records: list[dict[str, Any]]) -> str:
    """The one bounding-box label attribute the records use; ``ValueError`` when none or several."""
    found = set()
    for record in records:
        for key, value in record.items():
            meta = record.get(f"{key}-metadata")
            typed = isinstance(meta, dict) and meta.get("type") == OBJECT_DETECTION
            if isinstance(value, dict) and (typed or {"image_size", "annotations"} <= value.keys()):
                found.add(key)
    if len(found) != 1:
        what = f"several ({', '.join(sorted(found))})" if found else "none"
        raise ValueError(f"bounding-box label attribute: found {what}; name it with label_attribute")
    return found.pop()


def _class_map(records: list[tuple[str, int, dict[str, Any], str | None]], attribute: str) -> dict[int, str]:
    """The union of the records' class-maps; a class id named two ways is an error."""
    classes: dict[int, str] = {}
    for name, line, record, _ in records:
        meta = record.get(f"{attribute}-metadata") or {}
        for key, value in (meta.get("class-map") or {}).items():
            declare_class(classes, key, value, name, line)
    return classes


def _image_uri(ref: str, folder: str) -> str | None:
    """The image URI of a ``source-ref``; None when a relative path climbs out of the manifest folder."""
    if "://" in ref or ref.startswith("/"):
        return storage.normalize(ref)
    rel = inside("", ref)
    return storage.join(folder, rel) if rel else None


def _common_folder(uris: list[str]) -> str:
    """The deepest folder URI containing every URI in ``uris`` (folders end without '/')."""
    parts = [u.split("/") for u in uris]
    common: list[str] = []
    for column in zip(*parts, strict=False):
        if len(set(column)) != 1:
            break
        common.append(column[0])
    return "/".join(common)


def read_groundtruth(source_uri: str, label_attribute: str | None = None) -> SourceData:
    """Read a Ground Truth bounding-box output manifest (file or folder of manifests)."""
    root, manifests, splits = _manifests(source_uri)
    records = []
    for uri in manifests:
        name = storage.relative(uri, root)
        records += [(name, line, record, splits.get(uri)) for line, record in _records(uri, name)]
    attribute = label_attribute or find_label_attribute([record for _, _, record, _ in records])
    classes = _class_map(records, attribute)
    issues: list[Issue] = []
    entries = []  # (image uri, manifest name, line, record, split)
    for name, line, record, split in records:
        ref = record["source-ref"]
        label = record.get(attribute)
        if not isinstance(label, dict) or not label.get("annotations"):
            issues.append(Issue(name, line, ref, "images_have_boxes", f"no boxes under label attribute {attribute!r}"))
            continue
        image_uri = _image_uri(ref, root)
        if image_uri is None:
            issues.append(Issue(name, line, ref, "image_files", f"path outside data set root: {ref}"))
            continue
        entries.append((image_uri, name, line, record, split))

    image_root = _common_folder([f"{root}/"] + [uri for uri, *_ in entries])
    rows = BoxRows()
    for image_uri, name, line, record, split in entries:
        label = record[attribute]
        size = ltwh_label_size(label)
        image = image_uri[len(image_root) :].lstrip("/")
        for k, ann in enumerate(label["annotations"], start=1):
            box = ltwh_box(ann, name, line, f"annotation {k}")
            class_id = integer(ann.get("class_id"), name, line, f"annotation {k} class_id")
            if class_id not in classes:
                issues.append(
                    Issue(
                        name,
                        line,
                        record["source-ref"],
                        "class_ids_known",
                        f"annotation {k}: class_id {class_id} is not in the class-map",
                    )
                )
                continue
            rows.add(image, image_uri, size, class_id, classes[class_id], box, split, name, line)
    return SourceData(root=root, boxes=rows.frame(), classes=classes, issues=issues)
