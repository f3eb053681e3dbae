"""The whole pipeline in this process, outside Airflow (``detection-pipeline run``), with the DAG's stage code.

The same pipeline through a real Airflow scheduler is ``make run`` (:mod:`devtools.stack`). The run
is tracked like a DAG run; with ``promotion.approval: manual`` a winning model is registered and
left pending (``detection-pipeline promote --version N`` approves it) and nothing is deployed.
"""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime
from typing import Any

from include import stages
from include.project import PIPELINE_DAG_ID

log = logging.getLogger(__name__)


def run_pipeline(params: dict[str, Any], run_id: str | None = None) -> dict[str, Any]:
    """Every stage in order, outside Airflow, with the DAG's code; teardown and closing the tracking run always run."""
    from include.sagemaker.naming import RunIdentity

    run_id = run_id or f"manual__{datetime.now(UTC):%Y-%m-%dT%H-%M-%S}"
    ctx = stages.resolve(params, PIPELINE_DAG_ID, run_id)
    run = RunIdentity(PIPELINE_DAG_ID, run_id, 1)
    out: dict[str, Any] = {"layout": ctx.layout.as_dict()}
    failed = True
    try:
        out["ingest"] = stages.ingest(ctx)
        out["validate"] = stages.validate(ctx)
        out["recordio"] = stages.build_recordio(ctx)
        try:
            out["training"] = stages.track_training(ctx, _train(ctx, run))
            out["evaluation"] = stages.evaluate(ctx, out["training"])
            if ctx.config.export.enabled:
                out["export"] = stages.export(ctx, out["evaluation"])
            out["promotion"] = stages.promotion(ctx, out["evaluation"], out["training"])
            if out["promotion"]["promote"]:
                out["approval"] = _approve(ctx, out["promotion"])
            if out.get("approval", {}).get("approved") and out["promotion"]["deploy"]:
                out["deploy"] = stages.track_deployment(ctx, _deploy(ctx, run, out["evaluation"], out["approval"]))
                out["smoke_test"] = stages.smoke_test(ctx, out["deploy"])
        finally:
            out["teardown"] = stages.teardown(ctx, smoke_passed="smoke_test" in out)
        failed = False
    finally:
        out["tracking"] = stages.close_tracking(ctx, failed=failed)
    print(f"report.html: {out['evaluation']['report_uri']}", file=sys.stderr)
    return out


def _approve(ctx: stages.RunContext, decision: dict[str, Any]) -> dict[str, Any] | None:
    """``auto``: approve the gate's winner now. ``manual``: leave it pending for a person (nothing is deployed;
    ``detection-pipeline promote --version N`` approves it, as the run's summary says)."""
    if ctx.config.promotion.approval == "auto":
        return stages.approve(ctx, decision, approved=True, by="auto", reason=f"promotion.approval is auto; "
                              f"{decision['reason']}")
    log.warning("version %s of %s waits for approval", decision["version"], decision["registered_model"])
    return {"approved": False, "pending": True, "version": decision["version"]}


def _train(ctx: stages.RunContext, run: Any) -> dict[str, Any]:
    """The training (or tuning) request through the one execution path; the operators' XCom shape."""
    from include.execution import TRAINING, TUNING, execute

    if ctx.config.backend != "local":
        raise ValueError("detection-pipeline run executes the local backend; use the DAG for sagemaker")
    tune = ctx.config.training.tune
    request = stages.training_request(ctx, run, tune=tune)
    return execute(TUNING if tune else TRAINING, request, backend="local", cache=stages.job_cache(ctx, tune))


def _deploy(ctx: stages.RunContext, run: Any, evaluation: dict[str, Any], approval: dict[str, Any]) -> dict[str, Any]:
    from include.execution import DEPLOYMENT, execute

    request = stages.deployment_request(ctx, run, evaluation, approval)
    return execute(DEPLOYMENT, request, backend="local", local_options={"cfg": ctx.config})
