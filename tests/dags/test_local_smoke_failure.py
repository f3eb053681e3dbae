"""A local run whose smoke test fails: the run is failed, and no endpoint, server process or port is left.

``dag.test`` runs the pipeline DAG in this process on the local backend; the deploy task starts a
real endpoint server (a child process on 127.0.0.1). The smoke test is made to fail by a request
limit smaller than any image (``deploy.max_body_mb``), so every try fails before an answer.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import psutil
import pytest

from devtools import local_stack
from include import storage
from include.endpoints import processes as process
from tests.support.dag_runs import endpoint_servers, finished_run

pytestmark = pytest.mark.slow


def test_failed_smoke_test_fails_the_run_and_leaves_no_server(
    pipeline: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    runs, endpoints = tmp_path / "runs", tmp_path / "endpoints"
    monkeypatch.delenv("DETECTION_CONFIG_FILE", raising=False)
    for key, value in {
        **local_stack.quick_run_env(runs, endpoints),
        "DETECTION__DEPLOY__MAX_BODY_MB": "0.0001",
    }.items():
        monkeypatch.setenv(key, value)
    conf = {"backend": "local", "dataset_source": "sample", "epochs": 1, "tune": False, "deploy": True}
    dr = pipeline.test(run_conf={**conf, "keep_endpoint_minutes": 0, "delete_intermediate_files": True})
    tries, xcom = finished_run(dr)
    states = {task: {state for state, _ in runs_} for task, runs_ in tries.items()}

    assert str(dr.state) == "failed"
    assert states["deploy"] == {"success"} and states["teardown"] == {"success"}
    assert states["export"] == {"skipped"}  # the export param is off by default
    assert tries["smoke_test"] == [("failed", pipeline.get_task("smoke_test").retries + 1)]
    assert states["watcher"] == {"failed"}  # what keeps the run failed although teardown succeeded
    # deploy started a server and waited for /ping; teardown stopped that very process and freed its port
    deployed = xcom["deploy"]
    assert deployed["status"] == "InService" and deployed["endpoint_url"].startswith("http://127.0.0.1:")
    (stopped,) = xcom["teardown"]["stopped"]
    assert (stopped["name"], stopped["pid"], stopped["port_free"]) == (deployed["endpoint_name"], deployed["pid"], True)
    assert not psutil.pid_exists(deployed["pid"]) or psutil.Process(deployed["pid"]).status() == psutil.STATUS_ZOMBIE
    assert endpoint_servers(endpoints) == [] and list(endpoints.glob("*.json")) == []
    url = urlparse(deployed["endpoint_url"])
    assert process.port_is_free(url.hostname, url.port, timeout_s=0)
    # a failed run keeps its files for diagnosis, although deleting them was asked for
    assert "deleted_files" not in xcom["teardown"]
    assert all(storage.exists(xcom["resolve_config"]["layout"][stage]) for stage in ("ingest", "quality", "recordio"))
