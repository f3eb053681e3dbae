"""``detection-pipeline stack up|down|run``: the local Airflow stack from the command line.

``up`` starts Airflow on this project (``make airflow-up``), ``down`` stops it (``make
airflow-down``), ``run`` starts it, triggers the pipeline DAG through the REST API exactly as the
UI's trigger button does, follows the run task by task, prints where ``report.html`` is and stops
the stack again (``make run``). ``--executor local`` (the default) runs the LocalExecutor on SQLite
in ``.airflow/``; ``--executor celery`` the CeleryExecutor with PostgreSQL, Redis and two workers in
``.airflow/celery/`` (:mod:`devtools.local_stack`). Run as ``python -m devtools.stack`` (the CLI's
``stack`` command does that in a source checkout).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from typing import Any

from devtools import local_stack
from include.cli import parse_key_values
from include.project import PIPELINE_DAG_ID

#: Task states worth a line while a run is followed.
SHOWN_STATES = ("running", "success", "failed", "skipped", "deferred")


def run_dag_on_local_stack(
    conf: dict[str, Any] | None = None, keep_running: bool = False, executor: str = "local"
) -> dict[str, Any]:
    """Start the stack, trigger the pipeline DAG as the UI does, wait, report, stop."""
    home = local_stack.default_home(executor)
    details = local_stack.start(home, executor=executor)
    print(f"Airflow UI: {details['url']}  user admin  password {details['password']}", file=sys.stderr)
    print(f"MLflow UI: {details['tracking_uri']}", file=sys.stderr)
    try:
        client = local_stack.AirflowClient(details["url"], details["username"], details["password"])
        client.wait_for_dag(PIPELINE_DAG_ID)
        run_id = client.trigger(PIPELINE_DAG_ID, conf or {})
        print(f"triggered {PIPELINE_DAG_ID} run {run_id}; following it...", file=sys.stderr)
        started, seen = time.monotonic(), {}
        path = f"/dags/{PIPELINE_DAG_ID}/dagRuns/{run_id}"
        while (run := client.request("GET", path))["state"] not in local_stack.TERMINAL_STATES:
            for task, state in client.task_states(PIPELINE_DAG_ID, run_id).items():
                if seen.get(task) != state and state in SHOWN_STATES:
                    print(f"  {time.monotonic() - started:6.0f}s  {task:<24} {state}", file=sys.stderr)
                seen[task] = state
            time.sleep(5)
        states = client.task_states(PIPELINE_DAG_ID, run_id)
        result = {"run_id": run_id, "state": run["state"], "tasks": states, "ui": details["url"],
                  "mlflow": details["tracking_uri"]}
        if states.get("evaluate") == "success":
            evaluation = client.xcom(PIPELINE_DAG_ID, run_id, "evaluate")
            result["report"] = evaluation["report_uri"]
            result["mlflow_run"] = (evaluation.get("tracking") or {}).get("url")
            print(f"report.html: {result['report']}\nMLflow run: {result['mlflow_run']}", file=sys.stderr)
        if run["state"] != "success":
            raise RuntimeError(f"run {run_id} {run['state']}: {states}")
        return result
    finally:
        if not keep_running:
            local_stack.stop(home)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="detection-pipeline stack", description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["up", "down", "run"], help="run: start it, trigger the DAG, wait, stop")
    parser.add_argument("--conf", action="append", metavar="PARAM=VALUE", help="DAG param for 'run' (repeatable)")
    parser.add_argument("--keep-running", action="store_true", help="leave the stack up after 'run'")
    parser.add_argument(
        "--executor", choices=local_stack.EXECUTORS, default="local",
        help="local: LocalExecutor on SQLite; celery: PostgreSQL, Redis and two Celery workers (default: local)",
    )  # fmt: skip
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        home = local_stack.default_home(args.executor)
        down = "make airflow-down" + (" EXECUTOR=celery" if args.executor == "celery" else "")
        if args.action == "up":
            result: Any = local_stack.start(home, executor=args.executor)
            print(
                f"Airflow ({args.executor} executor) is up at {result['url']}  user: {result['username']}  "
                f"password: {result['password']}\nMLflow UI: {result['tracking_uri']}\n"
                f"Stop both with: {down}   (logs: {result['logs']})",
                file=sys.stderr,
            )
        elif args.action == "down":
            result = {"stopped": local_stack.stop(home)}
            print(f"stopped the local Airflow stack in {home}" if result["stopped"] else
                  f"nothing was running (no stack.json under {home})", file=sys.stderr)
        else:
            result = run_dag_on_local_stack(
                conf=parse_key_values(args.conf), keep_running=args.keep_running, executor=args.executor
            )
    except (ValueError, RuntimeError, TimeoutError) as exc:
        print(f"detection-pipeline stack {args.action}: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(result, indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
