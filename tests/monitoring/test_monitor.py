"""Monitoring passes on real captured traffic: BCCD photographs pass against a BCCD baseline, the generated sample
data set (other objects, other sizes) fails naming what drifted; the files are Model Monitor's shapes."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from include.monitoring import model_monitor, schema
from include.monitoring.monitor import DRIFTED, INSUFFICIENT, PASSED, monitor
from tests.support.monitoring_fixtures import answer


def _files(result: dict[str, Any]) -> dict[str, Any]:
    return {
        name: json.loads(Path(result[f"{name}_uri"].removeprefix("file://")).read_text())
        for name in ("statistics", "violations", "drift")
    }


def test_traffic_from_the_training_distribution_passes(bccd_capture: str, baseline: str, tmp_path: Path) -> None:
    result = monitor(bccd_capture, baseline, str(tmp_path))
    assert result["status"] == PASSED, result["reason"]
    assert result["images"] == result["input_images"] == result["prediction_images"] == 54
    files = _files(result)
    assert files["violations"] == {"violations": []}
    compared = {f["feature"] for f in files["drift"]["features"]}
    assert {
        "input.width",
        "input.brightness",
        "input.jpeg_quality",
        "prediction.class",
        "prediction.score",
        "prediction.boxes_per_image",
        "prediction.no_detection",
    } <= compared


@pytest.fixture(scope="module")
def drifted(sample_capture: str, baseline: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return monitor(sample_capture, baseline, str(tmp_path_factory.mktemp("drifted")))


def test_other_objects_and_sizes_fail_and_name_what_drifted(drifted: dict[str, Any]) -> None:
    result = drifted
    assert result["status"] == DRIFTED
    assert {"input.width", "input.height", "input.jpeg_quality", "input.brightness"} <= set(result["drifted"])
    assert "input.width: PSI " in result["reason"] and "baseline 640 100%" in result["reason"]
    violations = _files(result)["violations"]["violations"]
    assert {v["feature_name"] for v in violations} == set(result["drifted"])
    assert all(v["constraint_check_type"] == "baseline_drift_check" for v in violations)
    page = Path(result["report_uri"].removeprefix("file://")).read_text()
    assert page.count('<img src="data:image/png;base64,') >= 10 and "input.width" in page and "drift" in page


def test_the_files_are_model_monitors_shapes(baseline: str, drifted: dict[str, Any]) -> None:
    folder = Path(baseline)
    stats = schema.check(json.loads((folder / "statistics.json").read_text()), schema.STATISTICS, "baseline")
    constraints = schema.check(json.loads((folder / "constraints.json").read_text()), schema.CONSTRAINTS, "c")
    assert stats["dataset"]["item_count"] == 250
    brightness = model_monitor.feature_values(stats, "input.brightness")
    assert brightness is not None and len(brightness) == 250
    domains = {f["name"]: f.get("string_constraints", {}).get("domains") for f in constraints["features"]}
    assert set(domains["prediction.class"]) <= {"RBC", "WBC", "Platelets"}
    assert all(f["monitoringConfigOverrides"] == {"psi": 0.25, "p_value": 0.01} for f in constraints["features"])
    files = _files(drifted)
    schema.check(files["statistics"], schema.STATISTICS, "current")
    schema.check(files["violations"], schema.VIOLATIONS, "violations")
    with pytest.raises(ValueError, match=r"by hand: not a Model Monitor file: at features/0: "):
        schema.check(
            {"version": 0, "dataset": {"item_count": 1}, "features": [{"name": "x", "inferred_type": "String"}]},
            schema.STATISTICS,
            "by hand",
        )


def test_a_window_with_too_few_images_decides_nothing(bccd_capture: str, baseline: str, tmp_path: Path) -> None:
    later = datetime.now(UTC) + timedelta(hours=2)
    result = monitor(bccd_capture, baseline, str(tmp_path), start=later, end=later + timedelta(hours=1))
    assert result["status"] == INSUFFICIENT and result["images"] == 0 and "fewer than" in result["reason"]


def test_a_batch_transforms_output_is_read_with_its_inputs(
    detector: Any, sample_images: list[Path], baseline: str, tmp_path: Path
) -> None:
    """``<output>/<relative path>.out`` with the endpoint's answer, error records, transform.json naming the input."""
    inputs, output = tmp_path / "in", tmp_path / "out"
    for i, path in enumerate(sample_images):
        relative = Path("batch" if i % 2 else "more/batch") / path.name
        (inputs / relative).parent.mkdir(parents=True, exist_ok=True)
        (inputs / relative).write_bytes(path.read_bytes())
        (output / f"{relative}.out").parent.mkdir(parents=True, exist_ok=True)
        (output / f"{relative}.out").write_bytes(answer(detector, path.read_bytes()))
    (output / "broken.jpg.error.json").write_text(json.dumps({"error": "not an image"}))
    record = {
        "TransformJobStatus": "Completed",
        "TransformInput": {"DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": str(inputs)}}},
    }
    (output / "transform.json").write_text(json.dumps(record))
    result = monitor(str(output), baseline, str(tmp_path / "monitoring"))
    assert result["source_kind"] == "transform" and result["transform_errors"] == 1
    assert result["input_images"] == result["prediction_images"] == len(sample_images)
    assert result["status"] == DRIFTED and "input.width" in result["drifted"]


def test_the_cli_exits_1_on_drift(sample_capture: str, baseline: str, tmp_path: Path, capsys) -> None:
    from include.cli import main

    code = main(["monitor", "--source", sample_capture, "--baseline", baseline, "--output", str(tmp_path)])
    assert code == 1
    err = capsys.readouterr().err
    assert "drifted: drift in" in err and "input.width" in err and "monitoring.html" in err
