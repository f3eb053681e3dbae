"""Test-only: a Celery worker started with this folder first on ``PYTHONPATH`` builds RecordIO shards slowly.

Python imports ``sitecustomize`` at start-up from the path. This one wraps
``include.preprocess.recordio.render_unit`` (when that module is first imported) with a sleep of
``DETECTION_TEST_UNIT_DELAY_S`` seconds per image, so the end-to-end test can kill the worker
while it is writing a shard; the build itself is the real one. Forked processes (Airflow's task
supervisor and task) inherit the wrapped module.
"""

from __future__ import annotations

import functools
import importlib.abc
import importlib.machinery
import os
import sys
import time

TARGET = "include.preprocess.recordio"
DELAY_S = float(os.environ.get("DETECTION_TEST_UNIT_DELAY_S", "0.5"))


class _SlowLoader(importlib.abc.Loader):
    def __init__(self, loader: importlib.abc.Loader) -> None:
        self.loader = loader

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module) -> None:
        self.loader.exec_module(module)
        render = module.render_unit

        @functools.wraps(render)
        def slow_render(job):
            time.sleep(DELAY_S)
            return render(job)

        module.render_unit = slow_render


class _SlowFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name != TARGET:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is not None and spec.loader is not None:
            spec.loader = _SlowLoader(spec.loader)
        return spec


sys.meta_path.insert(0, _SlowFinder())
