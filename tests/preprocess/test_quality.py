"""The quality gate: BCCD's two zero-area boxes, injected faults, drop policy, coverage and limits."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pandas as pd
import pytest

from include.preprocess.annotations import read_classes, read_table, write_table
from include.preprocess.ingest import ingest
from include.preprocess.quality.gate import QualityGateError, validate
from include.preprocess.recordio import plan_shards
from include.preprocess.sample_data import generate_sample
from tests.support.ingest_helpers import BCCD, all_findings, shapes_voc, write_voc_annotation

# the 13th and the 4th object of those files, at these lines
ZERO_AREA = {("Annotations/BloodImage_00338.xml", 158), ("Annotations/BloodImage_00343.xml", 50)}


@pytest.fixture(scope="module")
def bccd_ingested(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not BCCD.is_dir():
        pytest.skip(f"BCCD data set not found at {BCCD}")
    out = tmp_path_factory.mktemp("bccd-ingest")
    ingest("voc", str(BCCD), str(out))
    return out


def test_bccd_fails_on_exactly_the_two_zero_area_boxes(bccd_ingested, tmp_path):
    with pytest.raises(QualityGateError) as error:
        validate(str(bccd_ingested), str(tmp_path))
    message = str(error.value)
    assert "Annotations/BloodImage_00338.xml:158" in message and "Annotations/BloodImage_00343.xml:50" in message
    # quoted as the VOC file writes them (1-based), beside the 0-based table's value
    assert "xmax 504 in the file (503 in the 0-based table) is not greater than xmin 504 in the file" in message
    assert "--policy drop" in message  # the exact command that would pass
    report = json.loads((tmp_path / "quality.json").read_text())
    assert report["success"] is False and report["checks_failed"] == ["box_ordered", "box_min_side"]
    assert {
        (r["file"], r["line"]) for c in report["checks"] for r in c["rows"] if c["severity"] == "error"
    } == ZERO_AREA
    checks = {c["name"]: c for c in report["checks"]}
    assert checks["box_ordered"]["failed"] == 2 and checks["box_inside_image"]["evaluated"] == 4888
    assert (
        "ExpectColumnPairValuesAToBeGreaterThanB(column_A=xmax, column_B=xmin)" in checks["box_ordered"]["expectations"]
    )
    assert checks["split_coverage"]["boxes"]["validation"]["WBC"] > 0
    html = (tmp_path / "quality.html").read_text()
    assert "BloodImage_00338.xml:158" in html and "failed" in html
    assert not (tmp_path / "annotations.parquet").exists()  # nothing for the next stage


def test_validate_refuses_to_write_into_its_input(bccd_ingested, tmp_path):
    with pytest.raises(ValueError, match="is the input folder or inside it"):
        validate(str(bccd_ingested), str(bccd_ingested))
    with pytest.raises(ValueError, match="is the input folder or inside it"):
        validate(str(bccd_ingested), str(bccd_ingested / "quality"))


def test_bccd_drop_removes_exactly_those_boxes(bccd_ingested, tmp_path):
    summary = validate(str(bccd_ingested), str(tmp_path), policy="drop")
    assert summary["success"] and summary["rows_dropped"] == 2 and summary["boxes"] == 4886
    assert summary["images"] == 364 and summary["images_dropped"] == 0
    quarantine = json.loads((tmp_path / "quarantine.json").read_text())
    assert {(r["file"], r["line"]) for r in quarantine["dropped_boxes"]} == ZERO_AREA
    assert quarantine["dropped_boxes"][0]["reasons"][0].startswith("box_ordered: xmax 504 in the file (503 in")
    html = (tmp_path / "quality.html").read_text()
    assert "passed after dropping 2 boxes" in html and ">dropped<" in html
    cleaned = read_table(str(tmp_path))
    assert (
        len(cleaned) == 4886 and not set(zip(cleaned["source_file"], cleaned["source_line"], strict=True)) & ZERO_AREA
    )


@pytest.fixture(scope="module")
def faulty(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A VOC set with one injected fault per image 000-007, ingested with classes circle and square."""
    root = tmp_path_factory.mktemp("faulty") / "voc"
    meta = shapes_voc(root, 16)
    images = root / "JPEGImages"

    def objects(stem: str) -> list:
        return meta[stem]["objects"]

    def rewrite(stem: str, objs: list, filename: str | None = None) -> None:
        write_voc_annotation(root, stem, filename or f"{stem}.jpg", meta[stem]["size"], objs)

    (name, x0, y0, _, y1), width = objects("img_000")[0], meta["img_000"]["size"][0]
    rewrite("img_000", [(name, x0, y0, width + 50, y1)])  # beyond the right edge
    name, x0, y0, x1, y1 = objects("img_001")[0]
    rewrite("img_001", [(name, x1, y0, x0, y1)])  # xmin > xmax
    rewrite("img_002", [*objects("img_002"), ("hexagon", 5, 5, 30, 30)])  # a class outside --classes
    (images / "img_003.jpg").unlink()  # missing image
    data = (images / "img_004.jpg").read_bytes()
    (images / "img_004.jpg").write_bytes(data[: len(data) * 2 // 3])  # truncated JPEG
    shutil.copy(images / "img_005.jpg", images / "img_100.jpg")  # the same image under another name
    write_voc_annotation(root, "img_100", "img_100.jpg", meta["img_005"]["size"], objects("img_005"))
    with (root / "ImageSets" / "Main" / "train.txt").open("a") as lst:
        lst.write("img_100\n")
    rewrite("img_006", objects("img_006"), filename="../../outside.jpg")  # leaves the data set
    rewrite("img_007", objects("img_007") * 2)  # the same box twice
    out = root.parent / "ingested"
    ingest("voc", str(root), str(out), classes=["circle", "square"])
    return out


EXPECTED_FAULTS = {
    ("box_inside_image", "Annotations/img_000.xml", "beyond the image width"),
    ("box_ordered", "Annotations/img_001.xml", "is not greater than xmin"),
    ("box_min_side", "Annotations/img_001.xml", "below the minimum side"),
    ("class_ids_known", "Annotations/img_002.xml", "class 'hexagon' is outside the class selection"),
    ("image_files", "Annotations/img_003.xml", "missing image file"),
    ("image_files", "Annotations/img_004.xml", "truncated JPEG image"),
    ("unique_images", "Annotations/img_100.xml", "same content as JPEGImages/img_005.jpg"),
    ("image_files", "Annotations/img_006.xml", "path outside data set root: ../../outside.jpg"),
    ("unique_boxes", "Annotations/img_007.xml", "same image, class and box as Annotations/img_007.xml:1"),
}


def test_injected_faults_are_each_reported_with_their_file(faulty, tmp_path):
    with pytest.raises(QualityGateError, match=r"Annotations/img_00\d.xml:\d"):
        validate(str(faulty), str(tmp_path))
    report = json.loads((tmp_path / "quality.json").read_text())
    found = all_findings(report)
    for check, file, reason in EXPECTED_FAULTS:
        assert any(c == check and f == file and reason in r for c, f, r in found), (check, file, found)
    assert {(c, f) for c, f, _ in found} == {(c, f) for c, f, _ in EXPECTED_FAULTS}
    assert set(report["checks_failed"]) == {c for c, _, _ in EXPECTED_FAULTS}


def test_injected_faults_are_dropped_and_quarantined(faulty, tmp_path):
    summary = validate(str(faulty), str(tmp_path), policy="drop")
    quarantine = json.loads((tmp_path / "quarantine.json").read_text())
    dropped = {r["file"] for r in quarantine["dropped_boxes"]}
    assert dropped == {
        "Annotations/img_000.xml",
        "Annotations/img_001.xml",
        "Annotations/img_100.xml",
        "Annotations/img_007.xml",
    }
    assert {i["file"] for i in quarantine["excluded_at_ingest"]} == {f"Annotations/img_00{i}.xml" for i in (2, 3, 4, 6)}
    assert summary["rows_dropped"] == 4 and summary["images_dropped"] == 3  # img_007 keeps its first box
    table = read_table(str(tmp_path))
    assert len(table) == len(read_table(str(faulty))) - 4
    assert not {"JPEGImages/img_000.jpg", "JPEGImages/img_100.jpg"} & set(table["image"])


def test_objects_per_image_follow_label_width(tmp_path):
    root = generate_sample(tmp_path / "data", n_images=30, seed=5, layout="groundtruth", max_objects=4)
    ingest("groundtruth", str(root), str(tmp_path / "in"))
    table = read_table(str(tmp_path / "in"))
    crowded = table.groupby("image").size().loc[lambda s: s > 2]
    assert len(crowded)  # the sample has images with 3 and 4 objects
    with pytest.raises(QualityGateError, match="label_width allows at most 2"):
        validate(str(tmp_path / "in"), str(tmp_path / "q"), label_width=12)
    report = json.loads((tmp_path / "q" / "quality.json").read_text())
    check = next(c for c in report["checks"] if c["name"] == "objects_per_image")
    assert check["failed"] == int(crowded.sum()) and check["evaluated"] == table["image"].nunique()
    assert validate(str(tmp_path / "in"), str(tmp_path / "ok"))["success"]  # label_width 350 fits them


def test_a_failed_rerun_leaves_no_table_from_the_passing_run_before(bccd_ingested, tmp_path):
    validate(str(bccd_ingested), str(tmp_path), policy="drop")
    with pytest.raises(QualityGateError, match="policy drop would quarantine these 2 boxes and pass"):
        validate(str(bccd_ingested), str(tmp_path), policy="fail")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["quality.html", "quality.json"]
    with pytest.raises(QualityGateError, match=f"the quality gate failed on this data \\(see file://{tmp_path}/quality.json"):
        plan_shards(str(tmp_path), str(tmp_path / "recordio"), 1)
    assert not (tmp_path / "recordio").exists()


def test_a_misspelt_class_name_is_found_where_it_is_written(tmp_path):
    shapes_voc(tmp_path / "voc", 6)
    xml = tmp_path / "voc" / "Annotations" / "img_002.xml"  # a validation image
    xml.write_text(xml.read_text().replace("<name>circle</name>", "<name>Circle</name>"))
    ingest("voc", str(tmp_path / "voc"), str(tmp_path / "in"))
    with pytest.raises(QualityGateError, match=r"class 0 \(Circle\) has no box in train; its 1 box\(es\): "
                       r"Annotations/img_002.xml:1 \|"):
        validate(str(tmp_path / "in"), str(tmp_path / "out"))
    zero = tmp_path / "voc" / "Annotations" / "img_001.xml"
    text = zero.read_text()
    xmin = re.search(r"<xmin>([^<]*)</xmin>", text)[1]
    zero.write_text(re.sub(r"<xmax>[^<]*</xmax>", f"<xmax>{xmin}</xmax>", text))
    ingest("voc", str(tmp_path / "voc"), str(tmp_path / "in2"))
    with pytest.raises(QualityGateError) as error:  # the zero-width box is dropped; what blocks is named alone
        validate(str(tmp_path / "in2"), str(tmp_path / "out2"), policy="drop")
    assert str(error.value).startswith("quality gate failed (policy drop): split_coverage: class 0 (Circle)")
    assert "box_ordered" not in str(error.value)
    assert "box_ordered" in json.loads((tmp_path / "out2" / "quality.json").read_text())["checks_failed"]


def test_coverage_cannot_be_fixed_by_dropping(tmp_path):
    root = generate_sample(tmp_path / "data", n_images=20, seed=6)
    ingest("cub", str(root), str(tmp_path / "in"))
    table = read_table(str(tmp_path / "in"))
    table = table[~((table["class_id"] == 4) & (table["split"] == "validation"))]
    write_table(table, read_classes(str(tmp_path / "in")), str(tmp_path / "cut"))
    for policy in ("fail", "drop"):
        with pytest.raises(QualityGateError, match=r"split_coverage: class 4 \(005.ring\) has no box in validation"):
            validate(str(tmp_path / "cut"), str(tmp_path / policy), policy=policy)
        assert (tmp_path / policy / "quality.html").exists()


def test_class_names_must_match_classes_json_and_sizes_are_a_warning(tmp_path):
    root = tmp_path / "voc"
    meta = shapes_voc(root, 8)
    write_voc_annotation(root, "img_004", "img_004.jpg", (100, 50, 3), meta["img_004"]["objects"])
    ingest("voc", str(root), str(tmp_path / "in"))
    summary = validate(str(tmp_path / "in"), str(tmp_path / "q"))  # a size mismatch alone passes
    report = json.loads((tmp_path / "q" / "quality.json").read_text())
    sizes = next(c for c in report["checks"] if c["name"] == "image_sizes_match")
    assert summary["success"] and sizes["severity"] == "warning" and not sizes["success"]
    assert [r["file"] for r in sizes["rows"]] == ["Annotations/img_004.xml"]
    table = read_table(str(tmp_path / "in"))
    table.loc[0, "class_name"] = "hexagon"
    write_table(table, {0: "circle", 1: "square"}, str(tmp_path / "renamed"))
    with pytest.raises(QualityGateError, match=r"class 0 is named 'hexagon'; classes.json says 'circle'"):
        validate(str(tmp_path / "renamed"), str(tmp_path / "q2"))


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="unknown quality policy"):
        validate(str(tmp_path), str(tmp_path / "q"), policy="ignore")
    with pytest.raises(ValueError, match="label_width must be at least 7"):
        validate(str(tmp_path), str(tmp_path / "q"), label_width=6)


def test_table_without_extra_columns_is_hashed_and_size_check_skipped(tmp_path):
    root = generate_sample(tmp_path / "data", n_images=10, seed=1)
    ingest("cub", str(root), str(tmp_path / "in"))
    table = read_table(str(tmp_path / "in"))
    plain = table[[c for c in table.columns if c not in ("content_hash", "annotated_width", "annotated_height")]]
    plain = pd.concat([plain, plain.iloc[[0]].assign(image="copy.jpg", source_line=99)], ignore_index=True)
    write_table(plain, read_classes(str(tmp_path / "in")), str(tmp_path / "plain"))
    with pytest.raises(QualityGateError, match=r"bounding_boxes.txt:99 unique_images: same content as"):
        validate(str(tmp_path / "plain"), str(tmp_path / "q"))
    report = json.loads((tmp_path / "q" / "quality.json").read_text())
    assert next(c for c in report["checks"] if c["name"] == "image_sizes_match")["skipped"]


def test_missing_coordinates_are_reported_and_json_stays_valid(tmp_path):
    root = generate_sample(tmp_path / "data", n_images=10, seed=2)
    ingest("cub", str(root), str(tmp_path / "in"))
    table = read_table(str(tmp_path / "in"))
    table.loc[3, "xmin"] = float("nan")
    write_table(table, read_classes(str(tmp_path / "in")), str(tmp_path / "nan"))
    with pytest.raises(QualityGateError, match=r"bounding_boxes.txt:\d+ box_values_present: xmin is missing"):
        validate(str(tmp_path / "nan"), str(tmp_path / "q"))
    text = (tmp_path / "q" / "quality.json").read_text()
    report = json.loads(text, parse_constant=lambda c: pytest.fail(f"non-JSON constant {c} in quality.json"))
    row = next(c for c in report["checks"] if c["name"] == "box_values_present")["rows"][0]
    assert row["box"][0] is None and row["line"] == table.loc[3, "source_line"]
