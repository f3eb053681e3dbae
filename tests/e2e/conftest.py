"""A real Airflow (standalone: api-server, scheduler, dag-processor, triggerer) for the end-to-end tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from include import local_stack


@pytest.fixture(scope="session")
def airflow_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    home = tmp_path_factory.mktemp("airflow-home")
    runs = tmp_path_factory.mktemp("runs")
    details = local_stack.start(
        home=home,
        port=local_stack.free_port(0),
        timeout_s=600,
        extra_env={"DETECTION__STORAGE__BASE_URI": str(runs)},
    )
    details["runs"] = Path(runs)
    try:
        yield details
    finally:
        local_stack.stop(home)


@pytest.fixture(scope="session")
def airflow_client(airflow_stack: dict) -> local_stack.AirflowClient:
    client = local_stack.AirflowClient(airflow_stack["url"], airflow_stack["username"], airflow_stack["password"])
    client.wait_for_dag(local_stack.PIPELINE_DAG_ID)
    return client
