"""The project's own coordinates: its root folder, the id of the pipeline DAG and its task queues.

``PROJECT_ROOT`` is the folder that holds ``include/``: relative paths in the configuration
(``storage.base_uri: data/runs``) resolve against it, and child processes (trainer, endpoint
server, build workers) get it on ``PYTHONPATH``. ``PIPELINE_DAG_ID`` is the DAG's id; the in-process
``detection-pipeline run`` files its runs under it too, so both kinds of run share one layout.

:func:`task_queues` names the Celery queues the DAG routes its tasks to and the stack's workers
serve. They are read from the environment, not the YAML configuration, because the DAG file needs
them at parse time, where it must stay light.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
PIPELINE_DAG_ID = "object_detection_pipeline"


@dataclass(frozen=True)
class TaskQueues:
    """Where tasks go on a Celery (or any queue-aware) executor; the LocalExecutor ignores queues.

    ``cpu``: data work (ingest, quality gate, RecordIO shards, merge, evaluation, export).
    ``training``: training and tuning, and the local endpoint's deploy, smoke test and teardown; its
    worker runs one task at a time and is not scaled out, so a local endpoint server lives on the
    worker that tests and stops it. ``default`` (Airflow's ``[operators] default_queue``): the rest.
    """

    cpu: str = "cpu"
    training: str = "training"
    default: str = "default"


def task_queues(environ: Mapping[str, str] | None = None) -> TaskQueues:
    """The queue names from ``DETECTION_QUEUE_CPU``, ``DETECTION_QUEUE_TRAINING`` and Airflow's default queue."""
    env = os.environ if environ is None else environ
    defaults = TaskQueues()
    return TaskQueues(
        cpu=env.get("DETECTION_QUEUE_CPU") or defaults.cpu,
        training=env.get("DETECTION_QUEUE_TRAINING") or defaults.training,
        default=env.get("AIRFLOW__OPERATORS__DEFAULT_QUEUE") or defaults.default,
    )
