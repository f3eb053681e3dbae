"""A person's path through the Airflow UI in a real browser: sign in, open the pipeline, fill the
trigger form built from its params, trigger, and see the run succeed on its page."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from devtools import ui_browser as ui
from devtools.local_stack import AirflowClient
from include.project import PIPELINE_DAG_ID

MISSING_BROWSER = ui.missing_browser()
pytestmark = [pytest.mark.slow, pytest.mark.skipif(MISSING_BROWSER is not None, reason=str(MISSING_BROWSER))]

#: The trigger form's fields, one per DAG param, by the param's title.
PARAM_TITLES = (
    "Backend", "Data set source", "Data set format", "Class subset", "Epochs", "Tune", "Deploy",
    "Keep endpoint (minutes)", "Delete intermediate files", "Quality policy",
)


@pytest.fixture
def screenshots(tmp_path: Path) -> Path:
    """Where the screenshots go: ``$TEST_ARTIFACTS_DIR/airflow-ui`` when set (CI keeps them), else tmp."""
    root = os.environ.get("TEST_ARTIFACTS_DIR")
    return Path(root) / "airflow-ui" if root else tmp_path


def test_trigger_from_the_form_and_watch_the_run_succeed(
    airflow_stack: dict, airflow_client: AirflowClient, screenshots: Path
) -> None:
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
        shots.append(ui.save_screenshot(driver, screenshots / "3-trigger-form.png"))
        run_id = ui.submit_trigger(driver, PIPELINE_DAG_ID)

        run = airflow_client.request("GET", f"/dags/{PIPELINE_DAG_ID}/dagRuns/{run_id}")
        assert run["run_type"] == "manual"
        # the form's value went through; the rest are the params' defaults
        assert run["conf"]["epochs"] == 1 and run["conf"]["backend"] == "local" and run["conf"]["tune"] is False

        run = airflow_client.wait_for_run(PIPELINE_DAG_ID, run_id, timeout_s=1500, poll_s=5)
        assert run["state"] == "success", airflow_client.task_states(PIPELINE_DAG_ID, run_id)
        assert ui.wait_for_run_end(driver, run_id, timeout_s=180) == "Success"
        shots.append(ui.save_screenshot(driver, screenshots / "4-run-succeeded.png"))

    for shot in shots:
        assert shot.stat().st_size > 10_000, f"{shot} looks blank"
        print(f"screenshot: {shot}")
