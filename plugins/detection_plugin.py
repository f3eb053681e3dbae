"""The pipeline's Airflow plugin: links from tasks to MLflow and the reports, and the pages behind them.

Airflow's plugin loader imports the ``.py`` files of the plugins folder; ``detection_airflow/`` is a
plain package it is told to skip (its ``.airflowignore``), so this file is the plugin's only entry
(nothing else imports it: it is registered once). Restart the stack after changing it: plugins are
read when a process starts.
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin
from detection_airflow.links import GLOBAL_LINKS, PREFIX
from detection_airflow.reports import app


class DetectionPlugin(AirflowPlugin):
    name = "detection_pipeline"
    fastapi_apps = [{"app": app, "url_prefix": PREFIX, "name": "Detection pipeline reports"}]
    global_operator_extra_links = GLOBAL_LINKS
