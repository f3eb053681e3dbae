"""Helpers of the evaluation tests: RecordIO writing, PNG checks, the algorithm's log lines."""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import numpy as np

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
CLASSES = {0: "circle", 1: "square"}
IMAGE_SHAPE = 128
N_IMAGES = 8

#: Four epochs of the algorithm's metric lines; losses are logged twice per epoch (the last one counts).
TRAINING_LOG = "\n".join(
    line
    for epoch, (ce, l1, vmap) in enumerate([(2.2, 0.9, 0.05), (1.6, 0.7, 0.21), (1.2, 0.55, 0.34), (1.0, 0.5, 0.31)])
    for line in (
        f"#quality_metric: host=algo-1, epoch={epoch}, batch=5 train cross_entropy <loss>=({ce + 0.3})",
        f"#quality_metric: host=algo-1, epoch={epoch}, batch=5 train smooth_l1 <loss>=({l1 + 0.1})",
        f"#quality_metric: host=algo-1, epoch={epoch}, batch=10 train cross_entropy <loss>=({ce})",
        f"#quality_metric: host=algo-1, epoch={epoch}, batch=10 train smooth_l1 <loss>=({l1})",
        f"#quality_metric: host=algo-1, epoch={epoch}, validation mAP <score>=({vmap})",
        f"#progress_metric: host=algo-1, completed {25 * (epoch + 1)} % of epochs",
    )
)


def write_rec(path: Path, items: list[tuple[bytes, np.ndarray]]) -> None:
    """Write im2rec --pack-label records: label ``[2, 5, cls, xmin, ymin, xmax, ymax, ...]`` + image bytes."""
    import mxnet as mx

    path.parent.mkdir(parents=True, exist_ok=True)
    writer = mx.recordio.MXIndexedRecordIO(str(path.with_suffix(".idx")), str(path), "w")
    for key, (payload, boxes) in enumerate(items):
        label = np.concatenate([[2.0, 5.0], np.asarray(boxes, dtype=np.float32).ravel()]).astype(np.float32)
        header = mx.recordio.IRHeader(flag=label.size, label=label, id=key, id2=0)
        writer.write_idx(key, mx.recordio.pack(header, payload))
    writer.close()


def png_size(data: bytes) -> tuple[int, int]:
    """Width and height from a PNG's IHDR chunk (after checking the signature)."""
    assert data[:8] == PNG_SIGNATURE, "not a PNG"
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def decoded(data: bytes) -> np.ndarray:
    """The PNG decoded by OpenCV (BGR)."""
    import cv2

    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None, "PNG does not decode"
    return image


def assert_sensible_png(data: bytes, min_side: int = 300, max_side: int = 2000) -> None:
    """A decodable, non-blank PNG whose sides are within the bounds."""
    width, height = png_size(data)
    assert min_side <= width <= max_side and min_side <= height <= max_side, (width, height)
    image = decoded(data)
    assert image.shape[:2] == (height, width)
    assert image.std() > 5, "the picture is blank"


def make_training_dir(out: Path, model_artifact: str, data: str | None, job: str = "od-local-test-1") -> Path:
    """A training output folder as the local backend leaves it: model.tar.gz, training.log, training.json.

    ``data`` (a RecordIO output folder) is recorded as ``data_uri``, or, prefixed with
    ``channels:``, only as the request's InputDataConfig.
    """
    import shutil

    from include import storage

    out.mkdir(parents=True)
    shutil.copyfile(storage.local_path(model_artifact), out / "model.tar.gz")
    (out / "training.log").write_text("Starting training\n" + TRAINING_LOG + "\nDone\n")
    record: dict[str, Any] = {
        "TrainingJobName": job,
        "TrainingJobArn": f"arn:aws:sagemaker:local:000000000000:training-job/{job}",
        "TrainingJobStatus": "Completed",
        "HyperParameters": {"base_network": "mobilenet-1.0", "epochs": "4", "image_shape": str(IMAGE_SHAPE)},
        "Backend": "local",
        "TrainingTimeInSeconds": 14,
        "Timings": {"train_seconds": 10.5, "validation_seconds": 2.0},
        "BestEpoch": 2,
        "BestValidationMAP": 0.34,
        "FinalValidationMAP": 0.31,
        "StopReason": "completed",
        "ModelArtifacts": {"S3ModelArtifacts": storage.normalize(out / "model.tar.gz")},
        "output_uri": storage.normalize(out),
    }
    if data and data.startswith("channels:"):
        root = data.removeprefix("channels:")
        record["InputDataConfig"] = [
            {"ChannelName": name, "ContentType": "application/x-recordio",
             "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": f"{root}/{name}"}}}
            for name in ("train", "validation")
        ]
    elif data:
        record["data_uri"] = data
    (out / "training.json").write_text(json.dumps(record))
    return out


QUALITY = {
    "success": True,
    "policy": "fail",
    "table": {"images": 28, "boxes": 114, "classes": 2},
    "checks_failed": [],
    "checks": [
        {"name": "box_geometry", "description": "boxes lie inside their image", "severity": "error",
         "success": True, "evaluated": 114, "failed": 0},
        {"name": "duplicates", "description": "no image twice", "severity": "warning", "success": True,
         "evaluated": 28, "failed": 0},
    ],
}


def tuning_record(best_output_uri: str) -> dict[str, Any]:
    """tuning.json as the local tuner writes it (DescribeHyperParameterTuningJob shape): three trials, one failed."""
    trials = [
        ("tune-002-b", "2026-01-01T10:05:00", {"learning_rate": "0.002", "mini_batch_size": "8"}, 0.34),
        ("tune-001-a", "2026-01-01T10:00:00", {"learning_rate": "0.01", "mini_batch_size": "16"}, 0.21),
        ("tune-003-c", "2026-01-01T10:09:00", {"learning_rate": "0.5", "mini_batch_size": "32"}, None),
    ]
    summaries = [
        {"TrainingJobName": name, "CreationTime": created, "TunedHyperParameters": tuned,
         "ObjectiveStatus": "Failed" if value is None else "Succeeded",
         **({"FinalHyperParameterTuningJobObjectiveMetric": {"Type": "Maximize", "MetricName": "validation:mAP",
                                                             "Value": value}} if value is not None else {})}
        for name, created, tuned, value in trials
    ]
    return {
        "HyperParameterTuningJobName": "tune",
        "HyperParameterTuningJobConfig": {"HyperParameterTuningJobObjective": {"Type": "Maximize",
                                                                               "MetricName": "validation:mAP"}},
        "TrainingJobSummaries": summaries,
        "BestTrainingJob": {**summaries[0], "output_uri": best_output_uri},
    }
