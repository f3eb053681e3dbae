"""Test-wide set-up: an isolated Airflow home, fake AWS credentials, moto's S3 server, the shared fixtures."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Before Airflow is imported anywhere: its home, dags and plugins are the project's, never ~/airflow.
_home = Path(os.environ.get("DETECTION_TEST_AIRFLOW_HOME", ROOT / ".airflow" / "test-home"))
_home.mkdir(parents=True, exist_ok=True)
os.environ["AIRFLOW_HOME"] = str(_home)
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(ROOT / "dags")
os.environ["AIRFLOW__CORE__PLUGINS_FOLDER"] = str(ROOT / "plugins")
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
# AWS: never the network. moto intercepts in-process; these make sure nothing real is signed.
for key, value in {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SECURITY_TOKEN": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}.items():
    os.environ[key] = value
os.environ.pop("AWS_PROFILE", None)
# ImageNet weights: never ~/.mxnet, never the network. Tests that need weights point
# DETECTION_PRETRAINED_DIR at a folder of their own (tests/support/pretrained_weights.py).
os.environ["MXNET_HOME"] = str(ROOT / ".airflow" / "test-mxnet-home")
os.environ["DETECTION_PRETRAINED_DOWNLOAD"] = "0"
os.environ.pop("DETECTION_PRETRAINED_DIR", None)
os.environ.pop("MXNET_GLUON_REPO", None)

#: Fixtures shared across test folders (``pyproject.toml`` puts the project and ``plugins/`` on the path).
pytest_plugins = [
    "tests.support.aws_fixtures",
    "tests.support.serving_fixtures",
    "tests.support.pretrained_weights",  # before export_fixtures, which imports it
    "tests.support.export_fixtures",
    "tests.support.jumpstart_metadata",
    "tests.support.tracking_fixtures",
    "tests.support.monitoring_fixtures",  # after export_fixtures: its model
]


@pytest.fixture(scope="session")
def moto_server() -> Iterator[str]:
    """moto's HTTP server in a thread of this process, on a free port of 127.0.0.1; yields its URL.

    Nothing points at it by itself: use :func:`moto_endpoint`, which empties it and points AWS clients at it.
    """
    import logging

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture
def moto_endpoint(moto_server: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """:func:`moto_server`, emptied, with ``AWS_ENDPOINT_URL`` pointing every AWS client of this test at it.

    moto's in-process ``mock_aws`` patches botocore's synchronous sender, which s3fs (aiobotocore)
    does not use; over HTTP, boto3, s3fs and child processes given the environment all reach it.
    Cached s3fs instances and boto3's default session are dropped before and after the test.
    """
    import urllib.request

    import boto3
    import s3fs

    def forget_clients() -> None:
        s3fs.S3FileSystem.clear_instance_cache()
        boto3.DEFAULT_SESSION = None

    urllib.request.urlopen(urllib.request.Request(f"{moto_server}/moto-api/reset", method="POST"), timeout=10).close()
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server)
    forget_clients()
    try:
        yield moto_server
    finally:
        forget_clients()


@pytest.fixture
def s3_bucket(moto_endpoint: str, request: pytest.FixtureRequest) -> str:
    """A fresh bucket on :func:`moto_endpoint`, named after the test; returns its name."""
    import boto3

    name = "test-" + re.sub(r"[^a-z0-9]+", "-", request.node.name.lower())[:50].strip("-")
    boto3.client("s3", region_name="us-east-1").create_bucket(Bucket=name)
    return name
