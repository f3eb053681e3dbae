"""MLflow's REST API (2.0) over one HTTP client, for any MLflow server and for SageMaker managed MLflow.

Why not ``mlflow.MlflowClient``: every Airflow task is a fresh process, and importing it costs
1.7-2.3 s of CPU there (6.3 s wall on this machine's 2 shared cores; ``python -c "from mlflow
import MlflowClient"``), some ten times per pipeline run, against a target of under 1 s for all
the tracking a run does. The REST calls the pipeline needs are few and stable (runs, batches,
inputs, registered models, versions, aliases; all there since MLflow 2.4, so SageMaker's managed
servers of older versions answer them too), and ``httpx`` is already loaded in every task process
by Airflow's task runner. The SageMaker ARN form is signed here with botocore's SigV4 exactly as
the sagemaker-mlflow plugin signs it (service ``sagemaker-mlflow``, the ARN header, the body's
SHA-256), because that plugin's package imports ``mlflow`` (2 s) before its signer can be used.
Tests read everything back with ``mlflow.MlflowClient`` itself.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from typing import Any

import httpx

from include.tracking.uri import managed_mlflow, server_url

log = logging.getLogger(__name__)

API_PREFIX = "/api/2.0/mlflow/"
ARTIFACTS_PREFIX = "/api/2.0/mlflow-artifacts/artifacts/"
#: Answers worth another attempt (the request may not have been processed).
RETRY_STATUS = {429, 500, 502, 503, 504}
#: MLflow's error codes the pipeline tells apart.
NOT_FOUND = "RESOURCE_DOES_NOT_EXIST"
ALREADY_EXISTS = "RESOURCE_ALREADY_EXISTS"
INVALID = "INVALID_PARAMETER_VALUE"


class TrackingError(RuntimeError):
    """A tracking call failed: the server's error code and message, or why the server could not be reached."""

    def __init__(self, message: str, code: str = "", status: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.status = status


class TrackingClient:
    """Calls on one tracking URI (http(s) URL or SageMaker MLflow ARN), with bounded retries.

    :param timeout_s: per request.
    :param attempts: tries per call on a connection error or a 429/5xx answer (1: no retry).
    """

    def __init__(self, uri: str, *, timeout_s: float = 30.0, attempts: int = 3) -> None:
        self.uri = uri
        self.base = server_url(uri)
        self.managed = managed_mlflow(uri)
        self.attempts = max(1, attempts)
        self._http = httpx.Client(timeout=timeout_s)
        self._signer: Any = None

    def __enter__(self) -> TrackingClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def call(
        self, method: str, endpoint: str, body: dict[str, Any] | None = None, params: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """``method`` on ``/api/2.0/mlflow/<endpoint>``; the JSON answer, or :class:`TrackingError`."""
        content = None if body is None else json.dumps(body).encode()
        response = self._send(method, API_PREFIX + endpoint, content=content, params=params)
        try:
            answer = response.json() if response.content else {}
        except ValueError:
            raise TrackingError(
                f"{method} {endpoint}: HTTP {response.status_code} with a body that is not JSON "
                f"({response.text[:80]!r})",
                status=response.status_code,
            ) from None
        if response.status_code >= 400:
            code = answer.get("error_code", "") if isinstance(answer, dict) else ""
            message = answer.get("message", response.text[:300]) if isinstance(answer, dict) else response.text[:300]
            message = message or f"HTTP {response.status_code}"
            raise TrackingError(
                f"{method} {endpoint}: {code + ': ' if code else ''}{message}", code, response.status_code
            )
        if not isinstance(answer, dict):
            raise TrackingError(f"{method} {endpoint}: expected a JSON object, got {type(answer).__name__}")
        return answer

    def put_artifact(self, path: str, data: bytes) -> None:
        """Upload one file through a server that proxies artifacts (``mlflow-artifacts:/<path>``)."""
        response = self._send("PUT", ARTIFACTS_PREFIX + path.lstrip("/"), content=data)
        if response.status_code >= 400:
            raise TrackingError(
                f"PUT artifact {path}: HTTP {response.status_code}: {response.text[:300]}", status=response.status_code
            )

    def _send(
        self, method: str, path: str, *, content: bytes | None = None, params: dict[str, Any] | None = None
    ) -> httpx.Response:
        headers = {"Content-Type": "application/json"} if content is not None and path.startswith(API_PREFIX) else {}
        for attempt in range(1, self.attempts + 1):
            request = self._http.build_request(
                method, self.base + path, params=params, content=content, headers=headers
            )
            if self.managed is not None:
                self._sign(request)
            try:
                response = self._http.send(request)
            except httpx.HTTPError as exc:
                if attempt == self.attempts:
                    raise TrackingError(f"{method} {self.base}{path}: {_reason(exc)}") from None
                log.warning("tracking server %s: %s; trying again", self.base, _reason(exc))
            else:
                if response.status_code not in RETRY_STATUS or attempt == self.attempts:
                    return response
                log.warning("tracking server %s answered %s; trying again", self.base, response.status_code)
            time.sleep(float(attempt))
        raise AssertionError("unreachable")

    def _sign(self, request: httpx.Request) -> None:
        """SigV4 headers for managed MLflow, as the sagemaker-mlflow plugin sends them (see the module docstring)."""
        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest

        assert self.managed is not None
        if self._signer is None:
            from include.sagemaker.client import session

            credentials = session(self.managed.region).get_credentials()
            if credentials is None:
                raise TrackingError(f"{self.uri}: no AWS credentials to sign tracking requests with")
            self._signer = SigV4Auth(credentials, self.managed.signing_service, self.managed.region)
        body = request.content or b""
        headers = {
            **{k: v for k, v in request.headers.items() if k.lower() in ("content-type", "content-length")},
            **self.managed.arn_header,
            "X-Amz-Content-SHA256": hashlib.sha256(body).hexdigest(),
        }
        signed = AWSRequest(method=request.method, url=str(request.url), data=body, headers=headers)
        self._signer.add_auth(signed)
        request.headers.update(dict(signed.headers.items()))


def _reason(exc: httpx.HTTPError) -> str:
    """A short cause: refused, timed out, name not resolved..."""
    text = str(exc) or type(exc).__name__
    if isinstance(exc, httpx.ConnectError) and "refused" in text.lower():
        return "connection refused"
    if isinstance(exc, httpx.TimeoutException):
        return f"no answer in time ({type(exc).__name__})"
    return text
