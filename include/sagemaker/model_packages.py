"""SageMaker model packages: the promoted model as a versioned package in the DAG's model package group.

On the sagemaker backend a model that wins the promotion gate becomes a package (CreateModelPackage
with the object-detection image, its ``model.tar.gz``, ``image/jpeg`` / ``image/png`` content
types, ``evaluation.json`` as ModelMetrics), pending approval; the approval (a person in the
Airflow UI, or ``promotion.approval: auto``) sets it ``Approved`` or ``Rejected``, and deployment
creates its model from the approved package (``PrimaryContainer.ModelPackageName``). Every request
is validated offline against botocore's model first (:func:`validate_request`).

Group names allow no underscores (``[a-zA-Z0-9](-*[a-zA-Z0-9])*``): the registered model's name is
slugged with hyphens. A retried task finds its package again by the MLflow model version recorded
in ``CustomerMetadataProperties`` (``ClientToken`` idempotency is not relied on: it lasts hours on
SageMaker and not at all on moto).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from typing import Any

from include.sagemaker.client import is_missing_error, paged
from include.sagemaker.naming import tag_value
from include.sagemaker.validation import validate_request

CONTENT_TYPES = ["image/jpeg", "image/png", "application/x-image"]
RESPONSE_TYPES = ["application/json"]
TRANSFORM_INSTANCE_TYPES = ["ml.m5.xlarge"]
PENDING, APPROVED, REJECTED = "PendingManualApproval", "Approved", "Rejected"
#: The MLflow model version a package was made from (its idempotency key).
VERSION_KEY = "mlflow_model_version"
MAX_GROUP_NAME = 63


class ModelPackageError(ValueError):
    """A package that cannot be deployed (not approved) or found."""


def group_name(registered_model: str) -> str:
    """The model package group of a registered model: its name with hyphens for anything else."""
    name = re.sub(r"[^A-Za-z0-9]+", "-", registered_model).strip("-")[:MAX_GROUP_NAME].strip("-")
    if not name:
        raise ValueError(f"registered model {registered_model!r} gives no model package group name")
    return name


def group_request(name: str, description: str, tags: list[dict[str, str]]) -> dict[str, Any]:
    request = {"ModelPackageGroupName": name, "ModelPackageGroupDescription": description[:1024], "Tags": tags}
    validate_request("CreateModelPackageGroup", request)
    return request


def package_request(
    *,
    group: str,
    model_data_url: str,
    image: str,
    instance_type: str,
    evaluation_uri: str,
    evaluation_bytes: bytes,
    metadata: Mapping[str, Any],
    description: str,
    project: str,
    generated_by: str,
    tags: list[dict[str, str]],
) -> dict[str, Any]:
    """A versioned CreateModelPackage request, pending manual approval."""
    request = {
        "ModelPackageGroupName": group,
        "ModelPackageDescription": description[:1024],
        "InferenceSpecification": {
            "Containers": [{"Image": image, "ModelDataUrl": model_data_url}],
            "SupportedContentTypes": CONTENT_TYPES,
            "SupportedResponseMIMETypes": RESPONSE_TYPES,
            "SupportedRealtimeInferenceInstanceTypes": [instance_type],
            "SupportedTransformInstanceTypes": TRANSFORM_INSTANCE_TYPES,
        },
        "ModelMetrics": {
            "ModelQuality": {
                "Statistics": {
                    "ContentType": "application/json",
                    "S3Uri": evaluation_uri,
                    "ContentDigest": "sha256:" + hashlib.sha256(evaluation_bytes).hexdigest(),
                }
            }
        },
        "ModelApprovalStatus": PENDING,
        "CustomerMetadataProperties": {key: tag_value(str(value)) for key, value in metadata.items()},
        "MetadataProperties": {"ProjectId": project[:1024], "GeneratedBy": generated_by[:1024]},
        "Domain": "COMPUTER_VISION",
        "Task": "OBJECT_DETECTION",
        "Tags": tags,
    }
    validate_request("CreateModelPackage", request)
    return request


def ensure_group(sm: Any, request: Mapping[str, Any]) -> None:
    """Create the group unless it exists (SageMaker refuses a second CreateModelPackageGroup)."""
    from botocore.exceptions import ClientError

    try:
        sm.describe_model_package_group(ModelPackageGroupName=request["ModelPackageGroupName"])
        return
    except ClientError as err:
        if not is_missing_error(err):
            raise
    sm.create_model_package_group(**request)


def find_package(sm: Any, group: str, model_version: int) -> str | None:
    """The ARN of the group's package made from MLflow version ``model_version``, or None."""
    for summary in paged(
        sm, "list_model_packages", "ModelPackageSummaryList", ModelPackageGroupName=group, ModelPackageType="Versioned"
    ):
        arn = summary["ModelPackageArn"]
        described = sm.describe_model_package(ModelPackageName=arn)
        if (described.get("CustomerMetadataProperties") or {}).get(VERSION_KEY) == str(model_version):
            return arn
    return None


def ensure_package(sm: Any, group: Mapping[str, Any], request: Mapping[str, Any]) -> str:
    """The package of ``request``'s MLflow version: found again, or created (with its group); its ARN."""
    ensure_group(sm, group)
    version = int(request["CustomerMetadataProperties"][VERSION_KEY])
    existing = find_package(sm, request["ModelPackageGroupName"], version)
    if existing is not None:
        return existing
    return sm.create_model_package(**request)["ModelPackageArn"]


def set_approval(sm: Any, arn: str, status: str, description: str) -> None:
    """Set the package's approval status (``Approved`` / ``Rejected``) with why."""
    request = {"ModelPackageArn": arn, "ModelApprovalStatus": status, "ApprovalDescription": description[:1024]}
    validate_request("UpdateModelPackage", request)
    sm.update_model_package(**request)


def approved_model_data(sm: Any, arn: str) -> str:
    """The model archive of an approved package; :class:`ModelPackageError` unless it is ``Approved``.

    SageMaker refuses to deploy a versioned package that is not approved (moto does not): checked here.
    """
    described = sm.describe_model_package(ModelPackageName=arn)
    status = described.get("ModelApprovalStatus")
    if status != APPROVED:
        raise ModelPackageError(f"model package {arn} is {status}, not {APPROVED}: it cannot be deployed")
    return described["InferenceSpecification"]["Containers"][0]["ModelDataUrl"]
