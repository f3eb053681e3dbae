"""What a tracking URI may be, and ``resolve_config``'s check that an MLflow server answers there."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator

import pytest

from include.configs import ConfigError, load_config
from include.tracking import uri as tracking_uri
from include.tracking.rest import TrackingClient

ARN = "arn:aws:sagemaker:eu-west-1:123456789012:mlflow-tracking-server/detection"


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("http://127.0.0.1:5000", None),
        ("https://mlflow.example.com/prefix", None),
        (ARN, None),
        ("arn:aws:sagemaker:eu-west-1:123456789012:mlflow-app/app-ABC123", None),
        ("arn:aws:sagemaker:eu-west-1:1234:mlflow-tracking-server/x", "not a SageMaker managed MLflow ARN"),
        ("arn:aws:iam::123456789012:role/x", "not a SageMaker managed MLflow ARN"),
        ("sqlite:////tmp/mlflow.db", "not into a sqlite store"),
        ("/tmp/mlruns", "not into a file store"),
        ("file:///tmp/mlruns", "not into a file store"),
        ("htp://host:5000", "unsupported scheme 'htp'"),
        ("http://", "needs a host"),
    ],
)
def test_form_of_a_tracking_uri(value: str, problem: str | None) -> None:
    found = tracking_uri.form_problem(value)
    assert (found is None) if problem is None else (problem in found)


def test_a_malformed_uri_is_a_configuration_error_naming_the_key_offline() -> None:
    with pytest.raises(ConfigError, match=r"key 'tracking.uri' = 'sqlite:////tmp/x.db': the pipeline logs through"):
        load_config(overrides={"tracking": {"uri": "sqlite:////tmp/x.db"}}, environ={})


def test_an_arn_names_its_endpoint_signing_service_and_header(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(tracking_uri.CUSTOM_ENDPOINT_ENV, raising=False)
    managed = tracking_uri.managed_mlflow(ARN)
    assert (managed.region, managed.account, managed.resource_id) == ("eu-west-1", "123456789012", "detection")
    assert managed.endpoint == "https://eu-west-1.experiments.sagemaker.aws"
    assert managed.signing_service == "sagemaker-mlflow"
    assert managed.arn_header == {"x-mlflow-sm-tracking-server-arn": ARN}
    app = tracking_uri.managed_mlflow("arn:aws:sagemaker:us-east-1:123456789012:mlflow-app/app-X1")
    assert (app.endpoint, app.signing_service) == ("https://mlflow.sagemaker.us-east-1.app.aws", "sagemaker")
    assert app.arn_header == {"x-sm-mlflow-app-arn": app.arn}
    assert tracking_uri.managed_mlflow("http://127.0.0.1:5000") is None


def test_a_running_server_passes_the_check(mlflow_server: str) -> None:
    tracking_uri.check_reachable(mlflow_server, timeout_s=5)


def test_a_closed_port_fails_at_once_naming_the_uri_and_the_fix() -> None:
    import socket

    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{sock.getsockname()[1]}"
    with pytest.raises(ConfigError) as err:
        tracking_uri.check_reachable(closed, timeout_s=2)
    message = str(err.value)
    assert f"key 'tracking.uri' = '{closed}'" in message and "connection refused" in message
    assert "detection-pipeline tracking up" in message


@pytest.fixture
def not_mlflow() -> Iterator[str]:
    """An HTTP server that answers every GET with 404 (what an offline network's proxy does for any host)."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_a_server_that_is_not_mlflow_fails_the_check(not_mlflow: str) -> None:
    with pytest.raises(ConfigError, match=r"no MLflow tracking server answers there \(GET experiments/search: HTTP 40"):
        tracking_uri.check_reachable(not_mlflow, timeout_s=2)


def test_an_unset_uri_without_a_local_server_names_how_to_start_one(tmp_path) -> None:
    cfg = load_config(overrides={"tracking": {"local_dir": str(tmp_path / "mlflow")}}, environ={})
    with pytest.raises(ConfigError, match=r"key 'tracking.uri' = None: .*detection-pipeline tracking up"):
        tracking_uri.resolve_uri(cfg)


def test_an_arn_reaches_the_server_its_endpoint_names_with_signed_requests(
    mlflow_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The ARN path, offline: SAGEMAKER_MLFLOW_CUSTOM_ENDPOINT (as the sagemaker-mlflow plugin reads it) points it at
    the local server, which ignores the SigV4 headers the client adds."""
    monkeypatch.setenv(tracking_uri.CUSTOM_ENDPOINT_ENV, mlflow_server)
    tracking_uri.check_reachable(ARN, timeout_s=5)
    with TrackingClient(ARN) as api:
        request = api._http.build_request("GET", f"{api.base}/api/2.0/mlflow/experiments/search?max_results=1")
        api._sign(request)
        assert request.headers["x-mlflow-sm-tracking-server-arn"] == ARN
        assert "/eu-west-1/sagemaker-mlflow/aws4_request" in request.headers["Authorization"]


def test_requests_are_signed_as_the_sagemaker_mlflow_plugin_signs_them(monkeypatch: pytest.MonkeyPatch) -> None:
    """Same request, same credentials, same clock: the plugin's AuthBoto and this client send the same signature."""
    import datetime as dt

    import requests
    from sagemaker_mlflow.auth import AuthBoto

    monkeypatch.setenv(tracking_uri.CUSTOM_ENDPOINT_ENV, "https://mlflow.test")
    frozen = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)

    class Clock(dt.datetime):
        @classmethod
        def now(cls, tz=None):  # noqa: ANN001, ANN206
            return frozen

        @classmethod
        def utcnow(cls):  # noqa: ANN206
            return frozen.replace(tzinfo=None)

    monkeypatch.setattr("botocore.auth.datetime.datetime", Clock)
    body = b'{"experiment_ids": ["1"]}'
    url = "https://mlflow.test/api/2.0/mlflow/runs/search"
    prepared = requests.Request(
        "POST",
        url,
        data=body,
        headers={
            "Content-Type": "application/json",
            "Connection": "keep-alive",
            "x-mlflow-sm-tracking-server-arn": ARN,
        },
    ).prepare()
    theirs = AuthBoto("eu-west-1", "sagemaker-mlflow")(prepared)
    with TrackingClient(ARN) as api:
        request = api._http.build_request("POST", url, content=body, headers={"Content-Type": "application/json"})
        api._sign(request)
    assert request.headers["Authorization"] == theirs.headers["Authorization"]
    assert request.headers["X-Amz-Content-SHA256"] == theirs.headers["X-Amz-Content-SHA256"]


def test_the_managed_ui_url_is_presigned_when_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    from botocore.stub import Stubber

    from include.sagemaker import client as aws

    sm = aws.sagemaker_client("eu-west-1")
    monkeypatch.setattr(aws, "sagemaker_client", lambda region=None: sm)
    with Stubber(sm) as stub:
        stub.add_response(
            "create_presigned_mlflow_tracking_server_url",
            {"AuthorizedUrl": "https://t-1.eu-west-1.experiments.sagemaker.aws/auth?authToken=x"},
            {"TrackingServerName": "detection", "ExpiresInSeconds": 300, "SessionExpirationDurationInSeconds": 43200},
        )
        url = tracking_uri.managed_ui_url(ARN, "#/experiments/1/runs/abc")
    assert url == "https://t-1.eu-west-1.experiments.sagemaker.aws/auth?authToken=x#/experiments/1/runs/abc"


def test_a_run_stops_at_resolve_when_its_tracking_server_does_not_answer(monkeypatch, tmp_path) -> None:
    """Before any work is paid for: nothing is written, and the message names the URI."""
    import socket

    from include import stages

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{sock.getsockname()[1]}"
    monkeypatch.setenv("DETECTION__TRACKING__URI", closed)
    monkeypatch.setenv("DETECTION__STORAGE__BASE_URI", str(tmp_path / "runs"))
    with pytest.raises(ConfigError, match=f"key 'tracking.uri' = '{closed}': no MLflow tracking server answers"):
        stages.resolve({}, "object_detection_pipeline", "manual__1")
    assert not (tmp_path / "runs").exists()
