"""The training job (or tuning job and its trials) of a pipeline run, as MLflow runs.

A training run holds every hyperparameter of the request (params), the per-epoch history
(``validation:mAP``, ``train:cross_entropy``, ``train:smooth_l1``, ``train:throughput`` with
step = epoch) parsed from the algorithm's metric lines with the one parser both backends share
(the job's ``training.log`` locally, its CloudWatch streams on SageMaker), the job's name and
ARN, its billable seconds, and the model a registry version will point at. A tuning job is a run
with one nested run per trial (its tuned values, ``objective.<metric>``, status); the best trial's
run is also given the whole training record.

The history is logged once, after the job ended (MLflow keeps every point it is sent, so a
retried task must not send it again): the tag ``detection.history_job`` names the job it came
from, and a run that already holds this job's history is left as it is.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

from include import storage
from include.run_layout import MODEL_ARCHIVE, TRAINING_JSON, TRAINING_LOG, TUNING_JSON
from include.tracking import artifacts
from include.tracking.runs import FAILED, FINISHED, Metric, Run, TrackingRef, finish, log, run_url, step_run

log_ = logging.getLogger(__name__)

HISTORY_TAG = "detection.history_job"
JOB_TAG = "detection.job_name"
MODEL_SOURCE_TAG = "detection.model_source"
MODEL_DATA_TAG = "detection.model_data_url"
#: The job record's seconds fields, logged as metrics.
SECONDS = {"BillableTimeInSeconds": "billable_seconds", "TrainingTimeInSeconds": "training_seconds"}
#: ``training.json["PretrainedWeights"]`` fields, logged as params when the model started from weights.
PRETRAINED_FIELDS = ("file", "sha256", "source")


def job_record(output_uri: str, job_name: str, backend: str, region: str | None) -> dict[str, Any]:
    """The job's DescribeTrainingJob-shaped record: its ``training.json`` locally, SageMaker's answer otherwise."""
    if backend == "local":
        return json.loads(storage.read_text(storage.join(output_uri, TRAINING_JSON)))
    from include.sagemaker.client import sagemaker_client

    return sagemaker_client(region).describe_training_job(TrainingJobName=job_name)


def history(records: list[Any]) -> list[Metric]:
    """One metric point per epoch and metric (step = epoch) from parsed metric lines."""
    from include.sagemaker.metrics import epoch_series

    return [
        Metric(name, value, step=epoch) for name, points in epoch_series(records).items() for epoch, value in points
    ]


def _hyperparameters(record: Mapping[str, Any]) -> dict[str, str]:
    """The request's hyperparameters, without the ones SageMaker adds for tuning (``_tuning_objective_metric``)."""
    return {k: str(v) for k, v in (record.get("HyperParameters") or {}).items() if not k.startswith("_")}


def _pretrained(record: Mapping[str, Any]) -> dict[str, str]:
    weights = record.get("PretrainedWeights") or {}
    return {f"pretrained_weights.{k}": str(weights[k]) for k in PRETRAINED_FIELDS if weights.get(k)}


def record_job(ref: TrackingRef, run: Run, record: Mapping[str, Any], output_uri: str) -> Run:
    """Log one finished training job into ``run``: params, history, seconds, files and the model it made."""
    from include.evaluation.training_run import metric_records

    job = record["TrainingJobName"]
    model_uri = (record.get("ModelArtifacts") or {}).get("S3ModelArtifacts") or storage.join(output_uri, MODEL_ARCHIVE)
    for name in (TRAINING_JSON, TRAINING_LOG):
        if storage.exists(storage.join(output_uri, name)):
            artifacts.log_file(ref, run, storage.join(output_uri, name))
    source = model_uri
    if not model_uri.startswith("s3://"):  # the registry takes a local model only from the run's own artifacts
        source = artifacts.log_file(ref, run, model_uri, "model")
    metrics = [Metric(name, float(record[key])) for key, name in SECONDS.items() if record.get(key) is not None]
    tags = {
        JOB_TAG: job,
        "detection.job_arn": record.get("TrainingJobArn", ""),
        MODEL_DATA_TAG: model_uri,
        MODEL_SOURCE_TAG: source,
        "detection.job_status": record.get("TrainingJobStatus", ""),
    }
    if run.tags.get(HISTORY_TAG) != job:
        if run.tags.get(HISTORY_TAG):
            log_.warning(
                "run %s holds the history of job %s already; adding job %s's", run.run_id, run.tags[HISTORY_TAG], job
            )
        metrics += history(metric_records(output_uri, dict(record)))
        tags[HISTORY_TAG] = job
    # one request for all of it (split only past MLflow's limits)
    log(ref, run.run_id, params={**_hyperparameters(record), **_pretrained(record)}, metrics=metrics, tags=tags)
    finish(ref, run.run_id, FINISHED)
    return Run(run.run_id, run.artifact_uri, FINISHED, {**run.tags, **tags})


def _trial_summaries(result: Mapping[str, Any], training_uri: str) -> list[dict]:
    """Every trial of the tuning job as ListTrainingJobsForHyperParameterTuningJob lists it, from the job's
    ``tuning.json`` (the local tuner's; on SageMaker :func:`include.sagemaker.tuning_trials.save_trials`')."""
    name = result["tuning_job_name"]
    tuning = json.loads(storage.read_text(storage.join(training_uri, name, TUNING_JSON)))
    return list(tuning.get("TrainingJobSummaries") or [])


def record_tuning(
    ref: TrackingRef, result: Mapping[str, Any], backend: str, training_uri: str, region: str | None
) -> Run:
    """The ``tune`` run and one nested run per trial; the best trial's run gets the whole training record."""
    summaries = _trial_summaries(result, training_uri)
    static = {k: v for k, v in result["hyperparameters"].items() if k not in result.get("tuned_hyperparameters", {})}
    tuning = step_run(ref, "tune", tags={"detection.tuning_job_name": result["tuning_job_name"]})
    objective = next(iter(result.get("final_metrics") or {}), "validation:mAP")
    log(
        ref,
        tuning.run_id,
        params=static,
        metrics=[Metric(f"best.{objective}", v) for v in (result.get("final_metrics") or {}).values()],
        tags={"detection.best_trial": result["job_name"], "detection.trials": str(len(summaries))},
    )
    best: Run | None = None
    for summary in summaries:
        job = summary["TrainingJobName"]
        trial = step_run(ref, "trial", trial=job, parent_run_id=tuning.run_id)
        value = (summary.get("FinalHyperParameterTuningJobObjectiveMetric") or {}).get("Value")
        log(
            ref,
            trial.run_id,
            params={**static, **{k: str(v) for k, v in summary["TunedHyperParameters"].items()}},
            metrics=[Metric(f"objective.{objective}", float(value))] if value is not None else [],
            tags={
                JOB_TAG: job,
                "detection.job_status": summary.get("TrainingJobStatus", ""),
                "detection.objective_status": summary.get("ObjectiveStatus", ""),
                "detection.failure_reason": summary.get("FailureReason", ""),
            },
        )
        if job == result["job_name"]:
            output_uri = summary.get("output_uri") or result["artifact_uri"].rsplit("/", 1)[0]
            best = record_job(ref, trial, job_record(output_uri, job, backend, region), output_uri)
        else:
            finish(ref, trial.run_id, FINISHED if summary.get("TrainingJobStatus") == "Completed" else FAILED)
    finish(ref, tuning.run_id)
    if best is None:
        raise ValueError(f"tuning job {result['tuning_job_name']} lists no trial named {result['job_name']}")
    return best


def record_training(
    ref: TrackingRef, result: Mapping[str, Any], backend: str, training_uri: str, region: str | None
) -> dict[str, Any]:
    """Track a finished training or tuning result (the operators' XCom shape); returns its run's id and URL."""
    if result.get("tuning_job_name"):
        run = record_tuning(ref, result, backend, training_uri, region)
    else:
        output_uri = result["artifact_uri"].rsplit("/", 1)[0]
        run = record_job(
            ref, step_run(ref, "train"), job_record(output_uri, result["job_name"], backend, region), output_uri
        )
    log(ref, ref.run_id, tags={"detection.training_run_id": run.run_id, JOB_TAG: result["job_name"]})
    return {"run_id": run.run_id, "url": run_url(ref, run.run_id), "model_source": run.tags[MODEL_SOURCE_TAG]}
