"""Sweep idle endpoints: tear down every endpoint whose keep-until time has passed.

The pipeline's ``keep_endpoint_minutes`` param leaves a healthy endpoint up for people to try;
this DAG removes it afterwards (local server processes always; SageMaker endpoints, their
configs and models when a SageMaker role is configured), so nothing is forgotten and billed.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import Param, dag, task

from include.project import task_queues


@dag(
    dag_id="endpoint_sweeper",
    description="Tear down endpoints whose keep-endpoint time has passed (local and SageMaker).",
    doc_md=__doc__,
    schedule=timedelta(minutes=15),
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    tags=["object-detection", "maintenance", "teardown"],
    default_args={"owner": "mlops", "retries": 2, "retry_delay": timedelta(minutes=1)},
    params={
        "dry_run": Param(False, type="boolean", title="Dry run", description="List what would go; remove nothing."),
    },
)
def endpoint_sweeper():
    @task(queue=task_queues().training)  # the worker that runs the pipeline's local endpoints
    def sweep(**context) -> dict:
        """Stop expired local endpoints and delete expired SageMaker endpoints."""
        from include.configs import load_config
        from include.endpoints.lifecycle import expired_endpoints, sweep

        cfg = load_config()
        if context["params"]["dry_run"]:
            return {"would_remove": expired_endpoints(cfg)}
        return sweep(cfg)

    sweep()


endpoint_sweeper()
