"""Which format a data set is in, from its layout: ``dataset.format: auto`` (or no format given).

Each format is recognised by what its tools write, and the evidence is the file that matched:

============  ===============================================================================
cub           ``images.txt`` and ``bounding_boxes.txt`` (in the folder or one sub-folder)
voc           ``Annotations/*.xml`` whose root is ``<annotation>``
cvat          ``annotations.xml`` whose root is ``<annotations>`` (CVAT for images 1.1)
yolo          a YAML with ``names`` (``data.yaml``)
coco          a JSON object with ``images``, ``annotations`` and ``categories`` (also
              ``annotations/*.json``, ``<split>/_annotations.coco.json``)
jumpstart     a JSON object with ``images`` and ``annotations`` but no ``categories`` (JumpStart's
              channel: corner boxes, which read as COCO would be wrong)
labelstudio   a JSON list of tasks (``data`` + ``annotations``/``predictions``, or JSON-MIN)
imagejson     ``train_annotation/``, or JSON objects with ``file`` and ``annotations``
groundtruth   ``*.manifest`` / ``*.jsonl`` files
============  ===============================================================================

A file given as the source is judged by its content. More than one match, or none, is an
error that lists what was found, so the user can name the format.
"""

from __future__ import annotations

import posixpath
from collections import Counter

from lxml import etree

from include import storage
from include.preprocess.readers.base import XML_PARSER, files_under, load_json
from include.preprocess.readers.coco import ROBOFLOW_FILE, is_coco
from include.preprocess.readers.cvat import ANNOTATIONS_XML, is_cvat
from include.preprocess.readers.labelstudio import is_labelstudio

AUTO = "auto"
MAX_DEPTH = 2  # folders below the source that are searched for annotation files
MAX_JSON_FILES = 64  # JSON files read, top-level and annotations/ first (per-image JSONs need only a few)
FULL_PARSE_BYTES = 16 << 20  # larger JSON files are judged by their first HEAD_BYTES
HEAD_BYTES = 64 << 10


class FormatDetectionError(ValueError):
    """The layout matches no format, or several; the message says what was found."""


def _json_kind(uri: str) -> str | None:
    """coco, jumpstart, labelstudio or imagejson from a JSON file's content (a large file from its first bytes)."""
    if storage.size(uri) > FULL_PARSE_BYTES:
        with storage.open_read(uri) as fh:
            head = fh.read(HEAD_BYTES).decode("utf-8", errors="replace").lstrip()
        if head.startswith("{") and '"images"' in head:
            return "coco"
        return "labelstudio" if head.startswith("[") and '"data"' in head else None
    try:
        document = load_json(uri, storage.read_bytes(uri))
    except ValueError:
        return None
    if is_coco(document):
        return "coco" if "categories" in document else "jumpstart"
    if is_labelstudio(document):
        return "labelstudio"
    if isinstance(document, dict) and isinstance(document.get("file"), str) and "annotations" in document:
        return "imagejson"
    return None


def _xml_root(uri: str) -> etree._Element | None:
    try:
        return etree.fromstring(storage.read_bytes(uri), XML_PARSER)
    except etree.XMLSyntaxError:
        return None


def _file_kind(uri: str) -> str | None:
    """The format of a single annotation file given as the source."""
    name = uri.rsplit("/", 1)[-1].lower()
    if name.endswith((".manifest", ".jsonl")):
        return "groundtruth"
    if name.endswith((".yaml", ".yml")):
        return "yolo"
    if name.endswith(".json"):
        return _json_kind(uri)
    if name.endswith(".xml"):
        root = _xml_root(uri)
        return "cvat" if root is not None and is_cvat(root) else None
    return None


def _matches(root: str, files: set[str]) -> dict[str, str]:
    """``{format: evidence file}`` for every format the folder's layout matches."""
    shallow = sorted(f for f in files if f.count("/") <= MAX_DEPTH)
    found: dict[str, str] = {}

    def first(fmt: str, candidates: list[str], accept=lambda rel: True) -> None:
        for rel in candidates:
            if fmt not in found and accept(rel):
                found[fmt] = rel

    first(
        "cub",
        [
            f
            for f in shallow
            if posixpath.basename(f) == "bounding_boxes.txt"
            and posixpath.join(posixpath.dirname(f), "images.txt").lstrip("/") in files
        ],
    )
    voc = [f for f in shallow if posixpath.basename(posixpath.dirname(f)) == "Annotations" and f.endswith(".xml")]
    first("voc", voc[:1], lambda rel: getattr(_xml_root(storage.join(root, rel)), "tag", None) == "annotation")
    cvat = [f for f in shallow if posixpath.basename(f) == ANNOTATIONS_XML]
    first("cvat", cvat, lambda rel: (r := _xml_root(storage.join(root, rel))) is not None and is_cvat(r))
    yamls = [f for f in shallow if f.endswith((".yaml", ".yml")) and f.count("/") <= 1]
    first("yolo", yamls, lambda rel: _yaml_has_names(storage.join(root, rel)))
    first("groundtruth", [f for f in shallow if f.endswith((".manifest", ".jsonl"))])
    first("imagejson", [f for f in shallow if f.startswith("train_annotation/") and f.endswith(".json")][:1])
    jsons = sorted((f for f in shallow if f.endswith(".json")), key=lambda f: (f.count("/"), "annotations" not in f, f))
    for rel in jsons[:MAX_JSON_FILES]:
        if "coco" in found and "labelstudio" in found and "imagejson" in found:
            break
        if posixpath.basename(rel) == ROBOFLOW_FILE:
            found.setdefault("coco", rel)
            continue
        kind = _json_kind(storage.join(root, rel))
        if kind and kind not in found:
            found[kind] = rel
    return found


def _yaml_has_names(uri: str) -> bool:
    import yaml

    try:
        data = yaml.safe_load(storage.read_text(uri))
    except (yaml.YAMLError, UnicodeDecodeError):
        return False
    return isinstance(data, dict) and "names" in data


def _seen(files: set[str]) -> str:
    """What a folder holds, in a line: file counts by suffix and its top-level folders."""
    suffixes = Counter(posixpath.splitext(f)[1].lower() or "(none)" for f in files)
    folders = sorted({f.split("/", 1)[0] for f in files if "/" in f})
    counts = ", ".join(f"{n} {s}" for s, n in sorted(suffixes.items(), key=lambda p: (-p[1], p[0]))[:8]) or "no files"
    return f"{counts}; folders: {', '.join(folders[:10]) or 'none'}"


def detect_format(source_uri: str) -> tuple[str, str]:
    """``(format, evidence)`` for the data set at ``source_uri`` (a folder or an annotation file).

    Raises :class:`FormatDetectionError` when nothing or more than one format matches, and
    ``FileNotFoundError`` when the source does not exist.
    """
    uri = storage.normalize(source_uri)
    if not storage.isdir(uri):
        if not storage.exists(uri):
            raise FileNotFoundError(f"data set not found: {uri}")
        kind = _file_kind(uri)
        if kind is None:
            raise FormatDetectionError(f"{uri}: not an annotation file of a known format; name the format")
        return kind, uri.rsplit("/", 1)[-1]
    files = files_under(uri)
    found = _matches(uri, files)
    if len(found) == 1:
        return next(iter(found.items()))
    if found:
        listed = "; ".join(f"{fmt} ({rel})" for fmt, rel in sorted(found.items()))
        raise FormatDetectionError(f"{uri}: the layout matches several formats: {listed}; name the format")
    raise FormatDetectionError(f"{uri}: no known annotation layout found ({_seen(files)}); name the format")
