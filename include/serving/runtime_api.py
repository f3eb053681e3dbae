"""SageMaker Runtime's ``InvokeEndpoint`` HTTP API on a local endpoint: its route, headers and error shapes.

``InvokeEndpoint`` is rest-json: ``POST /endpoints/{EndpointName}/invocations`` with the payload as
the body, ``Content-Type`` and ``Accept`` as sent, ``X-Amzn-SageMaker-Inference-Id`` and the other
``X-Amzn-SageMaker-*`` headers, and a SigV4 signature (ignored here: a local endpoint has no IAM).
An answer carries ``x-Amzn-Invoked-Production-Variant`` and ``x-amzn-RequestId``. botocore takes
an error's code from the ``x-amzn-ErrorType`` header and its fields from the JSON body, so
an application's own ``boto3.client("sagemaker-runtime", endpoint_url=...)`` code raises the same
``ValidationError``, ``ModelError`` (with ``OriginalStatusCode`` and ``OriginalMessage``) and
``ServiceUnavailable`` here as on AWS, worded as AWS words them. Shapes read from botocore's
``sagemaker-runtime`` model (2017-05-13).
"""

from __future__ import annotations

import json
import re
import uuid

#: ``POST /endpoints/{EndpointName}/invocations``
ROUTE = re.compile(r"^/endpoints/(?P<name>[^/]+)/invocations$")
VARIANT_HEADER = b"x-amzn-invoked-production-variant"
REQUEST_ID_HEADER = b"x-amzn-requestid"
ERROR_TYPE_HEADER = b"x-amzn-errortype"
INFERENCE_ID_HEADER = "x-amzn-sagemaker-inference-id"
TARGET_VARIANT_HEADER = "x-amzn-sagemaker-target-variant"
#: The production variant of a one-variant endpoint (the pipeline's endpoint configs name it so).
DEFAULT_VARIANT = "AllTraffic"
#: The account a local endpoint names in AWS's "not found" wording.
LOCAL_ACCOUNT = "000000000000"

Headers = list[tuple[bytes, bytes]]


def endpoint_name(path: str) -> str | None:
    """The endpoint an ``InvokeEndpoint`` path names, or None for any other path."""
    match = ROUTE.match(path)
    return match["name"] if match else None


def success_headers(variant: str) -> Headers:
    return [(VARIANT_HEADER, variant.encode()), (REQUEST_ID_HEADER, str(uuid.uuid4()).encode())]


def _error(status: int, code: str, body: dict) -> tuple[int, Headers, bytes]:
    headers = [(ERROR_TYPE_HEADER, code.encode()), (REQUEST_ID_HEADER, str(uuid.uuid4()).encode())]
    return status, headers, json.dumps(body).encode()


def validation_error(message: str) -> tuple[int, Headers, bytes]:
    """400 ``ValidationError``: SageMaker's answer to an unknown endpoint or variant, or a request off its model."""
    return _error(400, "ValidationError", {"message": message})


def unknown_endpoint(name: str) -> tuple[int, Headers, bytes]:
    return validation_error(f"Endpoint {name} of account {LOCAL_ACCOUNT} not found.")


def unknown_variant(name: str, variant: str, served: str) -> tuple[int, Headers, bytes]:
    return validation_error(f"Variant {variant} of endpoint {name} not found (the endpoint serves {served}).")


def service_unavailable(message: str) -> tuple[int, Headers, bytes]:
    """503 ``ServiceUnavailable`` (botocore retries it): the model is loading or no server is reachable."""
    return _error(503, "ServiceUnavailable", {"message": message})


def model_error(status: int, message: str, log_path: str | None = None) -> tuple[int, Headers, bytes]:
    """424 ``ModelError``: the container answered ``status`` with ``message`` (SageMaker's wording)."""
    kind = "client" if status < 500 else "server"
    where = f" See {log_path} for more information." if log_path else ""
    body = {
        "Message": f'Received {kind} error ({status}) from primary with message "{message}".{where}',
        "OriginalStatusCode": status,
        "OriginalMessage": message,
    }
    if log_path:
        body["LogStreamArn"] = log_path
    return _error(424, "ModelError", body)


def translate(status: int, message: str, log_path: str | None = None) -> tuple[int, Headers, bytes]:
    """The InvokeEndpoint answer for the container's error ``status``: 503 while the model loads, else ModelError."""
    if status == 503:
        return service_unavailable(message)
    if status == 413:  # SageMaker refuses payloads over its limit itself, before the container
        return validation_error(message)
    return model_error(status, message, log_path)
