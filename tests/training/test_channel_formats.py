"""The other two training input formats end to end: built beside the RecordIO, named in the request, trained here.

``recordio.channel_format: augmented-manifest`` gives Pipe-mode ``AugmentedManifestFile`` channels,
``image-json`` the four image + JSON channels; the local algorithm reads both (through the
project's readers) and trains on the same records the RecordIO holds.
"""

from __future__ import annotations

import json
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
