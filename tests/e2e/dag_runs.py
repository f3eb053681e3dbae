"""Reading back a DAG run that ``dag.test`` finished in this process: task states, tries and XComs."""

from __future__ import annotations

from typing import Any


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
