"""The pipeline's run context inside a task: what ``resolve_config`` returned, with this task's try number; a
run's params with its triggering asset events applied."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow.sdk import Context

    from include.stages import RunContext

#: The task whose XCom holds the run context.
RESOLVE_TASK_ID = "resolve_config"


def run_context(context: Context) -> RunContext:
    """The run context of the running task's DAG run (config, layout, tracking), validated again."""
    from include.stages import RunContext

    ti = context["ti"]
    data: dict[str, Any] = ti.xcom_pull(task_ids=RESOLVE_TASK_ID)
    return RunContext.from_dict(data, try_number=int(ti.try_number))


def run_params(context: Context, keys: Iterable[str]) -> dict[str, Any]:
    """The run's params, overridden by what the asset events that triggered it name in their ``extra`` (only
    ``keys``: the DAG's own params)."""
    params = dict(context["params"])
    allowed = set(keys)
    for events in (context.get("triggering_asset_events") or {}).values():
        for event in events:
            params.update({k: v for k, v in (event.extra or {}).items() if k in allowed})
    return params
