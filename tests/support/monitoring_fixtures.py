"""Fixtures of the monitoring tests and the monitoring DAG's: a BCCD baseline with a model, real captured traffic.

The model is :func:`tests.support.export_fixtures.spread_artifact` (the trainer's network on ImageNet base
weights, scores spread like a trained model's). BCCD is split at random as ingest splits it: the baseline's
input side reads 250 images (the "training and validation" images), its prediction side is the model's answers
on 60 others (the "held-out" ones), and the in-distribution traffic is the remaining 54. The other traffic is
the generated sample data set (drawn shapes, other sizes and JPEG quality). Both are captured through
:class:`include.endpoints.capture.CaptureWriter`, the endpoint's own writer, with the model's answers as the
endpoint serializes them.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest

from tests.support.shared_data import BCCD_IMAGES

ENDPOINT = "detector-prod"
SCORE_THRESHOLD = 0.5


@pytest.fixture(scope="session")
def bccd_split() -> dict[str, list[Path]]:
    paths = sorted(BCCD_IMAGES.glob("*.jpg"))
    if len(paths) < 300:
        pytest.skip(f"the BCCD data set is not at {BCCD_IMAGES}")
    random.Random(42).shuffle(paths)
    return {"baseline": paths[:250], "held_out": paths[250:310], "traffic": paths[310:]}


@pytest.fixture(scope="session")
def detector(spread_artifact: str) -> Any:
    from include.model_artifact import load_detector

    return load_detector(spread_artifact)


def answer(detector: Any, data: bytes) -> bytes:
    """The endpoint's JSON answer for one image (the serving contract's shape)."""
    from include.model_artifact import decode_image
    from include.serving.contract import to_prediction

    return json.dumps(to_prediction(detector.predict(decode_image(data)))).encode()


def capture(detector: Any, images: list[Path], destination: Path) -> str:
    """Invocations of ``images`` captured as the endpoint captures them; the endpoint's capture prefix."""
    from include.endpoints.capture import CaptureSettings, CaptureWriter

    writer = CaptureWriter(CaptureSettings(str(destination), ENDPOINT))
    for path in images:
        data = path.read_bytes()
        writer.offer(data, "image/jpeg", answer(detector, data), "application/json", inference_id=path.name)
    writer.close()
    assert writer.stats.written == len(images), writer.stats
    return str(destination / ENDPOINT)


@pytest.fixture(scope="session")
def baseline(detector: Any, bccd_split: dict, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A baseline folder (statistics.json, constraints.json) as evaluation writes it."""
    from include.model_artifact import decode_image
    from include.monitoring.monitor import write_baseline

    folder = tmp_path_factory.mktemp("baseline") / "monitoring"
    predictions = detector.predict_batch([decode_image(p.read_bytes()) for p in bccd_split["held_out"]])
    write_baseline(
        str(folder),
        [str(p) for p in bccd_split["baseline"]],
        predictions,
        classes=detector.classes,
        score_threshold=SCORE_THRESHOLD,
        thresholds={},
        about={"dataset_source": "../shared/datasets/bccd/BCCD", "dataset_format": "voc"},
    )
    return str(folder)


@pytest.fixture(scope="session")
def bccd_capture(detector: Any, bccd_split: dict, tmp_path_factory: pytest.TempPathFactory) -> str:
    """54 BCCD photographs the baseline did not read, captured."""
    return capture(detector, bccd_split["traffic"], tmp_path_factory.mktemp("capture-bccd"))


@pytest.fixture(scope="session")
def sample_images(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """40 images of the generated sample data set: drawn shapes, up to 320x288, other JPEG quality."""
    from include.preprocess.sample_data import generate_sample

    root = generate_sample(tmp_path_factory.mktemp("sample"), n_images=40, seed=1, layout="groundtruth", max_objects=4)
    return sorted(Path(root).rglob("*.jpg"))


@pytest.fixture(scope="session")
def sample_capture(detector: Any, sample_images: list[Path], tmp_path_factory: pytest.TempPathFactory) -> str:
    return capture(detector, sample_images, tmp_path_factory.mktemp("capture-sample"))
