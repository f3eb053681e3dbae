"""``detection-pipeline run`` (every stage in this process): teardown, intermediate files deleted on request.

Tracked on the test session's MLflow server (``tracking_uri``): without one, ``run`` would start the project's
local server in ``data/mlflow`` and leave it running."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from devtools import local_stack
from include import storage
from include.cli import main

pytestmark = pytest.mark.slow


def test_whole_pipeline_in_process_deletes_intermediate_files_after_a_passed_smoke_test(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str], tracking_uri: str
) -> None:
    runs, endpoints = tmp_path / "runs", tmp_path / "endpoints"
    monkeypatch.delenv("DETECTION_CONFIG_FILE", raising=False)
    for key, value in local_stack.quick_run_env(runs, endpoints).items():
        monkeypatch.setenv(key, value)
    flags = ["--dataset-source", "sample", "--epochs", "1", "--no-tune", "--delete-intermediate-files"]
    assert main(["--json", "run", *flags, "--quality-policy", "drop", "--run-id", "manual__delete-test"]) == 0
    captured = capsys.readouterr()
    out = json.loads(captured.out)
    assert "PROMOTION GATE: promoted" in captured.err  # the human summary, beside the JSON

    assert out["smoke_test"]["detections"] > 0 and out["validate"]["policy"] == "drop"
    (stopped,) = out["teardown"]["stopped"]
    assert stopped["name"] == out["deploy"]["endpoint_name"] and stopped["port_free"] is True
    layout = out["layout"]
    deleted = [layout[stage] for stage in ("dataset", "ingest", "quality", "recordio")]
    assert out["teardown"]["deleted_files"] == deleted
    assert not any(storage.exists(uri) for uri in deleted)
    # what the run produced stays: the model, its evaluation report
    assert storage.exists(out["evaluation"]["report_uri"]) and storage.exists(out["evaluation"]["model_uri"])
    assert sorted(p.name for p in Path(storage.local_path(layout["root"])).iterdir()) == [
        "cost", "cost.json", "endpoint_hours.json", "evaluation", "training"
    ]  # fmt: skip
    cost = json.loads(Path(storage.local_path(out["teardown"]["cost"]["uri"])).read_text())
    assert cost["usd"] == 0 and cost["cpu_seconds"] > 0 and cost["jobs"][0]["cpu_seconds"] > 0
    assert {"ingest", "validate", "plan_recordio", "merge_recordio", "evaluate"} <= {s["step"] for s in cost["steps"]}
    (served,) = cost["endpoints"]  # the local endpoint, from its record's start to its stop by teardown: $0
    assert served["endpoint_name"] == stopped["name"] and served["instance_type"] == "local" and served["usd"] == 0
    assert 0 < served["hours"] < 0.5 and cost["endpoint_hours"] == served["hours"]
    assert list(endpoints.glob("*.json")) == []
