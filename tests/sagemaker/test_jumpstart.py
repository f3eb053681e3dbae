"""JumpStart's fine-tuning request, built from JumpStart's metadata on moto's S3 and checked against botocore."""

from __future__ import annotations

import json

import pytest

from include.sagemaker.jumpstart import jumpstart_training_request
from include.sagemaker.requests import TrainingSpec
from include.sagemaker.validation import validate_request
from tests.support import jumpstart_metadata as js
from tests.support.aws_stand_ins import BUCKET, REGION, ROLE_ARN

TRAINING = f"s3://{BUCKET}/data/jumpstart/training/"


def _spec(instance_type: str = "ml.p3.2xlarge") -> TrainingSpec:
    return TrainingSpec(role_arn=ROLE_ARN, region=REGION, train_uri=TRAINING, validation_uri=TRAINING,
                        output_uri=f"s3://{BUCKET}/output", instance_type=instance_type, max_runtime_seconds=7200)


def _request(**hyperparameters: str) -> dict:
    return jumpstart_training_request(_spec(), name="js-job", model_id=js.MODEL_ID, model_version=js.VERSION,
                                      hyperparameters=hyperparameters, tags=[{"Key": "backend", "Value": "sagemaker"}])


def test_the_request_comes_from_jumpstarts_metadata(jumpstart) -> None:
    request = _request(epochs="12")
    validate_request("CreateTrainingJob", request)
    assert request["AlgorithmSpecification"] == {"TrainingImage": js.GPU_IMAGE, "TrainingInputMode": "File"}
    hp = request["HyperParameters"]
    assert {k: hp[k] for k in ("epochs", "adam-learning-rate", "batch-size")} == {
        "epochs": "12", "adam-learning-rate": "0.001", "batch-size": "4"}  # the model's defaults, epochs overridden
    assert json.loads(hp["sagemaker_program"]) == "transfer_learning.py"
    assert json.loads(hp["sagemaker_submit_directory"]) == f"s3://{js.BUCKET}/{js.SCRIPT_KEY}"
    assert json.loads(hp["sagemaker_job_name"]) == "js-job" and json.loads(hp["sagemaker_region"]) == REGION
    channels = {c["ChannelName"]: c for c in request["InputDataConfig"]}
    assert list(channels) == ["training", "model"]
    assert channels["training"]["DataSource"]["S3DataSource"]["S3Uri"] == TRAINING
    assert "ContentType" not in channels["training"]
    model = channels["model"]
    assert model["ContentType"] == "application/x-sagemaker-model"
    assert model["DataSource"]["S3DataSource"]["S3Uri"] == f"s3://{js.BUCKET}/{js.ARTIFACT_KEY}"
    tags = {t["Key"]: t["Value"] for t in request["Tags"]}
    assert tags == {"backend": "sagemaker", "sagemaker-sdk:jumpstart-model-id": js.MODEL_ID,
                    "sagemaker-sdk:jumpstart-model-version": js.VERSION}
    assert request["OutputDataConfig"] == {"S3OutputPath": f"s3://{BUCKET}/output"}
    assert request["StoppingCondition"] == {"MaxRuntimeInSeconds": 7200}
    assert "EnableNetworkIsolation" not in request and "MetricDefinitions" not in request["AlgorithmSpecification"]


def test_the_image_follows_the_instance_type(jumpstart) -> None:
    request = jumpstart_training_request(_spec("ml.m5.xlarge"), name="js-cpu", model_id=js.MODEL_ID,
                                         model_version=js.VERSION, hyperparameters={}, tags=[])
    assert request["AlgorithmSpecification"]["TrainingImage"] == js.CPU_IMAGE


def test_an_unknown_hyperparameter_is_refused(jumpstart) -> None:
    with pytest.raises(ValueError, match="has no hyperparameter\\(s\\) learning_rate; it takes adam-learning-rate"):
        _request(learning_rate="0.01")


def test_network_isolation_and_metrics_where_the_spec_asks(jumpstart) -> None:
    metrics = [{"Name": "val_localization_loss", "Regex": "Val_localization=([0-9\\.]+)"}]
    js.publish(training_enable_network_isolation=True, metrics=metrics)
    request = _request()
    validate_request("CreateTrainingJob", request)
    assert request["EnableNetworkIsolation"] is True
    channels = {c["ChannelName"]: c for c in request["InputDataConfig"]}
    assert channels["code"]["DataSource"]["S3DataSource"]["S3Uri"] == f"s3://{js.BUCKET}/{js.SCRIPT_KEY}"
    assert json.loads(request["HyperParameters"]["sagemaker_submit_directory"]) == (
        "/opt/ml/input/data/code/sourcedir.tar.gz")
    assert request["AlgorithmSpecification"]["MetricDefinitions"] == metrics


def test_the_content_bucket_can_be_overridden(jumpstart, monkeypatch) -> None:
    js.publish("my-jumpstart-mirror")
    monkeypatch.setenv("AWS_JUMPSTART_CONTENT_BUCKET_OVERRIDE", "my-jumpstart-mirror")
    request = _request()
    model = next(c for c in request["InputDataConfig"] if c["ChannelName"] == "model")
    assert model["DataSource"]["S3DataSource"]["S3Uri"] == f"s3://my-jumpstart-mirror/{js.ARTIFACT_KEY}"
