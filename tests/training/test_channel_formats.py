"""The other two training input formats end to end: built beside the RecordIO, named in the request, trained here.

``recordio.channel_format: augmented-manifest`` gives Pipe-mode ``AugmentedManifestFile`` channels,
``image-json`` the four image + JSON channels; the local algorithm reads both (through the
project's readers) and trains on the same records the RecordIO holds.
"""

from __future__ import annotations

import json
import tarfile
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from include.configs.loader import load_config
from include.preprocess.annotations import add_normalized, conform, write_table
from include.preprocess.channels import build_training_channels
from include.preprocess.recordio import build_recordio
from include.training.pipeline_training import build_request
from include.training.training_request import TrainingRequestError, parse_request
from tests.support.synthetic_shapes import class_names, draw_image
from tests.support.tiny_jobs import TINY_HP


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A RecordIO build (6 train images + mirrored copies, 3 validation, 3 held-out test) of shape JPEGs."""
    import pandas as pd

    root = tmp_path_factory.mktemp("formats")
    rng = np.random.default_rng(5)
    rows = []
    for i in range(12):
        img, objects = draw_image(rng, 96, 80, 3, 2)
        path = root / "images" / f"s{i}.jpg"
        path.parent.mkdir(exist_ok=True)
        cv2.imwrite(str(path), cv2.cvtColor(img, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95])
        for c, x0, y0, x1, y1 in objects:
            rows.append({"image": f"images/s{i}.jpg", "image_uri": path.as_uri(), "width": 96, "height": 80,
                         "depth": 3, "class_id": int(c), "class_name": class_names(3)[int(c)],
                         "xmin": x0 * 96, "ymin": y0 * 80, "xmax": x1 * 96, "ymax": y1 * 80,
                         "split": ("train", "train", "validation", "test")[i % 4], "source_file": "t.csv",
                         "source_line": len(rows) + 1})
    table = root / "table"
    write_table(conform(add_normalized(pd.DataFrame(rows))), dict(enumerate(class_names(3))), str(table))
    build_recordio(str(table), str(root / "recordio"), resize=None, workers=1)
    return root


def request_for(built: Path, fmt: str, name: str) -> dict[str, Any]:
    cfg = load_config(overrides={"recordio": {"channel_format": fmt}, "training": {"hyperparameters": TINY_HP}},
                      environ={})
    described = build_training_channels(str(built / "table"), str(built / "recordio"), fmt, workers=1)
    folder = {"augmented-manifest": "manifest", "image-json": "image-json"}[fmt]
    assert json.loads((built / "recordio" / folder / "channels.json").read_text()) == described
    return build_request(cfg, str(built / "recordio"), str(built / "training"), name=name, tags=[],
                         hyperparameters={"epochs": "1"})


def channels_of(request: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["ChannelName"]: c for c in request["InputDataConfig"]}


@pytest.mark.parametrize("fmt", ["augmented-manifest", "image-json"])
def test_request_names_the_channels_as_sagemaker_takes_them(built: Path, fmt: str) -> None:
    request = request_for(built, fmt, f"req-{fmt}")
    channels = channels_of(request)
    if fmt == "augmented-manifest":
        assert request["AlgorithmSpecification"]["TrainingInputMode"] == "Pipe"
        assert set(channels) == {"train", "validation"}
        for split, channel in channels.items():
            source = channel["DataSource"]["S3DataSource"]
            assert source["S3DataType"] == "AugmentedManifestFile"
            assert source["AttributeNames"] == ["source-ref", "bounding-box"]
            assert channel["ContentType"] == "application/x-recordio" and channel["RecordWrapperType"] == "RecordIO"
            lines = Path(source["S3Uri"].removeprefix("file://")).read_text().splitlines()
            assert len(lines) == {"train": 12, "validation": 3}[split]
            assert all(Path(json.loads(line)["source-ref"].removeprefix("file://")).is_file() for line in lines)
    else:
        assert request["AlgorithmSpecification"]["TrainingInputMode"] == "File"
        assert set(channels) == {"train", "validation", "train_annotation", "validation_annotation"}
        for name, channel in channels.items():
            source = channel["DataSource"]["S3DataSource"]
            assert channel["ContentType"] == "image/jpeg" and source["S3DataType"] == "S3Prefix"
            assert source["S3Uri"].endswith(f"/image-json/{name}/")  # a prefix that cannot take in the others
        annotations = sorted(Path(channels["train_annotation"]["DataSource"]["S3DataSource"]["S3Uri"]
                                  .removeprefix("file://")).rglob("*.json"))
        assert len(annotations) == 12
    assert request["HyperParameters"]["num_training_samples"] == "12"
    assert parse_request(request).channel_format == fmt


@pytest.mark.parametrize("fmt", ["recordio", "augmented-manifest", "image-json"])
def test_the_held_out_test_split_is_never_a_training_channel(built: Path, fmt: str) -> None:
    assert (built / "recordio" / "test" / "test.rec").is_file()  # built beside the training channels
    if fmt == "recordio":
        cfg = load_config(overrides={"training": {"hyperparameters": TINY_HP}}, environ={})
        request = build_request(cfg, str(built / "recordio"), str(built / "training"), name="r", tags=[])
    else:
        request = request_for(built, fmt, f"held-out-{fmt}")
    names = set(channels_of(request))
    assert "test" not in names and not any("/test" in str(c["DataSource"]) for c in request["InputDataConfig"])
    assert names <= {"train", "validation", "train_annotation", "validation_annotation", "model"}


def test_mixed_or_incomplete_channels_are_refused(built: Path) -> None:
    manifest = request_for(built, "augmented-manifest", "bad-a")
    image_json = request_for(built, "image-json", "bad-b")
    mixed = {**manifest, "InputDataConfig": [channels_of(manifest)["train"], channels_of(image_json)["validation"]]}
    with pytest.raises(TrainingRequestError, match="mix input formats"):
        parse_request(mixed)
    file_mode = {**manifest, "AlgorithmSpecification": {**manifest["AlgorithmSpecification"],
                                                        "TrainingInputMode": "File"}}
    with pytest.raises(TrainingRequestError, match="need Pipe mode"):
        parse_request(file_mode)
    images_only = [channels_of(image_json)[n] for n in ("train", "validation")]
    without_annotations = {**image_json, "InputDataConfig": images_only}
    with pytest.raises(TrainingRequestError, match="lacks channel\\(s\\) train_annotation, validation_annotation"):
        parse_request(without_annotations)


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["augmented-manifest", "image-json"])
def test_local_algorithm_trains_from_the_channels(built: Path, fmt: str, tmp_path: Path) -> None:
    from include.training.local_executor import run_training_job

    record = run_training_job(request_for(built, fmt, f"train-{fmt}"), workdir=str(tmp_path / "work"))
    assert record["TrainingJobStatus"] == "Completed"
    log = (built / "training" / f"train-{fmt}" / "output" / "training.log").read_text()
    assert f"Built RecordIO from the {fmt} channels: {{'train': 12, 'validation': 3}}" in log
    assert "12 training and 3 validation records" in log
    assert "#quality_metric: host=algo-1, epoch=0, validation mAP <score>=" in log
    converted = tmp_path / "work" / "input" / "recordio"
    assert json.loads((converted / "classes.json").read_text()) == {"0": "circle", "1": "square", "2": "triangle"}
    for split in ("train", "validation"):  # the same boxes, mirrored copies included, as the pipeline's RecordIO
        assert labels(converted, split) == labels(built / "recordio", split)


def labels(folder: Path, split: str) -> list[tuple[float, ...]]:
    """Every record's packed label (rounded to 1e-4), sorted: the channel's boxes whatever the record order."""
    import mxnet as mx

    reader = mx.recordio.MXRecordIO(str(folder / split / f"{split}.rec"), "r")
    out = sorted(tuple(np.round(mx.recordio.unpack(item)[0].label, 4)) for item in iter(reader.read, None))
    reader.close()
    return out


def jumpstart_request(built: Path, name: str) -> dict[str, Any]:
    """training.algorithm jumpstart: the JumpStart channel beside the RecordIO and JumpStart's request for it."""
    cfg = load_config(overrides={"training": {"algorithm": "jumpstart"}}, environ={})
    build_training_channels(str(built / "table"), str(built / "recordio"), "jumpstart", workers=1)
    return build_request(cfg, str(built / "recordio"), str(built / "training"), name=name, tags=[],
                         hyperparameters={"epochs": "1", "batch-size": "4"})


def test_the_jumpstart_channel_holds_the_train_split_as_jumpstart_reads_it(built: Path, jumpstart) -> None:
    from include.preprocess.readers.jumpstart import read_jumpstart

    request = jumpstart_request(built, "js-request")
    channels = channels_of(request)
    assert set(channels) == {"training", "model"}
    uri = channels["training"]["DataSource"]["S3DataSource"]["S3Uri"]
    assert uri == (built / "recordio" / "jumpstart" / "training").as_uri() + "/"
    parsed = parse_request(request)
    assert parsed.channel_format == "jumpstart" and parsed.hyperparameters["batch-size"] == "4"
    source = read_jumpstart(uri)
    assert source.classes == {0: "circle", 1: "square", 2: "triangle"}  # named by classes.json beside the channel
    assert source.boxes["image"].nunique() == 6 == len(labels(built / "recordio", "train")) // 2  # no mirrored copies
    assert len(list((built / "recordio" / "jumpstart" / "training" / "images").iterdir())) == 6
    # COCO-like but with corner boxes and no categories: detected as jumpstart, never read as COCO
    from include.preprocess.readers.detect import detect_format

    assert detect_format(uri) == ("jumpstart", "annotations.json")


@pytest.mark.slow
def test_local_backend_runs_a_jumpstart_request_as_a_fine_tune_and_says_so(
    built: Path, jumpstart, weights_cache: Path, tmp_path: Path
) -> None:
    from include.training.local_executor import run_training_job

    record = run_training_job(jumpstart_request(built, "js-train"), workdir=str(tmp_path / "work"))
    assert record["TrainingJobStatus"] == "Completed"
    assert record["Algorithm"] == "jumpstart" and record["JumpStartModelId"] == "mxnet-od-ssd-512-mobilenet1-0-coco"
    assert record["PretrainedWeights"]["file"] == str(weights_cache / "mobilenet1.0-efbb2ca3.params")
    substitute = record["LocalSubstitute"]
    assert "fine-tuned from the ImageNet weights" in substitute and record["PretrainedWeights"]["sha256"] in substitute
    assert "COCO detector" in substitute and "20 % of the training channel's images held out" in substitute
    assert record["HyperParameters"]["adam-learning-rate"] == "0.001"  # the request as sent, JumpStart's names
    log = (built / "training" / "js-train" / "output" / "training.log").read_text()
    assert "The JumpStart model channel (a COCO-trained detector) is not used" in log
    assert "Training mobilenet-1.0 SSD at 512px for 1 epochs, batch 4, adam lr 0.001" in log
    assert "3 training and 3 validation records" in log  # ingest's seeded split: 20 % per class, at least one
    with tarfile.open(built / "training" / "js-train" / "output" / "model.tar.gz") as tar:
        hyper = json.load(tar.extractfile("hyperparams.json"))
    assert hyper["num_classes"] == "3" and hyper["image_shape"] == "512" and hyper["use_pretrained_model"] == "1"


def test_a_jumpstart_request_without_weights_fails_at_once(built: Path, jumpstart, tmp_path: Path) -> None:
    from include.training.local_executor import run_training_job
    from include.training.pretrained import WeightsUnavailable

    with pytest.raises(WeightsUnavailable, match="detection-pipeline weights import FILE --base-network mobilenet-1.0"):
        run_training_job(jumpstart_request(built, "js-no-weights"), workdir=str(tmp_path / "work"))
    record = json.loads((built / "training" / "js-no-weights" / "output" / "training.json").read_text())
    assert record["TrainingJobStatus"] == "Failed" and "mobilenet1.0-efbb2ca3.params" in record["FailureReason"]
    assert not (tmp_path / "work").exists()  # no process was started, no data staged
