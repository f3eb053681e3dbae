"""Fixtures of the evaluation tests: a small validation channel and a model artifact that fits it.

The model is an untrained GluonCV SSD (no weights are downloaded). To give the evaluation
something to find, the channel's ground truth is the model's own top detections on each
image (one of them shifted to an IoU just above 0.5 in the trainer's pixel frame and below
it in larger frames, one left out, a small object added that nothing detects), so the
expected mAP is well above zero and every coordinate and class mapping between the .rec, the
model and the metric is exercised.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.support.evaluation_helpers import (
    CLASSES,
    IMAGE_SHAPE,
    N_IMAGES,
    QUALITY,
    TRAINING_LOG,
    make_training_dir,
    tuning_record,
    write_rec,
)

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MXNET_CPU_WORKER_NTHREADS", "1")


def _synthetic_image(rng: np.random.Generator, index: int) -> np.ndarray:
    """An RGB image with a few filled shapes on a noisy background."""
    import cv2

    height, width = (96, 128) if index % 2 else (128, 112)
    image = rng.integers(0, 60, (height, width, 3), dtype=np.uint8)
    for _ in range(3):
        x, y = int(rng.integers(5, width - 40)), int(rng.integers(5, height - 40))
        color = tuple(int(c) for c in rng.integers(80, 255, 3))
        if rng.random() < 0.5:
            cv2.circle(image, (x + 15, y + 15), 15, color, -1)
        else:
            cv2.rectangle(image, (x, y), (x + 30, y + 30), color, -1)
    return image


def _shift_to_borderline_iou(box: np.ndarray, frame: int = IMAGE_SHAPE) -> np.ndarray:
    """``box`` moved sideways so that its VOC IoU (+1 px convention) with itself is 0.5 in a ``2 * frame`` square.

    IoU = (wF - sF + 1) / (wF + sF + 1) for a shift ``s`` in an ``F`` px frame, which falls as F
    grows: above 0.5 in the ``frame`` the trainer uses, below 0.5 in ``4 * frame``.
    """
    middle = 2 * frame
    shift = ((box[2] - box[0]) * middle + 1) / (3 * middle)
    moved = box.copy()
    moved[[0, 2]] += shift if box[2] + shift <= 1.0 else -shift
    return moved


def _ground_truth(detections: np.ndarray) -> np.ndarray:
    """Up to two distinct, non-degenerate top detections per class as boxes ``[M, 5]``; one shifted, one dropped,
    and a small object that nothing detects."""
    boxes: list[np.ndarray] = []
    for row in detections:
        box = row[2:6]
        same_class = [b for b in boxes if b[0] == row[0]]
        if len(same_class) == 2 or (box[2:] - box[:2]).min() < 0.08:
            continue
        if any(np.abs(b[1:] - box).max() < 0.02 for b in same_class):
            continue
        boxes.append(np.concatenate([[row[0]], box]))
    if len(boxes) < 2:
        raise AssertionError("the untrained fixture model produced too few usable boxes; change the seed")
    gt = np.array(boxes[:-1])
    narrowest = int(np.argmin(gt[:, 3] - gt[:, 1]))
    gt[narrowest, 1:] = _shift_to_borderline_iou(gt[narrowest, 1:])
    missed = [[1, 0.02, 0.02, 0.12, 0.12]]  # a small object no detection finds
    return np.concatenate([gt, missed])


@pytest.fixture(scope="session")
def model_artifact(tmp_path_factory: pytest.TempPathFactory) -> str:
    """``model.tar.gz`` of an untrained, exported SSD (MobileNet base, 128 px input)."""
    import warnings

    import mxnet as mx
    from gluoncv.model_zoo import get_model

    from include.model_artifact import export_model

    mx.random.seed(7)
    target = tmp_path_factory.mktemp("model") / "model.tar.gz"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # MXNet's "Cannot decide type for ... data" when it builds the graph
        net = get_model("ssd_512_mobilenet1.0_custom", classes=list(CLASSES.values()), pretrained_base=False)
        net.initialize()
        net.hybridize()
        net.set_nms(nms_thresh=0.45, nms_topk=200, post_nms=50)
        net(mx.nd.zeros((1, 3, IMAGE_SHAPE, IMAGE_SHAPE)))
        return export_model(net, {"image_shape": str(IMAGE_SHAPE), "num_classes": "2"}, CLASSES, str(target))


@pytest.fixture(scope="session")
def recordio_dir(tmp_path_factory: pytest.TempPathFactory, model_artifact: str) -> Path:
    """A RecordIO output folder whose ``test/test.rec`` ground truth comes from the model.

    ``validation/validation.rec`` holds the same records: what a training request names, for the
    runs evaluated without a data folder.
    """
    import cv2

    from include.model_artifact import decode_image, load_detector

    detector = load_detector(model_artifact)
    rng = np.random.default_rng(3)
    payloads = []
    for i in range(N_IMAGES):
        ok, encoded = cv2.imencode(".jpg", cv2.cvtColor(_synthetic_image(rng, i), cv2.COLOR_RGB2BGR))
        assert ok
        payloads.append(encoded.tobytes())
    detections = detector.predict_batch([decode_image(p) for p in payloads])
    items = [(p, _ground_truth(d)) for p, d in zip(payloads, detections, strict=True)]
    root = tmp_path_factory.mktemp("recordio")
    write_rec(root / "validation" / "validation.rec", items)
    write_rec(root / "test" / "test.rec", items)
    objects = sum(len(b) for _, b in items)
    held_out = {"images": N_IMAGES, "flipped": 0, "records": N_IMAGES, "objects": objects}
    summary = {"channels": {"train": {"images": 20, "flipped": 20, "records": 40, "objects": 90},
                            "validation": held_out, "test": held_out}}
    (root / "recordio.json").write_text(json.dumps(summary))
    return root


@pytest.fixture()
def training_log() -> str:
    return TRAINING_LOG


@pytest.fixture(scope="session")
def training_dir(tmp_path_factory: pytest.TempPathFactory, model_artifact: str, recordio_dir: Path) -> Path:
    """A training output folder whose training.json records the RecordIO folder (shared: do not modify)."""
    return make_training_dir(tmp_path_factory.mktemp("run") / "training", model_artifact, str(recordio_dir))


@pytest.fixture(scope="session")
def evaluated(tmp_path_factory: pytest.TempPathFactory, model_artifact: str, recordio_dir: Path) -> dict[str, Any]:
    """One evaluation of a tuning job's folder (its best trial) with a quality report.

    ``{"result", "output", "training"}``: the summary, the evaluation folder, the best trial's folder.
    """
    from include import storage
    from include.evaluation.evaluate import evaluate

    root = tmp_path_factory.mktemp("evaluated")
    trial = make_training_dir(root / "tune-002-b" / "output", model_artifact, str(recordio_dir), job="tune-002-b")
    (root / "tune").mkdir()
    (root / "tune" / "tuning.json").write_text(json.dumps(tuning_record(storage.normalize(trial))))
    (root / "quality").mkdir()
    (root / "quality" / "quality.json").write_text(json.dumps(QUALITY))
    result = evaluate(str(root / "tune"), None, str(root / "evaluation"), score_threshold=0.5, samples=3,
                      quality_uri=str(root / "quality"))
    return {"result": result, "output": root / "evaluation", "training": trial}
