"""The whole pipeline in this process, outside Airflow (``detection-pipeline run``), with the DAG's stage code.

The same pipeline through a real Airflow scheduler is ``make run`` (:mod:`devtools.stack`)."""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime
from typing import Any

from include import stages
from include.project import PIPELINE_DAG_ID

log = logging.getLogger(__name__)


def run_pipeline(params: dict[str, Any], run_id: str | None = None) -> dict[str, Any]:
    """Every stage in order, outside Airflow, with the DAG's code; teardown always runs."""
    from include.sagemaker.naming import RunIdentity

    run_id = run_id or f"manual__{datetime.now(UTC):%Y-%m-%dT%H-%M-%S}"
    ctx = stages.resolve(params, PIPELINE_DAG_ID, run_id)
    run = RunIdentity(PIPELINE_DAG_ID, run_id, 1)
    out: dict[str, Any] = {"layout": ctx.layout.as_dict()}
    out["ingest"] = stages.ingest(ctx)
    out["validate"] = stages.validate(ctx)
    out["recordio"] = stages.build_recordio(ctx)
    try:
        out["training"] = _train(ctx, run)
        out["evaluation"] = stages.evaluate(ctx, out["training"])
        if ctx.config.export.enabled:
            out["export"] = stages.export(ctx, out["evaluation"])
        out["promotion"] = stages.promotion(ctx, out["evaluation"], out["training"])
        if out["promotion"]["deploy"]:
            out["deploy"] = _deploy(ctx, run, out["evaluation"])
            out["smoke_test"] = stages.smoke_test(ctx, out["deploy"])
    finally:
        out["teardown"] = stages.teardown(ctx, smoke_passed="smoke_test" in out)
    print(f"report.html: {out['evaluation']['report_uri']}", file=sys.stderr)
    return out


def _train(ctx: stages.RunContext, run: Any) -> dict[str, Any]:
    """The training (or tuning) request through the one execution path; the operators' XCom shape."""
    from include.execution import TRAINING, TUNING, execute

    if ctx.config.backend != "local":
        raise ValueError("detection-pipeline run executes the local backend; use the DAG for sagemaker")
    tune = ctx.config.training.tune
    request = stages.training_request(ctx, run, tune=tune)
    return execute(TUNING if tune else TRAINING, request, backend="local")


def _deploy(ctx: stages.RunContext, run: Any, evaluation: dict[str, Any]) -> dict[str, Any]:
    from include.execution import DEPLOYMENT, execute

    request = stages.deployment_request(ctx, run, evaluation)
    return execute(DEPLOYMENT, request, backend="local", local_options={"cfg": ctx.config})
