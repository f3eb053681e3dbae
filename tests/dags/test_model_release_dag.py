"""The model_release DAG on the local backend (dag.test, a real MLflow registry, real model servers): the champion
is released and verified through InvokeEndpoint, a new champion replaces it in place, and a rollback puts the old
model back and makes it the champion again."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from include.configs import load_config
from include.endpoints import production
from include.endpoints.lifecycle import teardown_endpoints
from include.tracking import artifacts, runs
from include.tracking.registry import CHAMPION, Registry
from tests.support.client_loop import runtime_client
from tests.support.dag_runs import finished_run, parsed_dag
from tests.support.shared_data import BCCD_IMAGES

pytestmark = pytest.mark.slow

NAME = "detector-prod"


def _register(ref: Any, registry: Registry, artifact: str, name: str) -> int:
    """A version whose model is a real artifact logged into a run of ``ref`` (where the server takes sources from)."""
    run = runs.step_run(ref, "trial", trial=name)
    source = artifacts.log_file(ref, run, artifact.removeprefix("file://"), "model")
    return registry.register(source, run.run_id, {"map": 0.5}).version


def _answering_model(url: str, jpeg: bytes) -> str:
    answer = runtime_client(url).invoke_endpoint(EndpointName=NAME, ContentType="image/jpeg", Body=jpeg)
    return answer["ResponseMetadata"]["HTTPHeaders"]["x-detection-model"]


def test_release_replace_and_roll_back_through_the_dag(
    tracking_uri: str, tracking_ref: Any, artifact: str, tmp_path: Path, monkeypatch, jpeg_bytes: bytes
) -> None:
    for key, value in {
        "DETECTION__STORAGE__BASE_URI": str(tmp_path / "runs"),
        "DETECTION__LOCAL__ENDPOINT_STATE_DIR": str(tmp_path / "endpoints"),
        "DETECTION__DEPLOY__PRODUCTION__PORT": "0",  # a free port, not 8080
        "DETECTION__DEPLOY__SMOKE_IMAGES": "2",
        "OMP_NUM_THREADS": "1",
        "MXNET_CPU_WORKER_NTHREADS": "1",
    }.items():
        monkeypatch.setenv(key, value)
    registry = Registry(tracking_ref.uri, tracking_ref.registered_model)
    first = _register(tracking_ref, registry, artifact, "first")
    second = _register(tracking_ref, registry, artifact, "second")
    registry.set_champion(first, action="approve", by="test", reason="first")
    dag = parsed_dag("model_release")
    conf = {"smoke_images": str(BCCD_IMAGES), "reason": "test release"}
    try:
        tries, xcom = finished_run(dag.test(run_conf=conf))
        assert tries == {"release": [("success", 1)], "verify": [("success", 1)]}, tries
        url = xcom["release"]["url"]
        assert xcom["release"]["release"]["action"] == "create" and xcom["verify"]["images"] == 1
        assert _answering_model(url, jpeg_bytes) == f"v{first}"

        registry.set_champion(second, action="approve", by="test", reason="better")
        tries, xcom = finished_run(dag.test(run_conf=conf))
        assert xcom["release"]["url"] == url and xcom["release"]["release"]["action"] == "rollout"
        assert _answering_model(url, jpeg_bytes) == f"v{second}"

        tries, xcom = finished_run(dag.test(run_conf={**conf, "action": "rollback", "reason": "v2 misbehaves"}))
        assert tries["release"] == [("success", 1)] and tries["verify"] == [("success", 1)]
        assert _answering_model(url, jpeg_bytes) == f"v{first}"
        assert registry.lookup(CHAMPION).version.version == first, "the registry follows the endpoint back"
        cfg = load_config()
        history = production.history(cfg, NAME)
        assert [(e["action"], e["model_id"], e["by"].startswith("airflow:")) for e in history] == [
            ("create", "v1", True), ("rollout", "v2", True), ("rollback", "v1", True)]  # fmt: skip
    finally:
        teardown_endpoints(load_config(), NAME)
