"""The COCO, YOLO, Label Studio and CVAT readers: BCCD from independent converters, each format's ways, detection."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from include.preprocess.annotations import read_table
from include.preprocess.ingest import ingest
from include.preprocess.issues import read_issues
from include.preprocess.readers import AnnotationFormatError, read_source
from include.preprocess.readers.detect import FormatDetectionError, detect_format
from include.preprocess.readers.yolo import label_path
from tests.support.converters import CONVERTERS, read_voc
from tests.support.ingest_helpers import BCCD, shapes_voc

#: Formats whose export carries the VOC lists' split (Label Studio has no split of its own).
SPLIT_FORMATS = ("coco", "yolo", "cvat")
#: Coordinates as each format writes them: exact floats, 6 decimals of the image side, 2 decimals.
ROUNDING_PX = {"coco": 1e-9, "yolo": 0.0004, "labelstudio": 1e-9, "cvat": 0.005}


@pytest.fixture(scope="module")
def converted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not BCCD.is_dir():
        pytest.skip(f"BCCD data set not found at {BCCD}")
    out = tmp_path_factory.mktemp("converted")
    images = read_voc(BCCD)
    for fmt, convert in CONVERTERS.items():
        convert(BCCD, images, out / fmt)
    return out


@pytest.fixture(scope="module")
def voc_table(tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    if not BCCD.is_dir():
        pytest.skip(f"BCCD data set not found at {BCCD}")
    out = tmp_path_factory.mktemp("voc")
    ingest("voc", str(BCCD), str(out))
    return read_table(str(out))


def keyed(table: pd.DataFrame) -> pd.DataFrame:
    """Rows in a fixed order: by image file name (Label Studio's upload prefix removed), class and rounded box."""
    name = table["image"].str.rsplit("/", n=1).str[-1].str.replace(r"^[0-9a-f]{8}-", "", regex=True)
    rounded = {f"r_{c}": table[c].round(1) for c in ("xmin", "ymin", "xmax", "ymax")}
    order = ["name", "class_name", *rounded]
    return table.assign(name=name, **rounded).sort_values(order).reset_index(drop=True)


@pytest.mark.parametrize("fmt", list(CONVERTERS))
def test_bccd_converted_by_an_independent_script_ingests_to_the_voc_boxes(fmt, converted, voc_table, tmp_path):
    summary = ingest("auto", str(converted / fmt), str(tmp_path))  # the format is detected from the layout
    assert summary["format"] == fmt and summary["format_detected_from"]
    table, voc = keyed(read_table(str(tmp_path))), keyed(voc_table)
    assert (summary["images"], summary["boxes"], summary["issues"]) == (364, 4888, 0)
    assert len(table) == len(voc) and (table["name"] == voc["name"]).all()
    assert (table["class_name"] == voc["class_name"]).all()
    box = ["xmin", "ymin", "xmax", "ymax"]
    difference = np.abs(table[box].to_numpy() - voc[box].to_numpy())
    assert difference.max() <= 1.0  # the issue's bar; the real difference is the format's rounding:
    assert difference.max() <= ROUNDING_PX[fmt]
    assert (table[["width", "height"]].to_numpy() == voc[["width", "height"]].to_numpy()).all()
    if fmt in SPLIT_FORMATS:
        assert summary["split_source"] == {"train": "data set", "validation": "data set", "test": "data set"}
        assert (table["split"] == voc["split"]).all()
    assert table["phash"].str.len().eq(64).all() and (table["phash"] == voc["phash"]).all()


def test_sources_name_the_file_and_line_or_record(converted, tmp_path):
    where, names = {}, set()
    for fmt in CONVERTERS:
        table = read_table(str(ingest(fmt, str(converted / fmt), str(tmp_path / fmt))["uris"]["annotations"]))
        row = keyed(table).iloc[0]  # the same box in every format: BloodImage_00000.jpg's first by class and box
        where[fmt] = (row["source_file"], int(row["source_line"]))
        names.add(row["class_name"])
    (name,) = names
    index = ["Platelets", "RBC", "WBC"].index(name)
    assert where["yolo"] == ("labels/val/BloodImage_00000.txt", where["yolo"][1])
    lines = (converted / "yolo" / where["yolo"][0]).read_text().splitlines()
    assert lines[where["yolo"][1] - 1].startswith(f"{index} ")  # the line the row names holds its class
    assert where["cvat"][0] == "annotations.xml"
    xml_line = (converted / "cvat" / "annotations.xml").read_text().splitlines()[where["cvat"][1] - 1]
    assert f'<box label="{name}"' in xml_line
    coco_file, record = where["coco"]
    annotations = json.loads((converted / "coco" / coco_file).read_text())["annotations"]
    assert coco_file == "annotations/instances_val.json" and annotations[record - 1]["category_id"] == 10 * (index + 1)
    assert where["labelstudio"] == ("project-1-at-2024-05-01-10-00-export.json", 1)  # task 1


def write_json(path: Path, document: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document))
    return path


@pytest.fixture
def shapes(tmp_path: Path) -> tuple[Path, dict]:
    """Four drawn-shape images (one object each) in a VOC set, as the raw material of hand-made exports."""
    meta = shapes_voc(tmp_path / "voc", 4)
    return tmp_path / "voc" / "JPEGImages", meta


def test_coco_reports_crowds_unknown_ids_and_background_and_drops_roboflows_root(shapes, tmp_path):
    images, meta = shapes
    root = tmp_path / "rf"
    for stem in meta:
        (root / "train").mkdir(parents=True, exist_ok=True)
        shutil.copy(images / f"{stem}.jpg", root / "train" / f"{stem}.jpg")
    size = meta["img_000"]["size"]
    document = {
        "categories": [
            {"id": 0, "name": "shapes", "supercategory": "none"},
            {"id": 1, "name": "circle", "supercategory": "shapes"},
            {"id": 2, "name": "square", "supercategory": "shapes"},
        ],
        "images": [{"id": k, "file_name": f"img_00{k}.jpg", "width": size[0], "height": size[1]} for k in range(4)],
        "annotations": [
            {"id": 1, "image_id": 0, "category_id": 1, "bbox": [10, 12, 30, 20], "iscrowd": 0},
            {"id": 2, "image_id": 1, "category_id": 2, "bbox": [5, 5, 40, 40], "iscrowd": 1},
            {"id": 3, "image_id": 1, "category_id": 7, "bbox": [5, 5, 40, 40], "iscrowd": 0},
            {"id": 4, "image_id": 9, "category_id": 1, "bbox": [5, 5, 40, 40], "iscrowd": 0},
            {"id": 5, "image_id": 2, "category_id": 2, "bbox": [1.5, 2.5, 10, 20], "iscrowd": 0},
        ],
    }
    write_json(root / "train" / "_annotations.coco.json", document)
    source = read_source("coco", str(root))
    assert source.classes == {1: "circle", 2: "square"} and source.notes == {"grouping_categories_left_out": 1}
    assert source.boxes[["xmin", "ymin", "xmax", "ymax"]].values.tolist() == [[10, 12, 40, 32], [1.5, 2.5, 11.5, 22.5]]
    assert set(source.boxes["split"]) == {"train"} and list(source.boxes["source_line"]) == [1, 5]
    issues = {(i.check, i.line): i.reason for i in source.issues}
    assert issues == {
        ("boxes_supported", 2): "annotations[1] (id 2) is a crowd region (iscrowd 1), not one object's box",
        ("class_ids_known", 3): "annotations[2] (id 3) has category_id 7, which 'categories' does not list",
        ("image_files", 4): "annotations[3] (id 4) refers to image id 9, which 'images' does not list",
        ("background_images", 0): "images[3] (id 3) has no annotation: a background image",
    }
    document["annotations"].append({"id": 5, "image_id": 0, "category_id": 1, "bbox": [1, 1, 1, 1]})
    write_json(root / "train" / "_annotations.coco.json", document)
    with pytest.raises(AnnotationFormatError, match=r"_annotations.coco.json:6: annotations\[5\] repeats id 5"):
        read_source("coco", str(root))


def test_yolo_reads_lists_polygons_and_roboflows_paths_and_reports_what_it_cannot(shapes, tmp_path):
    images, meta = shapes
    root = tmp_path / "yolo"
    for k, stem in enumerate(meta):
        split = "train" if k < 3 else "valid"
        (root / split / "images").mkdir(parents=True, exist_ok=True)
        (root / split / "labels").mkdir(parents=True, exist_ok=True)
        shutil.copy(images / f"{stem}.jpg", root / split / "images" / f"{stem}.jpg")
    (root / "train" / "labels" / "img_000.txt").write_text("0 0.5 0.5 0.25 0.5\n1 0.1 0.2 0.3 0.2 0.3 0.4\n")
    (root / "train" / "labels" / "img_001.txt").write_text("")  # a background image
    (root / "train" / "labels" / "img_002.txt").write_text("2 0.5 0.5 0.1 0.1\n0 0.5 0.5 0.1 0.1 0.9\n")
    (root / "valid" / "labels" / "img_003.txt").write_text("1 0.5 0.5 0.5 0.5\n")
    (root / "valid" / "labels" / "gone.txt").write_text("0 0.5 0.5 0.1 0.1\n")  # its image is missing
    # Roboflow's data.yaml: paths relative to a folder above, names as a list
    (root / "data.yaml").write_text(
        "train: ../train/images\nval: ../valid/images\nnc: 2\nnames: ['circle', 'square']\n"
    )
    summary = ingest("auto", str(root), str(tmp_path / "out"))
    table = read_table(str(tmp_path / "out"))
    assert summary["format"] == "yolo"
    assert summary["split_source"]["train"] == summary["split_source"]["validation"] == "data set"
    width, height = meta["img_000"]["size"][:2]
    first = table[table["source_file"] == "train/labels/img_000.txt"].sort_values("source_line")
    assert first[["xmin", "ymin", "xmax", "ymax"]].to_numpy().ravel().tolist() == pytest.approx(
        [0.375 * width, 0.25 * height, 0.625 * width, 0.75 * height]  # cx cy w h in fractions
        + [0.1 * width, 0.2 * height, 0.3 * width, 0.4 * height]  # a polygon's envelope
    )
    assert set(table.loc[table["source_file"].str.startswith("valid/"), "split"]) == {"validation"}
    issues = {(i.check, i.file, i.line) for i in read_issues(str(tmp_path / "out"))}
    assert issues == {
        ("background_images", "train/labels/img_001.txt", 0),
        ("class_ids_known", "train/labels/img_002.txt", 1),
        ("boxes_supported", "train/labels/img_002.txt", 2),
        ("image_files", "valid/labels/gone.txt", 1),
    }


def labelstudio_task(task_id: int, image: str, regions: list[dict], **annotation: object) -> dict:
    result = [
        {
            "id": f"r{k}",
            "type": "rectanglelabels",
            "from_name": "label",
            "to_name": "image",
            "original_width": 160,
            "original_height": 128,
            "image_rotation": 0,
            "value": region,
        }
        for k, region in enumerate(regions)
    ]
    return {"id": task_id, "data": {"image": image}, "annotations": [{"id": task_id, "result": result, **annotation}]}


def test_labelstudio_picks_the_annotation_resolves_urls_and_reports_rotations(shapes, tmp_path):
    images, meta = shapes
    root = tmp_path / "ls"
    (root / "images").mkdir(parents=True)
    for stem in meta:
        shutil.copy(images / f"{stem}.jpg", root / "images" / f"{stem}.jpg")
    box = {"x": 10.0, "y": 20.0, "width": 50.0, "height": 25.0, "rotation": 0, "rectanglelabels": ["circle"]}
    tasks = [
        labelstudio_task(11, "/data/local-files/?d=home/user/images/img_000.jpg", [box]),
        labelstudio_task(12, "/data/upload/3/0a1b2c3d-img_001.jpg", [{**box, "rotation": 30}]),
        labelstudio_task(13, "http://example.com/img_002.jpg", [{**box, "rectanglelabels": ["square", "circle"]}]),
        {
            "id": 14,
            "data": {"image": "/data/upload/3/img_003.jpg"},
            "annotations": [
                {"id": 1, "was_cancelled": True, "result": labelstudio_task(0, "", [box])["annotations"][0]["result"]},
                {
                    "id": 2,
                    "ground_truth": True,
                    "updated_at": "2024-01-01",
                    "result": labelstudio_task(0, "", [{**box, "rectanglelabels": ["square"]}])["annotations"][0][
                        "result"
                    ],
                },
                {
                    "id": 3,
                    "updated_at": "2024-06-01",
                    "result": labelstudio_task(0, "", [box])["annotations"][0]["result"],
                },
            ],
        },
        labelstudio_task(15, "/data/upload/3/missing.jpg", [box]),
    ]
    write_json(root / "export.json", tasks)
    source = read_source("labelstudio", str(root))
    assert source.box_units == "fraction" and source.notes == {"tasks_with_several_annotations": 1}
    rows = source.boxes.sort_values("source_line")
    assert rows["image"].tolist() == ["images/img_000.jpg", "images/img_003.jpg"]
    assert rows["class_name"].tolist() == ["circle", "square"]  # task 14: the ground truth annotation
    assert rows.iloc[0][["xmin", "ymin", "xmax", "ymax"]].tolist() == pytest.approx([0.1, 0.2, 0.6, 0.45])
    issues = {(i.check, i.line) for i in source.issues}
    assert issues == {("boxes_supported", 2), ("boxes_supported", 3), ("image_files", 5)}
    assert "rotated by 30 degrees" in next(i.reason for i in source.issues if i.line == 2)


def test_labelstudio_json_min_export(shapes, tmp_path):
    images, meta = shapes
    root = tmp_path / "ls"
    root.mkdir()
    shutil.copy(images / "img_000.jpg", root / "img_000.jpg")
    region = {
        "x": 10,
        "y": 20,
        "width": 50,
        "height": 25,
        "rotation": 0,
        "rectanglelabels": ["circle"],
        "original_width": 160,
        "original_height": 128,
    }
    write_json(root / "min.json", [{"image": "/data/upload/1/img_000.jpg", "id": 1, "label": [region]}])
    summary = ingest("auto", str(root), str(tmp_path / "out"))
    table = read_table(str(tmp_path / "out"))
    assert summary["format"] == "labelstudio" and len(table) == 1
    width, height = meta["img_000"]["size"][:2]  # percent of the real size
    assert table.iloc[0][["xmin", "ymin", "xmax", "ymax"]].tolist() == pytest.approx(
        [0.1 * width, 0.2 * height, 0.6 * width, 0.45 * height]
    )


def cvat_xml(images: str, labels: str = "<label><name>circle</name></label><label><name>square</name></label>") -> str:
    meta = f"<meta><task><labels>{labels}</labels></task></meta>"
    return f"<annotations><version>1.1</version>{meta}\n{images}\n</annotations>"


def test_cvat_reports_undeclared_labels_rotations_and_shapes(shapes, tmp_path):
    images, meta = shapes
    root = tmp_path / "cvat"
    (root / "images").mkdir(parents=True)
    for stem in meta:
        shutil.copy(images / f"{stem}.jpg", root / "images" / f"{stem}.jpg")
    (root / "annotations.xml").write_text(
        cvat_xml(
            '<image id="0" name="img_000.jpg" width="160" height="128">\n'
            '<box label="circle" xtl="10.50" ytl="20.00" xbr="60.25" ybr="45.00" occluded="0"/>\n'
            '<box label="hexagon" xtl="1" ytl="1" xbr="9" ybr="9"/>\n'
            '<box label="square" xtl="1" ytl="1" xbr="9" ybr="9" rotation="15.0"/>\n'
            '<polygon label="circle" points="1,1;5,5;1,5"/>\n'
            '</image>\n<image id="1" name="img_001.jpg" width="160" height="128"></image>'
        )
    )
    source = read_source("cvat", str(root))
    assert source.classes == {0: "circle", 1: "square"}
    assert source.boxes[["xmin", "ymin", "xmax", "ymax", "source_line"]].values.tolist() == [[10.5, 20, 60.25, 45, 3]]
    assert source.boxes["split"].isna().all()  # no subsets: the data set has no split of its own
    assert {(i.check, i.line) for i in source.issues} == {
        ("class_ids_known", 4),
        ("boxes_supported", 5),
        ("boxes_supported", 6),
        ("images_have_boxes", 8),
    }
    (root / "annotations.xml").write_text(cvat_xml('<track id="0" label="circle"><box frame="0"/></track>'))
    with pytest.raises(AnnotationFormatError, match=r"annotations.xml:2: <track> is CVAT for video"):
        read_source("cvat", str(root))


def test_detection_names_what_it_found(converted, tmp_path):
    assert detect_format(str(BCCD)) == ("voc", "Annotations/BloodImage_00000.xml")
    assert detect_format(str(converted / "cvat" / "annotations.xml")) == ("cvat", "annotations.xml")
    both = tmp_path / "both"
    shutil.copytree(converted / "cvat", both, symlinks=True)
    shutil.copy(converted / "yolo" / "data.yaml", both / "data.yaml")
    with pytest.raises(
        FormatDetectionError,
        match=r"matches several formats: cvat \(annotations.xml\); "
        r"yolo \(data.yaml\); name the format",
    ):
        detect_format(str(both))
    (tmp_path / "junk" / "pictures").mkdir(parents=True)
    (tmp_path / "junk" / "pictures" / "a.jpg").write_bytes(b"\xff\xd8")
    (tmp_path / "junk" / "notes.txt").write_text("hello")
    with pytest.raises(
        FormatDetectionError,
        match=r"no known annotation layout found \(1 \.jpg, 1 \.txt; "
        r"folders: pictures\); name the format",
    ):
        ingest("auto", str(tmp_path / "junk"), str(tmp_path / "out"))


def test_yolo_label_paths_follow_ultralytics():
    assert label_path("images/train/a.jpg") == "labels/train/a.txt"
    assert label_path("train/images/x.png") == "train/labels/x.txt"
    assert label_path("data/images/more/images/b.jpeg") == "data/images/more/labels/b.txt"  # the last images/
