"""The pipeline DAG for the ``dag.test`` runs of this folder."""

from __future__ import annotations

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
