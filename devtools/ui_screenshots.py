"""Regenerate the docs' screenshots of the Airflow and MLflow UIs from real runs.

Starts its own ``airflow standalone`` and tracking server (a home under /tmp, free ports, the quick
sample run), then in headless Chromium signs in, opens ``object_detection_pipeline``, fills its
trigger form (3 epochs) and captures it. One run (3 epochs, the export on, ``approval=manual``) is
triggered through the REST API; its approval form is captured and answered in the UI (Approve, with
a reason), the run followed to its end, and then the DAG's graph (top to bottom, every task), the
evaluate task's links, the report one of them opens and the run's training run in the MLflow UI are
captured. Stops the stack and removes its home at the end.

Writes ``docs/images/``: ``airflow-trigger-form.png``, ``pipeline-graph.png``, ``airflow-task-links.png``,
``report-from-airflow.png``, ``mlflow-training-run.png``, ``airflow-approval.png``.

Usage: ``.venv/bin/python -m devtools.ui_screenshots [--out docs/images] [--keep]``
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

from devtools import local_stack
from devtools import ui_browser as ui
from include.project import PIPELINE_DAG_ID, PROJECT_ROOT

MAX_BYTES = 400_000
#: Epochs of the runs: enough for the MLflow page to show curves (one epoch is drawn as bars).
EPOCHS = 3
RUN_TIMEOUT_S = 1800


def capture(out: Path, home: Path) -> dict[str, Path]:
    """Start a stack under ``home``, run the pipeline once, save the PNGs in ``out``."""
    stack = home / "airflow"
    details = local_stack.start(
        home=stack, port=local_stack.free_port(0), timeout_s=600,
        extra_env=local_stack.quick_run_env(home / "runs", home / "endpoints", home / "mlflow"),
    )
    try:
        client = local_stack.AirflowClient(details["url"], details["username"], details["password"])
        client.wait_for_dag(PIPELINE_DAG_ID)
        task_ids = [t["task_id"] for t in client.request("GET", f"/dags/{PIPELINE_DAG_ID}/tasks")["tasks"]]
        shots = {name: out / f"{name}.png" for name in (
            "airflow-trigger-form", "pipeline-graph", "airflow-task-links", "report-from-airflow",
            "mlflow-training-run", "airflow-approval")}
        # tall enough for the whole trigger dialog, then for the graph laid out top to bottom
        with ui.chromium(1300, 2400) as driver:
            ui.log_in(driver, details["url"], details["username"], details["password"])
            ui.open_dag(driver, details["url"], PIPELINE_DAG_ID)
            form = ui.open_trigger_form(driver)
            ui.set_param(driver, "Epochs", str(EPOCHS))
            driver.execute_script("window.scrollTo(0, 0)")
            ui.save_screenshot(driver, shots["airflow-trigger-form"], element=form, max_bytes=MAX_BYTES)

            # One run does for every other picture: no champion yet, so its model asks for approval.
            run_id = client.trigger(PIPELINE_DAG_ID, {"epochs": EPOCHS, "export": True, "approval": "manual"})
            print(f"triggered {run_id}; waiting for its approval...", file=sys.stderr)
            client.wait_for_task(PIPELINE_DAG_ID, run_id, "approve", ("awaiting_input",), RUN_TIMEOUT_S)
            local_stack.wait_until_parked(Path(details["log"]), PIPELINE_DAG_ID, run_id, "approve")
            driver.set_window_size(1400, 1150)
            ui.open_required_action(driver, details["url"], PIPELINE_DAG_ID, run_id, "approve")
            ui.click(driver, "//button[starts-with(@aria-label, 'Show Grid')]")  # the task's panel at full width
            ui.visible(driver, "//button[normalize-space()='Approve']")
            ui.answer_required_action(driver, "Approve", reason="first model of this data set; report checked",
                                      screenshot=shots["airflow-approval"], max_bytes=MAX_BYTES)
            run = client.wait_for_run(PIPELINE_DAG_ID, run_id, timeout_s=RUN_TIMEOUT_S)
            if run["state"] != "success" or client.task_state(PIPELINE_DAG_ID, run_id, "deploy") != "success":
                raise RuntimeError(f"approved run {run_id}: {client.task_states(PIPELINE_DAG_ID, run_id)}")
            ui.open_run(driver, details["url"], PIPELINE_DAG_ID, run_id)
            if (state := ui.wait_for_run_end(driver, run_id, timeout_s=180)) != "Success":
                raise RuntimeError(f"the run page shows {state} for run {run_id}")
            driver.set_window_size(1200, 1800)
            ui.show_graph(driver, task_ids, direction="Top to Bottom")
            ui.save_screenshot(driver, shots["pipeline-graph"], graph=True, max_bytes=MAX_BYTES)

            driver.set_window_size(1400, 1000)
            ui.open_task_details(driver, details["url"], PIPELINE_DAG_ID, run_id, "evaluate")
            ui.save_screenshot(driver, shots["airflow-task-links"], max_bytes=MAX_BYTES)
            ui.follow_extra_link(driver, "report.html")
            ui.visible(driver, "//h1[starts-with(normalize-space(), 'Evaluation of')]")
            ui.save_screenshot(driver, shots["report-from-airflow"], max_bytes=MAX_BYTES)
            training = client.xcom(PIPELINE_DAG_ID, run_id, "train")
            ui.open_mlflow_run(driver, training["tracking"]["url"], "train", "validation:mAP")
            ui.save_screenshot(driver, shots["mlflow-training-run"], max_bytes=MAX_BYTES)
        return shots
    finally:
        local_stack.stop(stack)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=PROJECT_ROOT / "docs" / "images", help="where the PNGs go")
    parser.add_argument("--keep", action="store_true", help="keep the stack's home (logs, run outputs)")
    args = parser.parse_args(argv)
    if reason := ui.missing_browser():
        parser.error(reason)
    home = Path(tempfile.mkdtemp(prefix="detection-ui-screenshots-", dir="/tmp"))
    started = time.monotonic()
    try:
        shots = capture(args.out, home)
    finally:
        if args.keep:
            print(f"stack home kept: {home}", file=sys.stderr)
        else:
            shutil.rmtree(home, ignore_errors=True)
    for shot in shots.values():
        print(f"{shot}  {shot.stat().st_size / 1000:.0f} kB")
    print(f"done in {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
