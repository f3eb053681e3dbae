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
