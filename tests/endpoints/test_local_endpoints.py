"""Managed local endpoints: detached start, reuse on retry, replacement, stop, sweeper, failures."""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psutil
import pytest

from include.endpoints import errors
from include.endpoints import local as ep
from include.endpoints import processes as process
from include.endpoints.invocation import invoke

HANG = "import signal, time; signal.signal(signal.SIGTERM, {handler}); print('up', flush=True); time.sleep(120)"


def listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def spawn_hung(tmp_path: Path, ignore_sigterm: bool = False) -> tuple[int, float]:
    """A real detached process that never answers HTTP (optionally deaf to SIGTERM), once it is up."""
    code = HANG.format(handler="signal.SIG_IGN" if ignore_sigterm else "signal.SIG_DFL")
    log = tmp_path / f"hung-{time.monotonic_ns()}.log"
    pid, create_time = process.spawn_detached([sys.executable, "-c", code], log, os.environ)
    deadline = time.monotonic() + 30
    while "up" not in log.read_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    return pid, create_time


def record_hung(tmp_path: Path, name: str, keep_until: datetime | None) -> dict:
    """Record a hung process as endpoint ``name``, as a crashed or wedged server would leave it."""
    pid, create_time = spawn_hung(tmp_path)
    port = closed_port()
    state = {
        "name": name, "model_uri": "file:///elsewhere/model.tar.gz", "host": "127.0.0.1", "port": port,
        "url": f"http://127.0.0.1:{port}", "pid": pid, "create_time": create_time, "log_path": None,
        "started_at": datetime.now(UTC).isoformat(), "keep_until": keep_until and keep_until.isoformat(),
        "max_body_bytes": 1, "max_batch": 1,
    }  # fmt: skip
    (tmp_path / f"{name}.json").write_text(json.dumps(state))
    return state


def test_start_from_s3_replaces_a_wedged_endpoint_reuses_on_retry_and_stops_by_url(s3_artifact, tmp_path):
    model_uri, env = s3_artifact
    wedged = record_hung(tmp_path, "det-1", keep_until=None)
    first = ep.start_endpoint(model_uri, "det-1", tmp_path, ready_timeout_s=180, env=env)
    assert first["reused"] is False and first["url"] == f"http://127.0.0.1:{first['port']}"
    assert not process.is_running(wedged["pid"], wedged["create_time"]), "the wedged process must be stopped"
    assert os.getsid(first["pid"]) == first["pid"] != os.getsid(0), "the server must lead its own session"
    recorded = json.loads((tmp_path / "det-1.json").read_text())
    keys = ("pid", "url", "port", "log_path", "started_at", "keep_until", "model_uri")
    assert {k: recorded[k] for k in keys} == {k: first[k] for k in keys}
    assert recorded["model_uri"] == model_uri
    assert [(s["name"], s["alive"]) for s in ep.list_endpoints(tmp_path)] == [("det-1", True)]

    retry = ep.start_endpoint(model_uri, "det-1", tmp_path, keep_for_s=60, env=env)
    assert retry["reused"] is True and retry["pid"] == first["pid"]
    assert datetime.fromisoformat(retry["keep_until"]) < datetime.fromisoformat(first["keep_until"])

    stopped = ep.stop_endpoint(first["url"] + "/", tmp_path)
    assert stopped == {
        "name": "det-1",
        "url": first["url"],
        "pid": first["pid"],
        "result": "terminated",
        "port_free": True,
        "log_path": first["log_path"],  # the server's log stays, and the answer says where
    }
    assert Path(first["log_path"]).is_file()
    assert not process.is_running(first["pid"], first["create_time"])
    assert not listening(first["port"])
    assert ep.list_endpoints(tmp_path) == []
    assert ep.stop_endpoint("det-1", tmp_path)["result"] == "not found"
    assert ep.stop_endpoint(first["url"], tmp_path)["result"] == "not found"


def test_sweeper_stops_expired_endpoints_and_clears_dead_ones(tmp_path):
    now = datetime.now(UTC)
    expired = record_hung(tmp_path, "expired", keep_until=now - timedelta(seconds=1))
    kept = record_hung(tmp_path, "kept", keep_until=now + timedelta(hours=1))
    forever = record_hung(tmp_path, "forever", keep_until=None)
    dead = record_hung(tmp_path, "dead", keep_until=None)
    process.terminate(dead["pid"], dead["create_time"])

    assert ep.sweep_expired(tmp_path, now=now) == ["dead", "expired"]
    assert not process.is_running(expired["pid"], expired["create_time"])
    assert [s["name"] for s in ep.list_endpoints(tmp_path)] == ["forever", "kept"]
    assert ep.sweep_expired(tmp_path, now=now + timedelta(hours=2)) == ["kept"]
    assert not process.is_running(kept["pid"], kept["create_time"])
    assert process.is_running(forever["pid"], forever["create_time"])
    ep.stop_endpoint("forever", tmp_path)
    with pytest.raises(ValueError, match="time zone"):
        ep.sweep_expired(tmp_path, now=datetime(2030, 1, 1))


def test_terminate_escalates_to_sigkill(tmp_path):
    pid, create_time = spawn_hung(tmp_path, ignore_sigterm=True)
    assert process.terminate(pid, create_time, grace_s=0.5) == "killed"
    assert not process.is_running(pid, create_time)
    assert process.terminate(pid, create_time) == "already gone"


def test_a_recycled_pid_is_not_ours():
    assert process.is_running(os.getpid(), psutil.Process().create_time())
    assert not process.is_running(os.getpid(), psutil.Process().create_time() - 100)


def test_busy_port_fails_fast_with_the_server_log(artifact, endpoint, tmp_path):
    with pytest.raises(errors.EndpointStartError, match="exited \\(code 1\\)") as info:
        ep.start_endpoint(artifact, "clash", tmp_path, port=endpoint["port"], ready_timeout_s=60)
    assert f"cannot listen on 127.0.0.1:{endpoint['port']}" in str(info.value)
    assert ep.list_endpoints(tmp_path) == []
    assert listening(endpoint["port"]), "the endpoint holding the port must be untouched"


def test_a_missing_model_is_refused_before_an_endpoint_of_that_name_is_replaced(endpoint, state_dir, tmp_path):
    missing = tmp_path / "nowhere.tar.gz"
    with pytest.raises(FileNotFoundError, match=f"no model artifact at file://{missing}"):
        ep.start_endpoint(str(missing), "bogus", tmp_path, ready_timeout_s=60)
    assert ep.list_endpoints(tmp_path) == []
    with pytest.raises(FileNotFoundError, match="no model artifact at"):
        ep.start_endpoint(str(missing), "shared", state_dir)
    assert ep.describe_endpoint("shared", state_dir)["pid"] == endpoint["pid"] and listening(endpoint["port"])


def test_corrupt_state_names_the_file(tmp_path):
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(ValueError, match="broken.json: line 1"):
        ep.list_endpoints(tmp_path)


@pytest.mark.parametrize("name", ["", "-x", "a_b", "a" * 64, "../escape"])
def test_invalid_names_are_refused(artifact, tmp_path, name):
    with pytest.raises(ValueError, match="endpoint name"):
        ep.start_endpoint(artifact, name, tmp_path)


def test_invoke_by_name_and_its_errors(endpoint, state_dir, jpeg_bytes):
    answer = invoke("shared", jpeg_bytes, "image/jpeg", state_dir=state_dir, threshold=0.0)
    assert len(answer["prediction"]) > 0
    with pytest.raises(errors.InvocationError) as info:
        invoke(endpoint["url"], jpeg_bytes, "text/plain")
    assert info.value.status == 415 and "not supported" in info.value.message
    with pytest.raises(errors.EndpointNotFoundError):
        invoke("missing", jpeg_bytes, "image/jpeg", state_dir=state_dir)
    with pytest.raises(ValueError, match="state_dir"):
        invoke("shared", jpeg_bytes, "image/jpeg")
    with pytest.raises(errors.EndpointError, match="not reachable"):
        invoke(f"http://127.0.0.1:{closed_port()}", jpeg_bytes, "image/jpeg", timeout_s=5)


def test_deploy_serves_an_onnx_export_on_onnx_runtime_through_the_deployment_request(
    onnx_export, jpeg_bytes, server_env, tmp_path, monkeypatch
):
    from include.configs import load_config
    from include.endpoints.lifecycle import deploy_artifact, teardown_endpoints

    monkeypatch.setenv("OMP_NUM_THREADS", server_env["OMP_NUM_THREADS"])  # the server inherits this environment
    cfg = load_config(overrides={"local": {"endpoint_state_dir": str(tmp_path)}}, environ={})
    (tmp_path / "export").mkdir()
    (tmp_path / "export" / "export.json").write_text(json.dumps({"formats": ["onnx"], "onnx": onnx_export}))
    deployed = deploy_artifact(cfg, str(tmp_path / "export"), name="onnx-deploy", keep_minutes=5, runtime="onnxruntime")
    try:
        state = ep.describe_endpoint("onnx-deploy", tmp_path)
        assert (state["runtime"], state["model_uri"]) == ("onnxruntime", onnx_export["uri"])
        assert deployed["endpoint_url"] == state["url"] and deployed["status"] == "InService"
        answer = invoke("onnx-deploy", jpeg_bytes, "image/jpeg", state_dir=tmp_path)
        assert len(answer["prediction"]) > 50
    finally:
        teardown_endpoints(cfg, "onnx-deploy")
    sagemaker = load_config(overrides={"backend": "sagemaker", "sagemaker": {
        "role_arn": "arn:aws:iam::123456789012:role/R", "bucket": "b-1"}}, environ={})
    with pytest.raises(ValueError, match="only local endpoints serve the ONNX export"):
        deploy_artifact(sagemaker, onnx_export["uri"], name="x", runtime="onnxruntime")
    with pytest.raises(FileNotFoundError, match="no export record"):
        deploy_artifact(cfg, str(tmp_path), name="x", runtime="onnxruntime")
