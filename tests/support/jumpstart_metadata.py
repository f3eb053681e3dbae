"""JumpStart's model metadata on moto's S3, for the requests built from it (the SDK reads it with boto3).

The manifest and the spec have the shape ``sagemaker.core.jumpstart`` reads (``models_manifest.json``,
``community_models_specs/<id>/specs_v<version>.json``). Their values are illustrative: the real
spec of ``mxnet-od-ssd-512-mobilenet1-0-coco`` cannot be fetched offline, which is why the request
builder takes everything from the SDK's answers and the tests compare against this spec.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.aws_stand_ins import REGION

MODEL_ID = "mxnet-od-ssd-512-mobilenet1-0-coco"
VERSION = "2.0.0"
BUCKET = f"jumpstart-cache-prod-{REGION}"
SCRIPT_KEY = "source-directory-tarballs/mxnet/transfer_learning/od/v1.2.3/sourcedir.tar.gz"
ARTIFACT_KEY = f"mxnet-training/train-{MODEL_ID}.tar.gz"
GPU_IMAGE = f"763104351884.dkr.ecr.{REGION}.amazonaws.com/mxnet-training:1.9.0-gpu-py38"
CPU_IMAGE = f"763104351884.dkr.ecr.{REGION}.amazonaws.com/mxnet-training:1.9.0-cpu-py38"


def model_spec(**changes: Any) -> dict[str, Any]:
    """A JumpStart spec of the SSD MobileNet 1.0 model (``changes`` override its top-level keys)."""
    spec = {
        "model_id": MODEL_ID, "url": "https://cv.gluon.ai/model_zoo/detection.html", "version": VERSION,
        "min_sdk_version": "2.189.0", "training_supported": True, "incremental_training_supported": False,
        "hosting_ecr_specs": {"framework": "mxnet", "framework_version": "1.9.0", "py_version": "py38"},
        "hosting_artifact_key": f"mxnet-od/{MODEL_ID}/artifacts/inference/v1.0.0/",
        "hosting_script_key": "source-directory-tarballs/mxnet/inference/od/v1.2.3/sourcedir.tar.gz",
        "training_ecr_specs": {"framework": "mxnet", "framework_version": "1.9.0", "py_version": "py38"},
        "training_artifact_key": ARTIFACT_KEY,
        "training_script_key": SCRIPT_KEY,
        "hyperparameters": [
            {"name": "epochs", "type": "int", "default": 5, "min": 1, "max": 1000, "scope": "algorithm"},
            {"name": "adam-learning-rate", "type": "float", "default": 0.001, "min": 1e-08, "max": 1,
             "scope": "algorithm"},
            {"name": "batch-size", "type": "int", "default": 4, "min": 1, "max": 1024, "scope": "algorithm"},
            {"name": "sagemaker_submit_directory", "type": "text",
             "default": "/opt/ml/input/data/code/sourcedir.tar.gz", "scope": "container"},
            {"name": "sagemaker_program", "type": "text", "default": "transfer_learning.py", "scope": "container"},
            {"name": "sagemaker_container_log_level", "type": "text", "default": "20", "scope": "container"},
        ],
        "training_instance_type_variants": {
            "regional_aliases": {REGION: {"gpu_ecr_uri_1": GPU_IMAGE, "cpu_ecr_uri_1": CPU_IMAGE}},
            "variants": {"p3": {"regional_properties": {"image_uri": "$gpu_ecr_uri_1"}},
                         "m5": {"regional_properties": {"image_uri": "$cpu_ecr_uri_1"}}},
        },
        "hosting_instance_type_variants": {
            "regional_aliases": {REGION: {"cpu_ecr_uri_1": CPU_IMAGE.replace("training", "inference")}},
            "variants": {"m5": {"regional_properties": {"image_uri": "$cpu_ecr_uri_1"}}},
        },
        "default_training_instance_type": "ml.p3.2xlarge",
        "supported_training_instance_types": ["ml.p3.2xlarge", "ml.m5.xlarge"],
        "training_vulnerable": False, "inference_vulnerable": False, "deprecated": False,
    }
    return {**spec, **changes}


def publish(bucket: str = BUCKET, **changes: Any) -> None:
    """Put the manifest, :func:`model_spec` (with ``changes``) and stand-ins of the script tarball and
    the model artifact into ``bucket`` on the current (moto) S3."""
    import boto3

    key = f"community_models_specs/{MODEL_ID}/specs_v{VERSION}.json"
    s3 = boto3.client("s3", region_name=REGION)
    s3.create_bucket(Bucket=bucket)
    manifest = [{"model_id": MODEL_ID, "version": VERSION, "min_version": "2.189.0", "spec_key": key}]
    s3.put_object(Bucket=bucket, Key="models_manifest.json", Body=json.dumps(manifest))
    s3.put_object(Bucket=bucket, Key=key, Body=json.dumps(model_spec(**changes)))
    for placeholder in (SCRIPT_KEY, ARTIFACT_KEY):  # the operator checks that every input exists
        s3.put_object(Bucket=bucket, Key=placeholder, Body=b"not a real tarball")


@pytest.fixture
def jumpstart(aws: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """JumpStart's metadata bucket on moto (in-process), the SDK's process-wide metadata cache emptied after."""
    from sagemaker.core.jumpstart.accessors import JumpStartModelsAccessor

    monkeypatch.setenv("DISABLE_JUMPSTART_TELEMETRY", "1")
    publish()
    try:
        yield
    finally:
        JumpStartModelsAccessor.reset_cache()
