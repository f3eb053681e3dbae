"""The listening sockets of a running local stack: every process it started, and their children."""

from __future__ import annotations

from collections.abc import Iterable

import psutil


def listening(pids: Iterable[int]) -> set[tuple[str, str, int]]:
    """``(process name, address, port)`` of every TCP socket in LISTEN state of ``pids`` and their descendants."""
    found = set()
    for pid in pids:
        try:
            root = psutil.Process(pid)
            processes = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            continue
        for process in processes:
            try:
                connections = process.net_connections(kind="tcp")
                name = process.name()
            except (psutil.NoSuchProcess, psutil.ZombieProcess):
                continue
            found |= {(name, c.laddr.ip, c.laddr.port) for c in connections if c.status == psutil.CONN_LISTEN}
    return found
