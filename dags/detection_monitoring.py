"""Monitoring of what the endpoint sees, daily and on demand.

``monitor`` reads the production endpoint's captured invocations of the last ``window_hours`` (or a capture
prefix, or a batch transform's output, as ``source``), measures the images (sizes, brightness, contrast, JPEG
quality) and the model's answers (class mix, boxes per image, scores, images with no detection), and compares
them with the baseline stored with the model (the registry's ``champion``'s, unless ``baseline`` names another):
``statistics.json``, ``constraint_violations.json`` (SageMaker Model Monitor's files) and ``monitoring.html``.

``retrain`` posts a ``labelled_dataset`` asset event, which starts the training pipeline, only when the data
drifted and retraining is asked for (``trigger_retraining``, default ``monitoring.retraining.enabled``: off);
otherwise it is skipped (a skipped task emits no event). ``drift_gate`` then fails the run with the reason,
naming every feature that drifted.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import Param, dag, task
from detection_airflow.assets import LABELLED_DATASET

PARAMS = {
    "source": Param(
        None, type=["null", "string"], title="Source",
        description="A capture prefix (the endpoint's data capture) or a batch transform's output folder "
        "(empty: monitoring.source, else the production endpoint's captured data).",
    ),
    "window_hours": Param(
        None, type=["null", "integer"], minimum=1, maximum=24 * 90, title="Window (hours)",
        description="Captured invocations of the last N hours before the run (empty: monitoring.window_hours, 24).",
    ),
    "baseline": Param(
        None, type=["null", "string"], title="Baseline",
        description="Empty: the registry's champion's. A version number (3 or v3), or a baseline folder's URI "
        "(statistics.json, constraints.json).",
    ),
    "trigger_retraining": Param(
        None, type=["null", "boolean"], title="Trigger retraining",
        description="On drift, start the training pipeline (a labelled_dataset asset event). Empty: "
        "monitoring.retraining.enabled (off).",
    ),
    "backend": Param(
        "local", type="string", enum=["local", "sagemaker"], title="Backend",
        description="The configuration profile (where captured data and the registry are).",
    ),
}  # fmt: skip


@dag(
    dag_id="detection_monitoring",
    description="Compare what the endpoint sees with the model's baseline; fail on drift, optionally retrain.",
    doc_md=__doc__,
    schedule="@daily",
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    tags=["object-detection", "monitoring"],
    default_args={"owner": "mlops", "retries": 1, "retry_delay": timedelta(minutes=1)},
    params=PARAMS,
)
def detection_monitoring():
    @task
    def monitor(**context) -> dict:
        """Statistics of the window's images and answers against the baseline; skipped while there is no champion."""
        from airflow.sdk.exceptions import AirflowSkipException

        from include.monitoring.monitor import NothingToMonitor
        from include.stages import monitor as stage

        dag_run = context["dag_run"]
        try:
            return stage(dict(context["params"]), run_id=dag_run.run_id, end=dag_run.run_after)
        except NothingToMonitor as exc:
            raise AirflowSkipException(str(exc)) from None

    @task(outlets=[LABELLED_DATASET])
    def retrain(result: dict, **context) -> dict:
        """Post the asset event that starts the training pipeline; skipped unless the data drifted and retraining
        is asked for."""
        from airflow.sdk.exceptions import AirflowSkipException

        if not result.get("retraining"):
            raise AirflowSkipException(f"no retraining: {result['status']}" + (
                " (trigger_retraining is off)" if result["status"] == "drifted" else ""))  # fmt: skip
        context["outlet_events"][LABELLED_DATASET].extra = result["retraining"]
        return result["retraining"]

    @task
    def drift_gate(result: dict) -> dict:
        """Fail the run when the data drifted, with the reason; insufficient data is a warning, not a pass."""
        import logging

        from airflow.sdk.exceptions import AirflowFailException

        if result["status"] == "drifted":
            raise AirflowFailException(result["reason"])
        logging.getLogger(__name__).log(
            logging.INFO if result["status"] == "passed" else logging.WARNING, "%s", result["reason"]
        )
        return {"status": result["status"], "report_uri": result["report_uri"]}

    result = monitor()
    retrain(result)
    drift_gate(result)


detection_monitoring()
