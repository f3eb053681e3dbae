"""Label issues ranked by cleanlab from the model's predictions, mapped back to the annotation file and line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from include.evaluation.channel_data import read_channel
from include.evaluation.label_issues import Record, draw_issues, find_label_issues, report_section
from include.preprocess.ingest import ingest
from include.preprocess.quality.gate import validate
from include.preprocess.recordio import build_recordio
from include.preprocess.writers import export
from tests.support.ingest_helpers import shapes_voc

CLASSES = {0: "circle", 1: "square"}
FRAME = 300


def detections_for(truth: np.ndarray, score: float = 0.98) -> np.ndarray:
    """What a good model answers: each true box, with its class, at ``score`` (rows ``[class, score, corners]``)."""
    return np.column_stack([truth[:, 0], np.full(len(truth), score), truth[:, 1:5]])


def synthetic_records() -> list[Record]:
    """20 images of three well-separated objects; image 5 has a displaced label, 9 a swapped class, 13 a missing one."""
    rng = np.random.default_rng(0)
    records = []
    for i in range(20):
        corners = [[0.05, 0.05, 0.3, 0.3], [0.4, 0.4, 0.65, 0.65], [0.7, 0.1, 0.95, 0.35]]
        truth = np.array([[k % 2, *c] for k, c in enumerate(corners)], dtype=np.float64)
        truth[:, 1:] += rng.uniform(-0.01, 0.01, size=(3, 4))
        detections = detections_for(truth)
        if i == 5:
            truth[1, [1, 3]] += 0.15  # the label misses the object by 60 % of its width
        if i == 9:
            truth[2, 0] = 1 - truth[2, 0]  # labelled as the other class
        if i == 13:
            truth = truth[:2]  # the third object has no label
        records.append(Record("validation.rec", i, f"validation.rec record {i}", detections, truth))
    return records


def test_the_displaced_swapped_and_missing_labels_rank_worst():
    document = find_label_issues(synthetic_records(), CLASSES, FRAME, table_uri=None, shown=3)
    worst = {issue["image"]: issue for issue in document["issues"] if issue["rank"] <= 3}
    assert set(worst) == {"validation.rec record 5", "validation.rec record 9", "validation.rec record 13"}
    assert worst["validation.rec record 5"]["kind"] == "badly placed box"
    assert worst["validation.rec record 9"]["kind"] == "wrong class"
    swapped = worst["validation.rec record 9"]["description"]
    assert swapped.startswith("wrong class: labelled square; the model says circle 0.98")
    assert worst["validation.rec record 13"]["kind"] == "missing box"
    assert worst["validation.rec record 13"]["predicted_class"] == "circle"
    assert document["images"] == 20 and {i["rank"] for i in document["issues"]} >= {1, 2, 3}


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Drawn shapes through ingest, the gate and the RecordIO build (no resize: the .rec holds the originals)."""
    root = tmp_path_factory.mktemp("built")
    shapes_voc(root / "voc", 12)
    ingest("voc", str(root / "voc"), str(root / "ingest"))
    validate(str(root / "ingest"), str(root / "quality"), checks={"class_balance": "warn"})
    build_recordio(str(root / "quality"), str(root / "recordio"), resize=None, workers=1)
    return root


def test_issues_name_the_annotation_file_and_line_and_export_flags_them(built, tmp_path):
    records = []
    for item in read_channel(str(built / "recordio" / "validation")):
        detections = detections_for(item.boxes)
        if item.index == 2:
            item.boxes[0, [1, 3]] += 0.5 * (item.boxes[0, 3] - item.boxes[0, 1])  # this record's label is displaced
        records.append(Record(item.source, item.index, item.name, detections, item.boxes))
    recordio = json.loads((built / "recordio" / "recordio.json").read_text())
    document = find_label_issues(records, CLASSES, FRAME, recordio["input_uri"], shown=1)
    first = document["issues"][0]
    lst = (built / "recordio" / "validation" / "validation.lst").read_text().splitlines()
    image = lst[2].split("\t")[-1]
    assert (first["rank"], first["image"], first["kind"]) == (1, image, "badly placed box")
    assert first["source_file"] == f"Annotations/{Path(image).stem}.xml" and first["source_line"] == 1
    assert first["box_units"] == "px" and first["image_uri"].endswith(image)
    pictures = draw_issues(document, 1, str(built / "recordio" / "validation"))
    html = report_section(document, pictures)
    assert list(pictures) == [1] and f"{first['source_file']}:1" in html and "badly placed box" in html
    (tmp_path / "evaluation").mkdir()
    (tmp_path / "evaluation" / "label_issues.json").write_text(json.dumps(document))
    summary = export(
        "labelstudio",
        str(built / "quality"),
        str(tmp_path / "ls"),
        images="link",
        label_issues_uri=str(tmp_path / "evaluation"),
    )
    assert summary["flagged_boxes"] >= 1
    tasks = json.loads((tmp_path / "ls" / "tasks.json").read_text())
    notes = [r["meta"]["text"][0] for t in tasks for r in t["annotations"][0]["result"] if "meta" in r]
    assert any(n.startswith("label issue: badly placed box: ") for n in notes)
