"""A run's cost: the budget check before anything is launched, billable seconds priced, CPU seconds metered."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from include import stages, storage
from include.configs import load_config
from include.cost import CostLimitError, metered, summarize, training_job_cost

SAGEMAKER = {"backend": "sagemaker", "sagemaker": {"role_arn": "arn:aws:iam::123456789012:role/pipeline",
                                                  "bucket": "pipeline-bucket"}}  # fmt: skip


def test_a_budget_below_the_estimate_stops_the_run_at_resolve_with_its_parts(
    monkeypatch: pytest.MonkeyPatch, tracking_uri: str
) -> None:
    monkeypatch.setenv("DETECTION__COST__MAX_USD", "20")
    monkeypatch.setenv("DETECTION__SAGEMAKER__ROLE_ARN", SAGEMAKER["sagemaker"]["role_arn"])
    monkeypatch.setenv("DETECTION__SAGEMAKER__BUCKET", "pipeline-bucket")
    with pytest.raises(CostLimitError) as err:
        stages.resolve({"backend": "sagemaker", "keep_endpoint_minutes": 30}, "dag", "run-1")
    assert str(err.value) == (
        "estimated cost $92.03 exceeds cost.max_usd=$20.00: training ml.p3.2xlarge x1 x 24.00 h = $91.80; "
        "endpoint ml.m5.xlarge x1 x 1.00 h = $0.23 (upper bounds from StoppingCondition.MaxRuntimeInSeconds, "
        "the tuning job count and keep_endpoint_minutes + cost.endpoint_minutes); nothing was launched"
    )
    monkeypatch.setenv("DETECTION__SAGEMAKER__MAX_RUNTIME_SECONDS", "14400")  # 4 h: $15.30 + $0.23 fits
    # the budget passes; resolve goes on to open the run's tracking (tracking_uri: the session's server)
    assert stages.resolve({"backend": "sagemaker", "keep_endpoint_minutes": 30}, "dag", "run-1").config


def test_tuning_is_priced_per_job_and_an_unpriced_type_cannot_be_budgeted() -> None:
    from include.cost import check_budget, estimate

    cfg = load_config(overrides={**SAGEMAKER, "training": {"tune": True, "tuning": {"max_jobs": 4}}})
    (tuning, _) = estimate(cfg)
    assert (tuning.what, tuning.count, tuning.hours) == ("tuning (4 jobs)", 4, 24.0)
    big = {**SAGEMAKER["sagemaker"], "training_instance_type": "ml.p4d.24xlarge"}
    cfg = load_config(overrides={**SAGEMAKER, "cost": {"max_usd": 1000}, "sagemaker": big})
    with pytest.raises(CostLimitError, match="cannot be priced: training ml.p4d.24xlarge x1 x 24.00 h = no price"):
        check_budget(cfg)
    assert estimate(load_config(overrides={"backend": "local"})) == []


def test_a_price_table_names_instance_types() -> None:
    from include.configs import ConfigError

    with pytest.raises(ConfigError, match="us-east-1.p3.2xlarge"):
        load_config(overrides={"cost": {"prices": {"us-east-1": {"p3.2xlarge": 3.8}}}})


def test_billable_seconds_are_priced_and_spot_savings_shown() -> None:
    cfg = load_config(overrides=SAGEMAKER)
    job = {"TrainingJobName": "train-x", "ResourceConfig": {"InstanceType": "ml.p3.2xlarge", "InstanceCount": 2},
           "TrainingTimeInSeconds": 3600, "BillableTimeInSeconds": 1200}  # fmt: skip
    cost = training_job_cost(cfg, job)
    assert cost["billable_seconds"] == 2400 and cost["usd"] == round(2400 * 3.825 / 3600, 4)
    assert cost["spot_savings_pct"] == 66.7
    assert training_job_cost(cfg, job, reused=True)["usd"] == 0.0


def test_metered_steps_count_their_children_and_sum_into_cost_json(tmp_path: Path) -> None:
    root = storage.normalize(tmp_path / "run")
    with metered(root, "busy"):
        subprocess.run([sys.executable, "-c", "x = 0\nfor i in range(3_000_000): x += i"], check=True)
    with pytest.raises(RuntimeError), metered(root, "broken"):
        raise RuntimeError("the step failed")
    summary = summarize(load_config(overrides={"backend": "local"}), root, [], [])
    busy, broken = sorted(summary["steps"], key=lambda s: s["step"] != "busy")
    assert busy["cpu_seconds"] > 0.1 and not busy["failed"] and broken["failed"]
    assert json.loads((tmp_path / "run" / "cost.json").read_text())["cpu_seconds"] == summary["cpu_seconds"]
    assert summary["usd"] == 0 and summary["estimate"] == []


def test_the_cli_prints_a_runs_cost(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from include.cli import main

    run = tmp_path / "runs" / "object_detection_pipeline" / "manual__1"
    job = {"TrainingJobName": "train-x", "ResourceConfig": {"InstanceType": "local", "InstanceCount": 1},
           "TrainingTimeInSeconds": 50, "Timings": {"train_cpu_seconds": 80.5}}  # fmt: skip
    storage.write_text(storage.normalize(run / "training" / "train-x" / "output" / "training.json"), json.dumps(job))
    with metered(storage.normalize(run), "ingest"):
        pass
    assert main(["cost", "--backend", "local", "--run", str(run)]) in (0, None)
    summary_line = (f"cost: $0.00, 0 SageMaker billable s, 0.00 endpoint instance-hours, 0.0 CPU s here "
                    f"(file://{run}/cost.json)")
    assert summary_line in capsys.readouterr().err
    summary = json.loads((run / "cost.json").read_text())
    assert summary["jobs"][0]["cpu_seconds"] == 80.5 and [s["step"] for s in summary["steps"]] == ["ingest"]


def test_endpoint_hours_from_creation_to_teardown_are_priced_in_cost_report_and_tracking(
    aws_credentials, s3_bucket, task_context, tracking_ref, mlflow_client
) -> None:
    from datetime import UTC, datetime, timedelta

    from moto.sagemaker.models import sagemaker_backends

    from include.run_layout import RunLayout
    from tests.support.aws_fixtures import DAG_ID, RUN_ID
    from tests.support.aws_stand_ins import ACCOUNT, REGION, ROLE_ARN
    from tests.support.sagemaker_deployments import deploy

    endpoint = deploy(task_context())["endpoint_name"]  # the run's endpoint, on moto's server
    created = datetime.now(UTC) - timedelta(hours=2, minutes=30)  # as if it had served for two and a half hours
    sagemaker_backends[ACCOUNT][REGION].endpoints[endpoint].creation_time = created.isoformat()
    cfg = load_config(overrides={"backend": "sagemaker", "sagemaker": {"role_arn": ROLE_ARN, "region": REGION},
                                 "storage": {"base_uri": f"s3://{s3_bucket}/runs"}}, environ={})  # fmt: skip
    ctx = stages.RunContext(cfg, RunLayout.create(cfg.storage.base_uri, DAG_ID, RUN_ID), DAG_ID, RUN_ID, 1,
                            tracking_ref)  # fmt: skip
    report = storage.join(ctx.layout.evaluation, "report.html")
    storage.write_text(report, "<html><body><main><h1>Evaluation</h1></main></body></html>")

    done = stages.teardown(ctx, smoke_passed=False)

    assert done["deleted"]["endpoints"] == [endpoint]
    cost = json.loads(storage.read_text(done["cost"]["uri"]))
    (record,) = cost["endpoints"]
    assert (record["endpoint_name"], record["instance_type"], record["instance_count"]) == (endpoint, "ml.m5.xlarge", 1)
    assert record["still_running"] is False and 2.5 <= record["hours"] < 2.6  # creation to the deletion teardown made
    price = cfg.cost.prices[REGION]["ml.m5.xlarge"]
    assert record["usd"] == pytest.approx(record["hours"] * price, abs=1e-4) and cost["usd"] == record["usd"]
    assert cost["endpoint_hours"] == record["instance_hours"] == record["hours"]
    page = storage.read_text(report)
    assert "<h3>Endpoints</h3>" in page and endpoint in page and "ml.m5.xlarge x1" in page
    metrics = mlflow_client.get_run(tracking_ref.run_id).data.metrics
    assert metrics["cost.endpoint_hours"] == record["hours"] and metrics["cost.usd"] == record["usd"]
    # a retried teardown finds the endpoint gone: what the first try recorded is still priced
    assert stages.teardown(ctx, smoke_passed=False)["cost"]["usd"] == record["usd"]
