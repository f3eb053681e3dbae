"""The production endpoint's stable address: a small reverse proxy that switches model servers without downtime.

One long-lived process owns the endpoint's port; model servers (:mod:`include.serving.server`) run
behind it on free ports. Every request reads the current upstream once and stays bound to it, so a
switch is one assignment: requests already in flight finish on the old server, new ones go to the
new one, and the switch is acknowledged once the old server has no request left (it can then be
stopped). Clients keep their keep-alive connections to this process, which never restarts during a
rollout, so no connection is closed under them.

Why not a port handover (``SO_REUSEPORT``, the new server binding the same port): connections
waiting in the closing listener's accept queue are reset unless ``net.ipv4.tcp_migrate_req`` is on
(it is off by default), uvicorn's graceful shutdown closes idle keep-alive connections a client may
be about to reuse, and both servers answer at once for a while, so "which model answered" is
undefined during the switch. nginx or HAProxy would do the proxying, but neither is installed with
the project, and reloading their configuration is a switch of its own to drive; this is uvicorn and
httpx, which Airflow already brings. It adds one loopback hop: 2.5 ms of the router's CPU per
request, and a median latency 1.05-1.19 times the model server's own on this loaded 2-CPU host
(``bench/bench_endpoint.py --sections production``, 512 px MobileNet SSD).

The admin routes (``GET /-/status``, ``PUT /-/upstream``, ``PUT /-/capture``) are served only on a
Unix socket in the endpoint's state folder (file permissions decide who may switch), never on the
public port. Errors on the InvokeEndpoint path have SageMaker's shapes (:mod:`include.serving.runtime_api`).

Data capture happens here, at the endpoint's front door as on SageMaker: every answered invocation
is offered to one :class:`~include.endpoints.capture.CaptureWriter` whatever model answers it, and a
new model's smoke test (sent to its own address before the switch) is not captured.

Run it with ``python -m include.serving.router --name NAME --upstream URL --model-id ID --port P --admin-socket PATH``.
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
from typing import Any

import httpx

from include import storage
from include.endpoints.capture import CaptureSettings, CaptureWriter
from include.serving import contract, runtime_api
from include.serving.server import (
    CLIENT_GONE,
    KEEP_ALIVE_S,
    ClientDisconnected,
    HTTPError,
    JsonApp,
    Receive,
    Scope,
    bind_socket,
    configure_logging,
    read_body,
)

log = logging.getLogger(__name__)

#: Request headers passed on to the model server (the contract's and SageMaker Runtime's).
FORWARDED = ("content-type", "accept", "content-length")
FORWARDED_PREFIX = "x-amzn-sagemaker-"
#: Response headers not copied back (hop-by-hop, or set by this server).
NOT_COPIED = {"connection", "keep-alive", "transfer-encoding", "content-length", "date", "server"}
#: How long a switch waits for the old server's requests to finish before it is acknowledged anyway.
DRAIN_TIMEOUT_S = 120.0
#: Connections plus in-flight requests the router takes (past it uvicorn answers 503).
MAX_CONCURRENCY = 256


class Upstream:
    """A model server behind the router, with its own connection pool and count of requests in flight."""

    def __init__(self, url: str, model_id: str, generation: int) -> None:
        self.url = url.rstrip("/")
        self.model_id = model_id
        self.generation = generation
        self.inflight = 0
        self.idle = asyncio.Event()
        self.idle.set()
        self.client = httpx.AsyncClient(
            base_url=self.url,
            timeout=httpx.Timeout(120.0, connect=5.0),
            limits=httpx.Limits(max_connections=64, max_keepalive_connections=32, keepalive_expiry=KEEP_ALIVE_S - 15),
        )

    def describe(self) -> dict[str, Any]:
        return {"url": self.url, "model_id": self.model_id, "generation": self.generation, "inflight": self.inflight}


class RouterApp(JsonApp):
    """The ASGI application: public routes forwarded to the current upstream, admin routes on the Unix socket."""

    def __init__(
        self,
        name: str,
        upstream: Upstream,
        max_body_bytes: int = contract.DEFAULT_MAX_BODY_BYTES,
        capture: CaptureSettings | None = None,
    ) -> None:
        self.name = name
        self.current = upstream
        self.max_body_bytes = max_body_bytes
        self.switches = 0
        self.capture: CaptureWriter | None = None
        self.set_capture(capture)
        self._switch_lock: asyncio.Lock | None = None

    def set_capture(self, settings: CaptureSettings | None) -> None:
        """Capture as ``settings`` say from now on (None or 0 %: off); the old writer finishes its queue."""
        old = self.capture
        self.capture = CaptureWriter(settings) if settings is not None and settings.percent > 0 else None
        if old is not None:
            old.close()

    async def answer(self, scope: Scope, receive: Receive) -> tuple[int, list, bytes]:
        if (scope.get("server") or (None, 0))[1] is None:  # a Unix socket has no port: the admin socket
            return await self._admin(scope, receive)
        return await self._public(scope, receive)

    async def startup(self) -> None:
        self._switch_lock = asyncio.Lock()

    async def shutdown(self) -> None:
        await self.current.client.aclose()
        if self.capture is not None:
            await asyncio.to_thread(self.capture.close)

    # --- the public port ------------------------------------------------------------------

    async def _public(self, scope: Scope, receive: Receive) -> tuple[int, list, bytes]:
        path, method = scope["path"], scope["method"]
        runtime = runtime_api.endpoint_name(path) is not None
        if path not in ("/ping", "/invocations") and not runtime:
            message = f"no route for {path}; the endpoint serves GET /ping, POST /invocations and InvokeEndpoint"
            return 404, [], json.dumps({"error": message}).encode()
        try:
            body = b"" if method == "GET" else await read_body(receive, self.max_body_bytes)
        except ClientDisconnected:
            return CLIENT_GONE, [], b""
        except HTTPError as exc:
            if runtime:
                return runtime_api.validation_error(exc.message)
            return exc.status, [], json.dumps({"error": exc.message}).encode()
        upstream = self.current  # bound to this upstream for the whole request
        upstream.inflight += 1
        upstream.idle.clear()
        try:
            answer = await upstream.client.request(
                method,
                path,
                params=scope.get("query_string", b"").decode("latin-1") or None,
                content=body if method != "GET" else None,
                headers=_forwarded(scope),
            )
        except httpx.HTTPError as exc:
            message = f"the model server of endpoint {self.name} is not reachable ({type(exc).__name__})"
            log.warning("%s: %s", message, exc)
            if runtime:
                return runtime_api.service_unavailable(message)
            return 503, [], json.dumps({"error": message}).encode()
        finally:
            upstream.inflight -= 1
            if upstream.inflight == 0:
                upstream.idle.set()
        headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in answer.headers.items()
                   if k.lower() not in NOT_COPIED]  # fmt: skip
        if self.capture is not None and answer.status_code == 200 and method == "POST":
            sent = _forwarded(scope)
            answer_type = answer.headers.get("content-type", "")
            inference_id = sent.get(runtime_api.INFERENCE_ID_HEADER)
            self.capture.offer(body, sent.get("content-type", ""), answer.content, answer_type, inference_id)
        return answer.status_code, headers, answer.content

    # --- the admin socket -----------------------------------------------------------------

    async def _admin(self, scope: Scope, receive: Receive) -> tuple[int, list, bytes]:
        path, method = scope["path"], scope["method"]
        if path == "/-/status" and method == "GET":
            capture = (
                None
                if self.capture is None
                else {**vars(self.capture.settings), "prefix": self.capture.prefix, **self.capture.stats.as_dict()}
            )
            status = {"name": self.name, "switches": self.switches, "upstream": self.current.describe(),
                      "capture": capture}  # fmt: skip
            return 200, [], json.dumps(status).encode()
        if path == "/-/capture" and method == "PUT":
            try:
                request = json.loads(await read_body(receive, 65536))
                settings = None if request is None else capture_settings(self.name, request)
            except (ValueError, TypeError, HTTPError) as exc:
                return 400, [], json.dumps({"error": f"expected capture settings or null: {exc}"}).encode()
            except ClientDisconnected:
                return CLIENT_GONE, [], b""
            await asyncio.to_thread(self.set_capture, settings)
            return 200, [], json.dumps({"capture": request}).encode()
        if path == "/-/upstream" and method == "PUT":
            try:
                request = json.loads(await read_body(receive, 65536))
                url, model_id = str(request["url"]), str(request["model_id"])
            except (ValueError, KeyError, TypeError, HTTPError) as exc:
                return 400, [], json.dumps({"error": f"expected {{'url', 'model_id'}}: {exc}"}).encode()
            except ClientDisconnected:
                return CLIENT_GONE, [], b""
            return 200, [], json.dumps(await self.switch(url, model_id)).encode()
        return 404, [], json.dumps({"error": f"no admin route {method} {path}"}).encode()

    async def switch(self, url: str, model_id: str) -> dict[str, Any]:
        """Send new requests to ``url``; answers once the old upstream has finished its requests in flight."""
        assert self._switch_lock is not None
        async with self._switch_lock:
            old = self.current
            new = Upstream(url, model_id, old.generation + 1)
            self.current = new
            self.switches += 1
            started = time.perf_counter()
            try:
                await asyncio.wait_for(old.idle.wait(), DRAIN_TIMEOUT_S)
                drained = True
            except TimeoutError:
                drained = False
            drain_ms = round((time.perf_counter() - started) * 1000, 1)
            await old.client.aclose()
            fields = {"from": old.describe(), "to": new.describe(), "drain_ms": drain_ms, "drained": drained}
            log.info("switched", extra={"fields": fields})
            return {"previous": old.describe(), "upstream": new.describe(), "drain_ms": drain_ms, "drained": drained}


def capture_settings(name: str, options: dict[str, Any]) -> CaptureSettings:
    """The capture of endpoint ``name`` from ``{"destination", "percent", "json_content_types", "variant"}``."""
    return CaptureSettings(
        destination=str(options["destination"]),
        endpoint=name,
        percent=float(options.get("percent", 100.0)),
        variant=str(options.get("variant", runtime_api.DEFAULT_VARIANT)),
        json_content_types=tuple(options.get("json_content_types") or (contract.JSON_ACCEPT,)),
    )


def _forwarded(scope: Scope) -> dict[str, str]:
    headers = {}
    for key, value in scope["headers"]:
        name = key.decode("latin-1").lower()
        if name in FORWARDED or name.startswith(FORWARDED_PREFIX):
            headers[name] = value.decode("latin-1")
    headers.pop("content-length", None)  # httpx sets it from the body
    return headers


def bind_unix_socket(path: str) -> socket.socket:
    """A listening Unix socket at ``path`` (a stale one from a dead router is replaced), owner-only."""
    if os.path.exists(path):
        os.unlink(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old_umask = os.umask(0o177)
    try:
        sock.bind(path)
    finally:
        os.umask(old_umask)
    sock.listen(64)
    return sock


def serve(
    name: str,
    upstream: str,
    model_id: str,
    admin_socket: str,
    host: str = "127.0.0.1",
    port: int = 8080,
    port_file: str | None = None,
    max_body_bytes: int = contract.DEFAULT_MAX_BODY_BYTES,
    capture: CaptureSettings | None = None,
) -> int:
    """Listen on ``host:port`` and ``admin_socket`` and forward to ``upstream`` until SIGTERM, capturing as asked."""
    import uvicorn

    sock = bind_socket(host, port)
    admin = bind_unix_socket(admin_socket)
    bound_port = sock.getsockname()[1]
    if port_file:
        storage.write_text(port_file, json.dumps({"pid": os.getpid(), "host": host, "port": bound_port}))
    app = RouterApp(name, Upstream(upstream, model_id, 1), max_body_bytes, capture)
    config = uvicorn.Config(
        app, host=host, port=bound_port, lifespan="on", ws="none", log_config=None, access_log=False,
        server_header=False, timeout_keep_alive=KEEP_ALIVE_S, limit_concurrency=MAX_CONCURRENCY,
        timeout_graceful_shutdown=30,
    )  # fmt: skip
    log.info("listening", extra={"fields": {"name": name, "port": bound_port, "upstream": upstream}})
    try:
        with sock, admin:
            uvicorn.Server(config).run(sockets=[sock, admin])
    finally:
        if os.path.exists(admin_socket):
            os.unlink(admin_socket)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m include.serving.router", description=__doc__.split("\n\n")[0])
    parser.add_argument("--name", required=True, help="the production endpoint's name")
    parser.add_argument("--upstream", required=True, help="the model server's URL to start with")
    parser.add_argument("--model-id", required=True, help="what that server serves (reported by /-/status)")
    parser.add_argument("--admin-socket", required=True, help="the Unix socket for /-/status and /-/upstream")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080, help="the endpoint's stable port (0: any free one)")
    parser.add_argument("--port-file", help="write {pid, host, port} here once listening")
    parser.add_argument("--max-body-bytes", type=int, default=contract.DEFAULT_MAX_BODY_BYTES)
    parser.add_argument(
        "--capture", help='capture invocations: JSON {"destination", "percent", "json_content_types"} (default: off)'
    )
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    configure_logging(args.log_level)
    try:
        capture = capture_settings(args.name, json.loads(args.capture)) if args.capture else None
        return serve(args.name, args.upstream, args.model_id, args.admin_socket, args.host, args.port,
                     args.port_file, args.max_body_bytes, capture)  # fmt: skip
    except OSError as exc:
        log.error("cannot start: %s", exc)
        return 1


if __name__ == "__main__":
    sys.exit(main())
