"""The training stage's request pieces from a RecordIO build output (no training here)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from include.training.hyperparameters import HyperparameterError
from include.training.pipeline_training import describe_dataset, local_hyperparameters
from include.training.training_request import TrainingRequestError


def test_dataset_is_described_from_its_files(tiny_data: Path) -> None:
    data = describe_dataset(str(tiny_data))
    assert data.train_uri == (tiny_data / "train").as_uri()
    assert data.num_training_samples == 24  # counted from train.idx: no recordio.json here
    assert data.classes == {0: "circle", 1: "square", 2: "triangle"}
    assert data.label_width_required is None


def test_recordio_summary_and_its_input_folder_are_used(tiny_data: Path, tmp_path: Path) -> None:
    build, table = tmp_path / "rec", tmp_path / "quality"
    shutil.copytree(tiny_data / "train", build / "train")
    shutil.copytree(tiny_data / "validation", build / "validation")
    table.mkdir()
    (table / "classes.json").write_text(json.dumps({"0": "a", "1": "b", "2": "c"}))
    summary = {"input_uri": table.as_uri(), "label_width_required": 402, "channels": {"train": {"records": 24}}}
    (build / "recordio.json").write_text(json.dumps(summary))
    data = describe_dataset(str(build))
    assert data.classes == {0: "a", 1: "b", 2: "c"} and data.label_width_required == 402
    hp = local_hyperparameters({"base_network": "mobilenet-1.0", "image_shape": 256, "learning_rate": 0.002},
                               {"epochs": "3"}, data)
    assert hp["num_classes"] == "3" and hp["num_training_samples"] == "24"
    assert hp["label_width"] == "402" and hp["image_shape"] == "256" and hp["learning_rate"] == "0.002"
    assert hp["epochs"] == "3"


def test_settings_are_checked_before_any_job(tiny_data: Path, tmp_path: Path) -> None:
    data = describe_dataset(str(tiny_data))
    with pytest.raises(HyperparameterError, match="num_classes='4' does not match the data"):
        local_hyperparameters({"num_classes": 4, "base_network": "mobilenet-1.0", "image_shape": 128}, None, data)
    with pytest.raises(TrainingRequestError, match="is not a RecordIO build output"):
        describe_dataset(str(tmp_path))


def _request(tiny_data: Path, tmp_path: Path, cfg=None, **overrides: str) -> dict:
    from include.configs import load_config
    from include.training.pipeline_training import build_request

    cfg = cfg or load_config(environ={})
    return build_request(cfg, str(tiny_data), str(tmp_path / "out"), name="fallback", tags=[],
                         hyperparameters={"epochs": "1", **overrides})


def test_without_weights_the_local_profile_trains_from_scratch_and_says_why(tiny_data: Path, tmp_path: Path,
                                                                            caplog) -> None:
    request = _request(tiny_data, tmp_path)
    hp = request["HyperParameters"]
    assert hp["use_pretrained_model"] == "0" and hp["learning_rate"] == "0.002" and hp["freeze_layer_pattern"] == ""
    assert hp["epochs"] == "1"  # explicit overrides still win
    tag = {t["Key"]: t["Value"] for t in request["Tags"]}["pretrained-fallback"]
    assert tag == "mobilenet1.0-efbb2ca3.params is not in the weights cache and DETECTION_PRETRAINED_DOWNLOAD=0 " \
                  "turns downloading off"
    assert "detection-pipeline weights import FILE --base-network mobilenet-1.0" in caplog.text
    assert "training from scratch with training.scratch_hyperparameters" in caplog.text


def test_with_weights_the_local_profile_fine_tunes(tiny_data: Path, tmp_path: Path, weights_cache: Path) -> None:
    request = _request(tiny_data, tmp_path)
    hp = request["HyperParameters"]
    assert hp["use_pretrained_model"] == "1" and hp["image_shape"] == "320"
    assert "pretrained-fallback" not in {t["Key"] for t in request["Tags"]}


def test_weights_asked_for_explicitly_are_never_replaced_and_the_job_fails_at_once(tiny_data: Path,
                                                                                   tmp_path: Path) -> None:
    from include.configs import load_config
    from include.training.local_executor import run_training_job
    from include.training.pretrained import WeightsUnavailable

    strict = load_config(overrides={"local": {"pretrained_fallback": "fail"}}, environ={})
    for request in (_request(tiny_data, tmp_path, use_pretrained_model="1"), _request(tiny_data, tmp_path, strict)):
        assert request["HyperParameters"]["use_pretrained_model"] == "1" and "Tags" in request
        assert "pretrained-fallback" not in {t["Key"] for t in request["Tags"]}
    with pytest.raises(WeightsUnavailable) as refused:
        run_training_job(request, workdir=str(tmp_path / "work"))
    assert "mobilenet1.0-efbb2ca3.params" in str(refused.value) and "weights import FILE" in str(refused.value)
    record = json.loads((tmp_path / "out" / "fallback" / "output" / "training.json").read_text())
    assert record["TrainingJobStatus"] == "Failed" and record["FailureReason"].startswith("ClientError: the ImageNet")
    assert not (tmp_path / "work").exists()


@pytest.mark.slow
def test_a_fallback_job_records_why_it_trained_from_scratch(tiny_data: Path, tmp_path: Path) -> None:
    from include.training.local_executor import run_training_job

    record = run_training_job(_request(tiny_data, tmp_path, image_shape="96"))
    assert record["TrainingJobStatus"] == "Completed" and "PretrainedWeights" not in record
    assert record["PretrainedFallback"].startswith("mobilenet1.0-efbb2ca3.params is not in the weights cache")
    log = (tmp_path / "out" / "fallback" / "output" / "training.log").read_text()
    assert "use_pretrained_model=0: the mobilenet-1.0 base network starts from random weights" in log
