"""A real MLflow tracking server for the tests, one per session (it takes 13-33 s to start here).

The server is the project's local tracking server (:mod:`include.tracking.server`) in a folder
under /tmp; tests that run pipeline stages take :func:`tracking_uri`, which points the
configuration at it. Registered for every test by the root conftest.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def local_tracking_server() -> Iterator[dict]:
    """A local MLflow tracking server (SQLite store, artifacts in a temporary folder): its :func:`server.status`."""
    from include import storage
    from include.tracking import server

    # Not pytest's tmp_path: other pytest sessions on the machine rotate those away mid-run.
    root = Path(tempfile.mkdtemp(prefix="detection-mlflow-"))
    details = server.start(root / "server", storage.normalize(root / "artifacts"))
    try:
        yield details
    finally:
        server.stop(root / "server")
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def mlflow_server(local_tracking_server: dict) -> str:
    """The URL of :func:`local_tracking_server`."""
    return local_tracking_server["url"]


@pytest.fixture
def tracking_uri(mlflow_server: str, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> str:
    """:func:`mlflow_server` as this test's ``tracking.uri`` (``DETECTION__TRACKING__URI``), with an experiment and
    a registered model named after the test (:func:`per_test_name`), so no other test's champion stands in its way."""
    monkeypatch.setenv("DETECTION__TRACKING__URI", mlflow_server)
    monkeypatch.setenv("DETECTION__TRACKING__EXPERIMENT", per_test_name(request))
    monkeypatch.setenv("DETECTION__TRACKING__REGISTERED_MODEL", per_test_name(request))
    return mlflow_server


def per_test_name(request: pytest.FixtureRequest) -> str:
    """The test's name as an experiment / registered model name (``t_<name>``)."""
    import re

    return "t_" + re.sub(r"[^a-z0-9]+", "_", request.node.name.lower())[:60].strip("_")


@pytest.fixture
def mlflow_client(mlflow_server: str):
    """MLflow's own client on the test server: what the tests read the pipeline's records back with."""
    import logging

    from mlflow import MlflowClient

    # sagemaker-mlflow's header provider warns on every request to a URL that is not an ARN (aws/sagemaker-mlflow#15)
    logging.getLogger("mlflow.tracking.request_header.registry").setLevel(logging.ERROR)
    return MlflowClient(tracking_uri=mlflow_server, registry_uri=mlflow_server)


@pytest.fixture
def tracking_ref(mlflow_server: str, request: pytest.FixtureRequest):
    """A pipeline run of its own (experiment and registered model named after the test) on the test server."""
    from include.configs import load_config
    from include.tracking.runs import open_pipeline_run

    dag_id = per_test_name(request)
    cfg = load_config(overrides={"tracking": {"uri": mlflow_server}}, environ={})
    return open_pipeline_run(cfg, mlflow_server, dag_id, "manual__2026-01-02T03:04:05+00:00")


def model_run(ref, folder: Path, name: str) -> tuple[str, str]:
    """A run of ``ref``'s pipeline run holding a (stand-in) model among its artifacts: ``(run id, model source)``."""
    from include.tracking import artifacts, runs

    model = folder / f"{name}.tar.gz"
    model.write_bytes(name.encode())
    run = runs.step_run(ref, "trial", trial=name)
    return run.run_id, artifacts.log_file(ref, run, str(model), "model")
