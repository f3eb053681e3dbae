"""Running the whole pipeline: in this process (``detection-pipeline run``) or through a real
Airflow scheduler on the local stack (``make run`` / ``detection-pipeline stack run``)."""

from __future__ import annotations

import logging
import sys
import time
from datetime import UTC, datetime
from typing import Any

from include import local_stack, stages

log = logging.getLogger(__name__)

DAG_ID = local_stack.PIPELINE_DAG_ID


def run_pipeline(params: dict[str, Any], run_id: str | None = None) -> dict[str, Any]:
    """Every stage in order, outside Airflow, with the DAG's code; teardown always runs."""
    from include.sagemaker.naming import RunIdentity

    run_id = run_id or f"manual__{datetime.now(UTC):%Y-%m-%dT%H-%M-%S}"
    ctx = stages.resolve(params, DAG_ID, run_id)
    run = RunIdentity(DAG_ID, run_id, 1)
    out: dict[str, Any] = {"layout": ctx.layout.as_dict()}
    out["ingest"] = stages.ingest(ctx)
    out["validate"] = stages.validate(ctx)
    out["recordio"] = stages.build_recordio(ctx)
    try:
        out["training"] = _train(ctx, run)
        out["evaluation"] = stages.evaluate(ctx, out["training"])
        out["promotion"] = stages.promotion(ctx, out["evaluation"], out["training"])
        if out["promotion"]["deploy"]:
            out["deploy"] = _deploy(ctx, run, out["evaluation"])
            out["smoke_test"] = stages.smoke_test(ctx, out["deploy"])
    finally:
        out["teardown"] = stages.teardown(ctx, smoke_passed="smoke_test" in out)
    print(f"report.html: {out['evaluation']['report_uri']}", file=sys.stderr)
    return out


def _train(ctx: stages.RunContext, run: Any) -> dict[str, Any]:
    """Run the training (or tuning) request with the backend's executor; the operators' XCom shape."""
    from include.sagemaker.results import training_result, tuning_result

    tune = ctx.config.training.tune
    request = stages.training_request(ctx, run, tune=tune)
    if ctx.config.backend != "local":
        raise ValueError("detection-pipeline run executes the local backend; use the DAG for sagemaker")
    if tune:
        from include.training.local_tuner import run_tuning_job

        return tuning_result(run_tuning_job(request), backend="local")
    from include.training.local_executor import run_training_job

    return training_result(run_training_job(request), backend="local")


def _deploy(ctx: stages.RunContext, run: Any, evaluation: dict[str, Any]) -> dict[str, Any]:
    from include.deployment import run_local_deployment
    from include.sagemaker.results import deployment_result

    return deployment_result(run_local_deployment(stages.deployment_request(ctx, run, evaluation)), backend="local")


def run_dag_on_local_stack(conf: dict[str, Any] | None = None, keep_running: bool = False) -> dict[str, Any]:
    """Start airflow standalone, trigger the pipeline DAG as the UI does, wait, report, stop."""
    details = local_stack.start()
    print(f"Airflow UI: {details['url']}  user admin  password {details['password']}", file=sys.stderr)
    try:
        client = local_stack.AirflowClient(details["url"], details["username"], details["password"])
        client.wait_for_dag(DAG_ID)
        run_id = client.trigger(DAG_ID, conf or {})
        print(f"triggered {DAG_ID} run {run_id}; following it...", file=sys.stderr)
        started, seen = time.monotonic(), {}
        while (run := client.request("GET", f"/dags/{DAG_ID}/dagRuns/{run_id}"))["state"] not in ("success", "failed"):
            for task, state in client.task_states(DAG_ID, run_id).items():
                if seen.get(task) != state and state in ("running", "success", "failed", "skipped", "deferred"):
                    print(f"  {time.monotonic() - started:6.0f}s  {task:<24} {state}", file=sys.stderr)
                seen[task] = state
            time.sleep(5)
        states = client.task_states(DAG_ID, run_id)
        result = {"run_id": run_id, "state": run["state"], "tasks": states, "ui": details["url"]}
        if states.get("evaluate") == "success":
            result["report"] = client.xcom(DAG_ID, run_id, "evaluate")["report_uri"]
            print(f"report.html: {result['report']}", file=sys.stderr)
        if run["state"] != "success":
            raise RuntimeError(f"run {run_id} {run['state']}: {states}")
        return result
    finally:
        if not keep_running:
            local_stack.stop()
