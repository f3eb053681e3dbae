"""The local Airflow stack without Docker: ``airflow standalone`` on this project's folders, and beside it
the local MLflow tracking server.

Airflow's home is ``.airflow/`` inside the project (SQLite metadata DB, logs, the generated
admin password). :func:`start` launches standalone in its own process group, and the tracking
server (:mod:`include.tracking.server`, ``tracking.local_dir``) unless ``DETECTION__TRACKING__URI``
names another one or it runs already, and waits until both answer; every Airflow process gets the
server's URL as ``DETECTION__TRACKING__URI``. :func:`stop` ends the whole group and the tracking
server it started. :class:`AirflowClient` talks to the REST API the way the UI does (token login,
trigger with a conf, poll the run).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from include.project import PROJECT_ROOT

TERMINAL_STATES = ("success", "failed")
#: The SQLite stack can answer a write with 500 "Database error" when the database stays locked
#: for sqlite3's 5 s: the API server writes its audit log from an ``async`` dependency through a
#: sync session, so a wait for the lock stalls its event loop, and with it a request of its own
#: that holds the lock. A longer lock wait only stretches that stall (a 60 s one timed a trigger
#: out), so the wait stays Airflow's and the client retries: a failed transaction wrote nothing.
DB_ERROR = "Database error"


@dataclass(frozen=True)
class StackPaths:
    """Files of one local stack (home folder, PID file, log, password file)."""

    home: Path

    @property
    def pid_file(self) -> Path:
        return self.home / "standalone.pid"

    @property
    def log_file(self) -> Path:
        return self.home / "standalone.log"

    @property
    def port_file(self) -> Path:
        return self.home / "standalone.port"

    @property
    def password_file(self) -> Path:
        return self.home / "simple_auth_manager_passwords.json.generated"

    @property
    def tracking_file(self) -> Path:
        """Which tracking server the stack uses, and whether it started it (then it stops it too)."""
        return self.home / "tracking.json"


def default_home() -> Path:
    return Path(os.environ.get("DETECTION_AIRFLOW_HOME", PROJECT_ROOT / ".airflow"))


def airflow_env(home: Path, port: int, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for every Airflow process of the stack."""
    env = dict(os.environ)
    env.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(PROJECT_ROOT / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(PROJECT_ROOT / "plugins"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(port),
            "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{port}",
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "30",
            "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "False",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
            "PYTHONPATH": os.pathsep.join(filter(None, [str(PROJECT_ROOT), env.get("PYTHONPATH", "")])),
            # standalone starts its components as `airflow ...` from PATH: use this environment's.
            "PATH": os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")]),
        }
    )
    env.update(extra or {})
    return env


def quick_run_env(runs: Path, endpoints: Path, tracking: Path | None = None) -> dict[str, str]:
    """Extra environment for a stack whose pipeline runs exercise every task in minutes.

    A 40-image generated sample in 2 RecordIO shards and a promotion gate every model passes;
    run outputs under ``runs``, local endpoint state under ``endpoints``, the local tracking
    server's database and log under ``tracking`` (default: the project's ``data/mlflow``).
    """
    return {
        "DETECTION__STORAGE__BASE_URI": str(runs),
        "DETECTION__LOCAL__ENDPOINT_STATE_DIR": str(endpoints),
        "DETECTION__DATASET__SAMPLE_IMAGES": "40",
        "DETECTION__EVALUATION__PROMOTION_THRESHOLD": "0",
        "DETECTION__RECORDIO__SHARDS": "2",
        **({"DETECTION__TRACKING__LOCAL_DIR": str(tracking)} if tracking else {}),
    }


def free_port(preferred: int = 8080) -> int:
    """``preferred`` when it is free on 127.0.0.1, otherwise any free port."""
    for port in (preferred, 0):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return sock.getsockname()[1]
    raise RuntimeError("no free port on 127.0.0.1")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def running_pid(paths: StackPaths) -> int | None:
    """PID of the running standalone of this home, or None."""
    try:
        pid = int(paths.pid_file.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
    return pid if _alive(pid) else None


def start(
    home: Path | None = None, port: int | None = None, timeout_s: float = 300, extra_env: dict[str, str] | None = None
) -> dict[str, Any]:
    """Start ``airflow standalone`` in the background and wait until its API is healthy.

    Returns ``{"url", "username", "password", "pid", "home", "log"}``. Starting twice is a
    no-op that returns the running stack's details.
    """
    paths = StackPaths(home or default_home())
    paths.home.mkdir(parents=True, exist_ok=True)
    if (pid := running_pid(paths)) is not None:
        port = int(paths.port_file.read_text())
        return _details(paths, pid, port)
    port = port or free_port(int(os.environ.get("AIRFLOW_PORT", "8080")))
    env = airflow_env(paths.home, port, extra_env)
    tracking = _tracking_plan(env)
    env["DETECTION__TRACKING__URI"] = tracking["url"]
    paths.tracking_file.write_text(json.dumps(tracking))
    airflow = str(Path(sys.executable).with_name("airflow"))
    log = paths.log_file.open("ab")
    proc = subprocess.Popen(
        [airflow, "standalone"], cwd=PROJECT_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    paths.pid_file.write_text(str(proc.pid))
    paths.port_file.write_text(str(port))
    deadline = time.monotonic() + timeout_s
    url = f"http://127.0.0.1:{port}"
    try:
        if tracking["started"]:  # while Airflow starts (it takes longer)
            from include.tracking import server

            server.start(Path(tracking["folder"]), tracking["artifacts"], port=tracking["port"], timeout_s=timeout_s)
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"airflow standalone exited with {proc.returncode}; see {paths.log_file}")
            if _healthy(url) and paths.password_file.exists():
                return _details(paths, proc.pid, port)
            time.sleep(2)
    except BaseException:
        stop(paths.home)
        raise
    stop(paths.home)
    raise TimeoutError(f"airflow standalone did not become healthy in {timeout_s:.0f} s; see {paths.log_file}")


def _tracking_plan(env: dict[str, str]) -> dict[str, Any]:
    """The tracking server the stack's runs use: ``DETECTION__TRACKING__URI``, the running local one, or a local
    one to start (``started``: then the stack stops it too)."""
    if env.get("DETECTION__TRACKING__URI"):
        return {"url": env["DETECTION__TRACKING__URI"], "started": False}
    from include.configs import load_config
    from include.tracking import server

    cfg = load_config(environ=env)
    folder = server.local_dir(cfg)
    running = server.running_url(folder)
    if running:
        return {"url": running, "started": False, "folder": str(folder)}
    port = free_port(0)
    return {"url": f"http://127.0.0.1:{port}", "started": True, "folder": str(folder), "port": port,
            "artifacts": server.artifact_root(cfg)}


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/api/v2/monitor/health", timeout=5) as resp:
            body = json.load(resp)
    except (OSError, ValueError):
        return False
    return body.get("metadatabase", {}).get("status") == "healthy" and (
        body.get("scheduler", {}).get("status") == "healthy"
    )


def _details(paths: StackPaths, pid: int, port: int) -> dict[str, Any]:
    passwords = json.loads(paths.password_file.read_text()) if paths.password_file.exists() else {}
    tracking = json.loads(paths.tracking_file.read_text()) if paths.tracking_file.exists() else {}
    return {
        "url": f"http://127.0.0.1:{port}",
        "username": "admin",
        "password": passwords.get("admin"),
        "pid": pid,
        "home": str(paths.home),
        "log": str(paths.log_file),
        "tracking_uri": tracking.get("url"),
    }


def stop(home: Path | None = None, grace_s: float = 30) -> bool:
    """Stop the standalone process group (SIGTERM, then SIGKILL after ``grace_s``) and the tracking server the
    stack started. True if Airflow ran."""
    paths = StackPaths(home or default_home())
    _stop_tracking(paths)
    pid = running_pid(paths)
    if pid is None:
        paths.pid_file.unlink(missing_ok=True)
        return False
    for sig, wait in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            break
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline and _group_alive(pid):
            time.sleep(0.5)
        if not _group_alive(pid):
            break
    paths.pid_file.unlink(missing_ok=True)
    return True


def _stop_tracking(paths: StackPaths) -> None:
    try:
        tracking = json.loads(paths.tracking_file.read_text())
    except (FileNotFoundError, ValueError):
        return
    if tracking.get("started"):
        from include.tracking import server

        server.stop(Path(tracking["folder"]))
    paths.tracking_file.unlink(missing_ok=True)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def wait_until_parked(log_file: Path, dag_id: str, run_id: str, task_id: str, timeout_s: float = 180) -> None:
    """Wait until the scheduler has taken note that ``task_id`` paused for a person (``awaiting_input``).

    Why: Airflow 3.3.2's scheduler fails a human-in-the-loop task answered within the second or so
    between the task pausing and the scheduler processing its worker's exit: the answer resumes the
    task under the same try number, the old worker's "success" then finds it running and marks it
    failed (``scheduler_job_runner._process_executor_events`` excuses only a resumed task that is still
    scheduled). A person never answers that fast; a script (a test, the screenshots) waits for the
    scheduler's "TaskInstance Finished ... state=awaiting_input" line in the stack's log.
    """
    needle = f"TaskInstance Finished: dag_id={dag_id}, task_id={task_id}, run_id={run_id}, "
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        text = log_file.read_text(errors="replace") if log_file.exists() else ""
        if any(needle in line and "state=awaiting_input" in line for line in text.splitlines()):
            return
        time.sleep(1)
    raise TimeoutError(f"the scheduler did not log {task_id} of run {run_id} as awaiting_input in {timeout_s:.0f} s")


class AirflowClient:
    """A small client for Airflow's public REST API (v2), logged in like the UI."""

    def __init__(self, url: str, username: str, password: str) -> None:
        self.url = url.rstrip("/")
        self.token = self._token(username, password)

    def _token(self, username: str, password: str) -> str:
        req = urllib.request.Request(
            f"{self.url}/auth/token",
            data=json.dumps({"username": username, "password": password}).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(req, timeout=30) as resp:
            return json.load(resp)["access_token"]

    def request(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        """One API call, retried on a server error: any for GET/PATCH, a database error for other calls.

        A write answered with a database error was rolled back (see :data:`DB_ERROR`), so
        sending it again cannot make a second run.
        """
        attempts, attempt = 5, 0
        while True:
            attempt += 1
            req = urllib.request.Request(
                f"{self.url}/api/v2{path}",
                data=None if body is None else json.dumps(body).encode(),
                headers={"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"},
                method=method,
            )
            try:
                with urllib.request.urlopen(req, timeout=60) as resp:
                    return json.load(resp)
            except urllib.error.HTTPError as exc:
                detail = exc.read().decode(errors="replace")
                retry = method in ("GET", "PATCH") or DB_ERROR in detail or exc.code == 503
                if exc.code >= 500 and retry and attempt < attempts:
                    time.sleep(2 * attempt)
                    continue
                raise RuntimeError(f"{method} {path} -> {exc.code}: {detail}") from None

    def wait_for_dag(self, dag_id: str, timeout_s: float = 180) -> dict[str, Any]:
        """Wait until the DAG processor has parsed ``dag_id``; raises on import errors."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            errors = self.request("GET", "/importErrors")["import_errors"]
            if errors:
                raise RuntimeError("DAG import errors:\n" + "\n".join(e["stack_trace"] for e in errors))
            try:
                return self.request("GET", f"/dags/{dag_id}")
            except RuntimeError:
                time.sleep(3)
        raise TimeoutError(f"DAG {dag_id} was not parsed within {timeout_s:.0f} s")

    def trigger(self, dag_id: str, conf: dict[str, Any] | None = None) -> str:
        """Trigger a run as the UI's trigger button does; returns the run id."""
        if self.request("GET", f"/dags/{dag_id}")["is_paused"]:
            self.request("PATCH", f"/dags/{dag_id}", {"is_paused": False})
        run = self.request("POST", f"/dags/{dag_id}/dagRuns", {"logical_date": None, "conf": conf or {}})
        return run["dag_run_id"]

    def wait_for_run(self, dag_id: str, run_id: str, timeout_s: float = 1800, poll_s: float = 5) -> dict[str, Any]:
        """Poll until the run is in a terminal state; returns the run."""
        deadline = time.monotonic() + timeout_s
        while True:
            run = self.request("GET", f"/dags/{dag_id}/dagRuns/{run_id}")
            if run["state"] in TERMINAL_STATES:
                return run
            if time.monotonic() > deadline:
                raise TimeoutError(f"run {run_id} still {run['state']} after {timeout_s:.0f} s")
            time.sleep(poll_s)

    def task_states(self, dag_id: str, run_id: str) -> dict[str, str]:
        """``{task id (with map index): state}`` for a run."""
        tis = self.request("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances?limit=500")["task_instances"]
        return {
            ti["task_id"] + (f"[{ti['map_index']}]" if ti["map_index"] >= 0 else ""): ti["state"] for ti in tis
        }

    def task_log(self, dag_id: str, run_id: str, task_id: str, try_number: int = 1) -> str:
        """The text of one task try's log."""
        body = self.request("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/logs/{try_number}")
        content = body["content"]
        if isinstance(content, list):
            # structured lines: the event plus its fields (an exception's detail among them)
            return "\n".join(json.dumps(c, default=str) if isinstance(c, dict) else str(c) for c in content)
        return str(content)

    def task_state(self, dag_id: str, run_id: str, task_id: str) -> str | None:
        """The state of one (unmapped) task instance; None before the scheduler created it."""
        try:
            return self.request("GET", f"/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}/taskInstances/{task_id}")[
                "state"
            ]
        except RuntimeError as exc:
            if "-> 404" in str(exc):
                return None
            raise

    def wait_for_task(
        self, dag_id: str, run_id: str, task_id: str, states: tuple[str, ...], timeout_s: float = 900, poll_s: float = 3
    ) -> str:
        """Poll until the task instance is in one of ``states`` (``awaiting_input``: a person's turn); its state."""
        deadline = time.monotonic() + timeout_s
        while (state := self.task_state(dag_id, run_id, task_id)) not in states:
            run = self.request("GET", f"/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}")
            if run["state"] in TERMINAL_STATES or time.monotonic() > deadline:
                raise TimeoutError(f"{task_id} of run {run_id} is {state} (run {run['state']}), not one of {states}")
            time.sleep(poll_s)
        return state

    def respond(self, dag_id: str, run_id: str, task_id: str, option: str, **params_input: Any) -> dict[str, Any]:
        """Answer a human-in-the-loop task as a person does in the UI (``Approve`` / ``Reject``, the form's fields)."""
        path = f"/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}/taskInstances/{task_id}/-1/hitlDetails"
        return self.request("PATCH", path, {"chosen_options": [option], "params_input": params_input})

    def xcom(self, dag_id: str, run_id: str, task_id: str, key: str = "return_value") -> Any:
        entry = self.request("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/{key}")
        return entry["value"]
