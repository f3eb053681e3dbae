"""The RecordIO shard operator on moto's server: one Processing job per shard; its files merge as a local build."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from detection_airflow.shards import DetectionShardOperator

from include import storage
from include.preprocess.recordio import build_recordio, merge_shards, plan_shards, shard_uri
from include.sagemaker.naming import RunIdentity
from include.sagemaker.requests import shard_processing_request
from tests.support.aws_stand_ins import BUCKET, REGION, ROLE_ARN
from tests.support.recordio_data import bccd_rows, write_dataset
from tests.support.sagemaker_stand_ins import ProcessingContainer, RequestLog, moto_server, registered
from tests.support.shared_data import BCCD

AWS = {"aws_conn_id": None, "region_name": REGION}
IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/detection-pipeline:test"
OUTPUT = f"s3://{BUCKET}/runs/dag/run/recordio"
OPTIONS = {"resize": 128, "quality": 90, "flip": "train", "decoder": "fast"}


@pytest.fixture
def moto_s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    with moto_server() as url:
        monkeypatch.setenv("AWS_ENDPOINT_URL", url)
        boto3.client("s3", region_name=REGION).create_bucket(Bucket=BUCKET)
        yield url


def _builder(spec: dict[str, Any]):
    def build(context: Any, run: RunIdentity) -> dict[str, Any]:
        return shard_processing_request(
            spec, name=run.name(f"shard-{spec['shard']}"), role_arn=ROLE_ARN, image_uri=IMAGE,
            shard_uri=shard_uri(OUTPUT, spec["shard"]), tags=run.tags(),
        )  # fmt: skip

    return build


def _sha256(uri: str) -> str:
    return hashlib.sha256(storage.read_bytes(uri)).hexdigest()


def test_each_shard_is_one_processing_job_and_the_shards_merge_as_a_local_build(
    moto_s3: str, task_context, tmp_path: Path
) -> None:
    if not BCCD.is_dir():
        pytest.skip(f"the BCCD data set is not at {BCCD}")
    rows = bccd_rows([f"BloodImage_{i:05d}" for i in (0, 1, 2)], "train")
    rows += bccd_rows([f"BloodImage_{i:05d}" for i in (4, 5)], "validation")
    table = write_dataset(BCCD, tmp_path / "table", rows, {0: "RBC", 1: "WBC", 2: "Platelets"}).table_uri
    container, sent = ProcessingContainer(REGION), RequestLog()
    with registered([("after-call.sagemaker.CreateProcessingJob", container), ("before-send", sent)]):
        specs = plan_shards(table, OUTPUT, 2, workers=1, **OPTIONS)
        results = [
            DetectionShardOperator(
                task_id="build_recordio_shard", spec=spec, backend="sagemaker", request_builder=_builder(spec),
                deferrable=True, check_interval=1, **AWS,
            ).execute(task_context())
            for spec in specs
        ]  # fmt: skip
        merged = merge_shards(OUTPUT, results)
        summary = json.loads(storage.read_text(merged["summary_uri"]))

    run = RunIdentity("detection_pipeline", task_context()["run_id"], 1)
    names = [run.name("shard-0"), run.name("shard-1")]
    assert sent.operations("sagemaker").count("CreateProcessingJob") == 2 and container.jobs == names
    assert [r["processing_job"] for r in results] == names
    sagemaker = boto3.client("sagemaker", region_name=REGION)
    for spec, name in zip(specs, names, strict=True):
        job = sagemaker.describe_processing_job(ProcessingJobName=name)
        assert job["ProcessingJobStatus"] == "Completed" and job["AppSpecification"]["ImageUri"] == IMAGE
        assert job["ProcessingInputs"][0]["S3Input"]["S3Uri"] == spec["work_uri"]
        assert job["ProcessingOutputConfig"]["Outputs"][0]["S3Output"]["S3Uri"] == shard_uri(OUTPUT, spec["shard"])
    assert all(r["channels"]["train"]["uri"].startswith(f"{OUTPUT}/_shards/") for r in results)

    # the same bytes as the whole build in one process on this machine
    local = tmp_path / "local"
    build_recordio(table, str(local), workers=1, **OPTIONS)
    expected = json.loads((local / "recordio.json").read_text())["channels"]
    for split, channel in summary["channels"].items():
        assert channel["files"] == expected[split]["files"], split
        assert _sha256(f"{OUTPUT}/{split}/{split}.rec") == expected[split]["files"][f"{split}.rec"]["sha256"]


def test_off_or_on_the_local_backend_the_task_builds_the_shard_itself(task_context, tmp_path: Path) -> None:
    if not BCCD.is_dir():
        pytest.skip(f"the BCCD data set is not at {BCCD}")
    rows = bccd_rows(["BloodImage_00000"], "train") + bccd_rows(["BloodImage_00004"], "validation")
    table = write_dataset(BCCD, tmp_path / "table", rows, {0: "RBC", 1: "WBC", 2: "Platelets"}).table_uri
    (spec,) = plan_shards(table, str(tmp_path / "recordio"), 1, workers=1, **OPTIONS)
    asked = []
    for backend, builder in (("local", _builder(spec)), ("sagemaker", lambda context, run: asked.append(1))):
        op = DetectionShardOperator(task_id="s", spec=spec, backend=backend, request_builder=builder, **AWS)
        result = op.execute(task_context())
        assert result["shard"] == 0 and result["channels"]["train"]["records"] == 2  # the image and its mirror
    assert asked == [1]  # the local backend never asks for a request
