"""A client loop against an endpoint's InvokeEndpoint API: what the zero-downtime check and the bench measure.

Threads of boto3's ``sagemaker-runtime`` client (as an application calls the endpoint), retries off
so that every failure counts, each call recorded with its start, end, the model that answered
(``X-Detection-Model``) and a digest of the answer.
"""

from __future__ import annotations

import hashlib
import threading
import time
from dataclasses import dataclass

import boto3
from botocore.config import Config


@dataclass(frozen=True)
class Call:
    started: float
    ended: float
    model: str | None
    answer: str | None
    error: str | None = None

    @property
    def ms(self) -> float:
        return (self.ended - self.started) * 1000


def runtime_client(url: str):
    return boto3.client(
        "sagemaker-runtime", endpoint_url=url, region_name="us-east-1", aws_access_key_id="x",
        aws_secret_access_key="x", config=Config(retries={"total_max_attempts": 1}, read_timeout=120),
    )  # fmt: skip


class ClientLoop:
    """``threads`` clients invoking ``name`` at ``url`` with ``body`` until :meth:`stop`."""

    def __init__(self, url: str, name: str, body: bytes, threads: int = 4) -> None:
        self.url, self.name, self.body = url, name, body
        self.calls: list[Call] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def __enter__(self) -> ClientLoop:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(180)

    def _run(self) -> None:
        client = runtime_client(self.url)
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                answer = client.invoke_endpoint(EndpointName=self.name, ContentType="image/jpeg", Body=self.body)
                body = answer["Body"].read()
                model = answer["ResponseMetadata"]["HTTPHeaders"].get("x-detection-model")
                call = Call(started, time.monotonic(), model, hashlib.sha256(body).hexdigest())
            except Exception as exc:  # every failure is the finding
                call = Call(started, time.monotonic(), None, None, f"{type(exc).__name__}: {exc}")
            with self._lock:
                self.calls.append(call)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def allowed_models(call: Call, first: str, switches: list[tuple[float, float, str]]) -> set[str]:
    """The models that may have answered ``call``: the one serving at any moment of it, both while a switch ran.

    ``switches`` are ``(started, ended, new model)`` of each release in order, ``first`` served before them.
    """
    allowed, current = set(), first
    segment_start = float("-inf")
    for started, ended, model in switches:
        if call.started <= started and call.ended >= segment_start:
            allowed.add(current)
        if call.started <= ended and call.ended >= started:
            allowed |= {current, model}
        current, segment_start = model, ended
    if call.ended >= segment_start:
        allowed.add(current)
    return allowed
