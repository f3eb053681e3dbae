"""SageMaker Runtime's InvokeEndpoint on a local endpoint: an application's boto3 code runs unchanged against it."""

from __future__ import annotations

import json

import boto3
import pytest
from botocore.config import Config

from include.serving import contract
from tests.support.serving_fixtures import CLASSES, TEST_MAX_BODY


@pytest.fixture(scope="module")
def runtime(endpoint):
    """boto3's sagemaker-runtime client pointed at the shared local endpoint (no retries: every answer counts)."""
    return boto3.client(
        "sagemaker-runtime", endpoint_url=endpoint["url"], region_name="us-east-1",
        aws_access_key_id="x", aws_secret_access_key="x", config=Config(retries={"total_max_attempts": 1}),
    )  # fmt: skip


def test_invoke_endpoint_answers_as_sagemaker_does(runtime, endpoint, jpeg_bytes):
    answer = runtime.invoke_endpoint(
        EndpointName="shared", ContentType="image/jpeg", Accept="application/json", Body=jpeg_bytes, InferenceId="r-1"
    )
    assert answer["ContentType"] == "application/json"
    assert answer["InvokedProductionVariant"] == "AllTraffic"
    assert answer["ResponseMetadata"]["RequestId"]
    body = json.loads(answer["Body"].read())
    contract.check_prediction_schema(body, num_classes=len(CLASSES))
    # the same model answers the container contract's route with the same detections
    from include.endpoints.invocation import post_invocation

    assert json.loads(post_invocation(endpoint["url"], jpeg_bytes, "image/jpeg", "application/json")) == body


def test_the_annotation_answer_through_accept(runtime, png_bytes):
    answer = runtime.invoke_endpoint(
        EndpointName="shared", ContentType="image/png", Accept=contract.ANNOTATION_ACCEPT, Body=png_bytes
    )
    body = json.loads(answer["Body"].read())
    contract.check_annotation_schema(body)
    assert body["image_size"] == [{"width": 320, "height": 240, "depth": 3}]


def test_an_unknown_endpoint_is_sagemakers_validation_error(runtime, jpeg_bytes):
    with pytest.raises(runtime.exceptions.ValidationError, match="Endpoint other of account 000000000000 not found"):
        runtime.invoke_endpoint(EndpointName="other", ContentType="image/jpeg", Body=jpeg_bytes)


def test_an_unknown_target_variant_is_a_validation_error(runtime, jpeg_bytes):
    with pytest.raises(runtime.exceptions.ValidationError, match="Variant Canary of endpoint shared not found"):
        runtime.invoke_endpoint(
            EndpointName="shared", ContentType="image/jpeg", Body=jpeg_bytes, TargetVariant="Canary"
        )


@pytest.mark.parametrize(
    ("content_type", "body", "status", "says"),
    [
        ("text/plain", b"hello", 415, "content type 'text/plain' is not supported"),
        ("image/jpeg", b"not a jpeg at all", 400, "17 bytes"),
    ],
)
def test_what_the_model_refuses_is_a_model_error_with_the_original_status(runtime, content_type, body, status, says):
    with pytest.raises(runtime.exceptions.ModelError) as caught:
        runtime.invoke_endpoint(EndpointName="shared", ContentType=content_type, Body=body)
    error = caught.value.response
    assert error["Error"]["Code"] == "ModelError"
    assert error["OriginalStatusCode"] == status
    assert says in error["OriginalMessage"]
    assert error["Error"]["Message"].startswith(f"Received client error ({status}) from primary with message")


def test_a_body_over_the_limit_is_refused_before_the_model(runtime):
    with pytest.raises(runtime.exceptions.ValidationError, match=f"over the {TEST_MAX_BODY}-byte limit"):
        runtime.invoke_endpoint(EndpointName="shared", ContentType="image/jpeg", Body=b"\xff" * (TEST_MAX_BODY + 1))


def test_a_get_on_the_invocations_path_is_refused(endpoint):
    import urllib.error
    import urllib.request

    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(f"{endpoint['url']}/endpoints/shared/invocations", timeout=10)
    assert caught.value.code == 400
    assert caught.value.headers["x-amzn-errortype"] == "ValidationError"
