"""Pascal VOC: ``Annotations/<id>.xml``, ``JPEGImages/<id>.<suffix>``, ``ImageSets/Main/{train,val,test}.txt``.

VOC counts pixels from 1, the table from 0 (:mod:`include.preprocess.readers.voc`), so every
coordinate gets 1 added back; fractional coordinates are written as they are (VOC readers
parse them as numbers). An image id is its table path without the suffix, folders joined with
``__`` (VOC ids are flat). A flagged box carries ``<attributes><attribute><name>quality_issue``
(datumaro's, and so CVAT's, VOC import reads it; LabelImg ignores it).
"""

from __future__ import annotations

import posixpath
from typing import Any

from lxml import etree

from include import storage
from include.preprocess.readers.voc import VOC_ORIGIN
from include.preprocess.writers.base import SPLIT_FOLDERS, ExportData, box_text, flag_of, images_of, write_files


def image_id(image: str) -> str:
    return posixpath.splitext(image)[0].replace("/", "__")


def _annotation(image: str, rows: list[Any]) -> bytes:
    first = rows[0]
    root = etree.Element("annotation")
    etree.SubElement(root, "folder").text = "JPEGImages"
    etree.SubElement(root, "filename").text = image_id(image) + posixpath.splitext(image)[1]
    size = etree.SubElement(root, "size")
    for tag, value in (("width", first.width), ("height", first.height), ("depth", first.depth)):
        etree.SubElement(size, tag).text = str(int(value))
    for r in rows:
        obj = etree.SubElement(root, "object")
        etree.SubElement(obj, "name").text = r.class_name
        for tag in ("pose", "truncated", "difficult"):
            etree.SubElement(obj, tag).text = "Unspecified" if tag == "pose" else "0"
        box = etree.SubElement(obj, "bndbox")
        for tag in ("xmin", "ymin", "xmax", "ymax"):
            etree.SubElement(box, tag).text = box_text(getattr(r, tag) + VOC_ORIGIN)
        if flag_of(r.quality_issue):
            attribute = etree.SubElement(etree.SubElement(obj, "attributes"), "attribute")
            etree.SubElement(attribute, "name").text = "quality_issue"
            etree.SubElement(attribute, "value").text = r.quality_issue
    return etree.tostring(root, pretty_print=True, xml_declaration=False, encoding="utf-8")


def write_voc(data: ExportData, output_uri: str) -> tuple[dict[str, str], list[str]]:
    targets, annotations, lists = {}, {}, {}
    for image, rows in images_of(data.table):
        first = rows[0]
        ident = image_id(image)
        annotations[storage.join(output_uri, "Annotations", f"{ident}.xml")] = _annotation(image, rows)
        targets[first.image_uri] = storage.join(output_uri, "JPEGImages", ident + posixpath.splitext(image)[1])
        lists.setdefault(SPLIT_FOLDERS.get(first.split, first.split), []).append(ident)
    for name, ids in sorted(lists.items()):
        annotations[storage.join(output_uri, "ImageSets", "Main", f"{name}.txt")] = "".join(
            f"{i}\n" for i in ids
        ).encode()
    return targets, write_files(annotations)
