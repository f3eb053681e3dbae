"""The local inference server: SageMaker's container contract (``GET /ping``, ``POST /invocations``) over HTTP.

A raw ASGI application served by uvicorn (already locked in through Airflow 3, with httptools and
uvloop). Why not the standard library's ``ThreadingHTTPServer``: its documentation calls it unfit
for production; out of the box it answered a small JSON error in 44 ms instead of 0.4 ms (Nagle's
algorithm against delayed ACKs, until ``disable_nagle_algorithm`` is set) and it has no idle
timeouts, no chunked request bodies and no graceful shutdown. Once tuned, both add under a
millisecond to a forward pass of 60 ms and more, so the robustness decided (bench/bench_endpoint.py
measures the endpoint against the bare forward pass).

Images are decoded on worker threads; forward passes run one at a time on the model's own thread,
which can batch requests that wait together (``--max-batch``, :mod:`include.serving.inference`).

Run it with ``python -m include.serving.server --model URI [--runtime mxnet|onnxruntime] [--port 8080]``:
``model.tar.gz`` on MXNet, or the ONNX export's ``model.onnx`` on ONNX Runtime (same contract, same answers).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import socket
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs

from include import storage
from include.serving import contract
from include.serving.inference import RUNTIMES, ModelService

log = logging.getLogger(__name__)

#: Idle keep-alive connections are kept this long (longer than the 60 s idle timeouts of common clients
#: and load balancers, so the server is not the side that closes a connection a client is about to reuse).
KEEP_ALIVE_S = 75
#: Connections plus in-flight requests; past it uvicorn answers 503 instead of queueing images without bound.
MAX_CONCURRENCY = 64

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, event and the record's ``fields``."""

    def format(self, record: logging.LogRecord) -> str:
        line = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "event": record.getMessage(),
            **getattr(record, "fields", {}),
        }
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


def configure_logging(level: str = "INFO") -> None:
    """Send every log record (ours and uvicorn's) to stderr as JSON lines."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


class HTTPError(Exception):
    """An error answer: status code, a message for the JSON body, extra headers."""

    def __init__(self, status: int, message: str, headers: list[tuple[bytes, bytes]] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or []


class ClientDisconnected(Exception):
    """The client went away before sending its whole body."""


def media_type(header: str) -> str:
    """The bare, lower-case media type of a Content-Type header (``image/jpeg; q=1`` -> ``image/jpeg``)."""
    return header.split(";", 1)[0].strip().lower()


def wants_annotation(accept: str | None) -> bool:
    """Whether the Accept header asks for the ``annotation=1`` answer; 406 when it accepts no JSON at all."""
    if not accept:
        return False
    for media_range in accept.split(","):
        kind, *raw_params = (part.strip() for part in media_range.split(";"))
        params = {k.strip().lower(): v.strip() for k, _, v in (p.partition("=") for p in raw_params)}
        if params.get("q") in ("0", "0.0", "0.00", "0.000"):
            continue
        kind = kind.lower()
        if kind == contract.JSON_ACCEPT:
            return params.get("annotation") == "1"
        if kind in ("*/*", "application/*"):
            return False
    raise HTTPError(
        406,
        f"cannot answer Accept: {accept}; the endpoint answers {contract.JSON_ACCEPT} or {contract.ANNOTATION_ACCEPT}",
    )


def score_threshold(query_string: bytes) -> float:
    """The optional ``threshold`` query parameter (drop detections scoring below it), 0 when absent."""
    values = parse_qs(query_string.decode("latin-1")).get("threshold")
    if not values:
        return 0.0
    try:
        threshold = float(values[-1])
    except ValueError:
        raise HTTPError(400, f"threshold={values[-1]!r} is not a number") from None
    if not 0.0 <= threshold <= 1.0:
        raise HTTPError(400, f"threshold={threshold} is outside [0, 1]")
    return threshold


async def read_body(receive: Receive, limit: int) -> bytes:
    """Read the request body, answering 413 as soon as it grows past ``limit`` bytes."""
    chunks: list[bytes] = []
    size = 0
    more = True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnected
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise HTTPError(413, f"the request body is over the {limit}-byte limit")
        chunks.append(chunk)
        more = message.get("more_body", False)
    return b"".join(chunks)


class InferenceApp:
    """The ASGI application: routes, request checks, JSON answers and one structured log line per request."""

    def __init__(self, service: ModelService, max_body_bytes: int = contract.DEFAULT_MAX_BODY_BYTES) -> None:
        if max_body_bytes < 1:
            raise ValueError(f"max_body_bytes must be positive, got {max_body_bytes}")
        self.service = service
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        started = time.perf_counter()
        headers: list[tuple[bytes, bytes]] = []
        try:
            status, payload = await self._route(scope, receive)
        except HTTPError as exc:
            status, payload, headers = exc.status, {"error": exc.message}, exc.headers
        except ClientDisconnected:
            self._log(scope, 499, 0, started)
            return
        except Exception:
            log.exception("request failed", extra={"fields": {"path": scope["path"]}})
            status, payload = 500, {"error": "internal error while serving the request; see the endpoint log"}
        body = json.dumps(payload).encode()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body)), *headers],
            }
        )
        await send({"type": "http.response.body", "body": body})
        self._log(scope, status, len(body), started)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self.service.start()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await asyncio.to_thread(self.service.close)
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _route(self, scope: Scope, receive: Receive) -> tuple[int, dict]:
        path, method = scope["path"], scope["method"]
        if path == "/ping":
            if method != "GET":
                raise HTTPError(405, f"{method} is not allowed on /ping", [(b"allow", b"GET")])
            return (200 if self.service.ready else 503), {"status": self.service.state, "runtime": self.service.runtime}
        if path == "/invocations":
            if method != "POST":
                raise HTTPError(405, f"{method} is not allowed on /invocations", [(b"allow", b"POST")])
            return 200, await self._invoke(scope, receive)
        raise HTTPError(404, f"no route for {path}; the endpoint serves GET /ping and POST /invocations")

    async def _invoke(self, scope: Scope, receive: Receive) -> dict:
        from include.model_artifact import decode_image

        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        content_type = media_type(headers.get("content-type", ""))
        if content_type not in contract.CONTENT_TYPES:
            accepted = ", ".join(contract.CONTENT_TYPES)
            raise HTTPError(415, f"content type {content_type or '(none)'!r} is not supported; send {accepted}")
        annotation = wants_annotation(headers.get("accept"))
        threshold = score_threshold(scope.get("query_string", b""))
        if not self.service.ready:
            raise HTTPError(503, f"the model is not ready (state: {self.service.state})")
        declared = headers.get("content-length")
        if declared is not None:
            if not declared.isdigit():
                raise HTTPError(400, f"Content-Length {declared!r} is not a byte count")
            if int(declared) > self.max_body_bytes:
                limit = self.max_body_bytes
                raise HTTPError(413, f"the request body ({declared} bytes) is over the {limit}-byte limit")
        body = await read_body(receive, self.max_body_bytes)
        if not body:
            raise HTTPError(400, "the request body is empty; send the image bytes")
        try:
            image = await asyncio.to_thread(decode_image, body)
        except ValueError as exc:
            raise HTTPError(400, f"{exc} ({len(body)} bytes, content type {content_type})") from None
        detections = await asyncio.wrap_future(self.service.submit(image))
        if threshold > 0.0:
            detections = detections[detections[:, 1] >= threshold]
        rows = detections.tolist()
        if annotation:
            height, width, depth = image.shape
            return contract.to_annotations(rows, width, height, depth)
        return contract.to_prediction(rows)

    @staticmethod
    def _log(scope: Scope, status: int, size: int, started: float) -> None:
        fields = {
            "method": scope["method"],
            "path": scope["path"],
            "status": status,
            "bytes": size,
            "ms": round((time.perf_counter() - started) * 1000, 2),
        }
        log.info("request", extra={"fields": fields})


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (port 0 picks a free one); ``OSError`` names the address."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(1024)
    except OSError as exc:
        sock.close()
        raise OSError(exc.errno, f"cannot listen on {host}:{port}: {exc.strerror}") from exc
    return sock


def serve(
    model_uri: str,
    host: str = "127.0.0.1",
    port: int = 8080,
    max_body_bytes: int = contract.DEFAULT_MAX_BODY_BYTES,
    max_batch: int = 1,
    port_file: str | None = None,
    runtime: str = "mxnet",
) -> int:
    """Listen, load the model in the background and serve until SIGTERM/SIGINT; 1 when the model failed to load.

    The socket is bound before the model loads, so a busy port fails at once; ``port_file`` then
    receives ``{"pid", "host", "port"}`` (atomically) for a manager that asked for port 0.
    """
    import uvicorn

    sock = bind_socket(host, port)
    bound_port = sock.getsockname()[1]
    if port_file:
        storage.write_text(port_file, json.dumps({"pid": os.getpid(), "host": host, "port": bound_port}))
    server: uvicorn.Server | None = None

    def stop_server() -> None:
        if server is not None:
            server.should_exit = True

    service = ModelService(storage.normalize(model_uri), max_batch=max_batch, on_failure=stop_server, runtime=runtime)
    config = uvicorn.Config(
        InferenceApp(service, max_body_bytes),
        host=host,
        port=bound_port,
        lifespan="on",
        ws="none",
        log_config=None,
        access_log=False,
        server_header=False,
        timeout_keep_alive=KEEP_ALIVE_S,
        limit_concurrency=MAX_CONCURRENCY,
        timeout_graceful_shutdown=30,
    )
    server = uvicorn.Server(config)
    fields = {"host": host, "port": bound_port, "pid": os.getpid(), "model": model_uri, "runtime": runtime}
    log.info("listening", extra={"fields": fields})
    with sock:
        server.run(sockets=[sock])
    return 1 if service.state == "failed" else 0


def _positive_int(text: str) -> int:
    """An argparse type: a whole number of at least 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text}")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m include.serving.server", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--model", required=True, help="model.tar.gz (or its unpacked folder), or model.onnx with --runtime onnxruntime"
    )
    parser.add_argument("--runtime", choices=RUNTIMES, default="mxnet", help="what runs the model (default mxnet)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8080, help="port (default 8080 as in the container; 0 = any free)")
    parser.add_argument("--max-body-bytes", type=_positive_int, default=contract.DEFAULT_MAX_BODY_BYTES)
    parser.add_argument(
        "--max-batch",
        type=_positive_int,
        default=1,
        help="most waiting requests run in one forward pass (default 1: one at a time)",
    )
    parser.add_argument("--port-file", help="write {pid, host, port} here once listening")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    configure_logging(args.log_level)
    try:
        return serve(
            args.model, args.host, args.port, args.max_body_bytes, args.max_batch, args.port_file, args.runtime
        )
    except OSError as exc:
        log.error("cannot start: %s", exc)
        return 1


if __name__ == "__main__":
    sys.exit(main())
