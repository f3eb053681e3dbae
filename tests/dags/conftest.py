"""The pipeline DAG for the ``dag.test`` runs of this folder."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from include.project import PIPELINE_DAG_ID
from tests.support.dag_runs import parsed_dag


@pytest.fixture(scope="module")
def pipeline() -> Any:
    """The pipeline DAG for ``dag.test`` runs (see :func:`dag_runs.parsed_dag`).

    Parsed again for each module: in one process, ``dag.test`` leaves a run's conf in the DAG's Param
    objects (``process_params`` updates them in place), so later runs would inherit it.
    """
    return parsed_dag(PIPELINE_DAG_ID)


@pytest.fixture
def quick_runs(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> tuple[Path, Path]:
    """The environment of quick local runs (:func:`devtools.local_stack.quick_run_env`); ``(runs, endpoints)``."""
    from devtools import local_stack

    runs, endpoints = tmp_path / "runs", tmp_path / "endpoints"
    monkeypatch.delenv("DETECTION_CONFIG_FILE", raising=False)
    for key, value in local_stack.quick_run_env(runs, endpoints).items():
        monkeypatch.setenv(key, value)
    return runs, endpoints
