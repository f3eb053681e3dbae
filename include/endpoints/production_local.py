"""The local production endpoint: a router on the stable port, model servers behind it, switched without downtime.

Recorded like every local endpoint (:mod:`include.endpoints.local`): the router as ``<name>``
(``kind: production``, its URL is the endpoint's), each model server as ``<name>--g<generation>``
(``kind: production-upstream``). :func:`switch_to` is a rollout's local half:

1. start the new model as generation N+1 on a free port (the old one keeps serving);
2. smoke-test the new server at its own URL; a failure stops it and raises, nothing else changes;
3. point the router at it (``PUT /-/upstream`` on the admin socket, :mod:`include.serving.router`),
   which answers once the old server has finished its requests in flight;
4. stop the old server.

The first rollout starts the router too. A router found dead (the machine rebooted) is started
again on the same port with the new model.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from include.endpoints import local, processes
from include.endpoints.errors import EndpointError, EndpointStartError
from include.project import PROJECT_ROOT

log = logging.getLogger(__name__)

#: ``(url) -> summary``: the smoke test a new model server must pass before it takes traffic.
SmokeTest = Callable[[str], dict[str, Any]]
#: Unix socket paths are limited to 107 bytes.
MAX_SOCKET_PATH = 100


class ProductionSwitchError(EndpointError):
    """A new model did not start or failed its smoke test; the endpoint still serves the old one."""


def upstream_name(name: str, generation: int) -> str:
    return f"{name}--g{generation}"


def admin_socket(root: Path, name: str) -> str:
    """The router's admin socket: in the state folder, under a short name (socket paths are short)."""
    path = str(root / f".{hashlib.sha256(name.encode()).hexdigest()[:12]}.sock")
    if len(path) > MAX_SOCKET_PATH:
        raise ValueError(f"{path}: the endpoint state folder's path is too long for a Unix socket; use a shorter one")
    return path


def admin_call(state: Mapping[str, Any], method: str, path: str, body: Mapping[str, Any] | None = None) -> dict:
    """A request to the router's admin socket; its JSON answer."""
    import httpx

    transport = httpx.HTTPTransport(uds=state["admin_socket"])
    with httpx.Client(transport=transport, base_url="http://router", timeout=300.0) as client:
        content = json.dumps(body).encode() if method == "PUT" else None  # PUT null is a request too (capture off)
        answer = client.request(method, path, content=content, headers={"content-type": "application/json"})
    if answer.status_code != 200:
        what = f"router of {state['name']} answered {answer.status_code} to {method} {path}"
        raise EndpointError(f"{what}: {answer.text}")
    return answer.json()


def production_state(root: Path, name: str) -> dict[str, Any] | None:
    """The router's recorded state (with ``alive``), or None when the endpoint was never created here."""
    state = local.describe_endpoint(name, root)
    if state is None:
        return None
    if state.get("kind") != local.PRODUCTION_KIND:
        raise EndpointError(f"endpoint {name} is a per-run endpoint, not a production endpoint; pick another name")
    return {**state, "alive": local.is_alive(state)}


def _start_router(
    root: Path, name: str, upstream: Mapping[str, Any], model_id: str, host: str, port: int | None,
    capture: Mapping[str, Any] | None, env: Mapping[str, str] | None,
) -> dict[str, Any]:  # fmt: skip
    """Start the router in front of ``upstream`` and wait until its ``/ping`` answers 200."""
    port_file = root / f".{name}.port"
    port_file.unlink(missing_ok=True)
    socket_path = admin_socket(root, name)
    log_path = root / f"{name}.log"
    cmd = [
        sys.executable, "-m", "include.serving.router", "--name", name, "--upstream", upstream["url"],
        "--model-id", model_id, "--admin-socket", socket_path, "--host", host, "--port", str(port or 0),
        "--port-file", str(port_file), "--max-body-bytes", str(upstream["max_body_bytes"]),
        *(["--capture", json.dumps(capture)] if capture else []),
    ]  # fmt: skip
    child_env = dict(os.environ if env is None else env)
    child_env["PYTHONPATH"] = os.pathsep.join(p for p in (str(PROJECT_ROOT), child_env.get("PYTHONPATH")) if p)
    pid, create_time = processes.spawn_detached(cmd, log_path, child_env)
    state = {
        "name": name, "kind": local.PRODUCTION_KIND, "host": host, "port": port, "url": None, "pid": pid,
        "create_time": create_time, "log_path": str(log_path), "admin_socket": socket_path,
        "started_at": datetime.now(UTC).isoformat(), "keep_until": None, "model_uri": upstream["model_uri"],
        "upstream": upstream["name"], "generation": upstream["generation"], "model_id": model_id,
        "capture": capture,
    }  # fmt: skip
    local.write_state(root, state)
    try:
        return local.wait_ready(root, state, port_file, time.monotonic() + 60.0)
    except EndpointStartError as exc:
        local.stop_recorded(root, state, grace_s=5.0)
        tail = local.log_tail(str(log_path))
        raise EndpointStartError(f"router of {name}: {exc}; log {log_path}:\n{tail}") from None


def switch_to(
    state_dir: str | os.PathLike[str],
    name: str,
    model_uri: str,
    model_id: str,
    smoke: SmokeTest,
    *,
    host: str = "127.0.0.1",
    port: int | None = 8080,
    runtime: str = "mxnet",
    max_body_bytes: int,
    capture: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
    ready_timeout_s: float = 300.0,
) -> dict[str, Any]:
    """Serve ``model_uri`` on production endpoint ``name`` without refusing a request (see the module docstring).

    ``capture`` (``{"destination", "percent", "json_content_types"}`` or None: off) is what the router
    captures from now on. Returns ``{"url", "generation", "upstream", "created", "drain_ms", "switch_ms", "smoke"}``.
    Raises :class:`ProductionSwitchError` when the new server does not start or fails ``smoke``;
    the endpoint then still serves what it served.
    """
    local.check_name(name)
    root = local.state_root(state_dir)
    with local.name_lock(root, name):
        router = production_state(root, name)
        generation = (router or {}).get("generation", 0) + 1
        new_name = upstream_name(name, generation)
        try:
            upstream = local.start_endpoint(
                model_uri, new_name, root, host=host, max_body_bytes=max_body_bytes, ready_timeout_s=ready_timeout_s,
                keep_for_s=None, env=env, runtime=runtime,
                server_args={"--endpoint-name": name, "--model-id": model_id},
                record={"kind": local.PRODUCTION_UPSTREAM_KIND, "production": name, "generation": generation},
            )  # fmt: skip
        except (EndpointStartError, FileNotFoundError) as exc:
            raise ProductionSwitchError(
                f"{name}: the new model did not start; the endpoint serves as before: {exc}"
            ) from exc
        upstream["generation"] = generation
        try:
            smoke_result = smoke(upstream["url"])
        except Exception as exc:
            local.stop_endpoint(new_name, root)
            raise ProductionSwitchError(
                f"{name}: the new model ({model_id}) failed its smoke test and was stopped; "
                f"the endpoint serves as before: {exc}"
            ) from exc
        started = time.perf_counter()
        if router is None or not router["alive"]:
            old = router
            if old is not None:
                local.stop_recorded(root, old, grace_s=5.0)  # clear the dead router's record
            port = (old or {}).get("port") or port
            router = _start_router(root, name, upstream, model_id, host, port, dict(capture) if capture else None, env)
            ack: dict[str, Any] = {"drain_ms": None}
            created = True
            old_upstream = (old or {}).get("upstream")
        else:
            try:
                ack = admin_call(router, "PUT", "/-/upstream", {"url": upstream["url"], "model_id": model_id})
            except Exception as exc:  # the router did not switch: the new server is not needed
                local.stop_endpoint(new_name, root)
                raise ProductionSwitchError(f"{name}: the router did not switch to {model_id}: {exc}") from exc
            created = False
            old_upstream = router.get("upstream")
            if (router.get("capture") or None) != (dict(capture) if capture else None):
                admin_call(router, "PUT", "/-/capture", dict(capture) if capture else None)
            router.update(upstream=new_name, generation=generation, model_uri=upstream["model_uri"], model_id=model_id,
                          capture=dict(capture) if capture else None)  # fmt: skip
            router.pop("alive", None)
            local.write_state(root, router)
        switch_ms = round((time.perf_counter() - started) * 1000, 1)
        if old_upstream and old_upstream != new_name:
            local.stop_endpoint(old_upstream, root, grace_s=30.0)
        log.info("production endpoint %s serves %s (generation %d) at %s", name, model_id, generation, router["url"])
        return {
            "url": router["url"], "generation": generation, "upstream": new_name, "upstream_url": upstream["url"],
            "created": created, "drain_ms": ack.get("drain_ms"), "switch_ms": switch_ms, "smoke": smoke_result,
        }  # fmt: skip


def remove(state_dir: str | os.PathLike[str], name: str) -> dict[str, Any]:
    """Stop production endpoint ``name``: its router, then every model server of it."""
    root = local.state_root(state_dir)
    stopped = [local.stop_endpoint(name, root)]
    for state in local.list_endpoints(root):
        if state.get("production") == name:
            stopped.append(local.stop_endpoint(state["name"], root))
    return {"stopped": stopped}


def status(state_dir: str | os.PathLike[str], name: str) -> dict[str, Any] | None:
    """The router's record and, when it runs, what it says about its upstream; None when there is no such endpoint."""
    root = local.state_root(state_dir)
    state = production_state(root, name)
    if state is None:
        return None
    if state["alive"]:
        try:
            state["router"] = admin_call(state, "GET", "/-/status")
        except Exception as exc:  # reported, not raised: status is for looking
            state["router"] = {"error": str(exc)}
    return json.loads(json.dumps(state, default=str))
