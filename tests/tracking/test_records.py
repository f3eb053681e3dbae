"""What the quality gate and the data set leave in the pipeline run, read generically from the stages' documents."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from include import storage
from include.preprocess.quality.gate import QualityGateError, validate
from include.tracking.records import figures, record_dataset, record_quality
from tests.support.recordio_data import synthetic_images, write_dataset


def test_every_number_of_a_document_is_a_figure_named_by_its_path() -> None:
    document = {
        "success": True,
        "policy": "drop",
        "table": {"images": 28, "boxes": 114},
        "checks": [
            {
                "name": "box_inside_image",
                "evaluated": 114,
                "failed": 2,
                "success": False,
                "rows": [{"file": "a.xml", "line": 3}],
            },
            {"name": "class/names ok?", "evaluated": 114, "failed": 0},
        ],
        "classes": [{"name": "RBC", "ap": 0.8, "coco_ap": float("nan")}],
        "splits": {"test": {"map": 0.5}},
        "notes": ["text"],
        "parameters": {"min_box_side": 1.0},
    }
    assert figures(document, frozenset({"rows", "parameters"})) == {
        "success": 1.0,
        "table.images": 28.0,
        "table.boxes": 114.0,
        "checks.box_inside_image.evaluated": 114.0,
        "checks.box_inside_image.failed": 2.0,
        "checks.box_inside_image.success": 0.0,
        "checks.class/names ok_.evaluated": 114.0,
        "checks.class/names ok_.failed": 0.0,
        "classes.RBC.ap": 0.8,
        "splits.test.map": 0.5,
    }


@pytest.fixture
def table(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    return storage.local_path(
        write_dataset(root, tmp_path / "table", synthetic_images(root), {0: "bird", 1: "cat"}).table_uri
    )


def test_a_passed_gate_records_its_checks_reports_and_the_gated_data_set(
    tracking_ref, table, tmp_path, mlflow_client
) -> None:
    out = tmp_path / "quality"
    result = validate(str(table), str(out))
    run = record_quality(tracking_ref, storage.normalize(out), failed=False)
    digest = record_dataset(tracking_ref, result["uris"]["annotations"], "voc:test")

    recorded = mlflow_client.get_run(run.run_id)
    report = json.loads((out / "quality.json").read_text())
    assert recorded.info.status == "FINISHED" and recorded.data.tags["detection.quality"] == "passed"
    for check in report["checks"]:
        assert recorded.data.metrics[f"checks.{check['name']}.failed"] == check["failed"]
    assert recorded.data.params["policy"] == "fail" and recorded.data.params["min_box_side"] == "1.0"
    assert {a.path for a in mlflow_client.list_artifacts(run.run_id, "quality")} >= {
        "quality/quality.json",
        "quality/quality.html",
    }
    (dataset_input,) = mlflow_client.get_run(tracking_ref.run_id).inputs.dataset_inputs
    assert dataset_input.dataset.digest == digest and dataset_input.dataset.name == "voc:test"
    assert [t.value for t in dataset_input.tags] == ["training"]
    profile = json.loads(dataset_input.dataset.profile)
    assert profile["boxes"] == result["boxes"] and profile["classes"] == 2
    assert sum(profile["boxes_per_class"]["train"].values()) == profile["per_split"]["train"]["boxes"]
    schema = json.loads(dataset_input.dataset.schema)["mlflow_colspec"]
    assert {"name": "xmin", "type": "double", "required": True} in schema


def test_a_failed_gate_is_recorded_as_a_failed_run_with_its_report(tracking_ref, table, tmp_path, mlflow_client):
    import pandas as pd

    frame = pd.read_parquet(table / "annotations.parquet")
    frame.loc[0, "xmax"] = frame.loc[0, "xmin"]  # a zero-width box
    frame.to_parquet(table / "annotations.parquet")
    out = tmp_path / "quality"
    with pytest.raises(QualityGateError):
        validate(str(table), str(out))
    run = record_quality(tracking_ref, storage.normalize(out), failed=True)
    recorded = mlflow_client.get_run(run.run_id)
    assert recorded.info.status == "FAILED" and recorded.data.tags["detection.quality"] == "failed"
    assert "box_ordered" in recorded.data.tags["detection.checks_failed"]
    assert recorded.data.metrics["checks.box_ordered.failed"] >= 1
    assert mlflow_client.get_run(tracking_ref.run_id).data.tags["detection.quality"] == "failed"
    assert record_quality(tracking_ref, storage.normalize(tmp_path / "nothing"), failed=True) is None
