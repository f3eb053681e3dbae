"""Evaluation inputs: the validation channel's records and the training run's per-epoch curves."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from include.evaluation.channel_data import ChannelNotFoundError, read_channel
from include.evaluation.training_run import (
    TrainingCurves,
    TrainingRecordError,
    read_training_curves,
    resolve_training,
    tuning_objective,
    tuning_trials,
)
from include.recordio_codec import RecordFormatError, parse_label
from tests.support.evaluation_helpers import make_training_dir, tuning_record, write_rec


def jpeg(color: int) -> bytes:
    import cv2

    ok, data = cv2.imencode(".jpg", np.full((20, 30, 3), color, dtype=np.uint8))
    assert ok
    return data.tobytes()


def test_a_sharded_channel_is_read_in_file_order(tmp_path: Path) -> None:
    channel = tmp_path / "validation"
    write_rec(channel / "validation-00001.rec", [(jpeg(200), np.array([[1, 0.5, 0.5, 0.9, 0.9]]))])
    write_rec(channel / "validation-00000.rec", [(jpeg(10), np.array([[0, 0.1, 0.2, 0.3, 0.4], [1, 0, 0, 1, 1]]))])
    items = list(read_channel(str(channel)))
    assert [(Path(i.source).name, i.index) for i in items] == [("validation-00000.rec", 0), ("validation-00001.rec", 0)]
    np.testing.assert_allclose(items[0].boxes, [[0, 0.1, 0.2, 0.3, 0.4], [1, 0, 0, 1, 1]], atol=1e-6)
    assert items[0].image.shape == (20, 30, 3) and items[0].image.mean() < 30 < items[1].image.mean()


def test_labels_with_wider_headers_and_objects_and_padding_are_parsed() -> None:
    # header width 4 (two extra header values), object width 6 (an extra per-object value), a -1 padded object
    label = [4, 6, 99, 98, 0, 0.1, 0.1, 0.2, 0.2, 7, -1, 0, 0, 0, 0, 0]
    np.testing.assert_allclose(parse_label(np.array(label), "x")[0], [[0, 0.1, 0.1, 0.2, 0.2]])


@pytest.mark.parametrize("label", [[3.0], [2, 5, 0, 0.1, 0.1, 0.2], [2, 3, 0, 0.1, 0.2]])
def test_bad_labels_name_the_record(label: list[float]) -> None:
    with pytest.raises(RecordFormatError, match=r"^a.rec record 3: label "):
        parse_label(np.array(label), "a.rec record 3")


def test_a_record_that_is_not_an_image_is_named(tmp_path: Path) -> None:
    write_rec(tmp_path / "validation" / "v.rec", [(jpeg(5), np.zeros((0, 5))), (b"not an image", np.zeros((0, 5)))])
    with pytest.raises(RecordFormatError, match=r"v.rec record 1: the request body is not a decodable"):
        list(read_channel(str(tmp_path / "validation")))


def test_a_folder_without_records_is_named(tmp_path: Path) -> None:
    with pytest.raises(ChannelNotFoundError, match=f"no .rec files in file://{tmp_path}/validation"):
        list(read_channel(str(tmp_path / "validation")))


def test_a_corrupt_file_names_the_record(tmp_path: Path) -> None:
    rec = tmp_path / "validation" / "v.rec"
    write_rec(rec, [(jpeg(5), np.zeros((0, 5))), (jpeg(9), np.zeros((0, 5)))])
    data = rec.read_bytes()
    rec.write_bytes(data[: len(data) // 2] + b"\x00" * 64)  # the second frame's magic is gone
    with pytest.raises(RecordFormatError, match=r"v.rec record 1: not a RecordIO frame"):
        list(read_channel(str(tmp_path / "validation")))


def test_curves_need_a_log_or_a_training_job(tmp_path: Path) -> None:
    with pytest.raises(TrainingRecordError, match="training.log does not exist and training.json names no"):
        read_training_curves(str(tmp_path), {"backend": "local"})


def test_sagemaker_curves_come_from_the_jobs_log_streams(tmp_path: Path, training_log: str) -> None:
    """No training.log: the curves are read from the job's CloudWatch streams (moto stands in for AWS)."""
    import time

    import boto3
    from moto import mock_aws

    job = "od-sm-test-1"
    start = int(time.time() * 1000) - 3_600_000  # CloudWatch keeps events of the last 14 days only
    with mock_aws():
        boto3.client("sagemaker", region_name="eu-west-1").create_training_job(
            TrainingJobName=job,
            AlgorithmSpecification={"TrainingImage": "813361260812.dkr.ecr.eu-west-1.amazonaws.com/object-detection:1",
                                    "TrainingInputMode": "File"},
            RoleArn="arn:aws:iam::123456789012:role/sagemaker",
            OutputDataConfig={"S3OutputPath": "s3://bucket/out"},
            ResourceConfig={"InstanceType": "ml.p3.2xlarge", "InstanceCount": 1, "VolumeSizeInGB": 50},
            StoppingCondition={"MaxRuntimeInSeconds": 3600},
        )
        logs = boto3.client("logs", region_name="eu-west-1")
        logs.create_log_group(logGroupName="/aws/sagemaker/TrainingJobs")
        logs.create_log_stream(logGroupName="/aws/sagemaker/TrainingJobs", logStreamName=f"{job}/algo-1-1700000000")
        logs.put_log_events(
            logGroupName="/aws/sagemaker/TrainingJobs", logStreamName=f"{job}/algo-1-1700000000",
            logEvents=[{"timestamp": start + i, "message": line}
                       for i, line in enumerate(training_log.splitlines())],
        )
        curves = read_training_curves(str(tmp_path), {"backend": "sagemaker", "job_name": job, "region": "eu-west-1"})
    assert curves == TrainingCurves.from_log(training_log)
    assert curves.best_epoch() == (2, 0.34)


def test_tuning_trials_are_listed_in_launch_order_with_failed_ones_unscored() -> None:
    record = tuning_record("file:///best")
    trials = tuning_trials(record)
    assert [(t["name"], t["objective"]) for t in trials] == [("tune-001-a", 0.21), ("tune-002-b", 0.34),
                                                            ("tune-003-c", None)]
    assert trials[0]["hyperparameters"] == {"learning_rate": "0.01", "mini_batch_size": "16"}
    assert tuning_objective(record) == "validation:mAP"


def test_a_tuning_folder_without_a_successful_trial_is_named(tmp_path: Path) -> None:
    (tmp_path / "tuning.json").write_text('{"TrainingJobSummaries": []}')
    with pytest.raises(TrainingRecordError, match="tuning.json: no BestTrainingJob with an output_uri"):
        resolve_training(str(tmp_path))
    (tmp_path / "tuning.json").write_text('{"TrainingJobSummaries": [}')
    with pytest.raises(TrainingRecordError, match="tuning.json line 1: not valid JSON"):
        resolve_training(str(tmp_path))


def test_every_path_to_a_model_resolves_to_its_run(tmp_path: Path, model_artifact: str) -> None:
    from include import storage

    root = tmp_path / "training"
    output = make_training_dir(root / "job-1" / "output", model_artifact, None, job="job-1")
    expected = storage.normalize(output)
    for given, how in (
        (root, "the only job under it (job-1)"),
        (root / "job-1", "a training job's folder (its output/)"),
        (output, "a training output folder"),
        (output / "model.tar.gz", "a model archive"),
    ):
        resolved = resolve_training(str(given))
        assert (resolved.training_uri, resolved.model_uri) == (expected, f"{expected}/model.tar.gz"), given
        assert how in resolved.how and resolved.record["TrainingJobName"] == "job-1"
        assert resolved.describe(str(given)).startswith(f"model: {expected}/model.tar.gz (training job job-1)")
    make_training_dir(root / "job-2" / "output", model_artifact, None, job="job-2")
    with pytest.raises(TrainingRecordError, match=r"holds 2 jobs \(job-1, job-2\): pass the one to use"):
        resolve_training(str(root))
    (tmp_path / "elsewhere" / "notes").mkdir(parents=True)
    with pytest.raises(TrainingRecordError, match="is not a training output folder.*; it holds notes"):
        resolve_training(str(tmp_path / "elsewhere"))
    bare = tmp_path / "bare" / "detector.tar.gz"
    bare.parent.mkdir()
    bare.write_bytes((output / "model.tar.gz").read_bytes())
    alone = resolve_training(str(bare))
    assert alone.record == {} and alone.model_uri == storage.normalize(bare)
    assert "without a training record" in alone.how
    with pytest.raises(TrainingRecordError, match="no model archive at"):
        resolve_training(str(tmp_path / "missing.tar.gz"))
