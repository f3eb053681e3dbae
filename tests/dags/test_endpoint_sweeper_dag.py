"""The ``endpoint_sweeper`` DAG (``dag.test``): a dry run lists expired endpoints, a run stops only those."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from include.endpoints import local as ep
from include.endpoints import processes as process
from tests.support.dag_runs import finished_run, parsed_dag


@pytest.fixture(scope="module")
def sweeper() -> Any:
    return parsed_dag("endpoint_sweeper")


def _sweep(dag: Any, dry_run: bool) -> dict:
    dr = dag.test(run_conf={"dry_run": dry_run})
    assert str(dr.state) == "success"
    return finished_run(dr)[1]["sweep"]


def _listening(state: dict) -> bool:
    return not process.port_is_free(state["host"], state["port"], timeout_s=0)


def test_sweeper_dag_stops_expired_endpoints_only(
    sweeper: Any, artifact: str, server_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DETECTION__LOCAL__ENDPOINT_STATE_DIR", str(tmp_path))
    monkeypatch.delenv("DETECTION_CONFIG_FILE", raising=False)
    expiring = ep.start_endpoint(artifact, "expiring", tmp_path, keep_for_s=1, env=server_env)
    kept = ep.start_endpoint(artifact, "kept", tmp_path, keep_for_s=3600, env=server_env)
    try:
        while datetime.now(UTC) <= datetime.fromisoformat(expiring["keep_until"]):
            time.sleep(0.1)
        assert _sweep(sweeper, dry_run=True) == {"would_remove": {"local": ["expiring"]}}
        assert process.is_running(expiring["pid"], expiring["create_time"])  # a dry run removes nothing

        assert _sweep(sweeper, dry_run=False) == {"local": ["expiring"], "sagemaker": []}
        assert not process.is_running(expiring["pid"], expiring["create_time"]) and not _listening(expiring)
        assert [s["name"] for s in ep.list_endpoints(tmp_path)] == ["kept"]
        assert process.is_running(kept["pid"], kept["create_time"]) and _listening(kept)
    finally:
        for name in ("expiring", "kept"):
            ep.stop_endpoint(name, tmp_path)
