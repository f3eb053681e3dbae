"""What a tracking URI may be, where it points, and whether an MLflow server answers there.

``tracking.uri`` is an MLflow server URL (``http://`` / ``https://``) or the ARN of a SageMaker
managed MLflow tracking server or app; ``null`` means the local tracking server
(:mod:`include.tracking.server`). MLflow also takes database and file URIs, but the pipeline logs
from many processes (every Airflow task) and needs the server's artifact and registry rules, so
those are refused with a message saying what to use instead.

:func:`check_reachable` is what ``resolve_config`` runs before any work is paid for: one request,
no retries, a short timeout, and it wants an MLflow-shaped answer, not just an open port (an
offline network can answer 404 for any host). Measured: an ARN without network costs MLflow's own
client ~4 minutes of retries before it fails; this check fails in 0.1 s.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlparse

if TYPE_CHECKING:
    from include.configs import PipelineConfig

ARN_PATTERN = re.compile(
    r"^arn:(?P<partition>aws|aws-us-gov):sagemaker:(?P<region>[a-z]{2}(-gov)?-[a-z]+-\d):(?P<account>\d{12}):"
    r"(?P<resource_type>mlflow-tracking-server|mlflow-app)/(?P<resource_id>[A-Za-z0-9-]+)$"
)
#: Overrides the managed MLflow endpoint of an ARN (as the sagemaker-mlflow plugin reads it; tests point it locally).
CUSTOM_ENDPOINT_ENV = "SAGEMAKER_MLFLOW_CUSTOM_ENDPOINT"
#: The request the check sends: cheap, read-only, and answered by every MLflow version since 2.0.
PROBE_ENDPOINT = "experiments/search"
KEY = "tracking.uri"


@dataclass(frozen=True)
class ManagedMlflow:
    """A SageMaker managed MLflow tracking server or app, from its ARN."""

    arn: str
    partition: str
    region: str
    account: str
    resource_type: str
    resource_id: str

    @property
    def signing_service(self) -> str:
        """The SigV4 service name requests are signed for."""
        return "sagemaker-mlflow" if self.resource_type == "mlflow-tracking-server" else "sagemaker"

    @property
    def arn_header(self) -> dict[str, str]:
        """The header that routes a request to this server."""
        name = (
            "x-mlflow-sm-tracking-server-arn"
            if self.resource_type == "mlflow-tracking-server"
            else "x-sm-mlflow-app-arn"
        )
        return {name: self.arn}

    @property
    def endpoint(self) -> str:
        """``https://<region>.experiments.sagemaker.aws`` (tracking server) or the app's host, unless overridden."""
        if custom := os.environ.get(CUSTOM_ENDPOINT_ENV):
            return custom.rstrip("/")
        if self.resource_type == "mlflow-tracking-server":
            return f"https://{self.region}.experiments.sagemaker.aws"
        return f"https://mlflow.sagemaker.{self.region}.app.aws"


def managed_mlflow(uri: str) -> ManagedMlflow | None:
    """The managed MLflow an ARN names, or None when ``uri`` is not such an ARN."""
    match = ARN_PATTERN.match(uri)
    if match is None:
        return None
    return ManagedMlflow(arn=uri, **{k: v for k, v in match.groupdict().items() if k in ManagedMlflow.__annotations__})


def server_url(uri: str) -> str:
    """The HTTP base URL requests for ``uri`` go to."""
    managed = managed_mlflow(uri)
    return managed.endpoint if managed else uri.rstrip("/")


def form_problem(uri: str) -> str | None:
    """What is wrong with the form of a tracking URI (None when nothing is): checked offline, in ``config show`` too."""
    if uri.startswith("arn:"):
        if managed_mlflow(uri) is None:
            return (
                "not a SageMaker managed MLflow ARN "
                "(arn:aws:sagemaker:<region>:<12-digit account>:mlflow-tracking-server/<name>, or mlflow-app/<id>)"
            )
        return None
    parsed = urlparse(uri)
    if parsed.scheme in ("http", "https"):
        return None if parsed.netloc else "an http(s) URL needs a host (http://host:port)"
    if parsed.scheme in ("", "file") or parsed.scheme.startswith(("sqlite", "postgresql", "mysql", "mssql")):
        return (
            f"the pipeline logs through an MLflow tracking server, not into a {parsed.scheme or 'file'} store: "
            "serve that store with `mlflow server` and give its URL, or leave tracking.uri empty for the local server"
        )
    return f"unsupported scheme {parsed.scheme!r}: use an http(s) URL of an MLflow server or a SageMaker MLflow ARN"


def resolve_uri(cfg: PipelineConfig) -> str:
    """``tracking.uri``, or the URL of the running local tracking server; ``ConfigError`` when neither exists."""
    from include.configs import ConfigError
    from include.tracking.server import local_dir, running_url

    if cfg.tracking.uri:
        return cfg.tracking.uri
    folder = local_dir(cfg)
    url = running_url(folder)
    if url is None:
        raise ConfigError(
            f"invalid configuration:\n  key '{KEY}' = None: no tracking server is configured and the local one "
            f"({folder}) is not running; start it with `detection-pipeline tracking up` (or `detection-pipeline "
            "stack up`), or set tracking.uri (DETECTION__TRACKING__URI) to an MLflow server URL or SageMaker MLflow ARN"
        )
    return url


def check_reachable(uri: str, timeout_s: float) -> None:
    """Raise ``ConfigError`` naming ``uri`` unless an MLflow tracking server answers there within ``timeout_s``."""
    from include.configs import ConfigError
    from include.tracking.rest import TrackingClient, TrackingError

    where = uri if managed_mlflow(uri) is None else f"{uri} ({server_url(uri)})"
    hint = (
        "check the ARN, the region's network access and the credentials (sagemaker-mlflow:* permissions)"
        if managed_mlflow(uri)
        else "start the server (detection-pipeline tracking up, or detection-pipeline stack up) or set "
        "tracking.uri (DETECTION__TRACKING__URI)"
    )
    try:
        with TrackingClient(uri, timeout_s=timeout_s, attempts=1) as client:
            answer = client.call("GET", PROBE_ENDPOINT, params={"max_results": 1})
    except TrackingError as exc:
        raise ConfigError(
            f"invalid configuration:\n  key '{KEY}' = {where!r}: no MLflow tracking server answers there "
            f"({exc}); {hint}"
        ) from None
    if "experiments" not in answer and answer:
        raise ConfigError(
            f"invalid configuration:\n  key '{KEY}' = {where!r}: the server answered, but not as MLflow does "
            f"(keys {sorted(answer)[:5]}); {hint}"
        )


#: How long a presigned UI URL may wait for its first use, and how long the session it opens lasts (SageMaker's limits).
PRESIGNED_URL_SECONDS = 300
PRESIGNED_SESSION_SECONDS = 43200


def managed_ui_url(uri: str, fragment: str = "") -> str:
    """A presigned URL of a managed MLflow's UI (usable once, within 5 minutes), opening at ``fragment``.

    The managed UI signs a browser in through this URL only; it is made when a link is followed
    (the Airflow plugin's route), never stored.
    """
    from include.sagemaker.client import sagemaker_client

    managed = managed_mlflow(uri)
    if managed is None:
        raise ValueError(f"{uri} is not a SageMaker managed MLflow ARN")
    sm = sagemaker_client(managed.region)
    limits = {
        "ExpiresInSeconds": PRESIGNED_URL_SECONDS,
        "SessionExpirationDurationInSeconds": PRESIGNED_SESSION_SECONDS,
    }
    if managed.resource_type == "mlflow-tracking-server":
        answer = sm.create_presigned_mlflow_tracking_server_url(TrackingServerName=managed.resource_id, **limits)
    else:
        answer = sm.create_presigned_mlflow_app_url(Arn=managed.arn, **limits)
    return answer["AuthorizedUrl"] + fragment
