"""The whole pipeline on the local backend through a real Airflow scheduler, triggered like the UI does: a run that
waits for a person's approval and deploys once approved, one that a rejection ends with nothing deployed, the
links from its tasks to MLflow and the reports, and a bad data source."""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest

from devtools import local_stack
from devtools.local_stack import AirflowClient
from include.evaluation.evaluate import evaluate
from include.project import PIPELINE_DAG_ID
from tests.support.dag_runs import endpoint_servers

pytestmark = pytest.mark.slow

EXPECTED_SUCCESS = {
    "resolve_config", "ingest", "validate", "plan_recordio", "build_recordio_shard[0]", "build_recordio_shard[1]",
    "merge_recordio", "choose_training", "train", "evaluate", "promotion_gate", "approve", "deploy", "smoke_test",
    "teardown", "close_tracking",
}


@pytest.fixture
def mlflow(airflow_stack: dict) -> Any:
    """MLflow's client on the stack's tracking server, with the pipeline's registered model removed: no champion
    yet, so the gate (threshold 0) lets the run's model ask for approval."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    logging.getLogger("mlflow.tracking.request_header.registry").setLevel(logging.ERROR)
    client = MlflowClient(airflow_stack["tracking_uri"])
    try:
        client.delete_registered_model(PIPELINE_DAG_ID)
    except MlflowException:
        pass
    return client


def _respond(client: AirflowClient, stack: dict, run_id: str, option: str, reason: str) -> None:
    """Answer the approval once the scheduler has seen the task pause (see :func:`local_stack.wait_until_parked`)."""
    local_stack.wait_until_parked(Path(stack["log"]), PIPELINE_DAG_ID, run_id, "approve")
    client.respond(PIPELINE_DAG_ID, run_id, "approve", option, reason=reason)


def _version(client: AirflowClient, run_id: str) -> str:
    """The model version the run's promotion gate registered."""
    return str(client.xcom(PIPELINE_DAG_ID, run_id, "promotion_gate", key="decision")["version"])


def _get(url: str, token: str | None = None) -> tuple[int, str, str]:
    """``(status, Location header, body)`` of a GET, redirects not followed."""

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: Any) -> None:
            return None

    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.build_opener(NoRedirect).open(request, timeout=60) as r:
            return r.status, r.headers.get("Location", ""), r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("Location", ""), exc.read().decode()


def test_a_manual_approval_waits_for_a_person_then_deploys(
    airflow_client: AirflowClient, airflow_stack: dict, mlflow: Any, tmp_path
) -> None:
    conf = {"epochs": 1, "dataset_source": "sample", "tune": False, "approval": "manual"}
    run_id = airflow_client.trigger(PIPELINE_DAG_ID, conf)
    assert airflow_client.wait_for_task(PIPELINE_DAG_ID, run_id, "approve", ("awaiting_input",)) == "awaiting_input"
    assert airflow_client.task_state(PIPELINE_DAG_ID, run_id, "deploy") in (None, "scheduled", "none")
    path = f"/dags/{PIPELINE_DAG_ID}/dagRuns/{run_id}/taskInstances/approve/-1/hitlDetails"
    asked = airflow_client.request("GET", path)
    assert asked["subject"].startswith(f"Promote version 1 of {PIPELINE_DAG_ID}?") and asked["options"] == [
        "Approve", "Reject"]
    assert "no champion yet" in asked["body"] and "/detection/runs/" in asked["body"]
    assert "| test mAP (VOC, IoU 0.5) |" in asked["body"]  # the figure the gate decided on
    _respond(airflow_client, airflow_stack, run_id, "Approve", reason="e2e: looks right")

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

    # the approval is the registry's: champion, who and why, on the version and on the run
    assert mlflow.get_registered_model(PIPELINE_DAG_ID).aliases == {"champion": "1"}
    version = mlflow.get_model_version(PIPELINE_DAG_ID, "1")
    assert (version.tags["detection.approval"], version.tags["detection.approved_by"]) == ("approved", "admin")
    assert version.tags["detection.approval_reason"] == "e2e: looks right"
    tracking = airflow_client.xcom(PIPELINE_DAG_ID, run_id, "resolve_config")["tracking"]
    pipeline_run = mlflow.get_run(tracking["run_id"])
    assert pipeline_run.info.status == "FINISHED" and pipeline_run.data.tags["approval.decision"] == "approved"
    assert pipeline_run.data.tags["detection.airflow_url"].endswith(f"/dags/{PIPELINE_DAG_ID}/runs/" + run_id
                                                                     .replace(":", "%3A").replace("+", "%2B"))

    _assert_links_lead_to_the_pages(airflow_client, airflow_stack, run_id, training, evaluation)


def _assert_links_lead_to_the_pages(client: AirflowClient, stack: dict, run_id: str, training: dict,
                                    evaluation: dict) -> None:
    links = {
        task: client.request("GET", f"/dags/{PIPELINE_DAG_ID}/dagRuns/{run_id}/taskInstances/{task}/links")[
            "extra_links"]
        for task in ("validate", "train", "evaluate", "approve", "ingest")
    }
    assert set(filter(None, links["ingest"].values())) == set()  # nothing to show for ingest
    report_link = links["evaluate"]["report.html"]
    assert report_link.startswith("/detection/runs/") and links["validate"]["quality.html"].endswith("/quality")
    assert links["approve"]["report.html"] == report_link.replace("/evaluate/", "/approve/")  # the same report

    status, _, page = _get(stack["url"] + report_link, client.token)
    assert status == 200 and "<img" in page and page == open(urlparse(evaluation["report_uri"]).path).read()
    assert _get(stack["url"] + report_link)[0] == 401  # behind Airflow's login
    assert _get(stack["url"] + links["approve"]["report.html"], client.token)[2] == page
    status, _, page = _get(stack["url"] + links["validate"]["quality.html"], client.token)
    assert status == 200 and "box_inside_image" in page
    status, location, _ = _get(stack["url"] + links["train"]["MLflow run"], client.token)
    assert status == 307 and location == training["tracking"]["url"]
    assert location.startswith(stack["tracking_uri"] + "/#/experiments/")
    status, location, _ = _get(stack["url"] + links["approve"]["MLflow model version"], client.token)
    assert status == 307 and location.endswith(f"/#/models/{PIPELINE_DAG_ID}/versions/1")


def test_a_rejection_or_no_answer_in_time_ends_the_run_with_nothing_deployed(
    airflow_client: AirflowClient, airflow_stack: dict, mlflow: Any
) -> None:
    conf = {"epochs": 1, "dataset_source": "sample", "tune": False, "approval": "manual"}
    run_id = airflow_client.trigger(PIPELINE_DAG_ID, conf)
    # beside it, a run nobody answers: its approval times out after 6 s (the scheduler sweeps every 15 s)
    unanswered = airflow_client.trigger(PIPELINE_DAG_ID, {**conf, "approval_timeout_minutes": 0.1})
    airflow_client.wait_for_task(PIPELINE_DAG_ID, run_id, "approve", ("awaiting_input",))
    _respond(airflow_client, airflow_stack, run_id, "Reject", reason="e2e: the WBC class regressed")
    run = airflow_client.wait_for_run(PIPELINE_DAG_ID, run_id, timeout_s=600, poll_s=3)
    states = airflow_client.task_states(PIPELINE_DAG_ID, run_id)
    assert run["state"] == "success" and states["approve"] == "success", states
    assert {states[t] for t in ("deploy", "smoke_test", "teardown")} == {"skipped"}, states
    assert states["close_tracking"] == "success"
    assert not list(airflow_stack["endpoints"].glob("*.json")) and endpoint_servers(airflow_stack["endpoints"]) == []

    assert mlflow.get_registered_model(PIPELINE_DAG_ID).aliases == {}  # nothing became champion
    version = mlflow.get_model_version(PIPELINE_DAG_ID, _version(airflow_client, run_id))
    assert version.tags["detection.approval"] == "rejected"
    assert version.tags["detection.approval_reason"] == "e2e: the WBC class regressed"
    tracking = airflow_client.xcom(PIPELINE_DAG_ID, run_id, "resolve_config")["tracking"]
    tags = mlflow.get_run(tracking["run_id"]).data.tags
    assert (tags["approval.decision"], tags["approval.by"]) == ("rejected", "admin")
    assert "deploy.endpoint_name" not in tags

    # the unanswered run: the scheduler's timeout sweep answered with the form's default, a rejection
    timed_out = airflow_client.wait_for_run(PIPELINE_DAG_ID, unanswered, timeout_s=600, poll_s=3)
    states = airflow_client.task_states(PIPELINE_DAG_ID, unanswered)
    assert timed_out["state"] == "success" and states["approve"] == "success", states
    assert {states[t] for t in ("deploy", "smoke_test", "teardown")} == {"skipped"}, states
    assert not list(airflow_stack["endpoints"].glob("*.json")) and endpoint_servers(airflow_stack["endpoints"]) == []
    assert mlflow.get_registered_model(PIPELINE_DAG_ID).aliases == {}
    version = mlflow.get_model_version(PIPELINE_DAG_ID, _version(airflow_client, unanswered))
    assert (version.tags["detection.approval"], version.tags["detection.approved_by"]) == ("rejected", "timeout")
    assert version.tags["detection.approval_reason"] == "no answer within 0.1 minutes"
    tracking = airflow_client.xcom(PIPELINE_DAG_ID, unanswered, "resolve_config")["tracking"]
    tags = mlflow.get_run(tracking["run_id"]).data.tags
    assert (tags["approval.decision"], tags["approval.by"]) == ("rejected", "timeout")
    assert "deploy.endpoint_name" not in tags

    # The unanswered run (one run at a time: it started after the rejected one, on the same generated sample and
    # request) reused the earlier run's RecordIO build, training and evaluation whatever ran before this test: each
    # task put the hit's note on its own task instance through the REST API, as the stack's `pipeline` user (the
    # airflow_api connection), and the UI's API reads it back.
    for task, step in (("plan_recordio", "recordio"), ("train", "training"), ("evaluate", "evaluation")):
        ti = airflow_client.request("GET", f"/dags/{PIPELINE_DAG_ID}/dagRuns/{unanswered}/taskInstances/{task}")
        assert (ti["note"] or "").startswith(f"cache hit: {step} "), (task, ti["note"])


def test_deliberately_bad_data_source_fails_the_run(airflow_client: AirflowClient, tmp_path, mlflow: Any) -> None:
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
    # its MLflow run is closed as failed
    assert states["close_tracking"] == "success"
    tracking = airflow_client.xcom(PIPELINE_DAG_ID, run_id, "resolve_config")["tracking"]
    assert mlflow.get_run(tracking["run_id"]).info.status == "FAILED"
