"""DAG runs in this process with ``dag.test``: the DAG as the dag processor parses it, and what a run left
(task states, XComs, endpoint server processes).

Retry delays are zeroed: a retried task still runs again, the test just does not sleep.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

from include.project import PROJECT_ROOT

DAGS = PROJECT_ROOT / "dags"


def parsed_dag(dag_id: str) -> Any:
    """``dag_id`` from the project's dags folder, with a metadata database to run it in."""
    from airflow.dag_processing.dagbag import DagBag
    from airflow.utils.db import initdb

    initdb()
    dag = DagBag(dag_folder=str(DAGS)).get_dag(dag_id)
    for task in dag.tasks:
        task.retry_delay = timedelta(0)
    return dag


def finished_run(dr: Any) -> tuple[dict[str, list[tuple[str, int]]], dict[str, Any]]:
    """Task states and try numbers (task id -> [(state, try)] per map index) and unmapped XCom return values."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    tries: dict[str, list[tuple[str, int]]] = {}
    xcom: dict[str, Any] = {}
    with create_session() as session:
        for ti in dr.get_task_instances(session=session):
            tries.setdefault(ti.task_id, []).append((str(ti.state), ti.try_number))
        query = XComModel.get_many(run_id=dr.run_id, dag_ids=dr.dag_id, key="return_value")
        for row in session.scalars(query):
            if row.map_index < 0:
                xcom[row.task_id] = XComModel.deserialize_value(row)
    return tries, xcom


def endpoint_servers(endpoints: Path) -> list[Any]:
    """Running local endpoint server processes (``psutil.Process``) that keep their state under ``endpoints``."""
    import psutil

    return [
        proc
        for proc in psutil.process_iter(["cmdline"])
        if "include.serving.server" in (cmdline := " ".join(proc.info["cmdline"] or [])) and str(endpoints) in cmdline
    ]
