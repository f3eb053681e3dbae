"""SageMaker model packages on moto: requests validated offline against botocore's model, created once per
MLflow version, approved or rejected, deployable only when approved; nothing reaches the network."""

from __future__ import annotations

import hashlib

import pytest

from include.sagemaker import model_packages as mp
from include.sagemaker.naming import RunIdentity
from include.sagemaker.requests import builtin_image, deployment_request
from include.sagemaker.validation import RequestValidationError, validate_request
from tests.support.aws_stand_ins import BUCKET, REGION, ROLE_ARN

EVALUATION = b'{"map": 0.61}'


def _request(version: int = 3, **changes) -> dict:
    args = {
        "group": mp.group_name("object_detection_pipeline"),
        "model_data_url": f"s3://{BUCKET}/training/job/output/model.tar.gz",
        "image": builtin_image(REGION),
        "instance_type": "ml.m5.xlarge",
        "evaluation_uri": f"s3://{BUCKET}/evaluation/evaluation.json",
        "evaluation_bytes": EVALUATION,
        "metadata": {
            mp.VERSION_KEY: version,
            "airflow_run_id": "manual__2026-01-02T03:04:05+00:00",
            "map": "0.6100",
        },
        "description": f"object_detection_pipeline version {version}",
        "project": "object_detection_pipeline",
        "generated_by": "airflow:object_detection_pipeline/manual__2026-01-02T03:04:05+00:00",
        "tags": RunIdentity("object_detection_pipeline", "manual__2026-01-02T03:04:05+00:00", 1).tags(),
        **changes,
    }
    return mp.package_request(**args)


def test_group_names_have_no_underscores() -> None:
    assert mp.group_name("object_detection_pipeline") == "object-detection-pipeline"
    assert mp.group_name("__My Model__v2") == "My-Model-v2"
    validate_request("CreateModelPackageGroup", mp.group_request("object-detection-pipeline", "d", []))
    with pytest.raises(RequestValidationError, match="ModelPackageGroupName"):
        validate_request("CreateModelPackageGroup", {"ModelPackageGroupName": "object_detection_pipeline"})


def test_the_package_request_is_what_sagemaker_takes() -> None:
    request = _request()
    spec = request["InferenceSpecification"]
    assert spec["Containers"] == [
        {"Image": builtin_image(REGION), "ModelDataUrl": f"s3://{BUCKET}/training/job/output/model.tar.gz"}
    ]
    assert {"image/jpeg", "image/png"} <= set(spec["SupportedContentTypes"])
    statistics = request["ModelMetrics"]["ModelQuality"]["Statistics"]
    assert statistics["ContentDigest"] == "sha256:" + hashlib.sha256(EVALUATION).hexdigest()
    assert request["ModelApprovalStatus"] == mp.PENDING
    assert request["CustomerMetadataProperties"]["airflow_run_id"] == "manual__2026-01-02T03:04:05+00:00"
    with pytest.raises(RequestValidationError, match="ModelDataUrl"):
        _request(model_data_url="file:///tmp/model.tar.gz")
    with pytest.raises(RequestValidationError, match="S3Uri"):
        _request(evaluation_uri="/tmp/evaluation.json")


def test_a_package_is_made_once_per_version_then_approved_and_deployable(aws) -> None:
    import boto3

    sm = boto3.client("sagemaker", region_name=REGION)
    group = mp.group_request("object-detection-pipeline", "models", [])
    arn = mp.ensure_package(sm, group, _request(3))
    assert arn.endswith(":model-package/object-detection-pipeline/1")
    assert mp.ensure_package(sm, group, _request(3)) == arn  # a retried gate
    other = mp.ensure_package(sm, group, _request(4))
    assert other != arn and mp.find_package(sm, "object-detection-pipeline", 4) == other

    with pytest.raises(mp.ModelPackageError, match="is PendingManualApproval, not Approved: it cannot be deployed"):
        mp.approved_model_data(sm, arn)
    mp.set_approval(sm, arn, mp.APPROVED, "alice: better mAP")
    described = sm.describe_model_package(ModelPackageName=arn)
    assert (described["ModelApprovalStatus"], described["ApprovalDescription"]) == ("Approved", "alice: better mAP")
    assert mp.approved_model_data(sm, arn) == f"s3://{BUCKET}/training/job/output/model.tar.gz"
    mp.set_approval(sm, other, mp.REJECTED, "bob: worse on WBC")
    with pytest.raises(mp.ModelPackageError, match="is Rejected"):
        mp.approved_model_data(sm, other)

    # deployment from the approved package: the model names the package, not an image and a model file
    run = RunIdentity("object_detection_pipeline", "manual__2026-01-02T03:04:05+00:00", 1)
    request = deployment_request(
        run,
        model_data_url="unused",
        role_arn=ROLE_ARN,
        region=REGION,
        instance_type="ml.m5.xlarge",
        keep_until="2026-01-02T04:00:00+00:00",
        model_package_arn=arn,
    )
    assert request["Model"]["PrimaryContainer"] == {"ModelPackageName": arn}
    validate_request("CreateModel", request["Model"])
    sm.create_model(**request["Model"])
    assert sm.describe_model(ModelName=request["Model"]["ModelName"])["PrimaryContainer"]["ModelPackageName"] == arn
