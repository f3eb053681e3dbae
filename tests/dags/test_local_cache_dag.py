"""Three local runs of the pipeline DAG on the same generated data set: the step cache at work.

The second run on unchanged data reuses the RecordIO build, the trained model and the evaluation
(each a hit in its XCom, its ``cache.json`` and the task instance's state store) and deploys the same
model; a third run with another epoch count reuses the RecordIO build but trains and evaluates again.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from include import storage
from include.cache_keys import file_sha256
from include.configs import load_config
from include.monitoring.monitor import baseline_location
from include.tracking.registry import BASELINE_TAG, Registry
from tests.support.dag_runs import endpoint_servers, finished_run

pytestmark = pytest.mark.slow


def _state_store(dr: Any) -> dict[tuple[str, str], dict[str, Any]]:
    """``(task id, key) -> value`` of what the run's tasks put in the task state store."""
    from airflow.models.task_state_store import TaskStateStoreModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        rows = session.scalars(select(TaskStateStoreModel).where(TaskStateStoreModel.run_id == dr.run_id))
        return {(row.task_id, row.key): json.loads(row.value) for row in rows}


def test_a_second_run_on_unchanged_data_reuses_every_expensive_step(
    pipeline: Any, quick_runs: tuple[Path, Path], tracking_uri: str
) -> None:
    _, endpoints = quick_runs
    conf = {"backend": "local", "dataset_source": "sample", "epochs": 1, "tune": False, "deploy": True,
            "quality_policy": "drop"}  # fmt: skip

    first = pipeline.test(run_conf=conf)
    second = pipeline.test(run_conf=conf)
    third = pipeline.test(run_conf={**conf, "epochs": 2, "deploy": False})

    outcomes = {}
    for dr in (first, second, third):
        tries, xcom = finished_run(dr)
        assert str(dr.state) == "success", tries
        outcomes[dr.run_id] = xcom
    x1, x2, x3 = outcomes[first.run_id], outcomes[second.run_id], outcomes[third.run_id]
    hits = {
        name: [xcom[task].get("cache", {}).get("hit") for task in ("merge_recordio", "train", "evaluate")]
        for name, xcom in (("first", x1), ("second", x2), ("third", x3))
    }
    assert hits == {"first": [False, None, None], "second": [True, True, True], "third": [True, None, None]}

    # the second run's steps came from the first and sit in its own folders
    layout = x2["resolve_config"]["layout"]
    assert x2["train"]["cache"]["source_run_id"] == first.run_id
    assert x2["train"]["artifact_uri"].startswith(layout["training"] + "/")
    assert x2["merge_recordio"]["output_uri"] == layout["recordio"]
    assert x2["evaluate"]["report_uri"].startswith(layout["evaluation"] + "/")
    assert x2["evaluate"]["map"] == x1["evaluate"]["map"]
    assert file_sha256(x2["train"]["artifact_uri"]) == file_sha256(x1["train"]["artifact_uri"])
    # it deployed the same model, from its own run's folder
    assert storage.exists(storage.join(layout["training"], "cache.json"))
    assert x2["smoke_test"]["detections"] == x1["smoke_test"]["detections"]
    store = _state_store(second)
    assert store[("train", "cache.training")]["hit"] is True
    assert store[("plan_recordio", "cache.recordio")]["source_run_id"] == first.run_id

    # the model's monitoring baseline sits beside it (a reused evaluation publishes its own) and on its version
    versions = Registry(tracking_uri, load_config().tracking.registered_model).versions()
    for xcom in (x1, x2):
        uri = xcom["evaluate"]["monitoring_baseline_uri"]
        assert uri == baseline_location(xcom["train"]["artifact_uri"])
        assert all(storage.exists(storage.join(uri, name)) for name in ("statistics.json", "constraints.json"))
        (version,) = [v for v in versions if v.model_data_url == storage.normalize(xcom["train"]["artifact_uri"])]
        assert version.tags[BASELINE_TAG] == uri

    # another epoch count: the same RecordIO build, a new model
    assert x3["train"]["hyperparameters"]["epochs"] == "2"
    assert file_sha256(x3["train"]["artifact_uri"]) != file_sha256(x1["train"]["artifact_uri"])
    assert endpoint_servers(endpoints) == []
