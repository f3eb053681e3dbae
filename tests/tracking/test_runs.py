"""The run tree on a real MLflow server: found again on a retry, batches split over MLflow's limits, tags from
later stages, open stage runs closed."""

from __future__ import annotations

from include.configs import load_config
from include.tracking import runs


def test_a_retried_stage_reuses_its_run_and_a_rerun_the_pipeline_run(tracking_ref, mlflow_server, mlflow_client):
    ref = tracking_ref
    cfg = load_config(overrides={"tracking": {"uri": mlflow_server}}, environ={})
    assert runs.open_pipeline_run(cfg, mlflow_server, ref.dag_id, ref.airflow_run_id) == ref

    first = runs.step_run(ref, "train")
    runs.log(ref, first.run_id, params={"epochs": "4"}, tags={runs.STEP_TAG: "train"})
    runs.finish(ref, first.run_id, runs.FAILED)
    again = runs.step_run(ref, "train")  # the task's second try
    assert again.run_id == first.run_id and again.status == runs.RUNNING
    runs.log(ref, again.run_id, params={"epochs": "4"})  # the same param again is accepted

    run = mlflow_client.get_run(again.run_id)
    assert run.info.status == "RUNNING"
    assert run.data.tags["mlflow.parentRunId"] == ref.run_id and run.info.run_name == "train"
    children = mlflow_client.search_runs([ref.experiment_id], f"tags.`mlflow.parentRunId` = '{ref.run_id}'")
    assert [c.info.run_id for c in children] == [first.run_id]
    # another DAG run of the same DAG is another pipeline run in the same experiment
    other = runs.open_pipeline_run(cfg, mlflow_server, ref.dag_id, "manual__other")
    assert other.run_id != ref.run_id and other.experiment_id == ref.experiment_id


def test_trials_nest_under_their_tuning_run(tracking_ref, mlflow_client):
    tuning = runs.step_run(tracking_ref, "tune")
    trials = [runs.step_run(tracking_ref, "trial", trial=f"job-{i}", parent_run_id=tuning.run_id) for i in range(2)]
    assert runs.step_run(tracking_ref, "trial", trial="job-1", parent_run_id=tuning.run_id).run_id == trials[1].run_id
    found = mlflow_client.search_runs([tracking_ref.experiment_id], f"tags.`mlflow.parentRunId` = '{tuning.run_id}'")
    assert sorted(r.info.run_name for r in found) == ["job-0", "job-1"]


def test_a_batch_over_mlflows_limits_is_split(tracking_ref, mlflow_client):
    run = runs.step_run(tracking_ref, "evaluate")
    metrics = [runs.Metric("loss", float(i), step=i) for i in range(2500)] + [runs.Metric("nan", float("nan"))]
    params = {f"p{i:03d}": str(i) for i in range(150)}
    runs.log(tracking_ref, run.run_id, metrics=metrics, params=params, tags={"t": "x" * 9000})
    history = mlflow_client.get_metric_history(run.run_id, "loss")
    assert [m.step for m in history] == list(range(2500)) and history[1234].value == 1234.0
    data = mlflow_client.get_run(run.run_id).data
    assert data.params == params and "nan" not in data.metrics
    assert len(data.tags["t"]) == runs.MAX_TAG_LENGTH


def test_later_stages_tag_the_pipeline_run_or_a_stage_run(tracking_ref, mlflow_client):
    import pytest

    run = runs.step_run(tracking_ref, "train")
    runs.tag_run(tracking_ref, {"cache.hit": "true"})
    runs.tag_run(tracking_ref, {"cache.hit": "false"}, step="train")
    assert mlflow_client.get_run(tracking_ref.run_id).data.tags["cache.hit"] == "true"
    assert mlflow_client.get_run(run.run_id).data.tags["cache.hit"] == "false"
    with pytest.raises(ValueError, match="no evaluate run was opened"):
        runs.tag_run(tracking_ref, {"x": "1"}, step="evaluate")


def test_closing_fails_stage_runs_left_open(tracking_ref, mlflow_client):
    done, left = runs.step_run(tracking_ref, "validate"), runs.step_run(tracking_ref, "train")
    runs.finish(tracking_ref, done.run_id)
    assert [r.run_id for r in runs.open_children(tracking_ref)] == [left.run_id]
    for run in runs.open_children(tracking_ref):
        runs.finish(tracking_ref, run.run_id, runs.FAILED)
    runs.finish(tracking_ref, tracking_ref.run_id, runs.FAILED)
    assert mlflow_client.get_run(left.run_id).info.status == "FAILED"
    assert mlflow_client.get_run(done.run_id).info.status == "FINISHED"
    assert mlflow_client.get_run(tracking_ref.run_id).info.status == "FAILED"


def test_run_urls_open_the_ui_at_the_run(tracking_ref):
    url = runs.run_url(tracking_ref, "abc")
    assert url == f"{tracking_ref.uri}/#/experiments/{tracking_ref.experiment_id}/runs/abc"
