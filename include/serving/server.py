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
from include.serving import contract, runtime_api
from include.serving.inference import RUNTIMES, ModelService
from include.serving.runtime_api import DEFAULT_VARIANT

log = logging.getLogger(__name__)

#: Idle keep-alive connections are kept this long (longer than the 60 s idle timeouts of common clients
#: and load balancers, so the server is not the side that closes a connection a client is about to reuse).
KEEP_ALIVE_S = 75
#: Connections plus in-flight requests; past it uvicorn answers 503 instead of queueing images without bound.
MAX_CONCURRENCY = 64
#: The answer header naming the model that answered (``--model-id``, default its URI).
MODEL_HEADER = b"x-detection-model"
#: nginx's status for a client that went away: logged, nothing sent.
CLIENT_GONE = 499

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
Headers = list[tuple[bytes, bytes]]


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


def _headers(scope: Scope) -> dict[str, str]:
    """The request's headers by lower-case name."""
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}


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


class JsonApp:
    """What the endpoint's ASGI applications share: lifespan hooks, one answer per request, one JSON log line each.

    A subclass answers in :meth:`answer` (``(status, headers, body)``; ``CLIENT_GONE`` sends nothing) and
    may start and stop what it holds in :meth:`startup` and :meth:`shutdown`.
    """

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        started = time.perf_counter()
        status, headers, body = await self.answer(scope, receive)
        if status == CLIENT_GONE:
            self._log(scope, status, 0, started)
            return
        headers = [(b"content-length", b"%d" % len(body)), *headers]
        if not any(key == b"content-type" for key, _ in headers):
            headers.append((b"content-type", b"application/json"))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        self._log(scope, status, len(body), started)

    async def answer(self, scope: Scope, receive: Receive) -> tuple[int, Headers, bytes]:
        raise NotImplementedError

    async def startup(self) -> None:
        """Called once before the first request."""

    async def shutdown(self) -> None:
        """Called once after the last request."""

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await self.startup()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

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


class InferenceApp(JsonApp):
    """The ASGI application: routes, request checks, JSON answers and one structured log line per request.

    Besides the container contract it answers SageMaker Runtime's ``InvokeEndpoint``
    (``POST /endpoints/{name}/invocations``, :mod:`include.serving.runtime_api`) for ``endpoint_name``
    (any name when None), with SageMaker's headers and error shapes. ``model_id`` names the model in every
    answer's ``X-Detection-Model`` header (which model answered, across a switch of the production endpoint).
    """

    def __init__(
        self,
        service: ModelService,
        max_body_bytes: int = contract.DEFAULT_MAX_BODY_BYTES,
        *,
        endpoint_name: str | None = None,
        variant: str = DEFAULT_VARIANT,
        model_id: str | None = None,
        log_path: str | None = None,
    ) -> None:
        if max_body_bytes < 1:
            raise ValueError(f"max_body_bytes must be positive, got {max_body_bytes}")
        self.service = service
        self.max_body_bytes = max_body_bytes
        self.endpoint_name = endpoint_name
        self.variant = variant
        self.log_path = log_path
        self.model_header = (MODEL_HEADER, (model_id or service.model_uri).encode("latin-1", "replace"))

    async def answer(self, scope: Scope, receive: Receive) -> tuple[int, Headers, bytes]:
        name = runtime_api.endpoint_name(scope["path"])
        if name is not None:
            return await self._invoke_endpoint(scope, receive, name)
        return await self._contract(scope, receive)

    async def _contract(self, scope: Scope, receive: Receive) -> tuple[int, Headers, bytes]:
        """The container contract's routes, errors as ``{"error": message}``."""
        try:
            status, body = await self._route(scope, receive)
            return status, [self.model_header] if status == 200 else [], body
        except HTTPError as exc:
            return exc.status, exc.headers, json.dumps({"error": exc.message}).encode()
        except ClientDisconnected:
            return CLIENT_GONE, [], b""
        except Exception:
            log.exception("request failed", extra={"fields": {"path": scope["path"]}})
            message = "internal error while serving the request; see the endpoint log"
            return 500, [], json.dumps({"error": message}).encode()

    async def _invoke_endpoint(self, scope: Scope, receive: Receive, name: str) -> tuple[int, Headers, bytes]:
        """SageMaker Runtime's InvokeEndpoint: the same invocation, SageMaker's headers and error shapes."""
        if scope["method"] != "POST":
            return runtime_api.validation_error(f"{scope['method']} is not InvokeEndpoint; send POST")
        if self.endpoint_name is not None and name != self.endpoint_name:
            return runtime_api.unknown_endpoint(name)
        target = _headers(scope).get(runtime_api.TARGET_VARIANT_HEADER)
        if target and target != self.variant:
            return runtime_api.unknown_variant(name, target, self.variant)
        try:
            body = await self._invoke(scope, receive)
        except HTTPError as exc:
            return runtime_api.translate(exc.status, exc.message, self.log_path)
        except ClientDisconnected:
            return CLIENT_GONE, [], b""
        except Exception:
            log.exception("request failed", extra={"fields": {"path": scope["path"]}})
            return runtime_api.translate(500, "internal error while serving the request", self.log_path)
        return 200, [*runtime_api.success_headers(self.variant), self.model_header], body

    async def startup(self) -> None:
        self.service.start()

    async def shutdown(self) -> None:
        await asyncio.to_thread(self.service.close)

    async def _route(self, scope: Scope, receive: Receive) -> tuple[int, bytes]:
        path, method = scope["path"], scope["method"]
        if path == "/ping":
            if method != "GET":
                raise HTTPError(405, f"{method} is not allowed on /ping", [(b"allow", b"GET")])
            health = {"status": self.service.state, "runtime": self.service.runtime}
            return (200 if self.service.ready else 503), json.dumps(health).encode()
        if path == "/invocations":
            if method != "POST":
                raise HTTPError(405, f"{method} is not allowed on /invocations", [(b"allow", b"POST")])
            return 200, await self._invoke(scope, receive)
        raise HTTPError(
            404,
            f"no route for {path}; the endpoint serves GET /ping, POST /invocations "
            "and POST /endpoints/{name}/invocations (SageMaker Runtime's InvokeEndpoint)",
        )

    async def _invoke(self, scope: Scope, receive: Receive) -> bytes:
        """One invocation's JSON answer; :class:`HTTPError` for what the contract refuses."""
        from include.model_artifact import decode_image

        headers = _headers(scope)
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
            return json.dumps(contract.to_annotations(rows, width, height, depth)).encode()
        return json.dumps(contract.to_prediction(rows)).encode()


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
    *,
    endpoint_name: str | None = None,
    variant: str = DEFAULT_VARIANT,
    model_id: str | None = None,
) -> int:
    """Listen, load the model in the background and serve until SIGTERM/SIGINT; 1 when the model failed to load.

    The socket is bound before the model loads, so a busy port fails at once; ``port_file`` then
    receives ``{"pid", "host", "port"}`` (atomically) for a manager that asked for port 0.
    ``endpoint_name``, ``variant`` and ``model_id``: see :class:`InferenceApp`.
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
    app = InferenceApp(service, max_body_bytes, endpoint_name=endpoint_name, variant=variant, model_id=model_id)
    config = uvicorn.Config(
        app,
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
    parser.add_argument(
        "--endpoint-name", help="the name InvokeEndpoint calls use (POST /endpoints/NAME/invocations; default: any)"
    )
    parser.add_argument("--variant-name", default=DEFAULT_VARIANT, help="the production variant answering")
    parser.add_argument("--model-id", help="names the model in answers' X-Detection-Model header (default: --model)")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    configure_logging(args.log_level)
    try:
        return serve(
            args.model, args.host, args.port, args.max_body_bytes, args.max_batch, args.port_file, args.runtime,
            endpoint_name=args.endpoint_name, variant=args.variant_name, model_id=args.model_id,
        )  # fmt: skip
    except OSError as exc:
        log.error("cannot start: %s", exc)
        return 1


if __name__ == "__main__":
    sys.exit(main())
