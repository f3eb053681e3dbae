"""What a training (or tuning) run left behind, as evaluation reads it, from either backend.

A training output folder (``<S3OutputPath>/<job>/output/``) holds ``model.tar.gz``,
``training.log`` (the algorithm's metric lines) and ``training.json`` (a DescribeTrainingJob-
shaped record; the local backend adds ``data_uri``, ``Timings``, ``BestEpoch``...). Per-epoch
curves come from the log, read with :func:`include.training.metric_log.parse_metrics` (the
trainer's own definition of the lines); a run without a log (SageMaker) is read from its job's
CloudWatch streams by :mod:`include.sagemaker.training_metrics`. A tuning job's folder holds
``tuning.json`` (DescribeHyperParameterTuningJob-shaped, with every trial) and the best model.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from include import storage
from include.run_layout import MODEL_ARCHIVE, TRAINING_JSON, TRAINING_LOG, TUNING_JSON
from include.sagemaker.metrics import MetricRecord, epoch_series, parse_lines
from include.training.metric_log import parse_metrics

VALIDATION_MAP = "validation:mAP"
EPOCH_METRICS = (VALIDATION_MAP, "train:cross_entropy", "train:smooth_l1")


class TrainingRecordError(ValueError):
    """A training output folder without what evaluation needs."""


@dataclass(frozen=True)
class TrainingCurves:
    """``{metric: [(epoch, value), ...]}`` for :data:`EPOCH_METRICS`, one value per epoch, sorted."""

    series: dict[str, list[tuple[int, float]]]

    @classmethod
    def from_points(cls, points: dict[str, list[tuple[int, float]]]) -> TrainingCurves:
        """Reduce ``(epoch, value)`` points in log order to one value per epoch: the epoch's last.

        A loss is logged every few batches as a running average, so its last value in an epoch
        is the epoch's loss; validation mAP is logged once per epoch.
        """
        return cls({name: sorted(dict(points.get(name, [])).items()) for name in EPOCH_METRICS})

    @classmethod
    def from_log(cls, log_text: str) -> TrainingCurves:
        return cls.from_points(parse_metrics(log_text))

    def values(self, name: str) -> tuple[list[int], list[float]]:
        """Epochs and values of one metric (empty when it was not logged)."""
        points = self.series.get(name, [])
        return [e for e, _ in points], [v for _, v in points]

    def best_epoch(self) -> tuple[int, float]:
        """The epoch with the highest validation mAP (the first on ties, as the trainer keeps it) and that mAP."""
        points = [(e, v) for e, v in zip(*self.values(VALIDATION_MAP), strict=True) if not math.isnan(v)]
        if not points:
            raise TrainingRecordError("the training run logged no validation mAP")
        return max(points, key=lambda p: (p[1], -p[0]))


def read_json_object(uri: str) -> dict[str, Any]:
    """A JSON object from ``uri``; errors name the file and line."""
    try:
        data = json.loads(storage.read_text(uri))
    except json.JSONDecodeError as exc:
        raise TrainingRecordError(f"{uri} line {exc.lineno}: not valid JSON ({exc.msg})") from None
    if not isinstance(data, dict):
        raise TrainingRecordError(f"{uri}: expected a JSON object, got {type(data).__name__}")
    return data


def read_training_record(training_uri: str) -> dict[str, Any]:
    """``training.json`` of a training output folder, parsed."""
    uri = storage.join(training_uri, TRAINING_JSON)
    if not storage.exists(uri):
        raise TrainingRecordError(f"{uri} does not exist: {training_uri} is not a training output folder")
    return read_json_object(uri)


@dataclass(frozen=True)
class ResolvedTraining:
    """What a path handed to ``evaluate`` / ``deploy`` stands for: the training run and its model.

    ``training_uri`` is the folder holding ``training.json`` (the archive's folder for a bare
    ``model.tar.gz``); ``record`` its training.json (``{}`` for a bare archive); ``tuning`` the
    tuning job's record when a tuning folder was given; ``how`` says, for the log, how it was found.
    """

    training_uri: str
    record: dict[str, Any]
    tuning: dict[str, Any] | None
    model_uri: str
    how: str

    def describe(self, given: str) -> str:
        """One line: which model ``given`` resolved to, and why."""
        job = training_job_name(self.record)
        return f"model: {self.model_uri}" + (f" (training job {job})" if job else "") + f", from {given}: {self.how}"


def _has(uri: str, name: str) -> bool:
    return storage.exists(storage.join(uri, name))


def _job_folders(uri: str) -> list[str]:
    """Children of ``uri`` that are training jobs (``<job>/output/training.json``) or tuning jobs (``tuning.json``)."""
    if not storage.isdir(uri):
        return []
    return [c for c in storage.listdir(uri) if _has(c, TUNING_JSON) or _has(storage.join(c, "output"), TRAINING_JSON)]


def _training_folder(uri: str) -> tuple[str, str]:
    """The folder holding training.json or tuning.json that ``uri`` points at, and how it was found."""
    uri = storage.normalize(uri).rstrip("/")
    if _has(uri, TRAINING_JSON):
        return uri, "a training output folder"
    if _has(uri, TUNING_JSON):
        return uri, "a tuning job's folder"
    if _has(storage.join(uri, "output"), TRAINING_JSON):
        return storage.join(uri, "output"), "a training job's folder (its output/)"
    jobs = _job_folders(uri)
    if len(jobs) == 1:
        folder, how = _training_folder(jobs[0])
        return folder, f"the only job under it ({jobs[0].rsplit('/', 1)[-1]}): {how}"
    if jobs:
        listed = ", ".join(j.rsplit("/", 1)[-1] for j in sorted(jobs))
        raise TrainingRecordError(f"{uri} holds {len(jobs)} jobs ({listed}): pass the one to use")
    below = [c.rsplit("/", 1)[-1] for c in storage.listdir(uri)] if storage.isdir(uri) else []
    found = f"; it holds {', '.join(sorted(below)[:8])}" if below else ""
    raise TrainingRecordError(
        f"{storage.join(uri, TRAINING_JSON)} does not exist: {uri} is not a training output folder, a job folder, "
        f"a tuning job's folder or a folder of jobs{found}"
    )


def _record_model(training_uri: str, record: dict[str, Any]) -> str:
    """``model.tar.gz`` in the training folder, else the artifact the record names."""
    local = storage.join(training_uri, MODEL_ARCHIVE)
    if storage.exists(local):
        return local
    remote = record.get("artifact_uri") or (record.get("ModelArtifacts") or {}).get("S3ModelArtifacts")
    if remote:
        return storage.normalize(remote)
    raise TrainingRecordError(f"{local} does not exist and training.json names no other model artifact")


def resolve_training(uri: str) -> ResolvedTraining:
    """The training run and model ``uri`` stands for: a training output folder (``<job>/output``), a job
    folder, a training or tuning output root holding one job, a tuning job's folder (its best trial) or a
    ``model.tar.gz`` (with its folder's training.json when there is one)."""
    if uri.rstrip("/").endswith(".tar.gz"):
        model_uri = storage.normalize(uri)
        if not storage.exists(model_uri):
            raise TrainingRecordError(f"no model archive at {model_uri}")
        folder = model_uri.rsplit("/", 1)[0]
        if _has(folder, TRAINING_JSON):
            return ResolvedTraining(folder, read_training_record(folder), None, model_uri, "a model archive")
        return ResolvedTraining(folder, {}, None, model_uri, "a model archive without a training record")
    folder, how = _training_folder(uri)
    tuning = read_json_object(storage.join(folder, TUNING_JSON)) if _has(folder, TUNING_JSON) else None
    if tuning is not None and not _has(folder, TRAINING_JSON):
        best = tuning.get("BestTrainingJob") or {}
        if not best.get("output_uri"):
            raise TrainingRecordError(
                f"{storage.join(folder, TUNING_JSON)}: no BestTrainingJob with an output_uri (no trial succeeded?)"
            )
        folder, how = best["output_uri"], f"{how}, its best trial {best.get('TrainingJobName', '')}".rstrip()
    record = read_training_record(folder)
    return ResolvedTraining(folder, record, tuning, _record_model(folder, record), how)


def training_job_name(record: dict[str, Any]) -> str | None:
    """The training job a record names (``DescribeTrainingJob`` shape or the pipeline's training result)."""
    return record.get("TrainingJobName") or record.get("job_name")


def training_facts(record: dict[str, Any]) -> dict[str, Any]:
    """The record's scalar facts worth reporting: job, backend, status, best epoch, final mAP, stop reason."""
    facts = {
        "job_name": training_job_name(record),
        "backend": record.get("Backend") or record.get("backend"),
        "status": record.get("TrainingJobStatus") or record.get("status"),
        "stop_reason": record.get("StopReason"),
        "final_validation_map": record.get("FinalValidationMAP"),
    }
    return {k: v for k, v in facts.items() if v is not None}


def start_weights(record: dict[str, Any]) -> dict[str, Any]:
    """Which weights the model started from, as far as the record says (report.html's "Start weights").

    The local backend records the ImageNet file (``PretrainedWeights``: file, sha256, source) or why
    it trained from scratch (``PretrainedFallback``) and, for a JumpStart request, what ran in its
    place; SageMaker's algorithm chooses its ImageNet weights itself (no file to name).
    """
    hp = record.get("HyperParameters") or record.get("hyperparameters") or {}
    weights = record.get("PretrainedWeights")
    if weights:
        out = {"started from": f"ImageNet weights of {weights.get('base_network')}", "file": weights.get("file"),
               "sha256": weights.get("sha256"), "source": weights.get("source"),
               "GluonCV model-store SHA-1 verified": weights.get("gluoncv_sha1_verified")}
    elif record.get("PretrainedFallback"):
        out = {"started from": "random initial values (fallback: local.pretrained_fallback is scratch)",
               "why": record["PretrainedFallback"]}
    elif str(hp.get("use_pretrained_model")) == "1":
        out = {"started from": f"ImageNet weights of {hp.get('base_network')}, chosen by SageMaker's algorithm"}
    elif "use_pretrained_model" in hp:
        out = {"started from": "random initial values (use_pretrained_model=0)"}
    else:
        out = {}
    for key, label in (("JumpStartModelId", "JumpStart model"), ("LocalSubstitute", "run locally as")):
        if record.get(key):
            out[label] = record[key]
    return out


def training_timings(record: dict[str, Any]) -> dict[str, Any]:
    """Seconds the training took, as far as the record says (local ``Timings``, SageMaker's time fields)."""
    timings = dict(record.get("Timings") or record.get("timings") or {})
    for key in ("TrainingTimeInSeconds", "BillableTimeInSeconds"):
        if key in record:
            timings[key] = record[key]
    return timings


def tuning_trials(tuning: dict[str, Any]) -> list[dict[str, Any]]:
    """``[{"name", "hyperparameters", "objective"}]`` in launch order (``objective`` None for a failed trial).

    Takes ``trials`` as written, or DescribeHyperParameterTuningJob's ``TrainingJobSummaries``
    ordered by creation time.
    """
    if "trials" in tuning:
        return list(tuning["trials"])
    summaries = sorted(tuning.get("TrainingJobSummaries") or [],
                       key=lambda s: (str(s.get("CreationTime") or ""), str(s.get("TrainingJobName"))))
    return [
        {
            "name": s.get("TrainingJobName"),
            "hyperparameters": dict(s.get("TunedHyperParameters") or {}),
            "objective": (s.get("FinalHyperParameterTuningJobObjectiveMetric") or {}).get("Value"),
        }
        for s in summaries
    ]


def tuning_objective(tuning: dict[str, Any]) -> str:
    """The tuning job's objective metric name (``validation:mAP`` when the record does not say)."""
    config = tuning.get("HyperParameterTuningJobConfig") or {}
    return (config.get("HyperParameterTuningJobObjective") or {}).get("MetricName") or VALIDATION_MAP


def _region(record: dict[str, Any]) -> str | None:
    """The job's AWS region: ``region`` when recorded, else the one in its ARN (None: the default chain's)."""
    arn = str(record.get("TrainingJobArn") or "")
    return record.get("region") or (arn.split(":")[3] if arn.startswith("arn:aws") and arn.count(":") >= 5 else None)


def metric_records(training_uri: str, record: dict[str, Any]) -> list[MetricRecord]:
    """The metric lines of a finished training run: its local ``training.log``, else its SageMaker job's log streams."""
    log_uri = storage.join(training_uri, TRAINING_LOG)
    if storage.exists(log_uri):
        return parse_lines(storage.read_text(log_uri).splitlines())
    job = training_job_name(record)
    if not job:
        raise TrainingRecordError(f"{log_uri} does not exist and training.json names no SageMaker training job")
    from include.sagemaker.client import client
    from include.sagemaker.training_metrics import job_metric_records

    return job_metric_records(client("logs", _region(record)), job)


def read_training_curves(training_uri: str, record: dict[str, Any]) -> TrainingCurves:
    """Per-epoch series of a finished training run (:func:`metric_records`)."""
    return TrainingCurves.from_points(epoch_series(metric_records(training_uri, record)))
