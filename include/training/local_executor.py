"""The ``local`` backend of CreateTrainingJob: runs the request's training in a child process here.

``run_training_job(request)`` executes the very request SageMaker would get. The trainer runs as
``python -m include.training.algorithm`` in its own process (session), so the caller stays
responsive and a stop is immediate: when the caller is interrupted (SIGTERM, Ctrl-C, an Airflow
task being killed, ``stop_event`` set) the child is terminated within seconds and no model is
published; the child also exits by itself if its parent disappears.

Outputs go where SageMaker puts them, ``<S3OutputPath>/<TrainingJobName>/output/``:
``model.tar.gz`` (copied there atomically only after training succeeded), ``training.log`` (the
algorithm's metric lines and human lines) and ``training.json``, a DescribeTrainingJob-shaped
record (written ``InProgress`` at the start and after every epoch, final at the end) with local
additions: per-epoch metrics and timings, the best epoch, the final validation mAP, and
``PretrainedWeights`` (file, sha256, source) when the base network started from ImageNet weights,
or ``PretrainedFallback`` (why not) when the request was built to train from scratch instead.

A request with ``use_pretrained_model=1`` whose weights are neither in the cache nor downloadable
fails here at once (ClientError naming the file and the import command), before a process starts.

``StoppingCondition.MaxRuntimeInSeconds``: the trainer stops between batches when it is reached
and, as a SageMaker algorithm may do in the 120 s it gets after SIGTERM, exports the best epoch so
far: the job ends ``Stopped`` (``SecondaryStatus`` ``MaxRuntimeExceeded``) with a model when at
least one epoch finished. The parent kills the child if it overruns that by :data:`STOP_GRACE_S`.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from include import storage
from include.project import PROJECT_ROOT
from include.reattach import Attachment, Describe, find_job
from include.run_layout import TRAINING_JSON, TRAINING_LOG
from include.sagemaker.metrics import final_values, parse_lines
from include.sagemaker.naming import PRETRAINED_FALLBACK_TAG
from include.training.algorithm import RESULT_FILE, request_hyperparameters
from include.training.hyperparameters import validate_hyperparameters
from include.training.metric_log import parse_metrics
from include.training.training_request import TrainingRequest, parse_request

log = logging.getLogger(__name__)

STOP_GRACE_S = 120.0  # SageMaker's window between SIGTERM and SIGKILL
TERMINATE_WAIT_S = 5.0
POLL_S = 0.2
#: Seconds between reads of the record of a job an earlier try started, while it runs.
RECORD_POLL_S = 5.0


class TrainingJobError(RuntimeError):
    """The job failed or was stopped; ``description`` is its final training.json record."""

    def __init__(self, description: dict[str, Any]) -> None:
        self.description = description
        super().__init__(
            f"training job {description['TrainingJobName']} {description['TrainingJobStatus']}: "
            f"{description.get('FailureReason', '')}"
        )


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")


def describe_local_job(output_uri: str) -> dict[str, Any]:
    """DescribeTrainingJob for a local job: its training.json record.

    ``output_uri`` is the job's output folder (``<S3OutputPath>/<job>/output``), its job folder or
    the training.json URI itself; ``FileNotFoundError`` when there is no record.
    """
    candidates = [output_uri] if output_uri.endswith(".json") else [
        storage.join(output_uri, TRAINING_JSON),
        storage.join(output_uri, "output", TRAINING_JSON),
    ]
    for uri in candidates:
        if storage.exists(uri):
            return json.loads(storage.read_text(uri))
    raise FileNotFoundError(f"no local training job record at {' or '.join(candidates)}")


def _describe_local(output_path: str, name: str) -> dict[str, Any] | None:
    """A local job's record (None: no such job); one ``InProgress`` whose trainer is gone is recorded Failed."""
    try:
        record = describe_local_job(storage.join(output_path, name, "output"))
    except FileNotFoundError:
        return None
    if record.get("TrainingJobStatus") == "InProgress" and not owner_alive(record):
        record.update(TrainingJobStatus="Failed", SecondaryStatus="Failed", LastModifiedTime=_now(),
                      FailureReason="the training process was lost (its task's worker died)")  # fmt: skip
        storage.write_text(storage.join(output_path, name, "output", TRAINING_JSON), json.dumps(record, indent=2))
    model = (record.get("ModelArtifacts") or {}).get("S3ModelArtifacts")
    if record.get("TrainingJobStatus") == "Completed" and not (model and storage.exists(model)):
        record.update(TrainingJobStatus="Failed", FailureReason="its model.tar.gz was deleted")  # nothing to take
    return record


def owner_alive(record: Mapping[str, Any], role: str = "Trainer") -> bool:
    """Whether the process the record names as ``<role>Host/Pid/StartTime`` still runs (here, the same process)."""
    import psutil

    pid, started = record.get(f"{role}Pid"), record.get(f"{role}StartTime")
    if record.get(f"{role}Host") != socket.gethostname() or not pid or started is None:
        return False
    try:
        return abs(psutil.Process(pid).create_time() - started) < 1.0
    except psutil.Error:
        return False


def owner_fields(pid: int, role: str = "Trainer") -> dict[str, Any]:
    """``<role>Host/Pid/StartTime`` of process ``pid``: a retried task tells a running job from a lost one by them."""
    import psutil

    started = psutil.Process(pid).create_time()
    return {f"{role}Host": socket.gethostname(), f"{role}Pid": pid, f"{role}StartTime": started}


def wait_while_running(describe: Describe, found: Attachment, status_key: str) -> Attachment:
    """Wait while a job an earlier try started runs (its task process still lives); then decide again."""
    while found.action == "attach":
        time.sleep(RECORD_POLL_S)
        found = find_job(describe, found.name, status_key)
    return found


class _Record:
    """Builds and writes the job's training.json as it progresses."""

    def __init__(self, request: TrainingRequest, extra: Mapping[str, Any] | None) -> None:
        self.request = request
        self.started = time.monotonic()
        raw = request.raw
        self.data: dict[str, Any] = {
            "TrainingJobName": request.job_name,
            "TrainingJobArn": f"arn:aws:sagemaker:local:000000000000:training-job/{request.job_name}",
            "TrainingJobStatus": "InProgress",
            "SecondaryStatus": "Starting",
            "HyperParameters": dict(request.hyperparameters),
            "AlgorithmSpecification": raw.get("AlgorithmSpecification", {}),
            "RoleArn": raw.get("RoleArn"),
            "InputDataConfig": raw.get("InputDataConfig", []),
            "OutputDataConfig": raw.get("OutputDataConfig", {}),
            # what ran: this machine (SageMaker's SDK calls its local mode "local"), and what the request asked for
            "ResourceConfig": {
                "InstanceType": "local",
                "InstanceCount": 1,
                "Cpus": os.cpu_count(),
                "RequestedInstanceType": raw.get("ResourceConfig", {}).get("InstanceType"),
            },
            "StoppingCondition": raw.get("StoppingCondition", {}),
            "CreationTime": _now(),
            "TrainingStartTime": _now(),
            "Backend": "local",
            "output_uri": request.output_uri,
            **(extra or {}),
        }
        fallback = [t["Value"] for t in raw.get("Tags") or [] if t.get("Key") == PRETRAINED_FALLBACK_TAG]
        if fallback:
            self.data["PretrainedFallback"] = fallback[0]

    def attach_trainer(self, pid: int) -> None:
        """Name the trainer process in the record, so a retried task can tell a running job from a lost one."""
        import psutil

        with contextlib.suppress(psutil.Error):
            self.data.update(owner_fields(pid))
        self.write()

    def progress(self, log_text: str) -> None:
        """Record the epochs logged so far (``InProgress``)."""
        self.data["SecondaryStatus"] = "Training"
        self.data["Epochs"] = [{"epoch": e, "validation_map": v} for e, v in parse_metrics(log_text)["validation:mAP"]]
        self.write()

    def finish(self, status: str, secondary: str, log_text: str, result: Mapping[str, Any] | None,
               failure: str | None, model_uri: str | None) -> dict[str, Any]:
        """The final record (also written)."""
        metrics = parse_metrics(log_text)
        finals = final_values(parse_lines(log_text.splitlines()))
        logged = dict(metrics["validation:mAP"])
        epochs = [{**e, "validation_map": logged.get(e["epoch"], e["validation_map"])}
                  for e in (result or {}).get("epochs", [])]
        self.data.update(
            TrainingJobStatus=status,
            SecondaryStatus=secondary,
            TrainingEndTime=_now(),
            LastModifiedTime=_now(),
            TrainingTimeInSeconds=int(round(time.monotonic() - self.started)),
            FinalMetricDataList=[{"MetricName": k, "Value": v, "Timestamp": _now()} for k, v in finals.items()],
            Epochs=epochs,
        )
        if failure:
            self.data["FailureReason"] = failure
        if model_uri:
            self.data["ModelArtifacts"] = {"S3ModelArtifacts": model_uri}
        if result and result.get("status") != "Failed":
            self.data.update(
                BestEpoch=result.get("best_epoch"),
                BestValidationMAP=logged.get(result.get("best_epoch"), result.get("best_validation_map")),
                BestClassAP=result.get("best_class_ap", {}),
                FinalValidationMAP=finals.get("validation:mAP"),
                **result.get("training_json", {}),
                StopReason=result.get("stop_reason"),
                Classes=result.get("classes"),
                ClassesUri=result.get("classes_uri"),
                Timings={
                    "job_seconds": self.data["TrainingTimeInSeconds"],
                    "trainer_seconds": result.get("seconds"),
                    "train_seconds": sum(e["train_seconds"] for e in epochs),
                    "data_seconds": sum(e["data_seconds"] for e in epochs),
                    "compute_seconds": sum(e["compute_seconds"] for e in epochs),
                    "validation_seconds": sum(e["validation_seconds"] for e in epochs),
                    "train_cpu_seconds": sum(e["cpu_seconds"] for e in epochs),
                    "validation_cpu_seconds": sum(e.get("validation_cpu_seconds", 0.0) for e in epochs),
                },
            )
        self.write()
        return dict(self.data)

    def write(self) -> None:
        self.data["LastModifiedTime"] = _now()
        storage.write_text(storage.join(self.request.output_uri, TRAINING_JSON), json.dumps(self.data, indent=2))


@contextlib.contextmanager
def sigterm_raises(stop: threading.Event | None = None) -> Iterator[None]:
    """In the main thread, turn a default (fatal) SIGTERM into SystemExit so cleanup runs.

    ``stop``, when given, is set first (the tuner uses it to stop its parallel trials).
    """
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGTERM) not in (
        signal.SIG_DFL,
        None,
    ):
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        if stop is not None:
            stop.set()
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _terminate(child: subprocess.Popen[str]) -> None:
    """SIGTERM the child's process group, SIGKILL it if it is still there after a few seconds."""
    if child.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(child.pid, signal.SIGTERM)
    try:
        child.wait(TERMINATE_WAIT_S)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.pid, signal.SIGKILL)
        child.wait()


def _child_env(threads: int) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        OMP_NUM_THREADS=str(threads),
        MXNET_CPU_WORKER_NTHREADS="1",
        MXNET_SUBGRAPH_VERBOSE="0",
        PYTHONUNBUFFERED="1",
        PYTHONPATH=os.pathsep.join(filter(None, [str(PROJECT_ROOT), env.get("PYTHONPATH")])),
    )
    return env


def run_training_job(
    request: dict[str, Any],
    workdir: str | None = None,
    timeout_s: float | None = None,
    *,
    stop_event: threading.Event | None = None,
    threads: int | None = None,
    extra_record: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Execute a CreateTrainingJob request here; its final training.json record.

    ``workdir`` holds the job's scratch files (a temporary folder, removed afterwards, when None).
    ``timeout_s`` is a hard wall-clock limit: past it the job is killed and ends ``Stopped``
    without a model. ``stop_event`` set by another thread stops the job the same way. ``threads``
    is the CPU threads the trainer may use (all cores by default). ``extra_record`` keys are added
    to training.json.

    A job of this name (or a later one of the run, ``<name>-t<n>``) that exists already is re-attached
    to (:mod:`include.reattach`): completed, its record is answered and nothing runs; running (the
    task process of an earlier try still lives), it is waited for; failed, stopped, or lost with a
    dead worker, a new job ``<name>-t<n>`` runs.

    Raises :class:`TrainingRequestError` / ``HyperparameterError`` for a request that cannot start
    (before anything runs), :class:`TrainingJobError` when the job fails or is stopped other than by
    MaxRuntimeInSeconds, and re-raises an interruption after stopping the job.
    """
    job = parse_request(request)
    describe = functools.partial(_describe_local, job.output_path)
    found = find_job(describe, job.job_name, "TrainingJobStatus")
    if found.action != "start" or found.name != job.job_name:
        log.info("%s", found.message("training job"))
    if found.action == "attach":
        found = wait_while_running(describe, found, "TrainingJobStatus")
    if found.action == "take":
        return dict(found.description or {})
    if found.name != job.job_name:
        job = parse_request({**request, "TrainingJobName": found.name})
    record = _Record(job, extra_record)
    try:
        hp = validate_hyperparameters(request_hyperparameters(job))
        if hp["use_pretrained_model"]:
            from include.training.pretrained import check_cached, resolve

            record.data["PretrainedWeights"] = check_cached(resolve(hp["base_network"])).record()
    except ValueError as exc:
        record.finish("Failed", "Failed", "", None, f"ClientError: {exc}", None)
        raise
    scratch = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix=f"{job.job_name}-"))
    scratch.mkdir(parents=True, exist_ok=True)
    try:
        return _run(job, record, scratch, timeout_s, stop_event, threads or os.cpu_count() or 1)
    finally:
        if not workdir:
            shutil.rmtree(scratch, ignore_errors=True)


def _run(
    job: TrainingRequest,
    record: _Record,
    scratch: Path,
    timeout_s: float | None,
    stop_event: threading.Event | None,
    threads: int,
) -> dict[str, Any]:
    request_file = scratch / "request.json"
    request_file.write_text(json.dumps(job.raw))
    (scratch / RESULT_FILE).unlink(missing_ok=True)
    log_file = scratch / TRAINING_LOG
    record.write()
    command = [sys.executable, "-m", "include.training.algorithm", "--request", str(request_file),
               "--workdir", str(scratch), "--data-workers", "1" if threads >= 2 else "0"]
    lines: list[str] = []
    epochs_seen = threading.Event()
    start = time.monotonic()
    hard_limit = job.max_runtime_s + STOP_GRACE_S if job.max_runtime_s else None
    stopped: str | None = None
    with sigterm_raises():
        child = subprocess.Popen(command, cwd=PROJECT_ROOT, env=_child_env(threads), stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT, encoding="utf-8", errors="replace",
                                 start_new_session=True)
        reader = threading.Thread(target=_pump, args=(child, log_file, lines, epochs_seen), daemon=True)
        reader.start()
        log.info("training job %s: trainer process %d started", job.job_name, child.pid)
        record.attach_trainer(child.pid)
        try:
            while child.poll() is None:
                elapsed = time.monotonic() - start
                if stop_event is not None and stop_event.is_set():
                    stopped = "StopTrainingJob requested"
                elif timeout_s is not None and elapsed > timeout_s:
                    stopped = f"local timeout_s={timeout_s:g} exceeded"
                elif hard_limit is not None and elapsed > hard_limit:
                    stopped = f"MaxRuntimeInSeconds={job.max_runtime_s} exceeded and the trainer did not stop"
                if stopped:
                    _terminate(child)
                    break
                if epochs_seen.is_set():
                    epochs_seen.clear()
                    record.progress("\n".join(lines))
                time.sleep(POLL_S)
        except BaseException:
            _terminate(child)
            reader.join(TERMINATE_WAIT_S)
            try:  # best effort: the interruption itself must propagate
                _publish_log(job, log_file)
                record.finish("Stopped", "Stopped", "\n".join(lines), None, "the training task was interrupted", None)
            except Exception:
                log.exception("training job %s: could not record the stop", job.job_name)
            raise
        reader.join()
    return _finish(job, record, scratch, log_file, "\n".join(lines), child.returncode, stopped)


def _pump(child: subprocess.Popen[str], log_file: Path, lines: list[str], epochs_seen: threading.Event) -> None:
    """Copy the trainer's output to training.log, the logger and ``lines``; flag each finished epoch."""
    assert child.stdout is not None
    with log_file.open("w") as out:
        for raw in child.stdout:
            line = raw.rstrip("\n")
            lines.append(line)
            out.write(raw)
            out.flush()
            log.info("%s", line)
            if "validation mAP <score>" in line:
                epochs_seen.set()


def _publish_log(job: TrainingRequest, log_file: Path) -> None:
    if log_file.exists():
        storage.upload_file(log_file, storage.join(job.output_uri, TRAINING_LOG))


def _finish(
    job: TrainingRequest,
    record: _Record,
    scratch: Path,
    log_file: Path,
    log_text: str,
    returncode: int,
    stopped: str | None,
) -> dict[str, Any]:
    """Publish log and model, write the final record; raise when the job did not succeed."""
    _publish_log(job, log_file)
    result_file = scratch / RESULT_FILE
    result = json.loads(result_file.read_text()) if result_file.exists() and not stopped else None
    if stopped:
        secondary = "MaxRuntimeExceeded" if stopped.startswith("MaxRuntime") else "Stopped"
        description = record.finish("Stopped", secondary, log_text, None, stopped, None)
        raise TrainingJobError(description)
    if result is None or result.get("status") == "Failed":
        reason = (result or {}).get("failure_reason") or f"AlgorithmError: the trainer exited with code {returncode}"
        description = record.finish("Failed", "Failed", log_text, result, reason, None)
        raise TrainingJobError(description)
    model_uri = None
    if result.get("model_path"):
        record.data["SecondaryStatus"] = "Uploading"
        model_uri = storage.upload_file(result["model_path"], job.model_uri)
    if result["status"] == "Stopped":
        kept = "kept the best epoch so far" if model_uri else "no epoch finished, so there is no model"
        description = record.finish("Stopped", "MaxRuntimeExceeded", log_text, result,
                                    f"MaxRuntimeInSeconds={job.max_runtime_s} reached; {kept}", model_uri)
        if not model_uri:
            raise TrainingJobError(description)
        return description
    return record.finish("Completed", "Completed", log_text, result, None, model_uri)
