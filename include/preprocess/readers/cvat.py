"""Reader for CVAT for images 1.1 XML (``annotations.xml`` of a task or project export).

::

    <annotations><version>1.1</version>
      <meta><task><labels><label><name>RBC</name>...</label></labels></task></meta>   (or <project>)
      <image id="0" name="BloodImage_00000.jpg" subset="Train" width="640" height="480">
        <box label="WBC" occluded="0" xtl="259.00" ytl="176.00" xbr="490.00" ybr="375.00" z_order="0"/>
      </image>
    </annotations>

Boxes are pixel corners with a top-left origin (CVAT writes two decimals). The classes are
the labels the meta declares, in their order (``class_key`` 0..n-1); a box of an undeclared
label is reported. ``subset`` (project exports) gives the split: Train, Validation, Test;
``default`` or none means no split. Images are looked up as CVAT's zip lays them out:
``images/<subset>/<name>``, ``images/<name>``, then ``<name>`` beside the XML. A box's source
is its line in the XML.

Without declared labels (a hand-made file) the classes are the box labels, sorted.
Reported: rotated boxes and other shapes (polygon, polyline, points, mask, ellipse, cuboid,
skeleton), images without shapes. ``<track>`` elements mean the "CVAT for video" format, which
is an error naming the export to choose instead.
"""

from __future__ import annotations

from lxml import etree

from include import storage
from include.preprocess.issues import Issue
from include.preprocess.readers.base import (
    XML_PARSER,
    AnnotationFormatError,
    BoxRows,
    SourceData,
    annotated_size,
    files_under,
    inside,
    number,
    split_of,
)

ANNOTATIONS_XML = "annotations.xml"
OTHER_SHAPES = ("polygon", "polyline", "points", "mask", "ellipse", "cuboid", "skeleton")


def is_cvat(root: etree._Element) -> bool:
    """A CVAT for images document: an ``<annotations>`` root with ``<meta>`` or ``<image>`` elements."""
    return root.tag == "annotations" and (root.find("meta") is not None or root.find("image") is not None)


def _declared_labels(tree: etree._Element) -> list[str]:
    """Label names the meta declares (task or project), in order, without repeats."""
    names = [(e.findtext("name") or "").strip() for e in tree.iterfind("meta//labels/label")]
    return list(dict.fromkeys(n for n in names if n))


def _image_path(name: str, subset: str | None, files: set[str]) -> str | None:
    bases = ([f"images/{subset}"] if subset else []) + ["images", ""]
    candidates = [c for c in (inside(base, name) for base in bases) if c]
    if not candidates:
        return None
    return next((c for c in candidates if c in files), candidates[0])


def _box(element: etree._Element, rel: str) -> tuple[float, float, float, float]:
    line = element.sourceline
    return tuple(number(element.get(k), rel, line, k) for k in ("xtl", "ytl", "xbr", "ybr"))  # type: ignore[return-value]


def read_cvat(source_uri: str) -> SourceData:
    """Read a CVAT for images 1.1 export: its ``annotations.xml``, or the folder holding it."""
    uri = storage.normalize(source_uri)
    if not uri.endswith(".xml"):
        if not storage.isdir(uri):
            raise FileNotFoundError(f"CVAT export folder not found: {uri}")
        uri = storage.join(uri, ANNOTATIONS_XML)
    if not storage.exists(uri):
        raise FileNotFoundError(f"CVAT export not found: {uri} (a CVAT for images 1.1 export has {ANNOTATIONS_XML})")
    root, rel = uri.rsplit("/", 1)
    try:
        tree = etree.fromstring(storage.read_bytes(uri), XML_PARSER)
    except etree.XMLSyntaxError as exc:
        raise AnnotationFormatError(rel, exc.lineno or 0, f"not well-formed XML: {exc.msg}") from None
    if not is_cvat(tree):
        raise AnnotationFormatError(rel, tree.sourceline, f"<{tree.tag}> is not CVAT for images (<annotations>)")
    track = tree.find("track")
    if track is not None:
        raise AnnotationFormatError(
            rel, track.sourceline, "<track> is CVAT for video; export the task as 'CVAT for images 1.1'"
        )
    declared = _declared_labels(tree) or sorted(
        {(e.get("label") or "").strip() for e in tree.iterfind("image/*")} - {""}
    )
    files = files_under(root)
    rows, issues = BoxRows(), []
    classes = dict(enumerate(declared))
    keys = {name: k for k, name in classes.items()}
    for element in tree.iterfind("image"):
        name = element.get("name") or ""
        if not name:
            raise AnnotationFormatError(rel, element.sourceline, "<image> has no name")
        subset = element.get("subset")
        split = split_of(subset or "")
        image = _image_path(name, subset, files)
        size = annotated_size(element.get("width"), element.get("height"))
        shapes = [e for e in element if e.tag == "box" or e.tag in OTHER_SHAPES]
        if not shapes:
            issues.append(Issue(rel, element.sourceline, name, "images_have_boxes", "image has no shape"))
        for shape in shapes:
            line, label = shape.sourceline, (shape.get("label") or "").strip()
            what = f"<{shape.tag} label={label!r}>"
            known = label if label in keys else None
            if known is None:
                issues.append(Issue(rel, line, name, "class_ids_known", f"{what}: label not declared in the meta"))
            elif shape.tag != "box":
                issues.append(Issue(rel, line, name, "boxes_supported", f"{what} is a {shape.tag}, not a box", label))
            elif number(shape.get("rotation") or 0, rel, line, "rotation") % 360:
                reason = f"{what} is rotated by {shape.get('rotation')} degrees; the detector needs axis-aligned boxes"
                issues.append(Issue(rel, line, name, "boxes_supported", reason, label))
            elif image is None:
                issues.append(Issue(rel, line, name, "image_files", f"path outside data set root: {name}", label))
            else:
                box = _box(shape, rel)
                rows.add(image, storage.join(root, image), size, keys[label], label, box, split, rel, line)
    return SourceData(root=root, boxes=rows.frame(), classes=classes, issues=issues)
