"""The pipeline's run context inside a task: what ``resolve_config`` returned, with this task's try number."""

from __future__ import annotations

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
