"""The whole pipeline on the local backend through a real Airflow scheduler, triggered like the UI does."""

from __future__ import annotations

import json
from urllib.parse import urlparse

import pytest

from devtools.local_stack import AirflowClient
from include.evaluation.evaluate import evaluate
from include.project import PIPELINE_DAG_ID
from tests.support.dag_runs import endpoint_servers

pytestmark = pytest.mark.slow

EXPECTED_SUCCESS = {
    "resolve_config", "ingest", "validate", "plan_recordio", "build_recordio_shard[0]", "build_recordio_shard[1]",
    "merge_recordio", "choose_training", "train", "evaluate", "promotion_gate", "deploy", "smoke_test", "teardown",
}


def test_every_task_runs_and_nothing_is_left_running(
    airflow_client: AirflowClient, airflow_stack: dict, tmp_path
) -> None:
    # No champion yet (an earlier test's run may have set one): the gate's threshold is 0, so it deploys.
    (airflow_stack["runs"] / PIPELINE_DAG_ID / "registry.json").unlink(missing_ok=True)
    run_id = airflow_client.trigger(PIPELINE_DAG_ID, {"epochs": 1, "dataset_source": "sample", "tune": False})
    run = airflow_client.wait_for_run(PIPELINE_DAG_ID, run_id, timeout_s=900, poll_s=5)
    states = airflow_client.task_states(PIPELINE_DAG_ID, run_id)
    assert run["state"] == "success", states
    assert {t for t, s in states.items() if s == "success"} == EXPECTED_SUCCESS, states
    assert states["tune"] == "skipped" and states["watcher"] == "skipped"

    training = airflow_client.xcom(PIPELINE_DAG_ID, run_id, "train")
    evaluation = airflow_client.xcom(PIPELINE_DAG_ID, run_id, "evaluate")
    assert training["backend"] == "local" and training["status"] == "Completed"
    report = urlparse(evaluation["report_uri"]).path
    assert report.endswith("report.html") and "<img" in open(report).read()
    record = json.loads(open(urlparse(evaluation["evaluation_uri"]).path).read())
    assert record["split"] == evaluation["split"] == "test"  # the held-out split, not the selection data
    # evaluation's own reading of the validation split agrees with the trainer's validation mAP on it
    recordio = urlparse(record["channel_uri"]).path.rsplit("/", 1)[0]
    again = evaluate(urlparse(record["training_uri"]).path, recordio, str(tmp_path / "again"), samples=0,
                     split="validation")
    assert abs(again["map"] - training["final_metrics"]["validation:mAP"]) < 0.02

    deployed = airflow_client.xcom(PIPELINE_DAG_ID, run_id, "deploy")
    smoke = airflow_client.xcom(PIPELINE_DAG_ID, run_id, "smoke_test")
    assert deployed["status"] == "InService" and smoke["detections"] > 0
    # teardown: no endpoint state, no server process, no listening port
    assert not list(airflow_stack["endpoints"].glob("*.json"))
    assert endpoint_servers(airflow_stack["endpoints"]) == []


def test_deliberately_bad_data_source_fails_the_run(airflow_client: AirflowClient, tmp_path) -> None:
    run_id = airflow_client.trigger(
        PIPELINE_DAG_ID, {"dataset_source": str(tmp_path / "missing"), "dataset_format": "voc"}
    )
    run = airflow_client.wait_for_run(PIPELINE_DAG_ID, run_id, timeout_s=600, poll_s=3)
    states = airflow_client.task_states(PIPELINE_DAG_ID, run_id)
    assert run["state"] == "failed"
    # the watcher is what marks the run failed; everything after ingest never ran
    assert states["ingest"] == "failed" and states["watcher"] == "failed"
    assert states["validate"] == "upstream_failed" and states["teardown"] != "success"
    assert "missing" in airflow_client.task_log(PIPELINE_DAG_ID, run_id, "ingest", try_number=2)
