"""A real Airflow (LocalExecutor on SQLite: api-server, scheduler, dag-processor, triggerer) for end-to-end tests."""

from __future__ import annotations

import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from devtools import local_stack
from include.project import PIPELINE_DAG_ID

#: Lines of the stack's log shown when a test using it failed (the folder is removed afterwards).
LOG_TAIL_LINES = 100


@pytest.fixture(scope="session")
def airflow_stack(request: pytest.FixtureRequest) -> Iterator[dict]:
    # Not pytest's tmp_path: other pytest sessions on the machine rotate those away mid-run.
    root = Path(tempfile.mkdtemp(prefix="detection-e2e-"))
    home, runs, endpoints, tracking = root / "airflow-home", root / "runs", root / "endpoints", root / "mlflow"
    for folder in (home, runs, endpoints):
        folder.mkdir()
    details = local_stack.start(
        home=home,
        port=local_stack.free_port(0),
        timeout_s=600,
        # a tiny data set and a gate every model passes: the run exercises every task quickly
        extra_env=local_stack.quick_run_env(runs, endpoints, tracking),
    )
    details["runs"] = Path(runs)
    details["endpoints"] = Path(endpoints)
    try:
        yield details
    finally:
        local_stack.stop(home)
        if request.session.testsfailed:  # the API answers errors with an id to look up in its log
            capture = request.config.pluginmanager.getplugin("capturemanager")
            with capture.global_and_fixture_disabled():  # else pytest swallows a session teardown's output
                for log in sorted(local_stack.StackPaths(home).logs.glob("*.log")):
                    lines = log.read_text(errors="replace").splitlines()
                    print(f"\n--- last {LOG_TAIL_LINES} lines of {log.name} ---", file=sys.stderr)
                    print("\n".join(lines[-LOG_TAIL_LINES:]), file=sys.stderr)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def airflow_client(airflow_stack: dict) -> local_stack.AirflowClient:
    client = local_stack.AirflowClient(airflow_stack["url"], airflow_stack["username"], airflow_stack["password"])
    client.wait_for_dag(PIPELINE_DAG_ID)
    return client
