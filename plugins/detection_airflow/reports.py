"""Pages on Airflow's own address: a run's ``report.html`` and ``quality.html``, the way to its MLflow runs.

Mounted by :class:`~detection_plugin.DetectionPlugin` under ``/detection`` in the
API server, behind Airflow's authentication (the UI's session cookie or a bearer token; the user
needs read access to the DAG's XComs). Every page starts from the run's ``resolve_config`` result,
which holds its folders and its tracking run: the reports are read through :mod:`include.storage`
(local or S3, with the API server's credentials) and returned as they are (they are
self-contained); MLflow pages are redirects, to the tracking server's UI or, for SageMaker's
managed MLflow, to a presigned URL made now.
"""

from __future__ import annotations

import html
from typing import Any

from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity
from airflow.api_fastapi.core_api.security import requires_access_dag
from fastapi import Depends, FastAPI
from fastapi.responses import HTMLResponse, RedirectResponse, Response

app = FastAPI(title="Detection pipeline pages", docs_url=None, redoc_url=None, openapi_url=None)
READ_XCOM = [Depends(requires_access_dag("GET", DagAccessEntity.XCOM))]

#: The tracking run each task's "MLflow run" link opens (other tasks: the pipeline run).
STEP_OF_TASK = {"validate": "validate", "train": "train", "tune": "tune", "evaluate": "evaluate"}
#: Report files by page, and the layout folder holding each.
REPORTS = {"report": ("evaluation", "report.html"), "quality": ("quality", "quality.html")}


class PageError(Exception):
    """A page that cannot be shown; the message says why."""


def _xcom(dag_id: str, run_id: str, task_id: str, key: str = "return_value") -> Any:
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        query = XComModel.get_many(key=key, run_id=run_id, dag_ids=dag_id, task_ids=task_id, map_indexes=-1)
        row = session.scalars(query).first()
        return None if row is None else XComModel.deserialize_value(row)


def _run_context(dag_id: str, run_id: str) -> dict[str, Any]:
    data = _xcom(dag_id, run_id, "resolve_config")
    if not isinstance(data, dict) or "layout" not in data:
        raise PageError(
            f"run {run_id} of {dag_id} has no resolved configuration (is it a detection pipeline run, "
            "and did resolve_config succeed?)"
        )
    return data


def _page(title: str, message: str, status: int) -> HTMLResponse:
    body = f"<!doctype html><title>{html.escape(title)}</title><h1>{html.escape(title)}</h1><p>{html.escape(message)}"
    return HTMLResponse(body, status_code=status)


@app.get("/runs/{dag_id}/{run_id}/{task_id}/{page}", dependencies=READ_XCOM)
def task_page(dag_id: str, run_id: str, task_id: str, page: str) -> Response:
    """``report`` / ``quality``: the HTML report; ``mlflow``: the task's MLflow run; ``model``: its model version."""
    try:
        if page in REPORTS:
            return _report(dag_id, run_id, page)
        if page == "mlflow":
            return RedirectResponse(_mlflow_run_url(dag_id, run_id, task_id), status_code=307)
        if page == "model":
            return RedirectResponse(_model_version_url(dag_id, run_id), status_code=307)
    except PageError as exc:
        return _page(f"No {page} page for {task_id}", str(exc), 404)
    return _page("Unknown page", f"{page!r} is not one of report, quality, mlflow, model", 404)


def _report(dag_id: str, run_id: str, page: str) -> HTMLResponse:
    from include import storage

    folder, name = REPORTS[page]
    uri = storage.join(_run_context(dag_id, run_id)["layout"][folder], name)
    if not storage.exists(uri):
        raise PageError(f"{uri} does not exist (yet): the stage that writes it has not run, or failed before")
    return HTMLResponse(storage.read_text(uri))


def _tracking(dag_id: str, run_id: str) -> Any:
    from include.tracking.runs import TrackingRef

    data = _run_context(dag_id, run_id).get("tracking")
    if not data:
        raise PageError(f"run {run_id} of {dag_id} was not tracked")
    return TrackingRef.from_dict(data)


def _mlflow_run_url(dag_id: str, run_id: str, task_id: str) -> str:
    from include.tracking.runs import find_step_run, page_url, run_fragment

    ref = _tracking(dag_id, run_id)
    target = ref.run_id
    if task_id in STEP_OF_TASK:
        run = find_step_run(ref, STEP_OF_TASK[task_id])
        if run is None:
            raise PageError(f"task {task_id} of run {run_id} has no MLflow run yet")
        target = run.run_id
    return page_url(ref, run_fragment(ref, target))


def _model_version_url(dag_id: str, run_id: str) -> str:
    from include.tracking.runs import page_url

    ref = _tracking(dag_id, run_id)
    decision = _xcom(dag_id, run_id, "promotion_gate", key="decision")
    if not isinstance(decision, dict) or "version" not in decision:
        raise PageError(f"run {run_id} registered no model version yet (the promotion gate has not run)")
    return page_url(ref, f"#/models/{decision['registered_model']}/versions/{decision['version']}")
