"""The project's Airflow assets, defined once for the DAGs that schedule on them and the tasks that update them."""

from __future__ import annotations

from airflow.sdk import Asset

#: A new labelled data set or Ground Truth manifest landing (or a drifted monitoring run asking for retraining);
#: its event's ``extra`` may name ``dataset_source`` and ``dataset_format`` for the training pipeline's run.
LABELLED_DATASET = Asset(name="labelled_dataset", uri="detection://labelled-dataset")
