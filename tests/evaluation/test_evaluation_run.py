"""End-to-end: ``evaluate()`` on a training output folder and its validation channel."""

from __future__ import annotations

import base64
import json
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from include.evaluation.evaluate import EvaluationInputError, evaluate
from tests.support.evaluation_helpers import (
    CLASSES,
    IMAGE_SHAPE,
    N_IMAGES,
    assert_sensible_png,
    make_training_dir,
    write_rec,
)

SMALL_TEST_SPLIT = "the test split has 8 images (fewer than 50): one image moves its mAP by whole points"

def test_evaluation_json_holds_the_metrics_and_settings(evaluated: dict[str, Any]) -> None:
    result, out = evaluated["result"], evaluated["output"]
    document = json.loads((out / "evaluation.json").read_text())
    assert document["interpolation"] == "11-point" and document["iou"] == 0.5 and document["score_threshold"] == 0.5
    assert document["images"] == N_IMAGES
    assert [c["name"] for c in document["classes"]] == list(CLASSES.values())
    assert document["gt_objects"] == sum(c["gt_objects"] for c in document["classes"]) > N_IMAGES
    assert 0.1 < document["map"] <= 1.0 and 0.0 < document["coco_map"] <= document["map"]
    assert document["training"] == {"job_name": "tune-002-b", "backend": "local", "status": "Completed",
                                    "stop_reason": "completed", "final_validation_map": 0.31,
                                    "best_epoch": 2, "best_validation_map": 0.34, "epochs_logged": 4}
    assert document["model_uri"] == f"file://{evaluated['training']}/model.tar.gz"  # the tuning job's best trial
    assert document["hyperparameters"]["base_network"] == "mobilenet-1.0"
    assert document["timings"]["training train_seconds"] == 10.5
    assert document["notes"] == [SMALL_TEST_SPLIT]  # a held-out split of 8 images is flagged as too small
    assert document["split"] == result["split"] == "test"
    assert document["channel_uri"].endswith("/test") and document["selection"]["map"] == 0.34
    assert result["map"] == document["map"] and result["coco_map"] == document["coco_map"]
    assert result["report_uri"] == f"file://{out}/report.html"
    assert result["evaluation_uri"] == f"file://{out}/evaluation.json"


def test_charts_and_samples_are_written(evaluated: dict[str, Any]) -> None:
    out = evaluated["output"]
    names = sorted(str(p.relative_to(out)) for p in out.rglob("*.png"))
    assert names == ["charts/confusion_matrix.png", "charts/precision_recall.png", "charts/training_losses.png",
                     "charts/tuning.png", "charts/validation_map.png",
                     "samples/sample_00.png", "samples/sample_01.png", "samples/sample_02.png"]
    for path in out.rglob("*.png"):
        assert_sensible_png(path.read_bytes())


def test_map_is_the_metric_of_the_records_and_detections_in_the_trainers_frame(
    evaluated: dict[str, Any], recordio_dir: Path, model_artifact: str
) -> None:
    """Recompute from an independent read path: records unpacked with MXNet, boxes scaled to image_shape pixels
    (the frame of the trainer's validation:mAP, where VOC's +1 pixel convention applies).

    (The untrained fixture model ties many scores at 1.0, and GluonCV orders ties differently, so its
    metric is compared on tie-free detections in test_evaluation_metrics instead.)
    """
    import mxnet as mx

    from include.evaluation.metrics import DetectionEvaluator
    from include.model_artifact import decode_image, load_detector

    detector = load_detector(model_artifact)
    reader = mx.recordio.MXRecordIO(str(recordio_dir / "validation" / "validation.rec"), "r")
    frames = {IMAGE_SHAPE: DetectionEvaluator(len(CLASSES)), 4 * IMAGE_SHAPE: DetectionEvaluator(len(CLASSES))}
    while (item := reader.read()) is not None:
        header, payload = mx.recordio.unpack(item)
        truth = np.asarray(header.label[2:], dtype=np.float64).reshape(-1, 5)
        det = detector.predict(decode_image(payload))
        for frame, evaluator in frames.items():
            evaluator.add(np.c_[det[:, :2], det[:, 2:] * frame], np.c_[truth[:, :1], truth[:, 1:] * frame])
    reader.close()
    expected = frames[IMAGE_SHAPE].result(CLASSES)
    assert frames[4 * IMAGE_SHAPE].result().map < expected.map  # the fixture's borderline boxes tell frames apart
    document = json.loads((evaluated["output"] / "evaluation.json").read_text())
    assert document["map"] == pytest.approx(expected.map, abs=1e-12)
    assert document["coco_map"] == pytest.approx(expected.coco_map, abs=1e-12)
    assert [c["ap"] for c in document["classes"]] == pytest.approx([c.ap for c in expected.classes], abs=1e-12)
    assert all(c["ap"] > 0.1 for c in document["classes"])  # both classes have objects and some are found


def test_report_is_self_contained_and_shows_every_chart_and_sample(evaluated: dict[str, Any]) -> None:
    out = evaluated["output"]
    html = (out / "report.html").read_text()
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", html, re.IGNORECASE)
    assert "<script" not in html and "@import" not in html and "url(" not in html
    embedded = re.findall(r'<img src="data:image/png;base64,([^"]+)"', html)
    files = sorted(out.rglob("*.png"))
    assert len(embedded) == len(files) == 8
    assert sorted(base64.b64decode(e) for e in embedded) == sorted(p.read_bytes() for p in files)
    for text in ("tune-002-b", "mobilenet-1.0", "box_geometry", "passed (policy fail)", "tune-001-a", "0.002",
                 "COCO mAP", "circle", "square", "train_seconds", "model.tar.gz", "best validation mAP"):
        assert text in html, text


def test_data_uri_is_required_when_training_json_does_not_record_it(tmp_path: Path, model_artifact: str) -> None:
    training = make_training_dir(tmp_path / "training", model_artifact, None)
    with pytest.raises(EvaluationInputError, match="no data URI given and .*training.json records neither"):
        evaluate(str(training), None, str(tmp_path / "out"))


def test_the_validation_channel_of_the_training_request_is_used(tmp_path: Path, model_artifact: str,
                                                                recordio_dir: Path, evaluated: dict[str, Any]) -> None:
    training = make_training_dir(tmp_path / "training", model_artifact, f"channels:{recordio_dir}")
    stale = tmp_path / "out" / "samples" / "sample_09.png"  # left by an earlier try with more samples
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"old")
    result = evaluate(str(training), None, str(tmp_path / "out"), samples=0)
    assert not stale.parent.exists()
    document = json.loads((tmp_path / "out" / "evaluation.json").read_text())
    assert document["channel_uri"] == f"file://{recordio_dir}/validation" and document["split"] == "validation"
    assert document["notes"][0].startswith("no held-out test split: these figures are on the validation split")
    assert result["map"] == evaluated["result"]["map"]


def test_missing_training_output_is_named(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"training.json does not exist: .* is not a training output folder"):
        evaluate(str(tmp_path), str(tmp_path), str(tmp_path / "out"))


def test_ground_truth_of_an_unknown_class_names_the_record(tmp_path: Path, training_dir: Path,
                                                          recordio_dir: Path) -> None:
    import mxnet as mx

    reader = mx.recordio.MXRecordIO(str(recordio_dir / "validation" / "validation.rec"), "r")
    _, jpeg = mx.recordio.unpack(reader.read())  # any image will do
    reader.close()
    write_rec(tmp_path / "data" / "validation" / "validation.rec",
              [(jpeg, np.array([[0, 0.1, 0.1, 0.5, 0.5]])), (jpeg, np.array([[5, 0.1, 0.1, 0.5, 0.5]]))])
    with pytest.raises(EvaluationInputError, match=r"validation.rec record 1: ground truth row 0 has class id 5"):
        evaluate(str(training_dir), str(tmp_path / "data"), str(tmp_path / "out"), samples=0)


def test_a_run_without_metric_lines_is_evaluated_with_a_note(tmp_path: Path, training_dir: Path) -> None:
    training = tmp_path / "training"
    shutil.copytree(training_dir, training)
    (training / "training.log").write_text("the algorithm crashed before logging metrics\n")
    result = evaluate(str(training), None, str(tmp_path / "out"), samples=0)
    assert result["notes"] == [
        SMALL_TEST_SPLIT,
        "no chart 'Validation mAP per epoch': the training run logged no validation mAP: nothing to chart",
        "no chart 'Training losses per epoch': the training run logged no training losses: nothing to chart",
    ]
    assert "the training run logged no validation mAP" in (tmp_path / "out" / "report.html").read_text()
    charts = sorted(p.name for p in (tmp_path / "out" / "charts").iterdir())
    assert charts == ["confusion_matrix.png", "precision_recall.png"]  # from the evaluation itself, not the log


def test_evaluation_reads_and_writes_s3(s3_bucket: str, training_dir: Path, recordio_dir: Path,
                                        evaluated: dict[str, Any]) -> None:
    from include import storage

    base = f"s3://{s3_bucket}/run-1"
    for folder, name in ((training_dir, "training"), (recordio_dir, "recordio")):
        for path in folder.rglob("*"):
            if path.is_file():
                storage.upload_file(path, f"{base}/{name}/{path.relative_to(folder)}")
    result = evaluate(f"{base}/training", f"{base}/recordio", f"{base}/evaluation", samples=1)
    written = sorted(storage.relative(u, f"{base}/evaluation") for u in storage.walk_files(f"{base}/evaluation"))
    drawn = [f"label_issues/image_{k:03d}.jpg" for k in range(1, N_IMAGES + 1)]  # the 8 records, worst first
    assert written == ["charts/confusion_matrix.png", "charts/precision_recall.png", "charts/training_losses.png",
                       "charts/validation_map.png", "evaluation.json", "label_issues.json", *drawn, "report.html",
                       "samples/sample_00.png"]
    assert result["report_uri"] == f"{base}/evaluation/report.html"
    assert result["map"] == evaluated["result"]["map"]  # the same model on the same records as the local run
    assert json.loads(storage.read_text(result["evaluation_uri"]))["images"] == N_IMAGES


def test_the_report_says_which_weights_the_model_started_from(tmp_path: Path, model_artifact: str,
                                                              recordio_dir: Path) -> None:
    training = make_training_dir(tmp_path / "training", model_artifact, str(recordio_dir))
    record = json.loads((training / "training.json").read_text())
    weights = {"file": "/cache/mobilenet1.0-efbb2ca3.params", "sha256": "1acbb0f7" + "0" * 56, "source": "import",
               "base_network": "mobilenet-1.0", "model_store_name": "mobilenet1.0", "gluoncv_sha1_verified": False}
    (training / "training.json").write_text(json.dumps({**record, "PretrainedWeights": weights}))
    evaluate(str(training), None, str(tmp_path / "evaluation"), samples=0)
    document = json.loads((tmp_path / "evaluation" / "evaluation.json").read_text())
    assert document["start_weights"] == {
        "started from": "ImageNet weights of mobilenet-1.0", "file": weights["file"], "sha256": weights["sha256"],
        "source": "import", "GluonCV model-store SHA-1 verified": False}
    html = (tmp_path / "evaluation" / "report.html").read_text()
    assert "<h2>Start weights</h2>" in html and weights["sha256"] in html and weights["file"] in html
