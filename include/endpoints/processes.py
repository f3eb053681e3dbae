"""Detached server processes: start them in their own session, recognise them, stop them, check their port.

A process is identified by its pid *and* its start time, so a recycled pid is never mistaken for
(or signalled as) one of ours.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import psutil

#: Popen objects of the servers this process started, kept so that their exit status is reaped.
_CHILDREN: dict[int, subprocess.Popen] = {}


class ProcessError(RuntimeError):
    """A managed process could not be stopped."""


def spawn_detached(cmd: Sequence[str], log_path: Path, env: Mapping[str, str]) -> tuple[int, float]:
    """Start ``cmd`` in a new session (its own process group), output appended to ``log_path``.

    The new session keeps the server alive when the caller (an Airflow task) exits or its process
    group is signalled; teardown stops it by its pid. Its standard streams are the log file (and
    /dev/null), never the caller's pipes, and it runs in the log's folder, not in the caller's
    (possibly temporary) working directory. Returns ``(pid, create_time)``.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log_file:
        proc = subprocess.Popen(
            list(cmd),
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env=dict(env),
            cwd=log_path.parent,
            start_new_session=True,
            close_fds=True,
        )
    _CHILDREN[proc.pid] = proc
    return proc.pid, psutil.Process(proc.pid).create_time()


def exit_code(pid: int) -> int | None:
    """The exit status of a server this process started, once it has exited (None otherwise or if not ours)."""
    proc = _CHILDREN.get(pid)
    return None if proc is None else proc.poll()


def is_running(pid: int, create_time: float) -> bool:
    """True when ``pid`` is alive, not a zombie, and is the process started at ``create_time``."""
    exit_code(pid)  # reaps our own child if it has exited
    try:
        proc = psutil.Process(pid)
        return abs(proc.create_time() - create_time) < 0.05 and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _signal(pid: int, sig: int) -> None:
    """Signal the process group ``pid`` leads (the server and anything it started), else the process alone."""
    try:
        if os.getpgid(pid) == pid:
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _wait_gone(pid: int, create_time: float, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while is_running(pid, create_time):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    _CHILDREN.pop(pid, None)
    return True


def terminate(pid: int, create_time: float, grace_s: float = 10.0) -> str:
    """SIGTERM, then SIGKILL after ``grace_s``; returns ``terminated``, ``killed`` or ``already gone``."""
    if not is_running(pid, create_time):
        _CHILDREN.pop(pid, None)
        return "already gone"
    _signal(pid, signal.SIGTERM)
    if _wait_gone(pid, create_time, grace_s):
        return "terminated"
    _signal(pid, signal.SIGKILL)
    if _wait_gone(pid, create_time, 10.0):
        return "killed"
    raise ProcessError(f"process {pid} is still running after SIGKILL")


def connect_host(host: str) -> str:
    """The address a client uses to reach a server listening on ``host`` (wildcards mean loopback)."""
    return {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)


def port_is_free(host: str, port: int, timeout_s: float = 5.0) -> bool:
    """Wait up to ``timeout_s`` until nothing accepts connections on ``host:port``."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with socket.create_connection((connect_host(host), port), timeout=0.5):
                pass
        except OSError:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)
