"""Regenerate the docs' screenshots of the Airflow UI from a real run.

Starts its own local Airflow stack (a home under /tmp, a free port, the quick sample run),
then in headless Chromium signs in, opens ``object_detection_pipeline``, fills its trigger form
(epochs 1) and captures it, triggers, waits for the run to succeed, and captures the DAG's graph
(top to bottom, every task). Stops the stack and removes its home at the end.

Writes ``docs/images/airflow-trigger-form.png`` and ``docs/images/pipeline-graph.png``.

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
RUN_TIMEOUT_S = 1800


def capture(out: Path, home: Path) -> dict[str, Path]:
    """Start a stack under ``home``, run the pipeline once from the UI, save the two PNGs in ``out``."""
    stack = home / "airflow"
    details = local_stack.start(
        home=stack, port=local_stack.free_port(0), timeout_s=600,
        extra_env=local_stack.quick_run_env(home / "runs", home / "endpoints"),
    )
    try:
        client = local_stack.AirflowClient(details["url"], details["username"], details["password"])
        client.wait_for_dag(PIPELINE_DAG_ID)
        task_ids = [t["task_id"] for t in client.request("GET", f"/dags/{PIPELINE_DAG_ID}/tasks")["tasks"]]
        shots = {"form": out / "airflow-trigger-form.png", "graph": out / "pipeline-graph.png"}
        # tall enough for the whole trigger dialog, then for the graph laid out top to bottom
        with ui.chromium(1300, 2400) as driver:
            ui.log_in(driver, details["url"], details["username"], details["password"])
            ui.open_dag(driver, details["url"], PIPELINE_DAG_ID)
            form = ui.open_trigger_form(driver)
            ui.set_param(driver, "Epochs", "1")
            driver.execute_script("window.scrollTo(0, 0)")
            ui.save_screenshot(driver, shots["form"], element=form, max_bytes=MAX_BYTES)
            run_id = ui.submit_trigger(driver, PIPELINE_DAG_ID)
            print(f"triggered {run_id}; waiting for it to finish...", file=sys.stderr)
            run = client.wait_for_run(PIPELINE_DAG_ID, run_id, timeout_s=RUN_TIMEOUT_S)
            if run["state"] != "success":
                raise RuntimeError(f"run {run_id} {run['state']}: {client.task_states(PIPELINE_DAG_ID, run_id)}")
            if (state := ui.wait_for_run_end(driver, run_id, timeout_s=180)) != "Success":
                raise RuntimeError(f"the run page shows {state} for run {run_id}")
            driver.set_window_size(1200, 1800)
            ui.show_graph(driver, task_ids, direction="Top to Bottom")
            ui.save_screenshot(driver, shots["graph"], graph=True, max_bytes=MAX_BYTES)
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
