"""A completed local training job: output layout, metric log against training.json, the exported model."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path
from typing import Any

import pytest

from include import storage
from include.model_artifact import ARCHIVE_MEMBERS, load_detector
from include.training.local_executor import describe_local_job
from include.training.metric_log import METRIC_DEFINITIONS, parse_metrics
from include.training.recordio_data import RecordChannel

pytestmark = pytest.mark.slow


def _output(record: dict[str, Any]) -> Path:
    return storage.local_path(record["output_uri"])


def test_job_writes_sagemaker_layout(trained: dict[str, Any]) -> None:
    out = _output(trained)
    assert out.parent.name == "tiny-train" and out.name == "output"
    assert {p.name for p in out.iterdir()} == {"model.tar.gz", "training.log", "training.json"}
    assert trained["TrainingJobStatus"] == "Completed" and trained["SecondaryStatus"] == "Completed"
    assert trained["ModelArtifacts"]["S3ModelArtifacts"] == (out / "model.tar.gz").as_uri()
    with tarfile.open(out / "model.tar.gz") as tar:
        assert sorted(tar.getnames()) == sorted(ARCHIVE_MEMBERS)
        hyper = json.load(tar.extractfile("hyperparams.json"))
        classes = json.load(tar.extractfile("classes.json"))
    assert hyper["base_network"] == "mobilenet-1.0" and hyper["optimizer"] == "adam"
    assert hyper["momentum"] == "0.9" and hyper["num_classes"] == "3"  # defaults filled in
    assert classes == {"0": "circle", "1": "square", "2": "triangle"}
    assert describe_local_job(trained["output_uri"]) == trained
    assert trained["TrainingTimeInSeconds"] >= 1 and trained["Timings"]["compute_seconds"] > 0


def test_log_has_one_validation_map_per_epoch_equal_to_the_record(trained: dict[str, Any]) -> None:
    log = (_output(trained) / "training.log").read_text()
    parsed = parse_metrics(log)
    epochs = trained["Epochs"]
    assert [e["epoch"] for e in epochs] == [0, 1]
    assert parsed["validation:mAP"] == [(e["epoch"], e["validation_map"]) for e in epochs]
    assert [v for _, v in parsed["train:progress"]] == [50.0, 100.0]
    assert len(parsed["train:throughput"]) == 2 and parsed["train:cross_entropy"] and parsed["train:smooth_l1"]
    finals = {m["MetricName"]: m["Value"] for m in trained["FinalMetricDataList"]}
    assert set(finals) == {d["Name"] for d in METRIC_DEFINITIONS}
    assert finals["validation:mAP"] == epochs[-1]["validation_map"] == trained["FinalValidationMAP"]
    best = max(epochs, key=lambda e: e["validation_map"])
    assert trained["BestEpoch"] == best["epoch"] and trained["BestValidationMAP"] == best["validation_map"]
    for line in log.splitlines():
        if line.startswith("#quality_metric") and "validation" in line:
            assert line.startswith("#quality_metric: host=algo-1, epoch=")


def test_artifact_scores_like_the_trainers_validation(trained: dict[str, Any], tiny_data: Path, tmp_path: Path) -> None:
    """The exported model (inference graph, best epoch) reproduces the best epoch's validation mAP.

    Boxes are compared in network-input pixels, as the trainer does: GluonCV's VOC metric adds one
    pixel to box sides (the VOC integer convention), so the frame matters.
    """
    from gluoncv.utils.metrics.voc_detection import VOC07MApMetric

    detector = load_detector(trained["ModelArtifacts"]["S3ModelArtifacts"])
    channel = RecordChannel(tiny_data / "validation", tmp_path)
    metric = VOC07MApMetric(iou_thresh=0.5, class_names=list(detector.classes.values()))
    samples = [channel[i] for i in range(len(channel))]
    size = detector.image_shape
    for (_, boxes), det in zip(samples, detector.predict_batch([img for img, _ in samples]), strict=True):
        metric.update(det[None, :, 2:6] * size, det[None, :, 0], det[None, :, 1], boxes[None, :, 1:5] * size,
                      boxes[None, :, 0])
    assert metric.get()[1][-1] == pytest.approx(trained["BestValidationMAP"], abs=1e-3)
