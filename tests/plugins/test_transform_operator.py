"""DetectionTransformOperator against moto's server: the model and job created once per run (a retry takes the
completed job and reuses the model), the wait sized from the manifest's image count, the job stopped on kill."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import boto3
import pytest
from airflow.sdk.exceptions import TaskDeferred
from detection_airflow.transforms import DetectionTransformOperator

from include import storage
from include.sagemaker.naming import RunIdentity
from include.sagemaker.requests import MANIFEST_FILE, TransformSettings, transform_duration_seconds, transform_request
from include.transform.sagemaker_job import prepare
from tests.support.aws_stand_ins import REGION, ROLE_ARN, start_in_progress
from tests.support.sagemaker_stand_ins import RequestLog, registered
from tests.transform.conftest import GOOD, make_photo_folder

AWS = {"aws_conn_id": None, "region_name": REGION}


@pytest.fixture
def builder(s3_bucket: str, tmp_path: Path) -> Any:
    """The request builder of a run whose photographs are in moto's S3 (pre-flight done, manifest written)."""
    photos = make_photo_folder(tmp_path / "unlabelled")
    s3 = boto3.client("s3", region_name=REGION)
    for path in sorted(p for p in photos.rglob("*") if p.is_file()):
        s3.upload_file(str(path), s3_bucket, f"unlabelled/{path.relative_to(photos).as_posix()}")
    output = f"s3://{s3_bucket}/out"
    checked = prepare(f"s3://{s3_bucket}/unlabelled", output, 6 * 1024 * 1024)
    assert checked["passed"] == len(GOOD) and checked["errors"] == 1

    def build(context: Any, run: RunIdentity) -> dict[str, Any]:
        return transform_request(run, model_data_url=f"s3://{s3_bucket}/models/model.tar.gz", role_arn=ROLE_ARN,
                                 region=REGION, input_uri=checked["manifest_uri"], output_uri=output,
                                 settings=TransformSettings(), input_type=MANIFEST_FILE)  # fmt: skip

    return build


def test_a_retry_takes_the_runs_completed_job_and_creates_no_second_model(builder, task_context) -> None:
    sent = RequestLog()
    with registered([("before-send", sent)]):
        first = DetectionTransformOperator(task_id="transform", request_builder=builder, deferrable=False,
                                           check_interval=1, **AWS)  # fmt: skip
        result = first.execute(task_context(1))
        again = DetectionTransformOperator(task_id="transform", request_builder=builder, deferrable=False,
                                           check_interval=1, **AWS)  # fmt: skip
        retried = again.execute(task_context(2))
    assert result["status"] == "Completed" and result["input_type"] == "ManifestFile"
    assert retried["job_name"] == result["job_name"]
    operations = sent.operations("sagemaker")
    assert operations.count("CreateModel") == 1 and operations.count("CreateTransformJob") == 1
    request = builder(None, RunIdentity("detection_pipeline", task_context()["run_id"], 1))
    assert first.max_ingestion_time == transform_duration_seconds(request["Transform"], len(GOOD)) + 3600


def test_killing_the_task_stops_its_transform_job(builder, task_context, stop_calls) -> None:
    with registered([("after-call.sagemaker.CreateTransformJob", start_in_progress)]):
        op = DetectionTransformOperator(task_id="transform", request_builder=builder, deferrable=True, **AWS)
        with pytest.raises(TaskDeferred) as deferred:
            op.execute(task_context())
    name = deferred.value.trigger.job_name
    op.on_kill()
    assert stop_calls.calls == [("StopTransformJob", name)]
    job = boto3.client("sagemaker", region_name=REGION).describe_transform_job(TransformJobName=name)
    assert job["TransformJobStatus"] == "Stopped" and storage.exists(job["TransformInput"]["DataSource"][
        "S3DataSource"]["S3Uri"])  # fmt: skip


def test_a_retry_of_a_killed_worker_reattaches_to_the_running_job(builder, task_context) -> None:
    sent = RequestLog()
    with registered([("after-call.sagemaker.CreateTransformJob", start_in_progress), ("before-send", sent)]):
        names = []
        for try_number in (1, 2):  # try 1 created the job and deferred; then its worker died
            op = DetectionTransformOperator(task_id="transform", request_builder=builder, deferrable=True, **AWS)
            with pytest.raises(TaskDeferred) as deferred:
                op.execute(task_context(try_number))
            names.append(deferred.value.trigger.job_name)
    assert names[0] == names[1] and sent.operations("sagemaker").count("CreateTransformJob") == 1
