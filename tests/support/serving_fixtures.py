"""Fixtures of the serving tests: an untrained SSD artifact (contract tests need no trained model) and one endpoint."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from include.endpoints.local import start_endpoint, stop_endpoint
from tests.support.shared_data import BCCD_IMAGES

CLASSES = {0: "RBC", 1: "WBC", 2: "Platelets"}
#: Small enough to make 413 cheap to provoke, large enough for the test images (BCCD JPEGs are under 25 kB).
TEST_MAX_BODY = 400_000
REGION = "us-east-1"


def build_artifact(path: Path, image_shape: int = 256, classes: dict[int, str] | None = None) -> str:
    """Export an untrained, hybridized SSD (GluonCV ssd_512_mobilenet1.0_custom) as model.tar.gz (new random
    weights each time: two artifacts answer differently)."""
    classes = classes or CLASSES
    import warnings

    import mxnet as mx
    import numpy as np
    from gluoncv import model_zoo

    from include import model_artifact

    hyper = {"num_classes": str(len(classes)), "image_shape": str(image_shape), "base_network": "mobilenet1.0"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # MXNet's "cannot decide type" note on GluonCV's SymbolBlocks
        net = model_zoo.get_model("ssd_512_mobilenet1.0_custom", classes=list(classes.values()), pretrained_base=False)
        net.initialize(mx.init.Normal(0.01))
        net.hybridize()
        net.set_nms(0.45)
        net(model_artifact.preprocess([np.zeros((image_shape, image_shape, 3), dtype=np.uint8)], image_shape))
        return model_artifact.export_model(net, hyper, classes, str(path))


@pytest.fixture(scope="session")
def server_env() -> dict[str, str]:
    """The servers' environment: one compute thread each, as they share two CPU cores with everything else."""
    return {**os.environ, "OMP_NUM_THREADS": "1", "MXNET_CPU_WORKER_NTHREADS": "1"}


@pytest.fixture(scope="session")
def artifact(tmp_path_factory: pytest.TempPathFactory) -> str:
    return build_artifact(tmp_path_factory.mktemp("model") / "model.tar.gz")


@pytest.fixture
def s3_artifact(artifact: str, server_env: dict[str, str], moto_endpoint: str) -> tuple[str, dict[str, str]]:
    """The artifact in a bucket of moto's S3 server: its s3:// URI and a server environment reaching it."""
    import boto3

    s3 = boto3.client("s3", region_name=REGION)
    s3.create_bucket(Bucket="models")
    s3.upload_file(artifact.removeprefix("file://"), "models", "run-1/model.tar.gz")
    env = {k: v for k, v in server_env.items() if k not in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN")}
    credentials = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": REGION}
    return "s3://models/run-1/model.tar.gz", {**env, **credentials, "AWS_ENDPOINT_URL": moto_endpoint}


@pytest.fixture(scope="session")
def jpeg_bytes() -> bytes:
    path = BCCD_IMAGES / "BloodImage_00000.jpg"
    if not path.exists():
        pytest.skip(f"the BCCD data set is not at {BCCD_IMAGES}")
    return path.read_bytes()


@pytest.fixture(scope="session")
def png_bytes(jpeg_bytes: bytes) -> bytes:
    import cv2
    import numpy as np

    image = cv2.imdecode(np.frombuffer(jpeg_bytes, np.uint8), cv2.IMREAD_COLOR)
    return cv2.imencode(".png", cv2.resize(image, (320, 240)))[1].tobytes()


@pytest.fixture(scope="session")
def state_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("endpoints")


@pytest.fixture(scope="session")
def endpoint(artifact: str, state_dir: Path, server_env: dict[str, str]):
    """One running endpoint shared by the tests that only talk to it; it batches, so concurrency tests batching."""
    state = start_endpoint(
        artifact, "shared", state_dir, max_body_bytes=TEST_MAX_BODY, max_batch=4, ready_timeout_s=180, env=server_env
    )
    yield state
    stop_endpoint("shared", state_dir)
