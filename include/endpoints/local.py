"""Local endpoints: inference servers run as detached, managed processes, one JSON state file each.

:func:`run_local_deployment` is the local backend of CreateModel / CreateEndpointConfig /
CreateEndpoint: it executes the combined deployment request here. ``start_endpoint`` launches
``python -m include.serving.server`` in its own session (so it outlives
the Airflow task that deployed it), records it in ``<state_dir>/<name>.json`` (written atomically)
and waits for ``/ping``. ``stop_endpoint`` stops it (SIGTERM, then SIGKILL), checks that its port
is free and removes the state. Every state carries ``keep_until``; ``sweep_expired`` stops the
endpoints past it, so an endpoint whose teardown never ran does not live forever.

A state's ``kind`` says what the process is: ``run`` (a per-run endpoint), or one of
:data:`PRODUCTION_KINDS`, the standing production endpoint's router and its model servers
(:mod:`include.endpoints.production_local`), which the sweeper and a teardown of "everything"
leave alone: only a teardown naming the production endpoint removes it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import re
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from include import storage
from include.endpoints import processes
from include.endpoints.errors import EndpointError, EndpointNotFoundError, EndpointStartError
from include.project import PROJECT_ROOT
from include.serving import contract
from include.serving.inference import check_runtime

if TYPE_CHECKING:
    from include.configs import PipelineConfig

log = logging.getLogger(__name__)

#: SageMaker's endpoint-name rule; names also become file names under ``state_dir``.
NAME_PATTERN = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")
#: How long an endpoint may live before the sweeper stops it, unless ``keep_for_s`` says otherwise.
DEFAULT_KEEP_S = 4 * 3600.0
RUN_KIND = "run"
PRODUCTION_KIND = "production"
PRODUCTION_UPSTREAM_KIND = "production-upstream"
#: Kinds the sweeper and an unnamed teardown never stop.
PRODUCTION_KINDS = (PRODUCTION_KIND, PRODUCTION_UPSTREAM_KIND)


def state_root(state_dir: str | os.PathLike[str]) -> Path:
    root = storage.local_path(storage.normalize(state_dir))
    root.mkdir(parents=True, exist_ok=True)
    return root


def _state_path(root: Path, name: str) -> Path:
    return root / f"{name}.json"


def check_name(name: str) -> None:
    if not NAME_PATTERN.match(name):
        raise ValueError(f"endpoint name {name!r} is invalid: 1-63 letters, digits and hyphens, not starting with '-'")


def _read_state(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: line {exc.lineno}: not a valid endpoint state ({exc.msg})") from exc


def write_state(root: Path, state: dict) -> None:
    storage.write_text(str(_state_path(root, state["name"])), json.dumps(state, indent=2, sort_keys=True))


@contextlib.contextmanager
def name_lock(root: Path, name: str) -> Iterator[None]:
    """Serialize start/stop of one endpoint name across processes."""
    with open(root / f".{name}.lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _is_url(endpoint: str) -> bool:
    return endpoint.startswith(("http://", "https://"))


def _url(host: str, port: int) -> str:
    address = processes.connect_host(host)
    return f"http://[{address}]:{port}" if ":" in address else f"http://{address}:{port}"


def is_alive(state: dict) -> bool:
    return processes.is_running(state["pid"], state["create_time"])


def _ping(url: str, timeout_s: float = 2.0) -> int | None:
    """The status of ``GET /ping``, or None when nothing answers."""
    try:
        with urllib.request.urlopen(f"{url}/ping", timeout=timeout_s) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except (urllib.error.URLError, OSError):
        return None


def log_tail(path: str, lines: int = 20) -> str:
    try:
        return "\n".join(Path(path).read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"


def list_endpoints(state_dir: str | os.PathLike[str]) -> list[dict]:
    """Every recorded endpoint's state, sorted by name, each with ``alive`` (its process is running)."""
    root = state_root(state_dir)
    states = [_read_state(path) for path in sorted(root.glob("*.json"))]
    return [{**state, "alive": is_alive(state)} for state in states if state is not None]


def is_production(state: Mapping[str, Any]) -> bool:
    """Whether a recorded endpoint belongs to a standing production endpoint (never swept, never torn down unnamed)."""
    return state.get("kind", RUN_KIND) in PRODUCTION_KINDS


def describe_endpoint(name_or_url: str, state_dir: str | os.PathLike[str]) -> dict | None:
    """The recorded state of an endpoint given by name or URL, or None when none is recorded."""
    root = state_root(state_dir)
    if not _is_url(name_or_url):
        check_name(name_or_url)
        return _read_state(_state_path(root, name_or_url))
    wanted = name_or_url.rstrip("/").lower()
    return next((s for s in list_endpoints(root) if (s.get("url") or "").lower() == wanted), None)


def endpoint_url(endpoint: str, state_dir: str | os.PathLike[str] | None = None) -> str:
    """The base URL of an endpoint given by URL, or by name (looked up under ``state_dir``)."""
    if _is_url(endpoint):
        return endpoint.rstrip("/")
    if state_dir is None:
        raise ValueError(f"endpoint {endpoint!r} is a name, not a URL: pass state_dir to look it up")
    state = describe_endpoint(endpoint, state_dir)
    if state is None or not state.get("url"):
        raise EndpointNotFoundError(f"no endpoint named {endpoint!r} is recorded under {state_dir}")
    return state["url"]


def _reusable(state: dict, model_uri: str, host: str, port: int | None, options: dict) -> bool:
    """Whether a recorded endpoint already serves this request (a retried deploy) and is healthy."""
    same = (
        state.get("model_uri") == model_uri
        and state.get("host") == host
        and (port is None or state.get("port") == port)
        and all(state.get(k) == v for k, v in options.items())
    )
    return same and state.get("url") is not None and is_alive(state) and _ping(state["url"]) == 200


def _outcome(state: dict, result: str, port_free: bool | None = None) -> dict:
    """What :func:`stop_endpoint` answers."""
    return {
        "name": state["name"],
        "url": state.get("url"),
        "pid": state["pid"],
        "result": result,
        "port_free": port_free,
        "log_path": state.get("log_path"),  # kept for diagnosis: the summary says where
    }


def stop_recorded(root: Path, state: dict, grace_s: float) -> dict:
    """Stop a recorded endpoint (caller holds its lock), check its port and drop its files."""
    result = processes.terminate(state["pid"], state["create_time"], grace_s)
    # The port is ours to check only if our server was running and had reported listening on it.
    ours = result != "already gone" and state.get("url") is not None
    port_free = processes.port_is_free(state["host"], state["port"]) if ours else None
    _state_path(root, state["name"]).unlink(missing_ok=True)
    (root / f".{state['name']}.port").unlink(missing_ok=True)
    log.info("endpoint %s stopped (%s)", state["name"], result)
    if port_free is False:
        address = f"{state['host']}:{state['port']}"
        raise EndpointError(f"endpoint {state['name']} is stopped but {address} still accepts connections")
    return _outcome(state, result, port_free)


def wait_ready(root: Path, state: dict, port_file: Path, deadline: float) -> dict:
    """Follow a starting server until ``/ping`` answers 200; records its port and URL as soon as it listens."""
    while True:
        code = processes.exit_code(state["pid"])
        if code is not None or not is_alive(state):
            raise EndpointStartError(f"the server exited (code {code}) before it was ready")
        if state["url"] is None and port_file.exists():
            state["port"] = json.loads(port_file.read_text())["port"]
            state["url"] = _url(state["host"], state["port"])
            write_state(root, state)
        if state["url"] is not None and _ping(state["url"]) == 200:
            return state
        if time.monotonic() >= deadline:
            raise EndpointStartError("the server did not answer /ping with 200 in time")
        time.sleep(0.2)


def start_endpoint(
    model_uri: str,
    name: str,
    state_dir: str | os.PathLike[str],
    host: str = "127.0.0.1",
    port: int | None = None,
    max_body_bytes: int = contract.DEFAULT_MAX_BODY_BYTES,
    ready_timeout_s: float = 120.0,
    *,
    keep_for_s: float | None = DEFAULT_KEEP_S,
    max_batch: int = 1,
    env: Mapping[str, str] | None = None,
    runtime: str = "mxnet",
    server_args: Mapping[str, str] | None = None,
    record: Mapping[str, Any] | None = None,
) -> dict:
    """Serve ``model_uri`` as endpoint ``name`` in a detached process and wait until it is healthy.

    ``port=None`` lets the server pick a free port. A healthy endpoint of the same name serving the
    same model with the same options is reused (a retried task); any other one is replaced.
    ``runtime`` picks what runs the model (:data:`include.serving.inference.RUNTIMES`: ``model.tar.gz``
    on MXNet, or the ONNX export's ``model.onnx`` on ONNX Runtime).
    ``keep_for_s`` sets ``keep_until`` for :func:`sweep_expired` (None: never expires). ``env``
    replaces the server's environment (default: this process's). ``server_args`` are more server flags
    (``{"--capture-uri": ...}``; ``--endpoint-name`` defaults to ``name``: the name InvokeEndpoint calls
    use), part of what a reused endpoint must match; ``record`` is kept in the state (``kind``, ...).
    Returns the state: ``name``,
    ``url``, ``pid``, ``port``, ``host``, ``log_path``, ``started_at``, ``keep_until``,
    ``model_uri`` and more, plus ``reused``. Raises :class:`EndpointStartError` with the server's
    log tail when it exits or is not healthy within ``ready_timeout_s``.
    """
    check_name(name)
    root = state_root(state_dir)
    model_uri = storage.normalize(model_uri)
    if not storage.exists(model_uri):  # before an endpoint of that name is replaced
        raise FileNotFoundError(f"no model artifact at {model_uri}")
    options = {"max_body_bytes": int(max_body_bytes), "max_batch": int(max_batch), "runtime": check_runtime(runtime),
               "server_args": {"--endpoint-name": name, **(server_args or {})}}  # fmt: skip
    now = datetime.now(UTC)
    keep_until = None if keep_for_s is None else (now + timedelta(seconds=keep_for_s)).isoformat()
    with name_lock(root, name):
        previous = _read_state(_state_path(root, name))
        if previous is not None:
            if _reusable(previous, model_uri, host, port, options):
                previous["keep_until"] = keep_until
                write_state(root, previous)
                log.info("endpoint %s is already serving %s at %s; reusing it", name, model_uri, previous["url"])
                return {**previous, "reused": True}
            stop_recorded(root, previous, grace_s=10.0)
        port_file = root / f".{name}.port"
        port_file.unlink(missing_ok=True)
        log_path = root / f"{name}.log"
        cmd = [
            sys.executable, "-m", "include.serving.server",
            "--model", model_uri, "--host", host, "--port", str(port or 0),
            "--max-body-bytes", str(options["max_body_bytes"]), "--max-batch", str(options["max_batch"]),
            "--port-file", str(port_file), "--runtime", options["runtime"],
            *(word for flag, value in options["server_args"].items() for word in (flag, str(value))),
        ]  # fmt: skip
        child_env = dict(os.environ if env is None else env)
        child_env["PYTHONPATH"] = os.pathsep.join(p for p in (str(PROJECT_ROOT), child_env.get("PYTHONPATH")) if p)
        started = time.monotonic()
        pid, create_time = processes.spawn_detached(cmd, log_path, child_env)
        state = {
            "name": name, "model_uri": model_uri, "host": host, "port": port, "url": None,
            "pid": pid, "create_time": create_time, "log_path": str(log_path),
            "started_at": now.isoformat(), "keep_until": keep_until, "kind": RUN_KIND, **(record or {}), **options,
        }  # fmt: skip
        write_state(root, state)  # recorded before waiting, so teardown finds it even if this task dies
        try:
            state = wait_ready(root, state, port_file, started + ready_timeout_s)
        except EndpointStartError as exc:
            stop_recorded(root, state, grace_s=5.0)
            tail = log_tail(str(log_path))
            raise EndpointStartError(f"endpoint {name} ({model_uri}): {exc}; log {log_path}:\n{tail}") from None
        elapsed = time.monotonic() - started
        log.info("endpoint %s serving %s at %s (pid %d, %.1f s)", name, model_uri, state["url"], pid, elapsed)
        return {**state, "reused": False}


def stop_endpoint(name_or_url: str, state_dir: str | os.PathLike[str], grace_s: float = 10.0) -> dict:
    """Stop an endpoint by name or URL: SIGTERM, SIGKILL after ``grace_s``, port checked free, state removed.

    Tolerates endpoints that are already gone. Returns ``name``, ``url``, ``pid``, ``result``
    (``terminated``, ``killed``, ``already gone`` or ``not found``) and ``port_free`` (None when
    there was no running server to check). The server's log is kept.
    """
    root = state_root(state_dir)
    state = describe_endpoint(name_or_url, root)
    if state is None:
        url = name_or_url if _is_url(name_or_url) else None
        return _outcome({"name": None if url else name_or_url, "url": url, "pid": None}, "not found")
    with name_lock(root, state["name"]):
        current = _read_state(_state_path(root, state["name"]))
        if current is None:  # stopped meanwhile by someone else
            return _outcome(state, "already gone")
        return stop_recorded(root, current, grace_s)


def sweep_expired(state_dir: str | os.PathLike[str], now: datetime | None = None) -> list[str]:
    """Stop every endpoint whose ``keep_until`` is at or before ``now`` (default: the current time, UTC).

    Records whose process is already gone are cleared too. A production endpoint is never touched
    (:func:`is_production`). Returns the names removed.
    """
    now = now or datetime.now(UTC)
    if now.tzinfo is None:
        raise ValueError(f"now={now.isoformat()} has no time zone; pass an aware datetime")
    removed = []
    for state in list_endpoints(state_dir):
        if is_production(state):
            continue
        keep_until = state.get("keep_until")
        expired = keep_until is not None and datetime.fromisoformat(keep_until) <= now
        if expired or not state["alive"]:
            stop_endpoint(state["name"], state_dir)
            removed.append(state["name"])
    return removed


def state_dir(cfg: PipelineConfig) -> Path:
    """Where local endpoints record their PID, URL and keep-until time (``local.endpoint_state_dir``)."""
    path = Path(cfg.local.endpoint_state_dir)
    return path if path.is_absolute() else PROJECT_ROOT / path


def run_local_deployment(request: dict[str, Any], cfg: PipelineConfig | None = None) -> dict[str, Any]:
    """Execute a combined deployment request here; answers DescribeEndpoint/-Config-shaped dicts.

    The model is served by a managed HTTP server on ``local.host`` that lives until teardown (or
    the sweeper, after the request's ``keep-until`` tag), on the runtime the model's container
    environment names (:data:`include.sagemaker.requests.RUNTIME_ENV`, MXNet when absent). ``cfg``
    defaults to the configuration of this environment (the DAG's deploy task has no other).
    """
    from include.sagemaker.naming import KEEP_UNTIL_TAG, parse_keep_until
    from include.sagemaker.requests import RUNTIME_ENV

    if cfg is None:
        from include.configs import load_config

        cfg = load_config()
    endpoint = request["Endpoint"]
    tags = {t["Key"]: t["Value"] for t in endpoint.get("Tags", [])}
    keep_until = parse_keep_until(tags[KEEP_UNTIL_TAG]) if KEEP_UNTIL_TAG in tags else None
    keep_for_s = max((keep_until - datetime.now(UTC)).total_seconds(), 0.0) if keep_until else None
    container = request["Model"]["PrimaryContainer"]
    state = start_endpoint(
        container["ModelDataUrl"],
        endpoint["EndpointName"],
        state_dir(cfg),
        host=cfg.local.host,
        max_body_bytes=int(cfg.deploy.max_body_mb * 1024 * 1024),
        keep_for_s=keep_for_s,
        runtime=container.get("Environment", {}).get(RUNTIME_ENV, "mxnet"),
    )
    variant = request["EndpointConfig"]["ProductionVariants"][0]
    return {
        "Endpoint": {
            "EndpointName": endpoint["EndpointName"],
            "EndpointConfigName": endpoint["EndpointConfigName"],
            "EndpointStatus": "InService",
            "EndpointUrl": state["url"],
            "ServerPid": state["pid"],
        },
        "EndpointConfig": {
            "EndpointConfigName": request["EndpointConfig"]["EndpointConfigName"],
            "ProductionVariants": [{"VariantName": variant["VariantName"], "ModelName": variant["ModelName"]}],
        },
    }
