"""The local tracking server: ``mlflow server`` on 127.0.0.1 beside the local Airflow stack.

Its folder (``tracking.local_dir``, ``data/mlflow``) holds the SQLite backend store
(``mlflow.db``), the server's log and ``server.json`` (pid, start time, port, URL), so the stack,
``detection-pipeline run`` and the CLI all find the same server. Artifacts go under the storage
base URI (``<storage.base_uri>/mlflow``) and are written by the clients themselves
(``--no-serve-artifacts``): a run's artifact URI is then a plain ``file://`` (or ``s3://``) folder,
written through :mod:`include.storage` like every other file of the run, and the registry accepts
a model file inside it as a version's source (a proxied server refuses every local path).

The database is switched to SQLite's write-ahead log before the server opens it (the mode stays
with the file): every tracking call of a task is a commit, and WAL halves what one costs (a tag
write: 22 ms median in rollback-journal mode, 8-11 ms in WAL, on this machine under load).

The server runs detached in its own session (it outlives the command that started it) with
MLflow's job runner off (``MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false``: it would add seven
processes, ~1 GB). Measured here: 13-33 s until ``/health`` answers (it migrates a new database
first), ~560 MB for its two processes.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import sys
import time
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING, Any

from include import storage
from include.endpoints import processes
from include.project import PROJECT_ROOT

if TYPE_CHECKING:
    from include.configs import PipelineConfig

log = logging.getLogger(__name__)

STATE_FILE = "server.json"
LOG_FILE = "server.log"
DATABASE_FILE = "mlflow.db"
HOST = "127.0.0.1"
START_TIMEOUT_S = 300.0


def local_dir(cfg: PipelineConfig) -> Path:
    """The local server's folder (``tracking.local_dir``, relative to the project root)."""
    folder = Path(cfg.tracking.local_dir).expanduser()
    return folder if folder.is_absolute() else PROJECT_ROOT / folder


def artifact_root(cfg: PipelineConfig) -> str:
    """Where the local server's runs keep their artifacts: ``<storage base URI>/mlflow``."""
    return storage.join(cfg.storage.base_uri or "", "mlflow")


def _read_state(folder: Path) -> dict[str, Any] | None:
    try:
        return json.loads((folder / STATE_FILE).read_text())
    except (FileNotFoundError, ValueError):
        return None


def status(folder: Path) -> dict[str, Any]:
    """``{"running", "url", "pid", "folder", "log"}`` of the local server in ``folder``."""
    state = _read_state(folder) or {}
    running = bool(state) and processes.is_running(state["pid"], state["create_time"])
    return {
        "running": running,
        "url": state.get("url") if running else None,
        "pid": state.get("pid") if running else None,
        "folder": str(folder),
        "log": str(folder / LOG_FILE),
    }


def running_url(folder: Path) -> str | None:
    """The URL of the local server recorded in ``folder`` while its process runs, else None."""
    return status(folder)["url"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def _write_ahead_log(database: Path) -> None:
    """Put the SQLite database (created when missing) in WAL mode; no server has it open yet."""
    import sqlite3

    with contextlib.closing(sqlite3.connect(database)) as db:
        db.execute("PRAGMA journal_mode=WAL")


def start(folder: Path, artifacts: str, port: int | None = None, timeout_s: float = START_TIMEOUT_S) -> dict[str, Any]:
    """Start the server of ``folder`` (artifacts under the URI ``artifacts``) unless it runs; its :func:`status`.

    Waits until ``/health`` answers; a server that exits or stays silent is stopped and reported
    with the tail of its log.
    """
    folder = folder.resolve()
    current = status(folder)
    if current["running"]:
        return current
    folder.mkdir(parents=True, exist_ok=True)
    _write_ahead_log(folder / DATABASE_FILE)
    port = port or _free_port()
    url = f"http://{HOST}:{port}"
    command = [
        sys.executable, "-m", "mlflow", "server",
        "--backend-store-uri", f"sqlite:///{folder / DATABASE_FILE}",
        "--default-artifact-root", storage.normalize(artifacts),
        "--no-serve-artifacts",
        "--host", HOST, "--port", str(port), "--workers", "1",
    ]  # fmt: skip
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    pid, create_time = processes.spawn_detached(command, folder / LOG_FILE, env)
    state = {"pid": pid, "create_time": create_time, "port": port, "url": url, "artifacts": artifacts}
    storage.write_text(str(folder / STATE_FILE), json.dumps(state, indent=2))
    deadline = time.monotonic() + timeout_s
    while not _healthy(url):
        code = processes.exit_code(pid)
        if code is not None or not processes.is_running(pid, create_time) or time.monotonic() > deadline:
            stop(folder)
            why = f"exited with code {code}" if code is not None else f"did not answer in {timeout_s:.0f} s"
            raise RuntimeError(f"the local MLflow tracking server {why}; its log {folder / LOG_FILE}:\n{_tail(folder)}")
        time.sleep(0.5)
    log.info("local MLflow tracking server at %s (folder %s)", url, folder)
    return status(folder)


def stop(folder: Path, grace_s: float = 20.0) -> bool:
    """Stop the server of ``folder`` (its whole process group); True when one was running."""
    state = _read_state(folder)
    if state is None:
        return False
    outcome = processes.terminate(state["pid"], state["create_time"], grace_s)
    (folder / STATE_FILE).unlink(missing_ok=True)
    log.info("local MLflow tracking server %s: %s", state.get("url"), outcome)
    return outcome != "already gone"


def _tail(folder: Path, lines: int = 25) -> str:
    try:
        return "\n".join((folder / LOG_FILE).read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"
