"""Links from a task in the Airflow UI to what people look at: its MLflow run, ``report.html``, ``quality.html``.

They are global operator links (:class:`~detection_plugin.DetectionPlugin`): the
API server asks them for every task, so each link answers from the task's key alone, with a URL of
the plugin's own routes (:mod:`detection_airflow.reports`), which find the file or the MLflow run
when the link is followed. The reports are served from Airflow's address even when they live on
S3, and a managed MLflow's presigned URL is made only then. A task that has no such page gets no
link (an empty answer: the UI hides it).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import quote

from airflow.sdk import BaseOperatorLink

if TYPE_CHECKING:
    from airflow.models.taskinstancekey import TaskInstanceKey

#: The plugin's URL prefix (its FastAPI app is mounted there).
PREFIX = "/detection"
#: Which pages each task of the pipeline links to.
PAGES: dict[str, tuple[str, ...]] = {
    "validate": ("mlflow", "quality"),
    "train": ("mlflow",),
    "tune": ("mlflow",),
    "evaluate": ("mlflow", "report"),
    "promotion_gate": ("model", "report"),
    "approve": ("model", "report"),
    "deploy": ("mlflow",),
    "smoke_test": ("mlflow",),
    "teardown": ("mlflow",),
}


def route(dag_id: str, run_id: str, task_id: str, page: str) -> str:
    """The plugin route that serves ``page`` of a task instance (run ids hold ``:`` and ``+``: quoted)."""
    return f"{PREFIX}/runs/{quote(dag_id, safe='')}/{quote(run_id, safe='')}/{quote(task_id, safe='')}/{page}"


class _PageLink(BaseOperatorLink):
    page: ClassVar[str]

    def get_link(self, operator: Any, *, ti_key: TaskInstanceKey) -> str:
        if self.page not in PAGES.get(ti_key.task_id, ()):
            return ""
        return route(ti_key.dag_id, ti_key.run_id, ti_key.task_id, self.page)


class MlflowRunLink(_PageLink):
    name = "MLflow run"
    page = "mlflow"


class ModelVersionLink(_PageLink):
    name = "MLflow model version"
    page = "model"


class ReportLink(_PageLink):
    name = "report.html"
    page = "report"


class QualityReportLink(_PageLink):
    name = "quality.html"
    page = "quality"


GLOBAL_LINKS = [MlflowRunLink(), ModelVersionLink(), ReportLink(), QualityReportLink()]
