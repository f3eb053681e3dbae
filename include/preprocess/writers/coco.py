"""COCO detection JSON: ``annotations/instances_<split>.json`` with the images in ``images/<split>/``.

Image, annotation and category ids count from 1 (an annotation id 0 silently breaks pycocotools'
COCOeval, which uses 0 for "unmatched"; CVAT rejects category id 0). ``bbox`` is
``[x, y, width, height]`` in pixels, ``area`` its area, ``iscrowd`` 0. A flagged box carries
``"attributes": {"quality_issue": ..., "quarantined": ...}``, which datumaro (and so CVAT's COCO
import) reads as box attributes; pycocotools ignores it.
"""

from __future__ import annotations

import json
from typing import Any

from include import storage
from include.preprocess.writers.base import SPLIT_FOLDERS, ExportData, flag_of, images_of


def coco_document(data: ExportData, split: str) -> tuple[dict[str, Any], dict[str, str]]:
    """One split's COCO document and ``{image URI: path under images/<split>/}``."""
    rows = data.table[data.table["split"] == split]
    images, annotations, paths = [], [], {}
    for image_id, (image, group) in enumerate(images_of(rows), start=1):
        first = group[0]
        images.append({"id": image_id, "file_name": image, "width": int(first.width), "height": int(first.height)})
        paths[first.image_uri] = image
        for r in group:
            annotation = coco_annotation(len(annotations) + 1, image_id, r.class_id, (r.xmin, r.ymin, r.xmax, r.ymax))
            if flag_of(r.quality_issue):
                annotation["attributes"] = {"quality_issue": r.quality_issue, "quarantined": bool(r.quarantined)}
            annotations.append(annotation)
    return coco_instances("detection-pipeline export", images, annotations, data.classes), paths


def coco_annotation(
    annotation_id: int, image_id: int, class_id: int, box: tuple[float, float, float, float]
) -> dict[str, Any]:
    """One COCO annotation of the pixel box ``(xmin, ymin, xmax, ymax)``; the category is ``class_id + 1``."""
    xmin, ymin, xmax, ymax = box
    w, h = xmax - xmin, ymax - ymin
    return {
        "id": annotation_id,
        "image_id": image_id,
        "category_id": int(class_id) + 1,
        "bbox": [xmin, ymin, w, h],
        "area": w * h,
        "iscrowd": 0,
        "segmentation": [],
    }


def coco_instances(
    description: str, images: list[dict[str, Any]], annotations: list[dict[str, Any]], classes: dict[int, str]
) -> dict[str, Any]:
    """A COCO instances document; categories from ``classes`` (id ``class_id + 1``)."""
    categories = [{"id": k + 1, "name": name, "supercategory": ""} for k, name in sorted(classes.items())]
    return {
        "info": {"description": description},
        "licenses": [],
        "images": images,
        "annotations": annotations,
        "categories": categories,
    }


def write_coco(data: ExportData, output_uri: str) -> tuple[dict[str, str], list[str]]:
    """Write the annotation files; returns ``{image URI: target URI}`` and the files written."""
    targets, files = {}, []
    for split in sorted(set(data.table["split"])):
        folder = SPLIT_FOLDERS.get(split, split)
        document, paths = coco_document(data, split)
        uri = storage.join(output_uri, "annotations", f"instances_{folder}.json")
        files.append(storage.write_text(uri, json.dumps(document)))
        targets.update({source: storage.join(output_uri, "images", folder, path) for source, path in paths.items()})
    return targets, files
