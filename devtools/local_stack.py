"""The local Airflow stack without Docker: Airflow's components on this project's folders, on loopback.

Two executors. ``local``: the LocalExecutor on a SQLite metadata DB in ``.airflow/`` (what
``airflow standalone`` runs). ``celery``: the CeleryExecutor with a PostgreSQL metadata DB and a
Redis broker (:mod:`devtools.services`, data in ``.airflow/celery/``) and two Celery workers.
:func:`start` migrates the DB, launches the API server, scheduler, DAG processor and triggerer
(and the workers), each in its own process group with its own log under ``<home>/stack-logs/``,
and waits until the API reports every component healthy; :func:`stop` ends them all and the
servers. :class:`AirflowClient` talks to the REST API the way the UI does (token login, trigger
with a conf, poll the run).

The components are started one by one rather than through ``airflow standalone`` so that each
gets its own flags: the workers' queues, names and environment, and ``--skip-serve-logs``.
Airflow 3.3's task log server (``airflow.utils.serve_logs``), which the scheduler, triggerer and
Celery workers start unless told not to, binds every interface (its host is hard-coded ``""``, no
setting changes it); the stack runs that same app once itself, bound to 127.0.0.1
(:func:`_log_server`), on the port ``[logging] worker_log_server_port`` and
``trigger_log_server_port`` name for every component. Every server the stack starts listens on
loopback only: the API server, the log server, PostgreSQL and Redis, and the local MLflow
tracking server (:mod:`include.tracking.server`, ``tracking.local_dir``), which :func:`start` also
launches unless ``DETECTION__TRACKING__URI`` names another one or it runs already; every component
gets its URL as ``DETECTION__TRACKING__URI``, and :func:`stop` stops the one it started. Tasks call
the REST API (a cache hit's note on its task instance) as the ``pipeline`` user through the
``airflow_api`` connection (``AIRFLOW_CONN_AIRFLOW_API``), whose password :func:`start` writes into
SimpleAuthManager's password file before Airflow starts.
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
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from devtools import services
from include.project import PROJECT_ROOT, task_queues

TERMINAL_STATES = ("success", "failed")
EXECUTORS = ("local", "celery")
#: The SQLite stack can answer a write with 500 "Database error" when the database stays locked
#: for sqlite3's 5 s: the API server writes its audit log from an ``async`` dependency through a
#: sync session, so a wait for the lock stalls its event loop, and with it a request of its own
#: that holds the lock. A longer lock wait only stretches that stall (a 60 s one timed a trigger
#: out), so the wait stays Airflow's and the client retries: a failed transaction wrote nothing.
DB_ERROR = "Database error"
#: The Celery workers' pool. Celery's default ``prefork`` runs a task in a daemonic child, which may
#: not start the RecordIO build's process pool; ``threads`` breaks the task supervisor's signal
#: handling. ``solo`` runs one task at a time in the worker process: scale with more workers.
CELERY_POOL = "solo"


@dataclass(frozen=True)
class Worker:
    """One Celery worker of the local stack: its name (also its task instances' hostname suffix) and queues."""

    name: str
    queues: tuple[str, ...]


#: The SimpleAuthManager user (role ``user``) the tasks' REST calls log in as.
API_USER = "pipeline"


def celery_workers() -> tuple[Worker, ...]:
    """``worker-1`` serves data work and the default queue; ``worker-2`` those and the training queue."""
    q = task_queues()
    return Worker("worker-1", (q.cpu, q.default)), Worker("worker-2", (q.training, q.cpu, q.default))


@dataclass(frozen=True)
class StackPaths:
    """Files of one local stack: its home, state (what runs, on which ports), logs and password file."""

    home: Path

    @property
    def state_file(self) -> Path:
        return self.home / "stack.json"

    @property
    def logs(self) -> Path:
        return self.home / "stack-logs"

    def log(self, component: str) -> Path:
        return self.logs / f"{component}.log"

    @property
    def password_file(self) -> Path:
        return self.home / "simple_auth_manager_passwords.json.generated"

    @property
    def tracking_file(self) -> Path:
        """Which tracking server the stack uses, and whether it started it (then it stops it too)."""
        return self.home / "tracking.json"


def default_home(executor: str = "local") -> Path:
    """``DETECTION_AIRFLOW_HOME``, else ``.airflow`` (local) or ``.airflow/celery`` (celery)."""
    base = Path(os.environ.get("DETECTION_AIRFLOW_HOME", PROJECT_ROOT / ".airflow"))
    return base / "celery" if executor == "celery" else base


def airflow_env(home: Path, port: int, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for every Airflow process of the stack (LocalExecutor unless ``extra`` says otherwise)."""
    env = dict(os.environ)
    env.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(PROJECT_ROOT / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(PROJECT_ROOT / "plugins"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__AUTH_MANAGER": (
                "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
            ),
            # ``pipeline``: the user tasks call the REST API as (a cache hit's note on its task instance)
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"admin:admin,{API_USER}:user",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(StackPaths(home).password_file),
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(port),
            "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{port}",
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "30",
            "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "False",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
            # a task's calls to the API server: 5 s by default, which a shared 2-CPU machine exceeds at start-up
            "AIRFLOW__WORKERS__EXECUTION_API_TIMEOUT": "30",
            "PYTHONPATH": os.pathsep.join(filter(None, [str(PROJECT_ROOT), env.get("PYTHONPATH", "")])),
            "PATH": os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")]),
        }
    )
    env.update(extra or {})
    return env


def api_connection(paths: StackPaths, port: int) -> str:
    """``AIRFLOW_CONN_AIRFLOW_API``: the REST API as :data:`API_USER`, whose password is written to the stack's
    SimpleAuthManager password file first (Airflow keeps the users it finds there and adds the missing ones)."""
    import secrets

    passwords = json.loads(paths.password_file.read_text()) if paths.password_file.exists() else {}
    if API_USER not in passwords:
        passwords[API_USER] = secrets.token_urlsafe(16)
        paths.password_file.write_text(json.dumps(passwords))
        paths.password_file.chmod(0o600)
    return f"http://{API_USER}:{quote(passwords[API_USER], safe='')}@127.0.0.1:{port}"


def celery_env(postgres: services.Postgres, redis: services.Redis) -> dict[str, str]:
    """What turns :func:`airflow_env` into the Celery stack's: executor, metadata DB, broker, result backend, pool."""
    return {
        "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": postgres.url,
        "AIRFLOW__CELERY__BROKER_URL": redis.url,
        "AIRFLOW__CELERY__RESULT_BACKEND": f"db+{postgres.url}",
        "AIRFLOW__CELERY__POOL": CELERY_POOL,
    }


def worker_env(worker: Worker) -> dict[str, str]:
    """A worker's own environment: its name, which its task instances record as their hostname."""
    return {
        "DETECTION_WORKER_NAME": worker.name,
        "AIRFLOW__CORE__HOSTNAME_CALLABLE": "devtools.worker_identity.hostname",
    }


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


def read_state(home: Path | None = None) -> dict[str, Any] | None:
    """The state of the stack of ``home`` (executor, ports, PIDs) while one of its components runs, else None."""
    paths = StackPaths(home or default_home())
    try:
        state = json.loads(paths.state_file.read_text())
    except (FileNotFoundError, ValueError):
        return None
    return state if any(_group_alive(pid) for pid in state["components"].values()) else None


def _write_state(paths: StackPaths, state: dict[str, Any]) -> None:
    tmp = paths.state_file.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=2))
    os.replace(tmp, paths.state_file)


def _launch(paths: StackPaths, name: str, args: list[str], env: Mapping[str, str]) -> int:
    """Start one component in its own process group, its output in its log; its PID."""
    paths.logs.mkdir(parents=True, exist_ok=True)
    with paths.log(name).open("ab") as log:
        proc = subprocess.Popen(
            args, cwd=PROJECT_ROOT, env=dict(env), stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    return proc.pid


def _airflow(*args: str) -> list[str]:
    return [str(Path(sys.executable).with_name("airflow")), *args]


def _log_server(port: int) -> list[str]:
    """Airflow's task log server app (what ``serve_logs`` runs) under uvicorn on 127.0.0.1:``port``."""
    return [sys.executable, "-m", "uvicorn", "airflow.utils.serve_logs.log_server:get_app", "--factory",
            "--host", "127.0.0.1", "--port", str(port), "--no-access-log"]  # fmt: skip


def _components(executor: str, log_port: int) -> dict[str, list[str]]:
    """Component name -> command line (every server that would serve logs on all interfaces is told not to)."""
    commands = {
        "log-server": _log_server(log_port),
        "api-server": _airflow("api-server"),
        "scheduler": _airflow("scheduler", "--skip-serve-logs"),
        "dag-processor": _airflow("dag-processor"),
        "triggerer": _airflow("triggerer", "--skip-serve-logs"),
    }
    if executor == "celery":
        for worker in celery_workers():
            commands[worker.name] = _airflow(
                "celery", "worker", "--queues", ",".join(worker.queues), "--concurrency", "1",
                "--celery-hostname", f"{worker.name}@%h", "--skip-serve-logs",
            )  # fmt: skip
    return commands


def start(
    home: Path | None = None,
    port: int | None = None,
    timeout_s: float = 300,
    extra_env: Mapping[str, str] | None = None,
    executor: str = "local",
    worker_extra_env: Mapping[str, Mapping[str, str]] | None = None,
) -> dict[str, Any]:
    """Start the stack in the background and wait until every component is healthy.

    ``worker_extra_env``: more environment for single Celery workers, by name. Returns
    ``{"url", "username", "password", "home", "executor", "components", "log_server", "logs"}`` (celery:
    also ``"database_url"``, ``"broker_url"``, ``"workers"``, ``"services"``: the servers' PIDs).
    Starting a running stack returns its details.
    """
    if executor not in EXECUTORS:
        raise ValueError(f"executor must be one of {', '.join(EXECUTORS)} (got {executor!r})")
    paths = StackPaths(home or default_home(executor))
    paths.home.mkdir(parents=True, exist_ok=True)
    if (state := read_state(paths.home)) is not None:
        return _details(paths, state)
    port = port or free_port(int(os.environ.get("AIRFLOW_PORT", "8080")))
    log_port = free_port(0)
    state: dict[str, Any] = {"executor": executor, "port": port, "log_port": log_port, "components": {}, "services": {}}
    extra = {
        "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(log_port),
        "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(log_port),
        **(extra_env or {}),
    }
    try:
        if executor == "celery":
            services.ensure_packages()
            postgres = services.Postgres.prepare(paths.home, free_port(0))
            redis = services.Redis(paths.home / "redis", free_port(0))
            state["services"] = {
                "postgres": {"folder": str(postgres.folder), "port": postgres.port},
                "redis": {"folder": str(redis.folder), "port": redis.port},
            }
            _write_state(paths, state)
            postgres.start()
            redis.start()
            extra = {**celery_env(postgres, redis), **extra}
        env = airflow_env(paths.home, port, extra)
        env["AIRFLOW_CONN_AIRFLOW_API"] = api_connection(paths, port)  # detection_airflow.notes.API_CONN_ID
        tracking = _tracking_plan(env)
        env["DETECTION__TRACKING__URI"] = tracking["url"]
        paths.tracking_file.write_text(json.dumps(tracking))
        if tracking["started"]:
            from include.tracking import server

            server.start(Path(tracking["folder"]), tracking["artifacts"], port=tracking["port"], timeout_s=timeout_s)
        _migrate(paths, env)
        for name, command in _components(executor, log_port).items():
            own = {**worker_env(Worker(name, ())), **(worker_extra_env or {}).get(name, {})} if "worker" in name else {}
            state["components"][name] = _launch(paths, name, command, {**env, **own})
            _write_state(paths, state)
        _wait_until_ready(paths, state, timeout_s)
    except BaseException:
        stop(paths.home)
        raise
    return _details(paths, state)


def _migrate(paths: StackPaths, env: Mapping[str, str]) -> None:
    """``airflow db migrate`` (also writes ``airflow.cfg`` with the secrets every component then shares)."""
    paths.logs.mkdir(parents=True, exist_ok=True)
    with paths.log("db-migrate").open("ab") as log:
        done = subprocess.run(
            _airflow("db", "migrate"), cwd=PROJECT_ROOT, env=dict(env), stdout=log, stderr=subprocess.STDOUT
        )
    if done.returncode != 0:
        raise RuntimeError(f"airflow db migrate exited with {done.returncode}; see {paths.log('db-migrate')}")


def _wait_until_ready(paths: StackPaths, state: dict[str, Any], timeout_s: float) -> None:
    url = f"http://127.0.0.1:{state['port']}"
    workers = [name for name in state["components"] if "worker" in name]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for name, pid in state["components"].items():
            if not services.alive(pid):
                raise RuntimeError(f"{name} exited; see {paths.log(name)}")
        if _healthy(url) and paths.password_file.exists() and all(_worker_ready(paths, w) for w in workers):
            return
        time.sleep(1)
    raise TimeoutError(f"the Airflow stack was not healthy in {timeout_s:.0f} s; see {paths.logs}")


def _worker_ready(paths: StackPaths, name: str) -> bool:
    """Celery logs ``<name>@<host> ready.`` once the worker consumes its queues."""
    try:
        return f"{name}@" in (text := paths.log(name).read_text(errors="replace")) and " ready." in text
    except FileNotFoundError:
        return False


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
    parts = ("metadatabase", "scheduler", "triggerer", "dag_processor")
    return all(body.get(part, {}).get("status") == "healthy" for part in parts)


def _details(paths: StackPaths, state: dict[str, Any]) -> dict[str, Any]:
    passwords = json.loads(paths.password_file.read_text()) if paths.password_file.exists() else {}
    tracking = json.loads(paths.tracking_file.read_text()) if paths.tracking_file.exists() else {}
    details = {
        "url": f"http://127.0.0.1:{state['port']}",
        "username": "admin",
        "password": passwords.get("admin"),
        "home": str(paths.home),
        "log": str(paths.log("scheduler")),  # the scheduler's: wait_until_parked reads it
        "tracking_uri": tracking.get("url"),
        "executor": state["executor"],
        "components": dict(state["components"]),
        "log_server": f"http://127.0.0.1:{state['log_port']}",
        "logs": str(paths.logs),
    }
    if state["executor"] == "celery":
        pg, redis = state["services"]["postgres"], state["services"]["redis"]
        details["database_url"] = services.Postgres(Path(pg["folder"]), pg["port"]).url
        details["broker_url"] = services.Redis(Path(redis["folder"]), redis["port"]).url
        details["workers"] = {w.name: list(w.queues) for w in celery_workers()}
        details["services"] = {
            "postgres": services.Postgres(Path(pg["folder"]), pg["port"]).pid(),
            "redis": services.Redis(Path(redis["folder"]), redis["port"]).pid(),
        }
    return details


def stop(home: Path | None = None, grace_s: float = 30) -> bool:
    """Stop every component's process group (SIGTERM, SIGKILL after ``grace_s``), then the servers and the
    tracking server the stack started.

    True if anything ran. Celery workers shut down warm: a running task gets ``grace_s`` to finish.
    """
    paths = StackPaths(home or default_home())
    _stop_tracking(paths)
    try:
        state = json.loads(paths.state_file.read_text())
    except (FileNotFoundError, ValueError):
        return False
    groups = [pid for pid in state["components"].values() if _group_alive(pid)]
    for sig, wait in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 5.0)):
        for pid in groups:
            try:
                os.killpg(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline and any(_group_alive(pid) for pid in groups):
            time.sleep(0.5)
        groups = [pid for pid in groups if _group_alive(pid)]
        if not groups:
            break
    ran = bool(state["components"])
    if pg := state["services"].get("postgres"):
        ran = services.Postgres(Path(pg["folder"]), pg["port"]).stop() or ran
    if redis := state["services"].get("redis"):
        ran = services.Redis(Path(redis["folder"]), redis["port"]).stop() or ran
    paths.state_file.unlink(missing_ok=True)
    return ran


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
    """Whether any process of the group runs (the leader is reaped first when it is this process's child)."""
    try:
        os.waitpid(pgid, os.WNOHANG)
    except ChildProcessError:  # not our child (started by an earlier `stack up`), or reaped already
        pass
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
