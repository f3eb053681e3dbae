"""Reader for Pascal VOC XML annotations (``Annotations/*.xml``).

Split: when ``ImageSets/Main`` has the generic lists, ``train.txt`` (or ``trainval.txt``
minus ``val.txt`` when there is no ``train.txt``) is train, ``val.txt`` validation and
``test.txt`` the held-out test split (an id in two lists is an error naming both); only listed
images are read (annotation files no list names are counted in
``notes["unlisted_annotations"]``, as the VOC devkit reads only listed ids). Without the
lists the data set has no split of its own.

Images are looked up next to the XML, then in ``JPEGImages/``, by the ``<filename>`` tag
(``<xml stem>.jpg`` when the tag is missing).

Box convention: VOC writes 1-based pixel indices (the top-left pixel of an image is 1,1).
We subtract 1 from all four coordinates, as GluonCV's ``VOCDetection`` and py-faster-rcnn
do, to get the 0-based pixel coordinates every other reader gives (CUB, Ground Truth and
image+JSON count from 0). The annotated width ``xmax - xmin`` is unchanged, so a box drawn
as a single point stays zero-area and a box touching the right edge of a W-wide image ends
at W - 1. Exporting back to VOC adds the 1 again.
"""

from __future__ import annotations

import posixpath
from concurrent.futures import ThreadPoolExecutor

from lxml import etree

from include import storage
from include.preprocess.issues import Issue
from include.preprocess.readers.base import (
    AnnotationFormatError,
    BoxRows,
    SourceData,
    annotated_size,
    dataset_root,
    inside,
    number,
)

ANNOTATIONS = "Annotations"
IMAGES = "JPEGImages"
LISTS = "ImageSets/Main"
VOC_ORIGIN = 1.0  # VOC pixel indices start at 1

#: Untrusted XML: no entity expansion, no network, no size beyond libxml2's default limits.
_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, remove_comments=True)

#: (annotation file, filename tag, annotated size, [(line of the <object>, name, box)])
Parsed = tuple[str, str, tuple[float, float, float], list[tuple[int, str, tuple[float, float, float, float]]]]


def _split_lists(root: str, files: set[str]) -> dict[str, tuple[str, str, int]]:
    """``{image id: (split, list file, line)}`` from ``ImageSets/Main``; empty when there are no lists."""
    ids: dict[str, dict[str, tuple[str, int]]] = {}
    for name in ("train", "val", "trainval", "test"):
        rel = f"{LISTS}/{name}.txt"
        if rel in files:
            lines = storage.read_text(storage.join(root, rel)).splitlines()
            ids[name] = {t.split()[0]: (rel, n) for n, t in enumerate(lines, start=1) if t.strip()}
    validation = ids.get("val", {})
    if "train" in ids:
        train = ids["train"]
    else:
        train = {k: v for k, v in ids.get("trainval", {}).items() if k not in validation}
    out: dict[str, tuple[str, str, int]] = {}
    for split, listed in (("test", ids.get("test", {})), ("validation", validation), ("train", train)):
        for image_id, (rel, line) in listed.items():
            if image_id in out:
                other = out[image_id]
                raise AnnotationFormatError(rel, line, f"{image_id} is also listed in {other[1]} ({other[0]})")
            out[image_id] = (split, rel, line)
    return out


def _parse(rel: str, data: bytes) -> Parsed:
    """Parse one VOC XML file into its filename, size and objects (boxes shifted to 0-based).

    Objects are named by the line their ``<object>`` tag starts on (lxml keeps source lines).
    """
    try:
        tree = etree.fromstring(data, _PARSER)
    except etree.XMLSyntaxError as exc:
        raise AnnotationFormatError(rel, exc.lineno or 0, f"not well-formed XML: {exc.msg}") from None
    stem = posixpath.splitext(posixpath.basename(rel))[0]
    filename = (tree.findtext("filename") or "").strip() or f"{stem}.jpg"
    size = annotated_size(tree.findtext("size/width"), tree.findtext("size/height"), tree.findtext("size/depth"))
    objects = []
    for obj in tree.findall("object"):
        line = obj.sourceline
        name = (obj.findtext("name") or "").strip()
        if not name:
            raise AnnotationFormatError(rel, line, "object has no <name>")
        bndbox = obj.find("bndbox")
        if bndbox is None:
            raise AnnotationFormatError(rel, line, "object has no <bndbox>")
        box = tuple(_coordinate(bndbox, tag, rel, line) for tag in ("xmin", "ymin", "xmax", "ymax"))
        objects.append((line, name, box))
    return rel, filename, size, objects


def _coordinate(bndbox: etree._Element, tag: str, rel: str, object_line: int) -> float:
    """One ``<bndbox>`` coordinate, 0-based; a bad value is reported at its own line."""
    element = bndbox.find(tag)
    line = object_line if element is None else element.sourceline
    return number(bndbox.findtext(tag), rel, line, f"<{tag}>") - VOC_ORIGIN


def _image_path(rel: str, filename: str, files: set[str]) -> str | None:
    """The image of annotation ``rel``: next to it, else in JPEGImages/ (where a missing one is expected)."""
    candidates = [c for c in (inside(posixpath.dirname(rel), filename), inside(IMAGES, filename)) if c]
    if not candidates:
        return None
    return next((c for c in candidates if c in files), candidates[-1])


def read_voc(source_uri: str, workers: int = 8) -> SourceData:
    """Read a Pascal VOC data set (the folder holding ``Annotations/``, or its parent)."""
    root = dataset_root(source_uri, ANNOTATIONS)
    files = {storage.relative(u, root) for u in storage.walk_files(root)}
    xmls = sorted(f for f in files if f.startswith(f"{ANNOTATIONS}/") and f.endswith(".xml"))
    lists = _split_lists(root, files)
    issues: list[Issue] = []
    notes: dict[str, int] = {}
    if lists:
        wanted = {f"{ANNOTATIONS}/{image_id}.xml": image_id for image_id in lists}
        notes["unlisted_annotations"] = len(set(xmls) - set(wanted))
        for rel, image_id in sorted(wanted.items()):
            if rel not in files:
                _, list_file, line = lists[image_id]
                issues.append(Issue(list_file, line, image_id, "annotation_files", f"missing annotation file {rel}"))
        xmls = [rel for rel in sorted(wanted) if rel in files]
    with ThreadPoolExecutor(workers) as pool:
        contents = pool.map(lambda rel: storage.read_bytes(storage.join(root, rel)), xmls)
        parsed = [_parse(rel, data) for rel, data in zip(xmls, contents, strict=True)]

    names = sorted({name for *_, objects in parsed for _, name, _ in objects})
    keys = {name: k for k, name in enumerate(names)}
    rows = BoxRows()
    for rel, filename, size, objects in parsed:
        split = lists[posixpath.splitext(posixpath.basename(rel))[0]][0] if lists else None
        image = _image_path(rel, filename, files)
        if not objects:
            issues.append(Issue(rel, 0, filename, "images_have_boxes", "annotation has no <object>"))
        for line, name, box in objects:
            if image is None:
                outside = f"path outside data set root: {filename}"
                issues.append(Issue(rel, line, filename, "image_files", outside, name))
                continue
            rows.add(image, storage.join(root, image), size, keys[name], name, box, split, rel, line)
    return SourceData(
        root=root,
        boxes=rows.frame(),
        classes=dict(enumerate(names)),
        issues=issues,
        notes=notes,
        coordinate_origin=VOC_ORIGIN,
    )
