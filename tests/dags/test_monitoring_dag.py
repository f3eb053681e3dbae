"""The detection_monitoring DAG through Airflow (dag.test, the metadata DB, real captured traffic): in-distribution
traffic passes; drifted traffic fails the run at drift_gate with the reason; the retraining asset event is posted
only when asked for, and its extra names the data set; the baseline is found from the registry's champion."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from include.tracking import artifacts, runs
from include.tracking.registry import BASELINE_TAG, Registry
from tests.support.dag_runs import finished_run, parsed_dag

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def monitoring_dag() -> Any:
    return parsed_dag("detection_monitoring")


@pytest.fixture(autouse=True)
def storage_base(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("DETECTION__STORAGE__BASE_URI", str(tmp_path / "runs"))
    return tmp_path / "runs"


def _conf(**given: Any) -> dict[str, Any]:
    """Every param of the run: ``dag.test`` leaves a run's conf in the DAG's Params, so each run sets them all."""
    return {"source": None, "window_hours": None, "baseline": None, "trigger_retraining": None, "backend": "local",
            **given}  # fmt: skip


def _asset_events(run_id: str) -> list[dict]:
    """The ``labelled_dataset`` events the run posted (their extra)."""
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        query = (select(AssetEvent).join(AssetModel, AssetEvent.asset_id == AssetModel.id)
                 .where(AssetModel.name == "labelled_dataset", AssetEvent.source_run_id == run_id))  # fmt: skip
        return [dict(event.extra or {}) for event in session.scalars(query)]


def test_drift_fails_the_run_and_posts_no_retraining_event_by_default(
    monitoring_dag: Any, sample_capture: str, baseline: str
) -> None:
    dr = monitoring_dag.test(run_conf=_conf(source=sample_capture, baseline=baseline))
    tries, xcom = finished_run(dr)
    assert str(dr.state) == "failed"
    assert tries["monitor"] == [("success", 1)] and tries["drift_gate"] == [("failed", 1)], tries
    assert tries["retrain"] == [("skipped", 1)]
    assert xcom["monitor"]["status"] == "drifted" and "input.width" in xcom["monitor"]["drifted"]
    assert xcom["monitor"]["report_uri"].endswith("/monitoring.html")
    assert _asset_events(dr.run_id) == []


def test_drift_with_retraining_posts_the_asset_event(monitoring_dag: Any, sample_capture: str, baseline: str) -> None:
    dr = monitoring_dag.test(run_conf=_conf(source=sample_capture, baseline=baseline, trigger_retraining=True))
    tries, xcom = finished_run(dr)
    assert tries["retrain"] == [("success", 1)] and tries["drift_gate"] == [("failed", 1)], tries
    assert str(dr.state) == "failed"
    (event,) = _asset_events(dr.run_id)
    assert event["dataset_source"] == "../shared/datasets/bccd/BCCD" and event["dataset_format"] == "voc"
    assert event["monitoring_run"] == dr.run_id and "input.width" in event["reason"]


def test_the_champions_baseline_and_in_distribution_traffic_pass(
    monitoring_dag: Any, bccd_capture: str, baseline: str, tracking_uri: str, tracking_ref: Any,
    spread_artifact: str, tmp_path: Path,
) -> None:  # fmt: skip
    import shutil

    champions = str(shutil.copytree(baseline, tmp_path / "champion" / "monitoring"))  # not the other tests' folder
    registry = Registry(tracking_ref.uri, tracking_ref.registered_model)
    run = runs.step_run(tracking_ref, "trial", trial="monitored")
    source = artifacts.log_file(tracking_ref, run, spread_artifact.removeprefix("file://"), "model")
    version = registry.register(source, run.run_id, {"map": 0.5, BASELINE_TAG: champions}).version
    registry.set_champion(version, action="approve", by="test", reason="monitored")

    dr = monitoring_dag.test(run_conf=_conf(source=bccd_capture, trigger_retraining=True))
    tries, xcom = finished_run(dr)
    assert str(dr.state) == "success", tries
    assert xcom["monitor"]["status"] == "passed" and xcom["monitor"]["baseline_uri"].endswith(champions)
    assert tries["retrain"] == [("skipped", 1)] and _asset_events(dr.run_id) == []


def test_a_scheduled_run_without_a_champion_has_nothing_to_do(monitoring_dag: Any, tracking_uri: str) -> None:
    dr = monitoring_dag.test(run_conf=_conf())
    tries, _ = finished_run(dr)
    assert str(dr.state) == "success" and tries["monitor"] == [("skipped", 1)], tries
    assert tries["drift_gate"] == tries["retrain"] == [("skipped", 0)] and _asset_events(dr.run_id) == []
