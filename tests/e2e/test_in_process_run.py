"""``detection-pipeline run``: every stage in this process, teardown included, intermediate files deleted on request."""

from __future__ import annotations

from pathlib import Path

import pytest

from include import local_stack, storage
from include.pipeline_run import run_pipeline

pytestmark = pytest.mark.slow


def test_whole_pipeline_in_process_deletes_intermediate_files_after_a_passed_smoke_test(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    runs, endpoints = tmp_path / "runs", tmp_path / "endpoints"
    monkeypatch.delenv("DETECTION_CONFIG_FILE", raising=False)
    for key, value in local_stack.quick_run_env(runs, endpoints).items():
        monkeypatch.setenv(key, value)
    params = {"dataset_source": "sample", "epochs": 1, "tune": False, "delete_intermediate_files": True}
    out = run_pipeline(params, run_id="manual__delete-test")

    assert out["smoke_test"]["detections"] > 0
    (stopped,) = out["teardown"]["stopped"]
    assert stopped["name"] == out["deploy"]["endpoint_name"] and stopped["port_free"] is True
    layout = out["layout"]
    deleted = [layout[stage] for stage in ("dataset", "ingest", "quality", "recordio")]
    assert out["teardown"]["deleted_files"] == deleted
    assert not any(storage.exists(uri) for uri in deleted)
    # what the run produced stays: the model, its evaluation report
    assert storage.exists(out["evaluation"]["report_uri"]) and storage.exists(out["evaluation"]["model_uri"])
    assert sorted(p.name for p in Path(storage.local_path(layout["root"])).iterdir()) == ["evaluation", "training"]
    assert list(endpoints.glob("*.json")) == []
