"""A person's path through the Airflow UI in a real browser: sign in, open the pipeline, fill the
trigger form built from its params, trigger, see the run succeed on its page, follow the evaluate task's
link to its report, and open the run's training run in the MLflow UI.

The form asks for a promotion threshold no model reaches, so this run is also the DAG-level check of
a model held at the gate: registered, nothing asked, deployed or moved, and the run's MLflow run
still closed (the gate's branch skips only the approval and what follows)."""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlparse

import pytest
from selenium.webdriver.common.by import By

from devtools import ui_browser as ui
from devtools.local_stack import AirflowClient
from include.project import PIPELINE_DAG_ID

MISSING_BROWSER = ui.missing_browser()
pytestmark = [pytest.mark.slow, pytest.mark.skipif(MISSING_BROWSER is not None, reason=str(MISSING_BROWSER))]

#: The trigger form's fields, one per DAG param, by the param's title.
PARAM_TITLES = (
    "Backend", "Data set source", "Data set format", "Class subset", "Epochs", "Tune", "Deploy",
    "Promotion threshold", "Keep endpoint (minutes)", "Delete intermediate files", "Quality policy", "Approval",
    "Export", "Serving runtime",
)


@pytest.fixture
def screenshots(tmp_path: Path) -> Path:
    """Where the screenshots go: ``$TEST_ARTIFACTS_DIR/airflow-ui`` when set (CI keeps them), else tmp."""
    root = os.environ.get("TEST_ARTIFACTS_DIR")
    return Path(root) / "airflow-ui" if root else tmp_path


def test_trigger_from_the_form_and_watch_the_run_succeed(
    airflow_stack: dict, airflow_client: AirflowClient, screenshots: Path
) -> None:
    import logging

    from mlflow import MlflowClient

    logging.getLogger("mlflow.tracking.request_header.registry").setLevel(logging.ERROR)
    mlflow = MlflowClient(airflow_stack["tracking_uri"])
    aliases_before = _aliases(mlflow)
    url, login_shot = airflow_stack["url"], screenshots / "1-login.png"
    with ui.chromium() as driver, ui.screenshot_on_failure(driver, screenshots / "failure.png"):
        ui.log_in(driver, url, airflow_stack["username"], airflow_stack["password"], screenshot=login_shot)
        shots = [login_shot]

        ui.open_dag(driver, url, PIPELINE_DAG_ID)
        shots.append(ui.save_screenshot(driver, screenshots / "2-dag.png"))

        ui.open_trigger_form(driver)
        for title in PARAM_TITLES:
            ui.field_input(driver, ui.TRIGGER_FORM, title)
        ui.set_param(driver, "Epochs", "1")
        ui.set_param(driver, "Promotion threshold", "1")  # no model reaches a perfect mAP: the gate holds it
        shots.append(ui.save_screenshot(driver, screenshots / "3-trigger-form.png"))
        run_id = ui.submit_trigger(driver, PIPELINE_DAG_ID)

        run = airflow_client.request("GET", f"/dags/{PIPELINE_DAG_ID}/dagRuns/{run_id}")
        assert run["run_type"] == "manual"
        # the form's value went through; the rest are the params' defaults
        assert run["conf"]["epochs"] == 1 and run["conf"]["backend"] == "local" and run["conf"]["tune"] is False
        assert run["conf"]["promotion_threshold"] == 1

        run = airflow_client.wait_for_run(PIPELINE_DAG_ID, run_id, timeout_s=1500, poll_s=5)
        assert run["state"] == "success", airflow_client.task_states(PIPELINE_DAG_ID, run_id)
        assert ui.wait_for_run_end(driver, run_id, timeout_s=180) == "Success"
        shots.append(ui.save_screenshot(driver, screenshots / "4-run-succeeded.png"))
        _assert_held_at_the_gate(airflow_client, mlflow, run_id, aliases_before)

        # the evaluate task's link to report.html: the run's report, served from Airflow's own address
        ui.open_task_details(driver, url, PIPELINE_DAG_ID, run_id, "evaluate")
        ui.visible(driver, "//a[normalize-space()='MLflow run']")
        shots.append(ui.save_screenshot(driver, screenshots / "5-evaluate-task-links.png"))
        ui.follow_extra_link(driver, "report.html")
        ui.visible(driver, "//h1[starts-with(normalize-space(), 'Evaluation of')]")
        assert urlparse(driver.current_url).path.startswith(f"/detection/runs/{PIPELINE_DAG_ID}/")
        assert driver.find_elements(By.XPATH, "//img")  # charts and samples, inside the page
        shots.append(ui.save_screenshot(driver, screenshots / "6-report-from-the-task-link.png"))

        # the MLflow UI's page of the run's training run: its per-epoch curves
        training = airflow_client.xcom(PIPELINE_DAG_ID, run_id, "train")
        ui.open_mlflow_run(driver, training["tracking"]["url"], "train", "validation:mAP")
        for metric in ("train:cross_entropy", "train:smooth_l1", "train:throughput"):
            ui.visible(driver, f"//*[normalize-space()='{metric}']")
        shots.append(ui.save_screenshot(driver, screenshots / "7-mlflow-training-run.png"))

    for shot in shots:
        assert shot.stat().st_size > 10_000, f"{shot} looks blank"
        print(f"screenshot: {shot}")


def _aliases(mlflow) -> dict[str, str]:
    from mlflow.exceptions import MlflowException

    try:
        return dict(mlflow.get_registered_model(PIPELINE_DAG_ID).aliases)
    except MlflowException:  # no version registered yet
        return {}


def _assert_held_at_the_gate(client: AirflowClient, mlflow, run_id: str, aliases_before: dict[str, str]) -> None:
    """The model is a version marked held; nothing was asked, deployed or moved; the MLflow run is closed."""
    states = client.task_states(PIPELINE_DAG_ID, run_id)
    for task in ("approve", "deploy", "smoke_test", "teardown", "watcher"):
        assert states[task] == "skipped", (task, states)
    assert states["promotion_gate"] == "success" and states["close_tracking"] == "success", states
    tracking = client.xcom(PIPELINE_DAG_ID, run_id, "resolve_config")["tracking"]
    assert client.xcom(PIPELINE_DAG_ID, run_id, "close_tracking")["status"] == "FINISHED"
    assert mlflow.get_run(tracking["run_id"]).info.status == "FINISHED"
    decision = client.xcom(PIPELINE_DAG_ID, run_id, "promotion_gate", key="decision")
    version = mlflow.get_model_version(tracking["registered_model"], str(decision["version"]))
    assert version.tags["detection.gate"] == "hold" and version.tags["detection.approval"] == "not requested"
    assert "is below the threshold 1.00" in version.tags["detection.gate_reason"]
    assert _aliases(mlflow) == aliases_before  # no champion moved
