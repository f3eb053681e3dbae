"""What the operators take from the running task: its run identity, its request, its local runner."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from include.sagemaker.naming import RunIdentity

if TYPE_CHECKING:
    from airflow.sdk import Context

#: ``(context, run) -> request``: builds the request at execute time (from XCom, params, config).
RequestBuilder = Callable[["Context", RunIdentity], dict[str, Any]]

BACKENDS = ("sagemaker", "local")


def run_identity(context: Context) -> RunIdentity:
    """The DAG id, run id and try number of the running task instance."""
    ti = context["ti"]
    return RunIdentity(dag_id=ti.dag_id, run_id=ti.run_id, try_number=int(ti.try_number))


def check_backend(backend: str, task_id: str) -> str:
    if backend not in BACKENDS:
        raise ValueError(f"task {task_id}: backend must be one of {', '.join(BACKENDS)} (got {backend!r})")
    return backend


def build_request(
    context: Context,
    run: RunIdentity,
    *,
    task_id: str,
    builder: RequestBuilder | None,
    config: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """The request from ``builder`` (called now, with the context) or else the rendered ``config``."""
    if builder is not None:
        return builder(context, run)
    if config:
        return dict(config)
    raise ValueError(f"task {task_id}: give the operator a request_builder or a config")


def load_callable(path: str) -> Callable[..., Any]:
    """Import ``"package.module:function"`` (done at execute time, so the module may not exist at parse time)."""
    module_name, _, attribute = path.partition(":")
    if not module_name or not attribute:
        raise ValueError(f"expected 'package.module:function', got {path!r}")
    return getattr(importlib.import_module(module_name), attribute)
