"""Export to COCO, YOLO, VOC, Label Studio and CVAT: round trips, flags the tools show, COCO with pycocotools."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from lxml import etree

from include.cli import main
from include.preprocess.annotations import read_classes, read_table
from include.preprocess.ingest import ingest
from include.preprocess.quality.gate import validate
from include.preprocess.writers import WRITER_FORMATS, export
from tests.support.ingest_helpers import BCCD

#: the zero-area boxes BCCD's gate quarantines, at their VOC file and line
ZERO_AREA = {("Annotations/BloodImage_00338.xml", 158), ("Annotations/BloodImage_00343.xml", 50)}
BOX = ["xmin", "ymin", "xmax", "ymax"]


@pytest.fixture(scope="module")
def gated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """BCCD through the gate under drop: the two zero-area boxes and a leaking image quarantined."""
    if not BCCD.is_dir():
        pytest.skip(f"BCCD data set not found at {BCCD}")
    root = tmp_path_factory.mktemp("gated")
    ingest("voc", str(BCCD), str(root / "ingest"))
    validate(str(root / "ingest"), str(root / "quality"), policy="drop")
    issues = {
        "issues": [
            {
                "image": "JPEGImages/BloodImage_00000.jpg",
                "source_file": "Annotations/BloodImage_00000.xml",
                "source_line": 14,
                "class_name": "WBC",
                "description": "badly placed box (score 0.12)",
            },
            {
                "image": "JPEGImages/BloodImage_00001.jpg",
                "source_file": None,
                "source_line": None,
                "class_name": None,
                "predicted_class": "Platelets",
                "predicted_box": [10.0, 20.0, 40.0, 50.0],
                "predicted_score": 0.97,
                "description": "missing box: the model finds Platelets (0.97) where no box is",
            },
        ]
    }
    (root / "evaluation").mkdir()
    (root / "evaluation" / "label_issues.json").write_text(json.dumps(issues))
    return root


def by_content(table: pd.DataFrame) -> pd.DataFrame:
    """Boxes keyed by their image's content, class and rounded box (paths differ between formats)."""
    rounded = {f"r_{c}": table[c].round(2) for c in BOX}
    order = ["content_hash", "class_name", *rounded]
    return table.assign(**rounded).sort_values(order).reset_index(drop=True)


@pytest.mark.parametrize("fmt", WRITER_FORMATS)
def test_a_round_trip_through_each_writer_and_reader_reproduces_the_table(fmt, gated, tmp_path):
    summary = export(fmt, str(gated / "quality"), str(tmp_path / fmt), images="link")
    assert (summary["images"], summary["boxes"], summary["quarantined_boxes"]) == (364, 4888, 32)
    back = ingest("auto", str(tmp_path / fmt), str(tmp_path / "back"))
    assert back["format"] == fmt and back["issues"] == 0
    assert back["split_source"] == {"train": "data set", "validation": "data set", "test": "data set"}
    original = pd.concat(
        [read_table(str(gated / "quality")), pd.read_parquet(gated / "quality" / "quarantine.parquet")]
    )
    a, b = by_content(original), by_content(read_table(str(tmp_path / "back")))
    assert len(a) == len(b) == 4888
    for column in ("content_hash", "class_name", "split", "width", "height"):
        assert (a[column].to_numpy() == b[column].to_numpy()).all(), column
    assert np.abs(a[BOX].to_numpy() - b[BOX].to_numpy()).max() < 1e-5
    assert read_classes(str(tmp_path / "back")) == read_classes(str(gated / "quality"))


def test_coco_ids_count_from_one_flags_are_attributes_and_pycocotools_scores_it_perfect(gated, tmp_path):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    export("coco", str(gated / "quality"), str(tmp_path), images="link")
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(str(tmp_path / "annotations" / "instances_val.json"))
    assert min(coco.getImgIds()) == 1 and min(coco.getAnnIds()) == 1 and min(coco.getCatIds()) == 1
    flagged = [a for a in coco.dataset["annotations"] if "attributes" in a]
    assert {a["attributes"]["quarantined"] for a in flagged} == {True}
    assert any("split_leakage: validation image is a near-copy" in a["attributes"]["quality_issue"] for a in flagged)
    # the file scored against itself: mAP@[.5:.95] 1 (a zero-area box, quarantined but exported, has no IoU)
    coco.dataset["annotations"] = [a for a in coco.dataset["annotations"] if a["area"] > 0]
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
        results = coco.loadRes(
            [
                {"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"], "score": 1.0}
                for a in coco.dataset["annotations"]
            ]
        )
        evaluation = COCOeval(coco, results, "bbox")
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    assert evaluation.stats[0] == pytest.approx(1.0)


def test_each_format_shows_the_flags_where_its_tool_does(gated, tmp_path):
    quality, evaluation = str(gated / "quality"), str(gated / "evaluation")
    for fmt in WRITER_FORMATS:
        summary = export(fmt, quality, str(tmp_path / fmt), label_issues_uri=evaluation, images="link")
        assert summary["flagged_boxes"] == 33 and summary["suggested_boxes"] == 1
    # Label Studio: region meta (the details panel), a count per task, the missing box as a prediction
    tasks = json.loads((tmp_path / "labelstudio" / "tasks.json").read_text())
    task = next(t for t in tasks if t["data"]["image"].endswith("BloodImage_00338.jpg"))
    notes = [r["meta"]["text"][0] for r in task["annotations"][0]["result"] if "meta" in r]
    assert notes == [
        "quarantined: box_ordered: xmax 504 in the file (503 in the 0-based table) is not greater than xmin 504 "
        "in the file (503 in the 0-based table); ymax 337 in the file (336 in the 0-based table) is not greater "
        "than ymin 337 in the file (336 in the 0-based table); box_min_side: box width 0 px is below the minimum "
        "side 1 px; box height 0 px is below the minimum side 1 px"
    ]
    assert task["data"]["quality_flags"] == 1 and task["data"]["image"].startswith("/data/local-files/?d=images/")
    suggested = next(t for t in tasks if t["predictions"])
    assert suggested["data"]["image"].endswith("BloodImage_00001.jpg")
    region = suggested["predictions"][0]["result"][0]
    assert region["value"]["rectanglelabels"] == ["Platelets"] and region["score"] == 0.97
    assert '<Label value="WBC"/>' in (tmp_path / "labelstudio" / "label_config.xml").read_text()
    # CVAT: a declared attribute on the box
    tree = etree.parse(str(tmp_path / "cvat" / "annotations.xml"))
    assert tree.findall("meta/task/labels/label/attributes/attribute/name")[0].text == "quality_issue"
    flagged = tree.findall(".//box/attribute[@name='quality_issue']")
    assert len(flagged) == 33 and any(f.text.startswith("label issue: badly placed box") for f in flagged)
    assert json.loads((tmp_path / "cvat" / "labels.json").read_text())[0]["attributes"][0]["name"] == "quality_issue"
    # VOC: 1-based again, the flag as an attribute
    xml = etree.parse(str(tmp_path / "voc" / "Annotations" / "BloodImage_00338.xml"))
    flagged_objects = [o for o in xml.iter("object") if o.find("attributes") is not None]
    assert [o.findtext("bndbox/xmin") for o in flagged_objects] == ["504"]  # the table's 503 + 1, as the file had
    # YOLO: no field for it; quality_flags.csv names the label file and line; the missing box in label_issues.csv
    flags = pd.read_csv(tmp_path / "yolo" / "quality_flags.csv")
    assert len(flags) == 33 and set(flags.columns) == {"label_file", "line", "class", "flag"}
    row = flags[flags["label_file"] == "labels/val/BloodImage_00338.txt"].iloc[0]
    assert (tmp_path / "yolo" / row["label_file"]).read_text().splitlines()[row["line"] - 1].split()[3] == "0.00000000"
    assert yaml.safe_load((tmp_path / "yolo" / "data.yaml").read_text())["names"] == {
        0: "Platelets",
        1: "RBC",
        2: "WBC",
    }
    suggestions = pd.read_csv(tmp_path / "coco" / "label_issues.csv")
    assert suggestions[["image", "predicted_class"]].values.tolist() == [["BloodImage_00001.jpg", "Platelets"]]


def test_the_cli_exports_an_ingest_output_with_the_gates_findings(gated, tmp_path, capsys):
    """A gate that failed writes no table: the ingest output is exported, flagged by the gate's findings."""
    failed = tmp_path / "failed-quality"
    with pytest.raises(ValueError):
        validate(str(gated / "ingest"), str(failed))
    argv = [
        "export",
        "--format",
        "cvat",
        "--input",
        str(gated / "ingest"),
        "--quality",
        str(failed),
        "--output",
        str(tmp_path / "out"),
        "--images",
        "link",
    ]
    assert main(argv) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["boxes"] == 4888 and summary["quarantined_boxes"] == 0 and summary["flagged_boxes"] == 32
    tree = etree.parse(str(tmp_path / "out" / "annotations.xml"))
    texts = [a.text for a in tree.findall(".//box/attribute")]
    assert sum(t.startswith("box_ordered: xmax") for t in texts) == 2
    assert (
        main(
            [
                "export",
                "--format",
                "voc",
                "--input",
                str(gated / "ingest"),
                "--output",
                str(tmp_path / "x"),
                "--image-root-url",
                "/data/",
            ]
        )
        == 1
    )
    assert "image_root_url applies to the labelstudio format" in capsys.readouterr().err
