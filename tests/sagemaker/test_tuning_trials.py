"""A SageMaker tuning job's trials, listed page by page and described once: one nested MLflow run per trial (tuned
values, objective, status) and every trial's billable seconds in the run's cost, not only the best trial's."""

from __future__ import annotations

import datetime as dt
import json

import boto3
import pytest

from include import stages, storage
from include.configs import load_config
from include.run_layout import RunLayout
from include.sagemaker.results import tuning_result
from include.training.local_tuner import trial_job_name
from tests.support.aws_fixtures import DAG_ID, RUN_ID
from tests.support.aws_stand_ins import REGION, ROLE_ARN, _backend

#: Five trials as SageMaker ran them on managed spot: learning rate, objective (validation:mAP, None: the
#: algorithm failed before reporting it), billable seconds, training seconds, status.
TRIALS = [
    ("0.001", 0.412, 610, 1180, "Completed"),
    ("0.01", 0.553, 700, 1250, "Completed"),
    ("0.3", None, 95, 140, "Failed"),
    ("0.005", 0.498, 655, 1215, "Completed"),
    ("0.02", 0.521, 1200, 1200, "Completed"),  # no spot interruption savings: billed in full
]
PRICE = 3.825  # ml.p3.2xlarge in us-east-1, from the configuration's default price table


def _run_trials(sm, request: dict) -> str:
    """Create the tuning job and its five trials in moto, each finished as SageMaker would leave it."""
    sm.create_hyper_parameter_tuning_job(**request)
    name = request["HyperParameterTuningJobName"]
    definition = request["TrainingJobDefinition"]
    body = {k: v for k, v in definition.items() if k not in ("StaticHyperParameters", "HyperParameterRanges")}
    objective = request["HyperParameterTuningJobConfig"]["HyperParameterTuningJobObjective"]["MetricName"]
    started = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    for number, (rate, value, billable, seconds, status) in enumerate(TRIALS, 1):
        job = trial_job_name(name, number)
        hyper = {**definition["StaticHyperParameters"], "learning_rate": rate, "_tuning_objective_metric": objective}
        sm.create_training_job(TrainingJobName=job, HyperParameters=hyper, EnableManagedSpotTraining=True, **body)
        moto_job = _backend().training_jobs[job]
        moto_job.training_job_status = status
        moto_job.billable_time_in_seconds, moto_job.training_time_in_seconds = billable, seconds
        moto_job.training_start_time = started + dt.timedelta(minutes=30 * number)
        moto_job.final_metric_data_list = (
            []
            if value is None
            else [{"MetricName": objective, "Value": value, "Timestamp": moto_job.training_start_time}]
        )
        if status == "Failed":
            moto_job.failure_reason = "AlgorithmError: learning_rate 0.3 diverged (loss is nan)"
    return name


def test_every_trial_is_a_nested_run_and_is_billed_in_the_runs_cost(
    s3_bucket, tuning_trials, tuning_builder, task_context, tracking_ref, mlflow_client
) -> None:
    from include.sagemaker.naming import RunIdentity

    sm = boto3.client("sagemaker", region_name=REGION)
    request = tuning_builder(task_context(), RunIdentity(DAG_ID, RUN_ID, 1))
    name = _run_trials(sm, request)
    tuning_trials.finish(name)
    result = tuning_result(sm.describe_hyper_parameter_tuning_job(HyperParameterTuningJobName=name),
                           backend="sagemaker")  # fmt: skip
    assert result["job_name"] == trial_job_name(name, 2)  # the best objective, 0.553

    cfg = load_config(overrides={"backend": "sagemaker", "sagemaker": {"role_arn": ROLE_ARN, "region": REGION},
                                 "storage": {"base_uri": f"s3://{s3_bucket}/runs"}}, environ={})  # fmt: skip
    ctx = stages.RunContext(cfg, RunLayout.create(cfg.storage.base_uri, DAG_ID, RUN_ID), DAG_ID, RUN_ID, 1,
                            tracking_ref)  # fmt: skip
    tracked = stages.track_training(ctx, result)

    # every page was read: 5 trials at 2 a page, the next two asked for with the token SageMaker returned
    assert [r.get("NextToken") for r in tuning_trials.requests] == [None, "2", "4"]
    assert {r["HyperParameterTuningJobName"] for r in tuning_trials.requests} == {name}

    experiment = [tracking_ref.experiment_id]
    (tune,) = mlflow_client.search_runs(experiment, "tags.`detection.step` = 'tune'")
    assert tune.data.tags["detection.trials"] == "5" and tune.data.metrics["best.validation:mAP"] == 0.553
    trials = {
        r.info.run_name: r
        for r in mlflow_client.search_runs(experiment, f"tags.`mlflow.parentRunId` = '{tune.info.run_id}'")
    }
    assert set(trials) == {trial_job_name(name, n) for n in range(1, 6)}
    for number, (rate, value, _, _, status) in enumerate(TRIALS, 1):
        run = trials[trial_job_name(name, number)]
        assert run.data.params["learning_rate"] == rate and run.data.params["base_network"] == "resnet-50"
        assert run.data.tags["detection.job_status"] == status
        assert run.data.metrics.get("objective.validation:mAP") == value
        assert run.info.status == ("FINISHED" if status == "Completed" else "FAILED")
    failed = trials[trial_job_name(name, 3)]
    assert failed.data.tags["detection.failure_reason"].startswith("AlgorithmError: learning_rate 0.3")
    assert tracked["tracking"]["run_id"] == trials[trial_job_name(name, 2)].info.run_id  # the model's run

    cost = stages.run_cost(ctx)
    record = json.loads(storage.read_text(cost["uri"]))
    jobs = {job["job_name"]: job for job in record["jobs"]}
    assert set(jobs) == set(trials)  # every trial once, the best one (described twice) not counted twice
    assert record["billable_seconds"] == cost["billable_seconds"] == sum(t[2] for t in TRIALS) == 3260
    assert record["usd"] == cost["usd"] == pytest.approx(sum(round(t[2] * PRICE / 3600, 4) for t in TRIALS))
    for number, (_, _, billable, seconds, _) in enumerate(TRIALS, 1):
        job = jobs[trial_job_name(name, number)]
        assert (job["billable_seconds"], job["training_seconds"]) == (billable, seconds)
        assert job.get("spot_savings_pct") == (round((1 - billable / seconds) * 100, 1) if billable < seconds else None)
    # tracking and cost read the records the listing left: tuning.json, each trial's training.json
    saved = json.loads(storage.read_text(storage.join(ctx.layout.training, name, "tuning.json")))
    assert [s["TrainingJobName"] for s in saved["TrainingJobSummaries"]] == sorted(trials)
