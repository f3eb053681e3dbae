"""CVAT for images 1.1: ``annotations.xml`` with the images in ``images/<Subset>/``, and ``labels.json``.

Coordinates are written with as many digits as they have (CVAT writes two decimals and reads
any). Every label declares a text attribute ``quality_issue`` and a flagged box carries it:
CVAT's importer keeps only attributes the label declares, and does not create labels from the
file, so ``labels.json`` is the label set to paste into the project's Raw label editor first.
Subsets: Train, Validation, Test (a project export's).
"""

from __future__ import annotations

import json

from lxml import etree

from include import storage
from include.preprocess.writers.base import ExportData, box_text, flag_of, images_of

SUBSETS = {"train": "Train", "validation": "Validation", "test": "Test"}
ATTRIBUTE = "quality_issue"
LABELS_JSON = "labels.json"


def cvat_labels(classes: dict[int, str]) -> list[dict]:
    """The project's labels for CVAT's Raw editor, each with the ``quality_issue`` text attribute."""
    attribute = {"name": ATTRIBUTE, "mutable": False, "input_type": "text", "default_value": "", "values": [""]}
    return [{"name": name, "type": "rectangle", "attributes": [attribute]} for _, name in sorted(classes.items())]


def _meta(root: etree._Element, classes: dict[int, str]) -> None:
    task = etree.SubElement(etree.SubElement(root, "meta"), "task")
    etree.SubElement(task, "name").text = "detection-pipeline export"
    labels = etree.SubElement(task, "labels")
    for _, name in sorted(classes.items()):
        label = etree.SubElement(labels, "label")
        etree.SubElement(label, "name").text = name
        etree.SubElement(label, "type").text = "rectangle"
        attribute = etree.SubElement(etree.SubElement(label, "attributes"), "attribute")
        for tag, text in (
            ("name", ATTRIBUTE),
            ("mutable", "False"),
            ("input_type", "text"),
            ("default_value", ""),
            ("values", ""),
        ):
            etree.SubElement(attribute, tag).text = text


def write_cvat(data: ExportData, output_uri: str) -> tuple[dict, list]:
    root = etree.Element("annotations")
    etree.SubElement(root, "version").text = "1.1"
    _meta(root, data.classes)
    targets = {}
    for k, (path, rows) in enumerate(images_of(data.table)):
        first = rows[0]
        subset = SUBSETS.get(first.split, first.split)
        element = etree.SubElement(
            root,
            "image",
            id=str(k),
            name=path,
            subset=subset,
            width=str(int(first.width)),
            height=str(int(first.height)),
        )
        for r in rows:
            box = etree.SubElement(
                element,
                "box",
                label=r.class_name,
                source="manual",
                occluded="0",
                xtl=box_text(r.xmin),
                ytl=box_text(r.ymin),
                xbr=box_text(r.xmax),
                ybr=box_text(r.ymax),
                z_order="0",
            )
            if flag_of(r.quality_issue):
                etree.SubElement(box, "attribute", name=ATTRIBUTE).text = r.quality_issue
        targets[first.image_uri] = storage.join(output_uri, "images", subset, path)
    xml = etree.tostring(root, pretty_print=True, xml_declaration=True, encoding="utf-8")
    files = [
        storage.write_bytes(storage.join(output_uri, "annotations.xml"), xml),
        storage.write_text(storage.join(output_uri, LABELS_JSON), json.dumps(cvat_labels(data.classes), indent=1)),
    ]
    return targets, files
