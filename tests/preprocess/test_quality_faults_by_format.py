"""Faults injected into BCCD exports of each labelling tool's format appear in quality.json with their file and line.

A part of BCCD is converted by the independent converters, then each export is edited the way
a slip in that tool would: an unknown class, a box outside the image, an annotation of an image
that is not there, a resized and re-encoded copy of a training image placed in validation, a
misspelt class name on one box.
"""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import pytest
from PIL import Image

from include.preprocess.ingest import ingest
from include.preprocess.quality.gate import QualityGateError, validate
from tests.support.converters import CONVERTERS, VocImage, read_voc
from tests.support.ingest_helpers import BCCD

#: a training image and its resized, re-encoded copy placed in validation
ORIGINAL = "BloodImage_00001.jpg"
COPY = "copy_of_00001.jpg"


@pytest.fixture(scope="module")
def part() -> list[VocImage]:
    if not BCCD.is_dir():
        pytest.skip(f"BCCD data set not found at {BCCD}")
    images = read_voc(BCCD)
    train = [i for i in images if i.split == "train"][:14]
    held_out = [i for i in images if i.split == "val" and i.file not in ("BloodImage_00037.jpg",)][:6]
    assert ORIGINAL in {i.file for i in train}
    return train + held_out


def resized_copy(target: Path) -> tuple[int, int]:
    """Half the size, JPEG quality 70: a copy a perceptual hash still knows."""
    with Image.open(BCCD / "JPEGImages" / ORIGINAL) as im:
        small = im.resize((im.width // 2, im.height // 2))
    buf = io.BytesIO()
    small.save(buf, "JPEG", quality=70)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(buf.getvalue())
    return small.size


def halved(image: VocImage, width: int, height: int) -> VocImage:
    objects = tuple((n, x0 / 2, y0 / 2, x1 / 2, y1 / 2) for n, x0, y0, x1, y1 in image.objects)
    return VocImage(COPY, "val", width, height, objects)


def faulty_coco(root: Path, part: list[VocImage]) -> dict[str, tuple[str, int]]:
    original = next(i for i in part if i.file == ORIGINAL)
    copy = halved(original, *resized_copy(root / "val" / COPY))
    CONVERTERS["coco"](BCCD, part, root)
    file = root / "annotations" / "instances_val.json"
    document = json.loads(file.read_text())
    anns = document["annotations"]
    document["images"].append({"id": 999, "file_name": COPY, "width": copy.width, "height": copy.height})
    first_copy = len(anns) + 1
    for name, x0, y0, x1, y1 in copy.objects:
        anns.append(
            {
                "id": len(anns) + 1,
                "image_id": 999,
                "category_id": 20 if name == "RBC" else 10 if name == "Platelets" else 30,
                "bbox": [x0, y0, x1 - x0, y1 - y0],
                "iscrowd": 0,
            }
        )
    anns[0]["category_id"] = 77  # unknown category id
    anns[1]["bbox"][0] = 700.0  # beyond the 640 px width
    document["images"].append({"id": 1000, "file_name": "gone.jpg", "width": 640, "height": 480})
    anns.append({"id": len(anns) + 1, "image_id": 1000, "category_id": 20, "bbox": [1, 1, 20, 20], "iscrowd": 0})
    document["categories"].append({"id": 40, "name": "WBc"})
    anns[2]["category_id"] = 40  # the misspelt class
    file.write_text(json.dumps(document))
    rel = "annotations/instances_val.json"
    return {
        "class_ids_known": (rel, 1),
        "box_inside_image": (rel, 2),
        "class_name_typos": (rel, 3),
        "split_leakage": (rel, first_copy),
        "image_files": (rel, len(anns)),
    }


def faulty_yolo(root: Path, part: list[VocImage]) -> dict[str, tuple[str, int]]:
    CONVERTERS["yolo"](BCCD, part, root)
    original = next(i for i in part if i.file == ORIGINAL)
    copy = halved(original, *resized_copy(root / "images" / "val" / COPY))
    train_label = (root / "labels" / "train" / "BloodImage_00001.txt").read_text()
    (root / "labels" / "val" / "copy_of_00001.txt").write_text(train_label)  # normalized: the same lines
    assert copy.objects
    val = sorted((root / "labels" / "val").glob("BloodImage_*.txt"))[0]
    lines = val.read_text().splitlines()
    lines[0] = "7 " + lines[0].split(" ", 1)[1]  # class index beyond names
    lines[1] = lines[1].split(" ", 1)[0] + " 1.2 0.5 0.2 0.2"  # centre beyond the right edge
    lines[2] = "3 " + lines[2].split(" ", 1)[1]  # the misspelt class, index 3
    val.write_text("\n".join(lines) + "\n")
    (root / "labels" / "val" / "gone.txt").write_text("1 0.5 0.5 0.1 0.1\n")  # a label file without its image
    text = (root / "data.yaml").read_text().replace("nc: 3", "nc: 4") + "  3: WBc\n"
    (root / "data.yaml").write_text(text)
    rel = f"labels/val/{val.name}"
    return {
        "class_ids_known": (rel, 1),
        "box_inside_image": (rel, 2),
        "class_name_typos": (rel, 3),
        "split_leakage": ("labels/val/copy_of_00001.txt", 1),
        "image_files": ("labels/val/gone.txt", 1),
    }


def faulty_labelstudio(root: Path, part: list[VocImage]) -> dict[str, tuple[str, int]]:
    CONVERTERS["labelstudio"](BCCD, part, root)
    original = next(i for i in part if i.file == ORIGINAL)
    resized_copy(root / "upload" / "1" / COPY)
    export = next(root.glob("*.json"))
    tasks = json.loads(export.read_text())
    copy_task = json.loads(json.dumps(next(t for t in tasks if t["data"]["image"].endswith(original.file))))
    copy_task["id"] = 9999
    copy_task["data"]["image"] = f"/data/upload/1/{COPY}"
    tasks.append(copy_task)
    value = tasks[0]["annotations"][0]["result"]
    value[0]["value"]["rectanglelabels"] = ["Leukocyte"]  # a label no other box has: a class of its own...
    value[1]["value"]["x"] = 95.0  # 95 % + its width: beyond the right edge
    value[2]["value"]["rectanglelabels"] = ["WBc"]
    tasks.append({**json.loads(json.dumps(tasks[1])), "id": 10000, "data": {"image": "/data/upload/1/gone.jpg"}})
    export.write_text(json.dumps(tasks, indent=1))
    return {
        "box_inside_image": (export.name, 1),
        "class_name_typos": (export.name, 1),
        "leakage_or_near_duplicate": (export.name, len(tasks) - 1),
        "image_files": (export.name, len(tasks)),
    }


def faulty_cvat(root: Path, part: list[VocImage]) -> dict[str, tuple[str, int]]:
    original = next(i for i in part if i.file == ORIGINAL)
    copy = halved(original, *resized_copy(root / "images" / "Validation" / COPY))
    CONVERTERS["cvat"](BCCD, part, root)
    xml = root / "annotations.xml"
    text = xml.read_text()
    boxes = "".join(
        f'\n    <box label="{n}" source="manual" occluded="0" xtl="{x0:.2f}" ytl="{y0:.2f}" xbr="{x1:.2f}" '
        f'ybr="{y1:.2f}" z_order="0"/>'
        for n, x0, y0, x1, y1 in copy.objects
    )
    extra = (
        f'  <image id="900" name="{COPY}" subset="Validation" width="{copy.width}" height="{copy.height}">'
        f"{boxes}\n  </image>\n"
        '  <image id="901" name="gone.jpg" subset="Validation" width="640" height="480">\n'
        '    <box label="RBC" xtl="1.00" ytl="1.00" xbr="20.00" ybr="20.00"/>\n  </image>\n'
    )
    text = text.replace("</annotations>", extra + "</annotations>")
    text = text.replace("<name>WBC</name>", "<name>WBC</name></label><label><name>WBc</name>", 1)
    lines = text.splitlines()
    val = [k for k, line in enumerate(lines) if 'subset="Validation"' in line and "<image" in line][0]
    first_box = val + 1
    lines[first_box] = re.sub(r'label="\w+"', 'label="Neutrophil"', lines[first_box])  # undeclared
    lines[first_box + 1] = re.sub(r'xbr="[\d.]+"', 'xbr="690.00"', lines[first_box + 1])
    lines[first_box + 2] = re.sub(r'label="\w+"', 'label="WBc"', lines[first_box + 2])
    xml.write_text("\n".join(lines) + "\n")
    copy_line = next(k for k, line in enumerate(lines) if COPY in line) + 2
    gone_line = next(k for k, line in enumerate(lines) if "gone.jpg" in line) + 2
    return {
        "class_ids_known": ("annotations.xml", first_box + 1),
        "box_inside_image": ("annotations.xml", first_box + 2),
        "class_name_typos": ("annotations.xml", first_box + 3),
        "split_leakage": ("annotations.xml", copy_line),
        "image_files": ("annotations.xml", gone_line),
    }


FAULTS = {"coco": faulty_coco, "yolo": faulty_yolo, "labelstudio": faulty_labelstudio, "cvat": faulty_cvat}


@pytest.mark.parametrize("fmt", list(FAULTS))
def test_each_injected_fault_is_reported_with_its_file_and_line(fmt, part, tmp_path):
    expected = FAULTS[fmt](tmp_path / fmt, part)
    ingest("auto", str(tmp_path / fmt), str(tmp_path / "in"))
    with pytest.raises(QualityGateError):
        validate(str(tmp_path / "in"), str(tmp_path / "out"))
    report = json.loads((tmp_path / "out" / "quality.json").read_text())
    found = {(c["name"], r["file"], r["line"]) for c in report["checks"] for r in c["rows"]}
    for check, (file, line) in expected.items():
        names = ("split_leakage", "near_duplicates") if check == "leakage_or_near_duplicate" else (check,)
        assert any((name, file, line) in found for name in names), (check, file, line, sorted(found))
    typo = next(c for c in report["checks"] if c["name"] == "class_name_typos")
    assert [(t["name"], t["like"]) for t in typo["typos"]] == [("WBc", "WBC")]
