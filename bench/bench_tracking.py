"""Benchmark: what MLflow tracking adds to a pipeline run and to a training epoch, and how fast a run with 50 epochs
of history opens in the MLflow UI's API. Targets: under 1 s per run and under 2 % of an epoch, locally.

Reference: a real local pipeline run in this process (``detection-pipeline run``'s code on a generated sample,
``--epochs`` epochs): its wall time and its epochs' training time (``training.json``).

Tracking per run, as Airflow tasks pay it: every tracking call the run's tasks make (resolve_config,
validate, train, evaluate, promotion gate, approval, deploy, smoke test, teardown, close), replayed on
that run's own files as a new pipeline run, ``--rounds`` times against the local tracking server; plus the
extra imports tracking costs each of the ~10 tracked task processes, measured in fresh interpreters that
have already imported what a task process has (Airflow's task runner, the stages). For contrast, the
import of ``mlflow.MlflowClient`` is measured the same way (why the pipeline uses a REST client).

Per epoch: the training history of a 50-epoch job (4 metrics per epoch, parsed from its log lines and
logged in one batch), divided by 50, against the reference run's mean epoch.

UI: a run with 50 epochs of 4 metrics and 17 params; the calls the MLflow UI's run page makes
(``runs/get`` and ``metrics/get-history-bulk-interval`` per metric, as the UI bundle does) timed
``--rounds`` times, against the same calls on a run with 1 epoch.

    .venv/bin/python -m bench.bench_tracking [--epochs 2] [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", str(os.cpu_count() or 1))

from include import storage
from include.project import PIPELINE_DAG_ID, PROJECT_ROOT

TASK_PROCESS = "import airflow.sdk.execution_time.task_runner, include.stages"
TRACKING_MODULES = "include.tracking.records, include.tracking.training, include.tracking.promotion"
TRACKED_TASKS = 10
UI_METRICS = ("validation:mAP", "train:cross_entropy", "train:smooth_l1", "train:throughput")


def spread(values: list[float], unit: str = "s", scale: float = 1.0) -> str:
    v = [x * scale for x in values]
    return f"median {statistics.median(v):8.3f} {unit}  min {min(v):8.3f}  max {max(v):8.3f}  (n={len(v)})"


def import_cost(modules: str, repeats: int = 3) -> list[float]:
    """CPU seconds a fresh task-like interpreter spends importing ``modules`` (after what every task imports)."""
    code = f"import time; {TASK_PROCESS}; t = time.process_time(); import {modules}; print(time.process_time() - t)"
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
    out = []
    for _ in range(repeats):
        done = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env, cwd=PROJECT_ROOT
        )
        out.append(float(done.stdout.strip().splitlines()[-1]))
    return out


def reference_run(epochs: int) -> dict[str, Any]:
    """A real local pipeline run (tracked), its wall time, and its outputs."""
    from include.pipeline_run import run_pipeline

    started = time.perf_counter()
    out = run_pipeline({"epochs": epochs, "dataset_source": "sample", "tune": False}, run_id="bench-reference")
    out["seconds"] = time.perf_counter() - started
    record = json.loads(
        storage.read_text(storage.join(out["training"]["artifact_uri"].rsplit("/", 1)[0], "training.json"))
    )
    out["epoch_seconds"] = [e["train_seconds"] + e["validation_seconds"] for e in record["Epochs"]]
    return out


#: Requests sent to the tracking server so far (counted by :func:`count_requests`).
REQUESTS = [0]


def count_requests() -> None:
    """Count every request the tracking client sends (this benchmark's process only)."""
    from include.tracking.rest import TrackingClient

    send = TrackingClient._send

    def counted(self: TrackingClient, *args: Any, **kwargs: Any) -> Any:
        REQUESTS[0] += 1
        return send(self, *args, **kwargs)

    TrackingClient._send = counted  # type: ignore[method-assign]


def replay(cfg: Any, uri: str, out: dict[str, Any], run_id: str) -> dict[str, tuple[float, float, int]]:
    """Every tracking call of one pipeline run's tasks, on ``out``'s files, as run ``run_id``: per task
    ``(wall seconds, client CPU seconds, requests)``."""
    from include.tracking import records, training
    from include.tracking.promotion import gate, record_approval
    from include.tracking.runs import FINISHED, finish, open_children, open_pipeline_run
    from include.tracking.uri import check_reachable

    layout, seconds = out["layout"], {}

    def timed(task: str, call: Callable[[], Any]) -> Any:
        started, cpu, requests = time.perf_counter(), time.process_time(), REQUESTS[0]
        value = call()
        seconds[task] = (time.perf_counter() - started, time.process_time() - cpu, REQUESTS[0] - requests)
        return value

    def resolve() -> Any:
        check_reachable(uri, cfg.tracking.timeout_seconds)
        ref = open_pipeline_run(cfg, uri, PIPELINE_DAG_ID, run_id)
        records.record_run_settings(ref, cfg, {"detection.storage": layout["root"]})
        return ref

    ref = timed("resolve_config", resolve)
    timed(
        "validate",
        lambda: (
            records.record_quality(ref, layout["quality"], failed=False, tag_pipeline_run=False),
            records.record_dataset(
                ref, out["validate"]["uris"]["annotations"], "cub:sample", {"detection.quality": "passed"}
            ),
        ),
    )
    result = {k: v for k, v in out["training"].items() if k != "tracking"}
    tracked = timed("train", lambda: training.record_training(ref, result, "local", layout["training"], None))
    timed("evaluate", lambda: records.record_evaluation(ref, out["evaluation"], layout["evaluation"]))
    decision = timed("promotion_gate", lambda: gate(cfg, ref, out["evaluation"], {**result, "tracking": tracked}))
    timed("approve", lambda: record_approval(cfg, ref, decision, approved=True, by="bench", reason="bench"))
    for task in ("deploy", "smoke_test", "teardown"):
        timed(task, lambda task=task: records.record_event(ref, task, {"endpoint_name": "bench", "passed": True}))

    def close() -> None:
        for run in open_children(ref):
            finish(ref, run.run_id, FINISHED)
        finish(ref, ref.run_id)

    timed("close_tracking", close)
    return seconds


def history_seconds(ref: Any, epochs: int) -> float:
    """Seconds to parse a job log of ``epochs`` epochs and log its history (4 metrics per epoch) into a new run."""
    from include.sagemaker.metrics import parse_lines
    from include.tracking.runs import log, step_run
    from include.tracking.training import history
    from include.training import metric_log

    lines = []
    for epoch in range(epochs):
        lines += [
            metric_log.train_loss_line(epoch, 10, "cross_entropy", 1 / (epoch + 1)),
            metric_log.train_loss_line(epoch, 10, "smooth_l1", 0.5 / (epoch + 1)),
            metric_log.throughput_line(12.5),
            metric_log.validation_line(epoch, epoch / epochs),
        ]
    run = step_run(ref, "trial", trial=f"history-{time.monotonic_ns()}")
    started = time.perf_counter()
    log(ref, run.run_id, metrics=history(parse_lines(lines)))
    return time.perf_counter() - started


def server_cpu_seconds(pid: int) -> float:
    """CPU seconds the tracking server's processes (the CLI and its uvicorn worker) have used so far."""
    import psutil

    root = psutil.Process(pid)
    total = 0.0
    for proc in (root, *root.children(recursive=True)):
        times = proc.cpu_times()
        total += times.user + times.system
    return total


def round_trips(uri: str, write: bool, n: int = 20) -> list[float]:
    """Seconds of one trivial request, ``n`` times: a read (experiments/search) or a write (a run's tag)."""
    from include.tracking.rest import TrackingClient

    out = []
    with TrackingClient(uri) as api:
        run_id = api.call("POST", "runs/search", {"experiment_ids": ["0", "1"], "max_results": 1})["runs"][0]["info"][
            "run_id"
        ]
        for i in range(n):
            started = time.perf_counter()
            if write:
                api.call("POST", "runs/set-tag", {"run_id": run_id, "key": f"bench.{i}", "value": "x"})
            else:
                api.call("GET", "experiments/search", params={"max_results": 1})
            out.append(time.perf_counter() - started)
    return out


def ui_open_seconds(uri: str, run_id: str) -> float:
    """The MLflow UI run page's own calls: the run, then the charts' history of each metric."""
    import httpx

    started = time.perf_counter()
    with httpx.Client(base_url=uri, timeout=30) as http:
        http.get("/ajax-api/2.0/mlflow/runs/get", params={"run_id": run_id}).raise_for_status()
        for metric in UI_METRICS:
            http.get(
                "/ajax-api/2.0/mlflow/metrics/get-history-bulk-interval",
                params={"run_ids": run_id, "metric_key": metric, "max_results": 320},
            ).raise_for_status()
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=2, help="epochs of the reference run")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)

    from include.configs import load_config
    from include.tracking import server
    from include.tracking.runs import Metric, log, open_pipeline_run, step_run

    root = Path(tempfile.mkdtemp(prefix="bench-tracking-"))
    os.environ.update(
        {
            "DETECTION__STORAGE__BASE_URI": str(root / "runs"),
            "DETECTION__LOCAL__ENDPOINT_STATE_DIR": str(root / "ep"),
            "DETECTION__DATASET__SAMPLE_IMAGES": "40",
            "DETECTION__EVALUATION__PROMOTION_THRESHOLD": "0",
            "DETECTION__TRACKING__REGISTERED_MODEL": "bench_tracking",
            "DETECTION__EVALUATION__SAMPLES": "2",
        }
    )
    started = time.perf_counter()
    details = server.start(root / "mlflow", storage.normalize(root / "artifacts"))
    print(f"local tracking server up in {time.perf_counter() - started:.1f} s ({details['url']})")
    os.environ["DETECTION__TRACKING__URI"] = uri = details["url"]
    try:
        print(f"reference: a local pipeline run of {args.epochs} epochs on the 40-image sample...", flush=True)
        out = reference_run(args.epochs)
        epoch = statistics.mean(out["epoch_seconds"])
        print(f"  pipeline run {out['seconds']:.1f} s; mean epoch {epoch:.1f} s (train + validation)")

        cfg = load_config()
        count_requests()
        per_task: dict[str, list[float]] = {}
        requests: dict[str, int] = {}
        totals, cpu, server_cpu = [], [], []
        for i in range(args.rounds):
            before = server_cpu_seconds(details["pid"])
            seconds = replay(cfg, uri, out, f"bench-{i}-{time.time_ns()}")
            server_cpu.append(server_cpu_seconds(details["pid"]) - before)
            totals.append(sum(wall for wall, _, _ in seconds.values()))
            cpu.append(sum(c for _, c, _ in seconds.values()))
            for task, (wall, _, n) in seconds.items():
                per_task.setdefault(task, []).append(wall)
                requests[task] = n
        imports = import_cost(TRACKING_MODULES)
        mlflow_import = import_cost("mlflow")
        per_run = statistics.median(totals) + TRACKED_TASKS * statistics.median(imports)
        per_run_cpu = (
            statistics.median(cpu) + statistics.median(server_cpu) + TRACKED_TASKS * statistics.median(imports)
        )
        print("\nwhat tracking adds to a pipeline run (target: under 1 s)")
        for task, values in per_task.items():
            print(f"  {task:<16} {requests[task]:2d} requests  {spread(values, 'ms', 1000)}")
        print(f"  all calls of a run      {spread(totals)}  ({sum(requests.values())} requests)")
        print(f"  of which in this process {spread(cpu)} CPU (the rest: the server's answers)")
        print(f"  the server's CPU        {spread(server_cpu)}")
        print(f"  the server's answer     read {spread(round_trips(uri, write=False), 'ms', 1000)}")
        print(f"                          write {spread(round_trips(uri, write=True), 'ms', 1000)}")
        print(f"  import per task process {spread(imports)} CPU  x {TRACKED_TASKS} tracked tasks")
        print(
            f"  per run                 {per_run:.3f} s  = {per_run / out['seconds']:.2%} of the reference run "
            f"({out['seconds']:.1f} s)"
        )
        print(f"  per run, CPU            {per_run_cpu:.3f} s  (tasks and server, whatever the load)")
        print(f"  (import mlflow per task process instead: {spread(mlflow_import)} CPU)")
        print(f"  load average now: {', '.join(f'{v:.1f}' for v in os.getloadavg())} on {os.cpu_count()} CPUs")

        ref = open_pipeline_run(cfg, uri, PIPELINE_DAG_ID, f"bench-history-{time.time_ns()}")
        history = [history_seconds(ref, 50) for _ in range(args.rounds)]
        per_epoch = statistics.median(history) / 50
        print("\nwhat tracking adds to a training epoch (target: under 2 %)")
        print(f"  50-epoch history, parsed and logged  {spread(history)}")
        print(f"  per epoch {per_epoch * 1000:.2f} ms = {per_epoch / epoch:.4%} of the reference epoch ({epoch:.1f} s)")

        long_run, short_run = step_run(ref, "trial", trial="ui-50"), step_run(ref, "trial", trial="ui-1")
        params = {f"p{i}": str(i) for i in range(17)}
        for run, epochs in ((long_run, 50), (short_run, 1)):
            log(
                ref,
                run.run_id,
                params=params,
                metrics=[Metric(m, 1.0 / (e + 1), step=e) for m in UI_METRICS for e in range(epochs)],
            )
        long_open = [ui_open_seconds(uri, long_run.run_id) for _ in range(args.rounds)]
        short_open = [ui_open_seconds(uri, short_run.run_id) for _ in range(args.rounds)]
        print("\nopening a run in the MLflow UI's API (runs/get + the history of its 4 metrics)")
        print(f"  50 epochs  {spread(long_open, 'ms', 1000)}")
        print(f"  1 epoch    {spread(short_open, 'ms', 1000)}")
        print(f"  ratio      {statistics.median(long_open) / statistics.median(short_open):.2f}x")
    finally:
        from include.endpoints.lifecycle import teardown_endpoints

        teardown_endpoints(load_config())
        server.stop(root / "mlflow")
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
