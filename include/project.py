"""The project's own coordinates: its root folder and the id of the pipeline DAG.

``PROJECT_ROOT`` is the folder that holds ``include/``: relative paths in the configuration
(``storage.base_uri: data/runs``) resolve against it, and child processes (trainer, endpoint
server, build workers) get it on ``PYTHONPATH``. ``PIPELINE_DAG_ID`` is the DAG's id; the in-process
``detection-pipeline run`` files its runs under it too, so both kinds of run share one layout.
"""

from __future__ import annotations

from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
PIPELINE_DAG_ID = "object_detection_pipeline"
