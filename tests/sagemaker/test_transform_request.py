"""The CreateTransformJob request for the built-in object detector, checked offline against botocore's SageMaker
model (moto accepts bad enums and missing models, so it cannot be the check)."""

from __future__ import annotations

import copy

import pytest

from include.execution import TRANSFORM, validate
from include.sagemaker.naming import RunIdentity
from include.sagemaker.requests import (
    MANIFEST_FILE,
    TransformSettings,
    builtin_image,
    transform_duration_seconds,
    transform_request,
)
from include.sagemaker.validation import RequestValidationError

RUN = RunIdentity("batch_inference", "manual__2026-01-02T03:04:05+00:00", 1)
ROLE = "arn:aws:iam::123456789012:role/SageMakerRole"


def _request(**kwargs) -> dict:
    args = {"model_data_url": "s3://b/models/model.tar.gz", "role_arn": ROLE, "region": "us-east-1",
            "input_uri": "s3://b/out/transform.manifest", "output_uri": "s3://b/out", "settings": TransformSettings(),
            "input_type": MANIFEST_FILE} | kwargs  # fmt: skip
    return transform_request(RUN, **args)


def test_the_request_is_what_sagemaker_takes_for_the_builtin_algorithm() -> None:
    request = _request()
    validate(TRANSFORM, request, backend="sagemaker")
    transform, model = request["Transform"], request["Model"]
    assert transform["TransformJobName"] == RUN.name("transform") and transform["ModelName"] == model["ModelName"]
    assert transform["TransformInput"] == {
        "DataSource": {"S3DataSource": {"S3DataType": "ManifestFile", "S3Uri": "s3://b/out/transform.manifest"}},
        "ContentType": "application/x-image", "CompressionType": "None", "SplitType": "None",
    }  # fmt: skip
    assert transform["TransformOutput"] == {"S3OutputPath": "s3://b/out", "Accept": "application/json",
                                            "AssembleWith": "None"}  # fmt: skip
    assert transform["BatchStrategy"] == "SingleRecord" and transform["MaxPayloadInMB"] == 6
    assert model["PrimaryContainer"] == {
        "Image": builtin_image("us-east-1"),
        "ModelDataUrl": "s3://b/models/model.tar.gz",
    }
    assert {t["Key"] for t in transform["Tags"]} >= {"airflow-dag-id", "airflow-run-id", "detection-run-token"}


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (("TransformInput", "SplitType"), "Lines", "SplitType"),
        (("TransformResources", "InstanceType"), "ml.m5.xlargee", "InstanceType"),
        (("ModelClientConfig", "InvocationsMaxRetries"), 4, "InvocationsMaxRetries"),
        (("TransformOutput", "S3OutputPath"), "file:///tmp/out", "S3OutputPath"),
    ],
)
def test_what_sagemaker_would_refuse_is_refused_offline(path: tuple[str, str], value, message: str) -> None:
    request = copy.deepcopy(_request())
    request["Transform"][path[0]][path[1]] = value
    with pytest.raises(RequestValidationError, match=message):
        validate(TRANSFORM, request, backend="sagemaker")


def test_local_uris_pass_on_the_local_backend_and_the_transform_part_is_required() -> None:
    request = _request(input_uri="file:///data/unlabelled", output_uri="file:///data/out", input_type="S3Prefix",
                       model_data_url="file:///models/model.tar.gz")  # fmt: skip
    validate(TRANSFORM, request, backend="local")
    with pytest.raises(ValueError, match="needs a 'Transform' part"):
        validate(TRANSFORM, {"Model": request["Model"]}, backend="local")


def test_the_wait_covers_every_image_timing_out_on_every_try() -> None:
    settings = TransformSettings(max_concurrent_transforms=4, instance_count=2, invocation_timeout_seconds=60,
                                 invocation_max_retries=1)  # fmt: skip
    transform = _request(settings=settings)
    assert transform_duration_seconds(transform["Transform"], 17) == 60 * 2 * 3  # 17 images, 8 lanes: 3 waves
    assert transform_duration_seconds(transform["Transform"], 0) == 120
