"""Ordered parallel map over processes for the image-heavy build steps.

Workers are started with ``spawn`` (no inherited threads or open clients from the caller,
which may be an Airflow task) and run OpenCV single-threaded, so ``workers`` processes use
``workers`` cores. Results come back in input order, so outputs do not depend on the count.
Workers never re-run the caller's ``__main__`` script (the functions they run live in
``include``): in an Airflow task that script is the ``airflow`` console script, whose import
initialises Airflow's settings against the metadata DB URL the task supervisor blocks.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import multiprocessing
import os
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from typing import TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")
R = TypeVar("R")
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc mallopt parameters


def default_workers() -> int:
    """The CPUs this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _keep_freed_memory() -> None:
    """Let glibc's malloc reuse freed image buffers instead of unmapping them on every image.

    A fresh process allocates each decoded image with ``mmap`` and gives it back on free, so
    every image costs a few hundred page faults; a fixed 64 MiB threshold keeps them on the heap.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc: nothing to tune
        return
    for param in (_M_MMAP_THRESHOLD, _M_TRIM_THRESHOLD):
        libc.mallopt(param, 64 << 20)


def _init_worker(initializer: Callable[..., None] | None = None, initargs: tuple = ()) -> None:
    import cv2

    cv2.setNumThreads(1)
    _keep_freed_memory()
    if initializer is not None:
        initializer(*initargs)


@contextlib.contextmanager
def _main_script_hidden() -> Iterator[None]:
    """Spawned processes re-run ``__main__`` by its ``__file__`` (unless started with ``-m``): hide it meanwhile."""
    main = sys.modules["__main__"]
    path = main.__dict__.pop("__file__", None) if getattr(main, "__spec__", None) is None else None
    try:
        yield
    finally:
        if path is not None:
            main.__file__ = path


@contextlib.contextmanager
def process_pool(
    workers: int | None = None, initializer: Callable[..., None] | None = None, initargs: tuple = ()
) -> Iterator[ProcessPoolExecutor | None]:
    """A pool of ``workers`` processes (default: all CPUs), or ``None`` when one process is asked for.

    ``initializer(*initargs)`` runs once in each worker after its own set-up (a module-level function:
    loading a model once per process); with no pool the caller runs it itself when it needs to.

    Every worker is started at once, so workers import while the caller goes on (reading and
    planning); pending work is cancelled when the block exits with an error. A daemonic process
    (a Celery ``prefork`` pool's child) may not start children: it works alone, saying so once.
    """
    count = workers or default_workers()
    if count > 1 and multiprocessing.current_process().daemon:
        log.warning("a daemonic process cannot start %d worker processes: working in this one", count)
        count = 1
    if count <= 1:
        yield None
        return
    spawn = multiprocessing.get_context("spawn")
    pool = ProcessPoolExecutor(count, mp_context=spawn, initializer=_init_worker, initargs=(initializer, initargs))
    with _main_script_hidden():
        try:
            for _ in range(count):
                pool.submit(int)
            yield pool
        finally:
            pool.shutdown(wait=True, cancel_futures=True)


def ordered_map(
    fn: Callable[[T], R], items: list[T], pool: ProcessPoolExecutor | None, chunksize: int = 8
) -> Iterator[R]:
    """``map(fn, items)`` over the pool's processes (here when ``pool`` is None), results in input order.

    ``fn`` must be a module-level function (it is pickled by reference).
    """
    if pool is None or len(items) < 2:
        return map(fn, items)
    return pool.map(fn, items, chunksize=chunksize)
