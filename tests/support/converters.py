"""Independent converters: a Pascal VOC data set (BCCD) to COCO, YOLO, Label Studio and CVAT, as each tool writes them.

Standard library only and nothing from the project: they are the second opinion the readers are
checked against, so they must not share the project's code (its readers or its writers). Each
writes what the tool's own export holds (COCO's arbitrary category ids, Ultralytics' ``data.yaml``
and six-decimal label lines, Label Studio's upload URLs and percent boxes in the full task
envelope, CVAT's project export with two-decimal corners and subsets). Images are symlinked.

Coordinates follow the project's VOC convention (``value - 1``: VOC counts pixels from 1, the
others from 0), so a converted box should come back within the rounding of its format.
"""

from __future__ import annotations

import json
import os
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

#: ImageSets/Main list -> the split name each tool uses for it.
VOC_LISTS = ("train", "val", "test")


@dataclass(frozen=True)
class VocImage:
    file: str
    split: str  # the VOC list naming it: train, val or test
    width: int
    height: int
    objects: tuple[tuple[str, float, float, float, float], ...]  # name, 0-based corners


def read_voc(root: Path) -> list[VocImage]:
    """Every image the VOC lists name, with its objects, sorted by image id."""
    split = {}
    for name in VOC_LISTS:
        for image_id in (root / "ImageSets" / "Main" / f"{name}.txt").read_text().split():
            split[image_id] = name
    out = []
    for image_id, list_name in sorted(split.items()):
        tree = ET.parse(root / "Annotations" / f"{image_id}.xml").getroot()
        objects = tuple(
            (
                o.findtext("name").strip(),
                *(float(o.findtext(f"bndbox/{k}")) - 1 for k in ("xmin", "ymin", "xmax", "ymax")),
            )
            for o in tree.iter("object")
        )
        size = (int(tree.findtext("size/width")), int(tree.findtext("size/height")))
        out.append(VocImage(tree.findtext("filename").strip(), list_name, *size, objects))
    return out


def _classes(images: list[VocImage]) -> list[str]:
    return sorted({o[0] for image in images for o in image.objects})


def _link(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    if not target.exists():
        os.symlink(source, target)


def to_coco(root: Path, images: list[VocImage], out: Path) -> Path:
    """``annotations/instances_<split>.json`` and ``<split>/<file>``; category ids 10, 20, 30 (not 0..n-1)."""
    classes = _classes(images)
    categories = [{"id": 10 * (k + 1), "name": c, "supercategory": "cell"} for k, c in enumerate(classes)]
    for split in VOC_LISTS:
        records, annotations = [], []
        for image_id, image in enumerate((i for i in images if i.split == split), start=1):
            records.append({"id": image_id, "file_name": image.file, "width": image.width, "height": image.height})
            _link(root / "JPEGImages" / image.file, out / split / image.file)
            for name, x0, y0, x1, y1 in image.objects:
                annotations.append(
                    {
                        "id": len(annotations) + 1,
                        "image_id": image_id,
                        "category_id": 10 * (classes.index(name) + 1),
                        "bbox": [x0, y0, x1 - x0, y1 - y0],
                        "area": (x1 - x0) * (y1 - y0),
                        "iscrowd": 0,
                        "segmentation": [],
                    }
                )
        document = {
            "info": {"description": "BCCD"},
            "licenses": [],
            "images": records,
            "annotations": annotations,
            "categories": categories,
        }
        (out / "annotations").mkdir(parents=True, exist_ok=True)
        (out / "annotations" / f"instances_{split}.json").write_text(json.dumps(document))
    return out


def to_yolo(root: Path, images: list[VocImage], out: Path) -> Path:
    """Ultralytics: ``data.yaml`` (names as a mapping), ``images/<split>``, ``labels/<split>`` with 6 decimals."""
    classes = _classes(images)
    for image in images:
        _link(root / "JPEGImages" / image.file, out / "images" / image.split / image.file)
        lines = [
            f"{classes.index(n)} {(x0 + x1) / 2 / image.width:.6f} {(y0 + y1) / 2 / image.height:.6f} "
            f"{(x1 - x0) / image.width:.6f} {(y1 - y0) / image.height:.6f}\n"
            for n, x0, y0, x1, y1 in image.objects
        ]
        label = out / "labels" / image.split / f"{Path(image.file).stem}.txt"
        label.parent.mkdir(parents=True, exist_ok=True)
        label.write_text("".join(lines))
    names = "".join(f"  {k}: {name}\n" for k, name in enumerate(classes))
    splits = "".join(f"{s}: images/{s}\n" for s in VOC_LISTS if any(i.split == s for i in images))
    (out / "data.yaml").write_text(f"path: .\n{splits}nc: {len(classes)}\nnames:\n{names}")
    return out


def to_labelstudio(root: Path, images: list[VocImage], out: Path) -> Path:
    """A Label Studio JSON export: uploads ``/data/upload/1/<8 hex>-<file>``, boxes in percent of the original size."""
    tasks = []
    for task_id, image in enumerate(images, start=1):
        upload = f"{task_id * 2654435761 % 16**8:08x}-{image.file}"
        _link(root / "JPEGImages" / image.file, out / "upload" / "1" / upload)
        w, h = image.width, image.height
        result = [
            {
                "id": f"r{task_id}x{k}",
                "type": "rectanglelabels",
                "from_name": "label",
                "to_name": "image",
                "original_width": w,
                "original_height": h,
                "image_rotation": 0,
                "origin": "manual",
                "value": {
                    "x": x0 / w * 100,
                    "y": y0 / h * 100,
                    "width": (x1 - x0) / w * 100,
                    "height": (y1 - y0) / h * 100,
                    "rotation": 0,
                    "rectanglelabels": [name],
                },
            }
            for k, (name, x0, y0, x1, y1) in enumerate(image.objects)
        ]
        annotation = {
            "id": task_id,
            "completed_by": 1,
            "result": result,
            "was_cancelled": False,
            "ground_truth": False,
            "created_at": "2024-05-01T10:00:00.000000Z",
            "updated_at": "2024-05-01T10:00:00.000000Z",
            "lead_time": 12.5,
            "task": task_id,
            "project": 1,
        }
        tasks.append(
            {
                "id": task_id,
                "data": {"image": f"/data/upload/1/{upload}"},
                "annotations": [annotation],
                "predictions": [],
                "meta": {},
                "project": 1,
                "inner_id": task_id,
                "created_at": "2024-05-01T09:00:00.000000Z",
                "updated_at": "2024-05-01T10:00:00.000000Z",
            }
        )
    (out / "project-1-at-2024-05-01-10-00-export.json").write_text(json.dumps(tasks, indent=1))
    return out


def to_cvat(root: Path, images: list[VocImage], out: Path) -> Path:
    """A CVAT for images 1.1 project export: subsets Train/Validation/Test, corners with two decimals."""
    subsets = {"train": "Train", "val": "Validation", "test": "Test"}
    document = ET.Element("annotations")
    ET.SubElement(document, "version").text = "1.1"
    project = ET.SubElement(ET.SubElement(document, "meta"), "project")
    labels = ET.SubElement(project, "labels")
    for name in _classes(images):
        label = ET.SubElement(labels, "label")
        ET.SubElement(label, "name").text = name
        ET.SubElement(label, "type").text = "rectangle"
        ET.SubElement(label, "attributes")
    ET.SubElement(project, "subsets").text = "\n".join(subsets.values())
    for k, image in enumerate(images):
        subset = subsets[image.split]
        _link(root / "JPEGImages" / image.file, out / "images" / subset / image.file)
        element = ET.SubElement(
            document,
            "image",
            id=str(k),
            name=image.file,
            subset=subset,
            task_id="1",
            width=str(image.width),
            height=str(image.height),
        )
        for name, x0, y0, x1, y1 in image.objects:
            ET.SubElement(
                element,
                "box",
                label=name,
                source="manual",
                occluded="0",
                xtl=f"{x0:.2f}",
                ytl=f"{y0:.2f}",
                xbr=f"{x1:.2f}",
                ybr=f"{y1:.2f}",
                z_order="0",
            )
    ET.indent(document)
    out.mkdir(parents=True, exist_ok=True)
    ET.ElementTree(document).write(out / "annotations.xml", encoding="utf-8", xml_declaration=True)
    return out


CONVERTERS = {"coco": to_coco, "yolo": to_yolo, "labelstudio": to_labelstudio, "cvat": to_cvat}
