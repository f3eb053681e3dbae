"""The RecordIO shard's CreateProcessingJob request, checked against botocore's SageMaker model (offline)."""

from __future__ import annotations

import json
import re

import botocore.session
import pytest

from include.configs import load_config
from include.execution import PROCESSING, validate
from include.preprocess import shard_job
from include.run_layout import RunLayout
from include.sagemaker.naming import RunIdentity
from include.sagemaker.requests import RequestError, max_duration_seconds, shard_processing_request
from include.stages import RunContext
from include.stages import shard_processing_request as stage_request

RUN = RunIdentity("object_detection_pipeline", "scheduled__2026-01-02T03:04:05.123456+00:00", 2)
MODEL = botocore.session.get_session().get_service_model("sagemaker")
IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/detection-pipeline:1.0"
BASE = "s3://bucket/object-detection/object_detection_pipeline/run/recordio"


def _spec(shard: int = 3, output: str = BASE) -> dict:
    return {
        "shard": shard, "shards": 8, "output_uri": output, "work_uri": f"{output}/_shards/shard-{shard:05d}/work.json",
        "options": {"resize": 256, "quality": 95, "flip": "train", "label_width": 350, "decoder": "fast"},
        "workers": None,
    }  # fmt: skip


def test_the_request_is_valid_and_runs_the_shard_job_on_the_image() -> None:
    spec = _spec()
    request = shard_processing_request(
        spec, name=RUN.name("shard-3"), role_arn="arn:aws:iam::123456789012:role/R", image_uri=IMAGE,
        shard_uri=f"{BASE}/_shards/shard-00003", tags=RUN.tags(), instance_type="ml.c5.2xlarge",
    )  # fmt: skip
    validate(PROCESSING, request, backend="sagemaker")
    name_shape = MODEL.shape_for("ProcessingJobName").metadata
    assert re.fullmatch(name_shape["pattern"], request["ProcessingJobName"]) and len(request["ProcessingJobName"]) <= 63
    # named after the run, not the try: a retry re-attaches to the job (include.reattach)
    assert request["ProcessingJobName"].startswith("shard-3-") and not request["ProcessingJobName"].endswith("-t2")
    app = request["AppSpecification"]
    assert app["ImageUri"] == IMAGE and app["ContainerEntrypoint"] == ["python", "-m", "include.preprocess.shard_job"]
    (work,) = request["ProcessingInputs"]
    (output,) = request["ProcessingOutputConfig"]["Outputs"]
    assert work["S3Input"]["S3Uri"] == spec["work_uri"] and output["S3Output"]["S3Uri"] == f"{BASE}/_shards/shard-00003"
    assert output["S3Output"]["S3UploadMode"] == "EndOfJob"
    for local in (work["S3Input"]["LocalPath"], output["S3Output"]["LocalPath"]):
        assert local.startswith("/opt/ml/processing/")  # SageMaker's rule for processing paths
    assert request["ProcessingResources"]["ClusterConfig"] == {
        "InstanceCount": 1, "InstanceType": "ml.c5.2xlarge", "VolumeSizeInGB": 30,
    }  # fmt: skip
    assert max_duration_seconds(request) == 3600

    # the arguments are what the container's entry point reads: the work list and output where SageMaker puts them
    args = app["ContainerArguments"]
    assert all(len(a) <= 256 for a in args)
    values = dict(zip(args[::2], args[1::2], strict=True))
    assert values["--work"] == f"{work['S3Input']['LocalPath']}/work.json"
    assert values["--output"] == output["S3Output"]["LocalPath"]
    assert values["--shard-uri"] == output["S3Output"]["S3Uri"]
    assert '"shard":3,"shards":8' in values["--spec"]


def test_what_cannot_be_a_container_argument_is_refused_by_name() -> None:
    long_base = "s3://bucket/" + "x" * 260
    with pytest.raises(RequestError, match="longer than 256 characters"):
        shard_processing_request(
            _spec(output=long_base), name=RUN.name("shard-3"), role_arn="arn:aws:iam::123456789012:role/R",
            image_uri=IMAGE, shard_uri=f"{long_base}/_shards/shard-00003", tags=[],
        )  # fmt: skip
    bad = shard_processing_request(
        _spec(), name=RUN.name("shard-3"), role_arn="arn:aws:iam::123456789012:role/R", image_uri=IMAGE,
        shard_uri=f"{BASE}/_shards/shard-00003", tags=[], instance_type="m5.large",
    )  # fmt: skip
    with pytest.raises(ValueError, match="InstanceType"):
        validate(PROCESSING, bad, backend="sagemaker")


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, None),  # local backend
        ({"DETECTION__BACKEND": "sagemaker"}, None),  # processing off: the worker builds the shard
        ({"DETECTION__BACKEND": "sagemaker", "DETECTION__SAGEMAKER__SHARD_PROCESSING__ENABLED": "true",
          "DETECTION__SAGEMAKER__SHARD_PROCESSING__IMAGE_URI": IMAGE}, IMAGE),
        ({"DETECTION__SAGEMAKER__SHARD_PROCESSING__ENABLED": "true",
          "DETECTION__SAGEMAKER__SHARD_PROCESSING__IMAGE_URI": IMAGE}, None),  # local backend: never a job
    ],
)  # fmt: skip
def test_the_stage_asks_for_a_job_only_on_sagemaker_with_processing_on(environ: dict, expected: str | None) -> None:
    config = load_config(environ={"DETECTION__SAGEMAKER__ROLE_ARN": "arn:aws:iam::123456789012:role/R",
                                  "DETECTION__SAGEMAKER__BUCKET": "bucket", **environ})  # fmt: skip
    ctx = RunContext(config, RunLayout.create("s3://bucket/object-detection", RUN.dag_id, RUN.run_id), RUN.dag_id,
                     RUN.run_id)  # fmt: skip
    spec = _spec(output=ctx.layout.recordio)
    request = stage_request(ctx, RUN, spec)
    assert (request and request["AppSpecification"]["ImageUri"]) == expected
    if request:
        assert request["ProcessingOutputConfig"]["Outputs"][0]["S3Output"]["S3Uri"] == (
            f"{ctx.layout.recordio}/_shards/shard-00003"
        )


def test_processing_needs_the_image() -> None:
    with pytest.raises(ValueError, match="shard_processing.image_uri"):
        load_config(environ={"DETECTION__SAGEMAKER__SHARD_PROCESSING__ENABLED": "true"})


def test_the_container_reads_back_what_the_request_passes() -> None:
    spec = _spec()
    args = shard_job.build_parser().parse_args(shard_job.arguments(spec, f"{BASE}/_shards/shard-00003"))
    assert (args.work, args.output) == (f"{shard_job.WORK_FOLDER}/work.json", shard_job.OUTPUT_FOLDER)
    assert json.loads(args.spec) == {"shard": 3, "shards": 8, "options": spec["options"]}
