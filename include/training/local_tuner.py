"""The ``local`` backend of CreateHyperParameterTuningJob: real training trials chosen by Optuna.

``run_tuning_job(request)`` executes the request SageMaker would get. Each trial is a
CreateTrainingJob request built from the request's ``TrainingJobDefinition`` (static
hyperparameters plus the trial's values and, as SageMaker adds, ``_tuning_objective_metric``),
named ``<tuning job>-<NNN>-<8 hex>`` like SageMaker's, and run by
:func:`include.training.local_executor.run_training_job`, so every trial leaves its own
``<S3OutputPath>/<trial>/output/`` with model, log and record.

Strategy ``Bayesian`` is Optuna's TPE sampler, ``Random`` its random sampler (both seeded).
ScalingType ``Linear``/``Logarithmic``/``ReverseLogarithmic`` map to linear, log and
``1 - log`` sampling; ``Auto`` samples a continuous or integer range on a log scale when it is
positive and spans at least two orders of magnitude (learning_rate 1e-6..0.5), else linearly.
Up to ``MaxParallelTrainingJobs`` trials run at once, but no more than the machine has cores;
the cores are shared out between them. The objective is the trial's final value of the
objective metric (FinalMetricDataList), as SageMaker takes it; a trial that fails (for example
a sampled value the algorithm rejects) is recorded as failed and tuning goes on.
``TrainingJobEarlyStoppingType`` ``Auto`` is accepted and has no effect locally.

A tuning job of this name that exists already is re-attached to as a local training job is
(:mod:`include.reattach`, :func:`run_tuning_job`): ``tuning.json`` names the process running it.

Outputs under ``<S3OutputPath>/<HyperParameterTuningJobName>/``: ``tuning.json`` (shaped like
DescribeHyperParameterTuningJob plus ListTrainingJobsForHyperParameterTuningJob: every trial's
hyperparameters, status and objective, and ``BestTrainingJob``) and ``model.tar.gz``, a copy of
the best trial's model.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import json
import logging
import math
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from include import storage
from include.reattach import find_job
from include.run_layout import MODEL_ARCHIVE, TUNING_JSON
from include.training.hyperparameters import SPECS
from include.training.local_executor import (
    TrainingJobError,
    owner_alive,
    owner_fields,
    run_training_job,
    sigterm_raises,
    wait_while_running,
)
from include.training.metric_log import METRIC_NAMES
from include.training.training_request import request_field

log = logging.getLogger(__name__)

TUNING_JOB_NAME_MAX = 32
POLL_S = 0.5
#: tuning.json names the process running the tuning job as ``TunerHost``, ``TunerPid``, ``TunerStartTime``.
TUNER = "Tuner"
STATUS = "HyperParameterTuningJobStatus"
LOCAL_ARN = "arn:aws:sagemaker:local:000000000000"
_DEFINITION_ONLY = ("StaticHyperParameters", "DefinitionName", "TuningObjective", "HyperParameterRanges")


class TuningRequestError(ValueError):
    """The request is not a CreateHyperParameterTuningJob request the local backend can execute."""


class _TrialFailed(Exception):
    """A trial ended without an objective value (recorded in tuning.json; Optuna marks it failed)."""


@dataclass(frozen=True)
class ParameterRange:
    """One tuned hyperparameter: ``kind`` continuous, integer or categorical."""

    name: str
    kind: str
    low: float = 0.0
    high: float = 0.0
    scaling: str = "Auto"
    values: tuple[str, ...] = ()

    def suggest(self, trial: Any) -> str:
        """The trial's value, as the string a training request carries."""
        if self.kind == "categorical":
            return str(trial.suggest_categorical(self.name, list(self.values)))
        log_scale = self.scaling == "Logarithmic" or (
            self.scaling == "Auto" and self.low > 0 and self.high / self.low >= 100
        )
        if self.kind == "integer":
            return str(trial.suggest_int(self.name, int(self.low), int(self.high), log=log_scale))
        if self.scaling == "ReverseLogarithmic":
            return repr(1.0 - trial.suggest_float(f"{self.name}:1-x", 1.0 - self.high, 1.0 - self.low, log=True))
        return repr(trial.suggest_float(self.name, self.low, self.high, log=log_scale))


def _field(obj: Any, path: str) -> Any:
    return request_field(obj, path, TuningRequestError, "tuning request")


def parse_ranges(ranges: dict[str, Any]) -> list[ParameterRange]:
    """ParameterRanges as :class:`ParameterRange` list; errors name the range and what is wrong."""
    out: list[ParameterRange] = []
    kinds = {"ContinuousParameterRanges": "continuous", "IntegerParameterRanges": "integer",
             "CategoricalParameterRanges": "categorical"}
    unknown = sorted(set(ranges) - set(kinds))
    if unknown:
        raise TuningRequestError(f"tuning request: ParameterRanges has unknown key(s) {', '.join(unknown)}")
    for key, kind in kinds.items():
        for i, spec in enumerate(ranges.get(key) or []):
            where = f"ParameterRanges.{key}[{i}]"
            name = _field(spec, "Name")
            if name not in SPECS:
                raise TuningRequestError(f"tuning request: {where}.Name {name!r} is not an algorithm hyperparameter")
            if kind == "categorical":
                values = tuple(str(v) for v in _field(spec, "Values"))
                if not values:
                    raise TuningRequestError(f"tuning request: {where}.Values is empty")
                out.append(ParameterRange(name, kind, values=values))
                continue
            try:
                low, high = float(_field(spec, "MinValue")), float(_field(spec, "MaxValue"))
            except ValueError as exc:
                raise TuningRequestError(f"tuning request: {where} MinValue/MaxValue must be numbers") from exc
            scaling = spec.get("ScalingType", "Auto")
            allowed = ("Auto", "Linear", "Logarithmic") + (("ReverseLogarithmic",) if kind == "continuous" else ())
            if not low <= high or scaling not in allowed:
                raise TuningRequestError(
                    f"tuning request: {where} needs MinValue <= MaxValue and ScalingType in {allowed} "
                    f"(got {low}, {high}, {scaling!r})"
                )
            reverse_ok = 0 <= low <= high < 1
            if (scaling == "Logarithmic" and low <= 0) or (scaling == "ReverseLogarithmic" and not reverse_ok):
                raise TuningRequestError(f"tuning request: {where} range [{low}, {high}] cannot use {scaling} scaling")
            out.append(ParameterRange(name, kind, low, high, scaling))
    names = [r.name for r in out]
    if len(set(names)) != len(names):
        raise TuningRequestError(f"tuning request: a hyperparameter is tuned twice in ParameterRanges ({names})")
    return out


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")


def trial_job_name(tuning_job_name: str, number: int) -> str:
    """``<tuning job>-<NNN>-<8 hex>``, SageMaker's naming of a tuning job's training jobs."""
    digest = hashlib.sha1(f"{tuning_job_name}/{number}".encode()).hexdigest()[:8]
    return f"{tuning_job_name}-{number:03d}-{digest}"


class _Tuning:
    """State of one local tuning job: its trials and its tuning.json record."""

    def __init__(self, request: dict[str, Any]) -> None:
        self.name = _field(request, "HyperParameterTuningJobName")
        if not isinstance(self.name, str) or not 1 <= len(self.name) <= TUNING_JOB_NAME_MAX:
            raise TuningRequestError(
                f"tuning request: HyperParameterTuningJobName {self.name!r} must be 1-{TUNING_JOB_NAME_MAX} characters"
            )
        self.config = _field(request, "HyperParameterTuningJobConfig")
        self.strategy = _field(self.config, "Strategy")
        if self.strategy not in ("Bayesian", "Random"):
            raise TuningRequestError(
                f"tuning request: Strategy {self.strategy!r}: the local backend runs Bayesian or Random"
            )
        objective = _field(self.config, "HyperParameterTuningJobObjective")
        self.direction = {"Maximize": "maximize", "Minimize": "minimize"}.get(objective.get("Type"))
        self.metric = _field(objective, "MetricName")
        if self.direction is None or self.metric not in METRIC_NAMES:
            raise TuningRequestError(
                f"tuning request: HyperParameterTuningJobObjective {objective!r} needs Type Maximize or Minimize "
                f"and MetricName one of {', '.join(METRIC_NAMES)}"
            )
        limits = _field(self.config, "ResourceLimits")
        self.max_jobs = int(_field(limits, "MaxNumberOfTrainingJobs"))
        self.max_parallel = int(_field(limits, "MaxParallelTrainingJobs"))
        if self.max_jobs < 1 or self.max_parallel < 1:
            raise TuningRequestError(f"tuning request: ResourceLimits {limits} must be >= 1")
        self.ranges = parse_ranges(_field(self.config, "ParameterRanges"))
        self.definition = _field(request, "TrainingJobDefinition")
        self.static = dict(self.definition.get("StaticHyperParameters") or {})
        clash = sorted({r.name for r in self.ranges} & set(self.static))
        if clash:
            raise TuningRequestError(f"tuning request: {', '.join(clash)} both static and tuned")
        self.output_path = storage.normalize(_field(self.definition, "OutputDataConfig.S3OutputPath"))
        self.output_uri = storage.join(self.output_path, self.name)
        self.tags = request.get("Tags", [])
        self.request = request
        self.trials: dict[int, dict[str, Any]] = {}
        self.lock = threading.Lock()
        self.created = _now()

    def training_request(self, job_name: str, tuned: dict[str, str]) -> dict[str, Any]:
        """The CreateTrainingJob request of one trial."""
        body = {k: v for k, v in self.definition.items() if k not in _DEFINITION_ONLY}
        hyper = {**self.static, **tuned, "_tuning_objective_metric": self.metric}
        return {"TrainingJobName": job_name, "HyperParameters": hyper, **body, "Tags": self.tags}

    def summary(self, job_name: str, tuned: dict[str, str], description: dict[str, Any] | None,
                error: str | None) -> dict[str, Any]:
        """A trial as ListTrainingJobsForHyperParameterTuningJob lists it (plus its local output folder)."""
        description = description or {}
        value = next((m["Value"] for m in description.get("FinalMetricDataList", []) if m["MetricName"] == self.metric),
                     None)
        out: dict[str, Any] = {
            "TrainingJobName": job_name,
            "TrainingJobArn": description.get("TrainingJobArn"),
            "TuningJobName": self.name,
            "CreationTime": description.get("CreationTime"),
            "TrainingStartTime": description.get("TrainingStartTime"),
            "TrainingEndTime": description.get("TrainingEndTime"),
            "TrainingJobStatus": description.get("TrainingJobStatus", "Failed"),
            "TunedHyperParameters": tuned,
            "ObjectiveStatus": "Succeeded" if value is not None and math.isfinite(value) else "Failed",
            "output_uri": description.get("output_uri"),
        }
        if value is not None:
            out["FinalHyperParameterTuningJobObjectiveMetric"] = {
                "Type": "Maximize" if self.direction == "maximize" else "Minimize",
                "MetricName": self.metric,
                "Value": value,
            }
        if error or description.get("FailureReason"):
            out["FailureReason"] = error or description.get("FailureReason")
        if description.get("ModelArtifacts"):
            out["ModelArtifacts"] = description["ModelArtifacts"]
        return out

    def in_order(self) -> list[dict[str, Any]]:
        """The trials so far, by trial number (the order they started)."""
        with self.lock:
            return [self.trials[n] for n in sorted(self.trials)]

    def best(self, trials: list[dict[str, Any]] | None = None) -> dict[str, Any] | None:
        """The trial with the best objective; of equal ones the first started, whatever order they finished in.

        ``trials``: a snapshot from :meth:`in_order` (default: taken now).
        """
        done = [t for t in (self.in_order() if trials is None else trials) if t["ObjectiveStatus"] == "Succeeded"]
        if not done:
            return None
        sign = 1 if self.direction == "maximize" else -1
        return max(done, key=lambda t: sign * t["FinalHyperParameterTuningJobObjectiveMetric"]["Value"])

    def record(self, status: str, failure: str | None = None, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        """Write tuning.json with the trials so far; returns it."""
        trials = self.in_order()
        statuses = [t["TrainingJobStatus"] for t in trials]
        data: dict[str, Any] = {
            "HyperParameterTuningJobName": self.name,
            "HyperParameterTuningJobArn": f"{LOCAL_ARN}:hyper-parameter-tuning-job/{self.name}",
            "HyperParameterTuningJobConfig": self.config,
            "TrainingJobDefinition": self.definition,
            "HyperParameterTuningJobStatus": status,
            "CreationTime": self.created,
            "LastModifiedTime": _now(),
            "TrainingJobStatusCounters": {
                "Completed": statuses.count("Completed"),
                "InProgress": self.max_jobs - len(trials) if status == "InProgress" else 0,
                "RetryableError": 0,
                "NonRetryableError": statuses.count("Failed"),
                "Stopped": statuses.count("Stopped"),
            },
            "ObjectiveStatusCounters": {
                "Succeeded": sum(t["ObjectiveStatus"] == "Succeeded" for t in trials),
                "Pending": self.max_jobs - len(trials) if status == "InProgress" else 0,
                "Failed": sum(t["ObjectiveStatus"] == "Failed" for t in trials),
            },
            "TrainingJobSummaries": trials,
            "Backend": "local",
            "output_uri": self.output_uri,
            **owner_fields(os.getpid(), TUNER),
            **(extra or {}),
        }
        best = self.best(trials)
        if best:
            data["BestTrainingJob"] = best
        if status != "InProgress":
            data["HyperParameterTuningEndTime"] = _now()
        if failure:
            data["FailureReason"] = failure
        storage.write_text(storage.join(self.output_uri, TUNING_JSON), json.dumps(data, indent=2))
        return data


def run_tuning_job(
    request: dict[str, Any],
    workdir: str | None = None,
    timeout_s: float | None = None,
    *,
    seed: int = 0,
    cores: int | None = None,
    stop_event: threading.Event | None = None,
) -> dict[str, Any]:
    """Execute a CreateHyperParameterTuningJob request here; its final tuning.json record.

    ``workdir`` keeps each trial's scratch folder (temporary ones when None); ``timeout_s`` stops
    the whole tuning job (running trials are killed, the job ends ``Stopped``); ``cores`` caps the
    CPU cores used (all by default); ``stop_event`` stops it from another thread. Raises
    :class:`TuningRequestError` for a request that cannot start; failed trials are recorded, not
    raised; an interruption (SIGTERM, Ctrl-C) is re-raised after the running trials are stopped.

    A tuning job of this name (or a later one of the run, ``<name>-t<n>``) that exists already is re-attached
    to: completed (its best model present), its record is answered and nothing runs; running (the task
    process of an earlier try still lives), it is waited for; failed, stopped, or lost with a dead worker
    (recorded Failed), a new tuning job ``<name>-t<n>`` runs.
    """
    import optuna

    tuning = _Tuning(request)
    describe = functools.partial(_describe_local, tuning.output_path)
    found = find_job(describe, tuning.name, STATUS)
    if found.action != "start" or found.name != tuning.name:
        log.info("%s", found.message("tuning job"))
    if found.action == "attach":
        found = wait_while_running(describe, found, STATUS)
    if found.action == "take":
        return dict(found.description or {})
    if found.name != tuning.name:
        tuning = _Tuning({**request, "HyperParameterTuningJobName": found.name})
    cores = cores or os.cpu_count() or 1
    parallel = max(1, min(tuning.max_parallel, tuning.max_jobs, cores))
    threads = max(1, cores // parallel)
    stop = stop_event or threading.Event()
    sampler = (optuna.samplers.TPESampler(seed=seed) if tuning.strategy == "Bayesian"
               else optuna.samplers.RandomSampler(seed=seed))
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction=tuning.direction, sampler=sampler, study_name=tuning.name)
    extra = {"Sampler": type(sampler).__name__, "ParallelTrainingJobs": parallel, "ThreadsPerTrainingJob": threads}
    tuning.record("InProgress", extra=extra)

    def objective(trial: Any) -> float:
        if stop.is_set():
            raise _TrialFailed("the tuning job is stopping")
        number = trial.number + 1
        job_name = trial_job_name(tuning.name, number)
        tuned = {r.name: r.suggest(trial) for r in tuning.ranges}
        description, error = None, None
        try:
            trial_workdir = str(Path(workdir) / job_name) if workdir else None
            description = run_training_job(tuning.training_request(job_name, tuned), trial_workdir,
                                           stop_event=stop, threads=threads)
        except TrainingJobError as exc:
            description = exc.description
        except ValueError as exc:  # the trial's request or hyperparameters were rejected before it started
            error = f"ClientError: {exc}"
        summary = tuning.summary(job_name, tuned, description, error)
        with tuning.lock:
            tuning.trials[number] = summary
        tuning.record("InProgress", extra=extra)
        log.info("tuning job %s: trial %s %s %s", tuning.name, job_name, summary["TrainingJobStatus"],
                 summary.get("FinalHyperParameterTuningJobObjectiveMetric", {}).get("Value"))
        if summary["ObjectiveStatus"] != "Succeeded":
            raise _TrialFailed(summary.get("FailureReason", "no objective value"))
        return float(summary["FinalHyperParameterTuningJobObjectiveMetric"]["Value"])

    def stop_when_asked(study: Any, trial: Any) -> None:
        if stop.is_set():
            study.stop()

    worker = threading.Thread(
        target=study.optimize,
        kwargs={"func": objective, "n_trials": tuning.max_jobs, "n_jobs": parallel, "catch": (_TrialFailed,),
                "callbacks": [stop_when_asked]},
        name=f"tuning-{tuning.name}",
        daemon=True,
    )
    start = time.monotonic()
    with sigterm_raises(stop):
        worker.start()
        try:
            while worker.is_alive():
                if timeout_s is not None and time.monotonic() - start > timeout_s:
                    stop.set()
                worker.join(POLL_S)
        except BaseException:
            stop.set()
            worker.join()
            tuning.record("Stopped", "the tuning task was interrupted", extra)
            raise
    return _finish(tuning, stop.is_set(), extra)


def _describe_local(output_path: str, name: str) -> dict[str, Any] | None:
    """A local tuning job's tuning.json (None: no such job); one ``InProgress`` whose process is gone is recorded
    Failed, one ``Completed`` whose best model was deleted is answered Failed (nothing to take)."""
    uri = storage.join(output_path, name, TUNING_JSON)
    if not storage.exists(uri):
        return None
    record = json.loads(storage.read_text(uri))
    if record.get(STATUS) == "InProgress" and not owner_alive(record, TUNER):
        record.update({STATUS: "Failed", "LastModifiedTime": _now(),
                       "FailureReason": "the tuning process was lost (its task's worker died)"})  # fmt: skip
        storage.write_text(uri, json.dumps(record, indent=2))
    model = (record.get("ModelArtifacts") or {}).get("S3ModelArtifacts")
    if record.get(STATUS) == "Completed" and not (model and storage.exists(model)):
        record.update({STATUS: "Failed", "FailureReason": "its model.tar.gz was deleted"})
    return record


def _finish(tuning: _Tuning, stopped: bool, extra: dict[str, Any]) -> dict[str, Any]:
    best = tuning.best()
    if best and best.get("ModelArtifacts"):
        model_uri = storage.join(tuning.output_uri, MODEL_ARCHIVE)
        with storage.local_copy(best["ModelArtifacts"]["S3ModelArtifacts"]) as local:
            storage.upload_file(local, model_uri)
        extra = {**extra, "ModelArtifacts": {"S3ModelArtifacts": model_uri}}
    if stopped:
        return tuning.record("Stopped", "stopped before all training jobs ran", extra)
    if best is None:
        return tuning.record("Failed", "no training job produced the objective metric", extra)
    return tuning.record("Completed", None, extra)
