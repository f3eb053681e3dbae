"""The plugin's links: which task gets which, and the route each one points at (built from the task's key)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from detection_airflow.links import GLOBAL_LINKS, route

RUN_ID = "manual__2026-01-02T03:04:05+00:00"


def _links(task_id: str) -> dict[str, str]:
    key = SimpleNamespace(dag_id="object_detection_pipeline", run_id=RUN_ID, task_id=task_id, map_index=-1)
    return {link.name: link.get_link(None, ti_key=key) for link in GLOBAL_LINKS}


@pytest.mark.parametrize(
    ("task_id", "shown"),
    [
        ("validate", {"MLflow run", "quality.html"}),
        ("train", {"MLflow run"}),
        ("tune", {"MLflow run"}),
        ("evaluate", {"MLflow run", "report.html"}),
        ("approve", {"MLflow model version", "report.html"}),
        ("deploy", {"MLflow run"}),
        ("ingest", set()),
        ("merge_recordio", set()),
    ],
)
def test_each_task_links_to_its_pages(task_id: str, shown: set[str]) -> None:
    links = _links(task_id)
    assert {name for name, url in links.items() if url} == shown
    assert all(url.startswith("/detection/runs/object_detection_pipeline/") for url in links.values() if url)


def test_run_ids_are_quoted_in_routes() -> None:
    assert route("dag", RUN_ID, "evaluate", "report") == (
        "/detection/runs/dag/manual__2026-01-02T03%3A04%3A05%2B00%3A00/evaluate/report"
    )
