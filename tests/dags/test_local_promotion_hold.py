"""A local run whose model does not clear the promotion gate: it is registered, nothing is asked, deployed or
moved, and the run's MLflow run is still closed (the gate's branch skips only the approval and what follows)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from devtools import local_stack
from tests.support.dag_runs import finished_run

pytestmark = pytest.mark.slow


def test_a_model_below_the_threshold_is_registered_and_nothing_else_happens(
    pipeline: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, tracking_uri: str, mlflow_client: Any
) -> None:
    monkeypatch.delenv("DETECTION_CONFIG_FILE", raising=False)
    for key, value in local_stack.quick_run_env(tmp_path / "runs", tmp_path / "endpoints").items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("DETECTION__EVALUATION__PROMOTION_THRESHOLD", "1")  # no model reaches a perfect mAP
    dr = pipeline.test(
        run_conf={"backend": "local", "dataset_source": "sample", "epochs": 1, "tune": False, "approval": "manual"}
    )
    tries, xcom = finished_run(dr)
    states = {task: {state for state, _ in runs} for task, runs in tries.items()}

    assert str(dr.state) == "success"
    for task in ("approve", "deploy", "smoke_test", "teardown", "watcher"):
        assert states[task] == {"skipped"}, (task, states[task])
    assert states["close_tracking"] == {"success"} and xcom["close_tracking"]["status"] == "FINISHED"
    tracking = xcom["resolve_config"]["tracking"]
    assert mlflow_client.get_run(tracking["run_id"]).info.status == "FINISHED"
    version = mlflow_client.get_model_version(tracking["registered_model"], "1")
    assert (
        version.tags["detection.gate"] == "hold"
        and "is below the threshold 1.00" in version.tags["detection.gate_reason"]
    )
    assert mlflow_client.get_registered_model(tracking["registered_model"]).aliases == {}
