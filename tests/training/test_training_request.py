"""Reading CreateTrainingJob requests for the local backend, staging channels (local and S3), class maps."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from include import storage
from include.training.local_executor import describe_local_job, run_training_job
from include.training.training_request import (
    TrainingRequestError,
    find_class_map,
    parse_request,
    stage_channel,
)
from tests.support.tiny_jobs import make_request


def _upload(folder: Path, uri: str) -> None:
    for path in folder.rglob("*"):
        if path.is_file():
            storage.upload_file(path, storage.join(uri, path.relative_to(folder).as_posix()))


def test_request_fields_are_read(tiny_data: Path, tmp_path: Path) -> None:
    job = parse_request(make_request(tiny_data, tmp_path, "job-1"))
    assert job.channels == {"train": (tiny_data / "train").as_uri(), "validation": (tiny_data / "validation").as_uri()}
    assert job.output_uri == f"{tmp_path.as_uri()}/job-1/output" and job.max_runtime_s == 3600
    assert job.model_uri.endswith("/job-1/output/model.tar.gz")


@pytest.mark.parametrize(
    ("change", "words"),
    [
        (lambda r: r.pop("OutputDataConfig"), "missing field OutputDataConfig.S3OutputPath"),
        (lambda r: r.update(TrainingJobName="bad_name!"), "TrainingJobName 'bad_name!'"),
        (lambda r: r["InputDataConfig"].pop(), r"lacks channel\(s\) validation"),
        (lambda r: r["InputDataConfig"][0].update(ChannelName="test"), r"InputDataConfig\[0\].ChannelName 'test'"),
        (lambda r: r["InputDataConfig"][1].update(ContentType="image/jpeg"), r"channels mix input formats"),
        (lambda r: r["InputDataConfig"][1].update(ContentType="text/csv"), r"ContentType 'text/csv' is not one of"),
        (lambda r: r["InputDataConfig"][0]["DataSource"]["S3DataSource"].update(S3DataType="ManifestFile"),
         "S3DataType 'ManifestFile': the algorithm reads S3Prefix or AugmentedManifestFile"),
        (lambda r: r["InputDataConfig"][0]["DataSource"]["S3DataSource"].update(S3DataType="AugmentedManifestFile"),
         r"AttributeNames None: an object-detection manifest channel names \['source-ref'"),
        (lambda r: r["StoppingCondition"].update(MaxRuntimeInSeconds=0), "MaxRuntimeInSeconds 0"),
        (lambda r: r["HyperParameters"].update(epochs=3), "strings to strings"),
    ],
)
def test_bad_requests_are_named(tiny_data: Path, tmp_path: Path, change: Callable[[dict], object], words: str) -> None:
    request = make_request(tiny_data, tmp_path, "job-1")
    change(request)
    with pytest.raises(TrainingRequestError, match=words):
        parse_request(request)


def test_local_channels_are_used_in_place_or_linked(tiny_data: Path, tmp_path: Path) -> None:
    assert stage_channel((tiny_data / "train").as_uri(), tmp_path / "a") == tiny_data / "train"
    staged = stage_channel((tiny_data / "train" / "train.rec").as_uri(), tmp_path / "b")
    assert [p.name for p in staged.iterdir()] == ["train.rec"]
    with pytest.raises(TrainingRequestError, match="does not exist"):
        stage_channel((tmp_path / "nothing").as_uri(), tmp_path / "c")


def test_class_map_is_found_next_to_the_data(tiny_data: Path, tmp_path: Path) -> None:
    classes, uri = find_class_map((tiny_data / "train").as_uri(), 3)
    assert classes == {0: "circle", 1: "square", 2: "triangle"} and uri == (tiny_data / "classes.json").as_uri()
    assert find_class_map((tmp_path / "x" / "train").as_uri(), 2) == ({0: "class_0", 1: "class_1"}, None)
    (tmp_path / "classes.json").write_text(json.dumps({"0": "a", "2": "c"}))
    with pytest.raises(TrainingRequestError, match="class ids must be 0..n-1"):
        find_class_map((tmp_path / "train").as_uri(), 2)


def test_s3_channels_are_downloaded(s3_bucket: str, tiny_data: Path, tmp_path: Path) -> None:
    _upload(tiny_data, f"s3://{s3_bucket}/data")
    folder = stage_channel(f"s3://{s3_bucket}/data/train", tmp_path / "a")
    assert sorted(p.name for p in folder.iterdir()) == ["train.idx", "train.rec"]
    assert (folder / "train.rec").read_bytes() == (tiny_data / "train" / "train.rec").read_bytes()
    single = stage_channel(f"s3://{s3_bucket}/data/train/train.rec", tmp_path / "b")
    assert [p.name for p in single.iterdir()] == ["train.rec"]


@pytest.mark.slow
def test_a_job_reads_and_writes_s3(s3_bucket: str, tiny_data: Path, tmp_path: Path) -> None:
    _upload(tiny_data, f"s3://{s3_bucket}/job-data")
    request = make_request(tiny_data, tmp_path, "s3-job", epochs="1")
    for channel in request["InputDataConfig"]:
        channel["DataSource"]["S3DataSource"]["S3Uri"] = f"s3://{s3_bucket}/job-data/{channel['ChannelName']}"
    request["OutputDataConfig"]["S3OutputPath"] = f"s3://{s3_bucket}/models"
    record = run_training_job(request)
    assert record["TrainingJobStatus"] == "Completed"
    assert record["ModelArtifacts"]["S3ModelArtifacts"] == f"s3://{s3_bucket}/models/s3-job/output/model.tar.gz"
    assert record["ClassesUri"] == f"s3://{s3_bucket}/job-data/classes.json"
    assert storage.exists(f"s3://{s3_bucket}/models/s3-job/output/training.log")
    assert describe_local_job(f"s3://{s3_bucket}/models/s3-job/output") == record
