"""The four readers: layouts, splits, sources of every box, format errors, agreement, S3."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import boto3
import pandas as pd
import pytest

from include import storage
from include.preprocess.annotations import read_classes, read_table
from include.preprocess.ingest import ingest
from include.preprocess.readers import AnnotationFormatError, read_source
from include.preprocess.readers.groundtruth import find_label_attribute
from include.preprocess.sample_data import generate_sample
from tests.support.ingest_helpers import (
    BCCD,
    comparable,
    export_groundtruth,
    export_imagejson,
    needs_bccd,
    shapes_voc,
    write_voc_annotation,
)


@pytest.fixture(scope="module")
def bccd_table(tmp_path_factory: pytest.TempPathFactory) -> tuple[pd.DataFrame, dict[int, str], dict]:
    if not BCCD.is_dir():
        pytest.skip(f"BCCD data set not found at {BCCD}")
    out = tmp_path_factory.mktemp("bccd")
    summary = ingest("voc", str(BCCD.parent), str(out))  # the parent: the reader finds BCCD/Annotations
    return read_table(str(out)), read_classes(str(out)), summary


@needs_bccd
def test_bccd_reads_as_voc_with_its_own_split(bccd_table):
    table, classes, summary = bccd_table
    assert (summary["images"], summary["boxes"], summary["classes"]) == (364, 4888, 3)
    assert classes == {0: "Platelets", 1: "RBC", 2: "WBC"}
    assert summary["split_source"] == {"train": "data set", "validation": "data set", "test": "data set"}
    lists = {n: (BCCD / "ImageSets" / "Main" / f"{n}.txt").read_text().split() for n in ("train", "val", "test")}
    per_image = table.drop_duplicates("image").set_index("image")["split"]
    for split, listed in (("train", "train"), ("validation", "val"), ("test", "test")):  # test.txt is held out
        assert sorted(per_image[per_image == split].index) == sorted(f"JPEGImages/{i}.jpg" for i in lists[listed])
    assert summary["splits"]["test"]["images"] == 72 and summary["splits"]["validation"]["images"] == 87
    assert summary["issues"] == 0 and summary["converted_images"] == 0


@needs_bccd
def test_voc_boxes_are_shifted_to_zero_based_and_sourced_by_the_line_of_their_object(bccd_table):
    table, _, _ = bccd_table
    rows = table[table["source_file"] == "Annotations/BloodImage_00000.xml"]
    assert rows["source_line"].tolist()[:2] == [14, 26]  # where the file's <object> tags are
    row = rows[rows["source_line"] == 14].iloc[0]
    # the file says WBC 260 177 491 376 (1-based pixel indices)
    assert (row["class_name"], row["xmin"], row["ymin"], row["xmax"], row["ymax"]) == ("WBC", 259, 176, 490, 375)
    assert (row["width"], row["height"], row["depth"]) == (640, 480, 3)
    assert row["xmax_norm"] == pytest.approx(490 / 640)
    assert table["xmin"].min() >= 0 and (table["xmax"] <= table["width"]).all()


@needs_bccd
def test_groundtruth_and_imagejson_exports_read_back_to_the_voc_table(bccd_table, tmp_path):
    table, classes, _ = bccd_table
    expected = comparable(table)
    gt = export_groundtruth(table, classes, tmp_path / "gt")
    ij = export_imagejson(table, classes, tmp_path / "ij")
    for fmt, source in (("groundtruth", gt), ("imagejson", ij)):
        out = tmp_path / f"out-{fmt}"
        summary = ingest(fmt, str(source), str(out))
        assert summary["split_source"] == {"train": "data set", "validation": "data set", "test": "data set"}
        assert read_classes(str(out)) == classes
        pd.testing.assert_frame_equal(comparable(read_table(str(out))), expected, check_dtype=False)


def test_cub_root_may_be_the_folder_or_its_parent(tmp_path):
    root = generate_sample(tmp_path, n_images=12, seed=3)
    assert root.name == "CUB_200_2011"
    a, b = read_source("cub", str(root)), read_source("cub", str(tmp_path))
    pd.testing.assert_frame_equal(a.boxes, b.boxes)
    assert a.classes[1] == "001.circle" and len(a.boxes) == 12 and a.has_split
    first = a.boxes.iloc[0]
    line = (root / "bounding_boxes.txt").read_text().splitlines()[0].split()
    x, y, w, h = map(float, line[1:])
    assert (first["source_file"], first["source_line"]) == ("bounding_boxes.txt", 1)
    assert (first["xmin"], first["ymin"], first["xmax"], first["ymax"]) == (x, y, x + w, y + h)
    assert first["image_uri"] == storage.join(storage.normalize(root), "images", first["image"])


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("bounding_boxes.txt", "1 10 10 20\n", "bounding_boxes.txt:1: expected 5"),
        ("bounding_boxes.txt", "1 10 10 20 x\n", "bounding_boxes.txt:1: height is not a number"),
        ("image_class_labels.txt", "1 1\n1 2\n", "image_class_labels.txt:2: id 1 repeats line 1"),
        ("train_test_split.txt", "1 2\n", "train_test_split.txt:1: is_training_image must be 0 or 1"),
    ],
)
def test_cub_format_errors_name_file_and_line(tmp_path, name, content, message):
    root = generate_sample(tmp_path, n_images=3, seed=0)
    (root / name).write_text(content)
    with pytest.raises(AnnotationFormatError, match=message):
        read_source("cub", str(root))


def test_voc_format_errors_name_file_and_line(tmp_path):
    shapes_voc(tmp_path, 4)
    (tmp_path / "Annotations" / "img_001.xml").write_text("<annotation><object><name>x</name></annotation>")
    with pytest.raises(AnnotationFormatError, match=r"Annotations/img_001.xml:1: not well-formed XML"):
        read_source("voc", str(tmp_path))
    write_voc_annotation(tmp_path, "img_001", "img_001.jpg", (10, 10, 3), [("circle", 1, 1, "a", 5)])
    with pytest.raises(AnnotationFormatError, match=r"img_001.xml:1: <xmax> is not a number: 'a'"):
        read_source("voc", str(tmp_path))
    laid_out = """<annotation>
  <size><width>10</width><height>10</height><depth>3</depth></size>
  <object>
    <name>circle</name>
    <bndbox>
      <xmin>1</xmin><ymin>1</ymin>
      <xmax>12O</xmax><ymax>5</ymax>
    </bndbox>
  </object>
  <object><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>3</xmax><ymax>3</ymax></bndbox></object>
</annotation>
"""
    xml = tmp_path / "Annotations" / "img_001.xml"
    xml.write_text(laid_out)
    with pytest.raises(AnnotationFormatError, match=r"img_001.xml:7: <xmax> is not a number: '12O'"):
        read_source("voc", str(tmp_path))
    xml.write_text(laid_out.replace("12O", "4"))
    with pytest.raises(AnnotationFormatError, match=r"img_001.xml:10: object has no <name>"):
        read_source("voc", str(tmp_path))
    xml.write_text(laid_out.replace("</name>", "</nme>"))
    with pytest.raises(AnnotationFormatError, match=r"img_001.xml:4: not well-formed XML: Opening and ending tag"):
        read_source("voc", str(tmp_path))


def test_voc_split_lists_select_images_and_report_missing_annotations(tmp_path):
    shapes_voc(tmp_path, 6)
    (tmp_path / "Annotations" / "img_004.xml").unlink()
    (tmp_path / "Annotations" / "extra.xml").write_text((tmp_path / "Annotations" / "img_000.xml").read_text())
    source = read_source("voc", str(tmp_path))
    assert source.notes == {"unlisted_annotations": 1}
    assert [(i.file, i.check, i.reason) for i in source.issues] == [
        ("ImageSets/Main/train.txt", "annotation_files", "missing annotation file Annotations/img_004.xml")
    ]
    assert set(source.boxes["split"]) == {"train", "validation"}
    (tmp_path / "ImageSets" / "Main" / "val.txt").write_text("img_000\n")
    with pytest.raises(AnnotationFormatError, match=r"ImageSets/Main/train.txt:1: img_000 is also listed"):
        read_source("voc", str(tmp_path))


def test_voc_without_lists_has_no_split_and_finds_images_next_to_the_xml(tmp_path):
    shapes_voc(tmp_path, 4)
    shutil.rmtree(tmp_path / "ImageSets")
    shutil.move(tmp_path / "JPEGImages" / "img_002.jpg", tmp_path / "Annotations" / "img_002.jpg")
    source = read_source("voc", str(tmp_path))
    assert not source.has_split
    assert "Annotations/img_002.jpg" in set(source.boxes["image"])


def _manifest_line(ref: str, attribute: str = "boxes", class_id: int = 0, meta: bool = True) -> str:
    record = {
        "source-ref": ref,
        attribute: {
            "image_size": [{"width": 64, "height": 48, "depth": 3}],
            "annotations": [{"class_id": class_id, "left": 1, "top": 2, "width": 10, "height": 20}],
        },
    }
    if meta:
        record[f"{attribute}-metadata"] = {"class-map": {"0": "dog"}, "type": "groundtruth/object-detection"}
    return json.dumps(record)


def test_groundtruth_label_attribute_is_found_or_named(tmp_path):
    manifest = tmp_path / "output.manifest"
    manifest.write_text(_manifest_line("a.jpg") + "\n" + _manifest_line("b.jpg", class_id=3) + "\n\n")
    source = read_source("groundtruth", str(manifest))
    assert len(source.boxes) == 1 and source.classes == {0: "dog"}
    row = source.boxes.iloc[0]
    assert (row["xmin"], row["ymin"], row["xmax"], row["ymax"]) == (1, 2, 11, 22)
    assert (row["source_file"], row["source_line"], row["annotated_width"]) == ("output.manifest", 1, 64)
    assert [(i.line, i.check) for i in source.issues] == [(2, "class_ids_known")]
    records = [json.loads(_manifest_line("a.jpg")), json.loads(_manifest_line("b.jpg", "other", meta=False))]
    with pytest.raises(ValueError, match=r"found several \(boxes, other\)"):
        find_label_attribute(records)
    manifest.write_text(_manifest_line("a.jpg") + "\n" + _manifest_line("b.jpg", "other") + "\n")
    assert len(read_source("groundtruth", str(manifest), label_attribute="other").boxes) == 1


def test_groundtruth_bad_line_and_paths(tmp_path):
    manifest = tmp_path / "output.manifest"
    manifest.write_text(_manifest_line("a.jpg") + "\n{not json\n")
    with pytest.raises(AnnotationFormatError, match=r"output.manifest:2: not valid JSON"):
        read_source("groundtruth", str(manifest))
    manifest.write_text(
        "\n".join([_manifest_line("../a.jpg"), _manifest_line("/abs/b.jpg"), _manifest_line("s3://bk/c.jpg")])
    )
    source = read_source("groundtruth", str(manifest))
    assert [(i.line, i.check, i.reason) for i in source.issues] == [
        (1, "image_files", "path outside data set root: ../a.jpg")
    ]
    assert list(source.boxes["image_uri"]) == ["file:///abs/b.jpg", "s3://bk/c.jpg"]


def test_imagejson_flat_layout(tmp_path):
    record = {
        "file": "pics/a.jpg",
        "image_size": [{"width": 30, "height": 20, "depth": 3}],
        "annotations": [{"class_id": 4, "left": 0, "top": 1, "width": 5, "height": 6}],
        "categories": [{"class_id": 4, "name": "cat"}],
    }
    (tmp_path / "a.json").write_text(json.dumps(record))
    (tmp_path / "b.json").write_text(json.dumps({**record, "file": "../b.jpg"}))
    source = read_source("imagejson", str(tmp_path))
    assert not source.has_split and source.classes == {4: "cat"}
    assert list(source.boxes["image"]) == ["pics/a.jpg"]
    assert [(i.file, i.reason) for i in source.issues] == [("b.json", "path outside data set root: ../b.jpg")]


def test_cub_and_groundtruth_read_from_s3(tmp_path, s3_bucket):
    local = generate_sample(tmp_path / "cub", n_images=10, seed=1)
    s3 = boto3.client("s3", region_name="us-east-1")
    for path in sorted(p for p in local.rglob("*") if p.is_file()):
        s3.upload_file(str(path), s3_bucket, f"cub/CUB_200_2011/{path.relative_to(local).as_posix()}")
    lines = [
        _manifest_line(f"s3://{s3_bucket}/cub/CUB_200_2011/images/{p}")
        for p in [line.split()[1] for line in (local / "images.txt").read_text().splitlines()]
    ]
    s3.put_object(Bucket=s3_bucket, Key="gt/manifests/output.manifest", Body="\n".join(lines).encode())

    from_s3 = ingest("cub", f"s3://{s3_bucket}/cub", str(tmp_path / "out-s3"))
    from_disk = ingest("cub", str(local), str(tmp_path / "out-local"))
    assert from_s3["source"] == f"s3://{s3_bucket}/cub/CUB_200_2011"
    a, b = read_table(str(tmp_path / "out-s3")), read_table(str(tmp_path / "out-local"))
    assert a["image_uri"].str.startswith(f"s3://{s3_bucket}/cub/CUB_200_2011/images/").all()
    pd.testing.assert_frame_equal(
        a[["image", "width", "height", "xmin", "split"]], b[["image", "width", "height", "xmin", "split"]]
    )
    assert from_s3["images"] == from_disk["images"] == 10

    gt = ingest("groundtruth", f"s3://{s3_bucket}/gt/manifests/output.manifest", str(tmp_path / "out-gt"))
    table = read_table(str(tmp_path / "out-gt"))
    assert gt["images"] == 10 and gt["issues"] == 0
    assert table["image"].str.startswith("cub/CUB_200_2011/images/").all()  # relative to the bucket's root
    assert (
        table["width"]
        == b.set_index("image").loc[table["image"].str.removeprefix("cub/CUB_200_2011/images/"), "width"].to_numpy()
    ).all()
    assert Path(tmp_path / "out-gt" / "ingest_issues.json").read_text().strip() == "[]"
