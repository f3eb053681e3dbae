"""The endpoint on ONNX Runtime: the same contract and answers as on MXNet, without MXNet in the process."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import pytest

from include import model_artifact
from include.endpoints import errors
from include.endpoints.local import start_endpoint, stop_endpoint
from include.export.parity import Tolerances, match_detections
from include.serving import contract
from include.serving.inference import ModelService, load_model
from tests.support.serving_fixtures import TEST_MAX_BODY


def _post(url: str, body: bytes) -> dict[str, Any]:
    request = urllib.request.Request(f"{url}/invocations", data=body, headers={"Content-Type": "image/jpeg"})
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())


def test_the_onnx_runtime_endpoint_answers_as_the_mxnet_model_does(
    spread_artifact: str,
    onnx_export: dict[str, Any],
    jpeg_bytes: bytes,
    server_env: dict[str, str],
    tmp_path: Path,
) -> None:
    onnx_uri = onnx_export["uri"]
    state = start_endpoint(onnx_uri, "onnx", tmp_path, max_body_bytes=TEST_MAX_BODY, ready_timeout_s=120,
                           env=server_env, runtime="onnxruntime")  # fmt: skip
    try:
        assert state["runtime"] == "onnxruntime" and not state["reused"]
        with urllib.request.urlopen(f"{state['url']}/ping", timeout=10) as response:
            assert json.loads(response.read()) == {"status": "ready", "runtime": "onnxruntime"}
        answer = _post(state["url"], jpeg_bytes)
        contract.check_prediction_schema(answer)
        served = np.array(answer["prediction"], dtype=np.float64).reshape(-1, 6)
        expected = model_artifact.load_detector(spread_artifact).predict(model_artifact.decode_image(jpeg_bytes))
        assert len(expected) > 50 and match_detections("served", expected, served, Tolerances()).passed
        # the server process never loaded MXNet: nothing of libmxnet is mapped into it
        mapped = {Path(m.path).name for m in psutil.Process(state["pid"]).memory_maps()}
        assert not any("mxnet" in name for name in mapped) and any("onnxruntime" in name for name in mapped)
        # a retried deploy reuses it; the same name on the other runtime replaces it
        assert start_endpoint(onnx_uri, "onnx", tmp_path, max_body_bytes=TEST_MAX_BODY, env=server_env,
                              runtime="onnxruntime")["reused"]  # fmt: skip
    finally:
        stop_endpoint("onnx", tmp_path)


def test_a_model_the_runtime_cannot_read_stops_the_server_with_its_reason(
    spread_artifact: str, server_env: dict[str, str], tmp_path: Path
) -> None:
    with pytest.raises(
        errors.EndpointStartError,
        match=r"(?s)exited \(code 1\).*ONNX Runtime serves an ONNX export's model.onnx, not file://",
    ):
        start_endpoint(spread_artifact, "wrong", tmp_path, ready_timeout_s=60, env=server_env, runtime="onnxruntime")


def test_runtimes_are_checked(onnx_export: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="runtime must be one of mxnet, onnxruntime"):
        ModelService("model.onnx", runtime="tensorrt")
    model = load_model(onnx_export["uri"], "onnxruntime")
    assert model.image_shape == 128 and len(model.predict(np.zeros((60, 80, 3), np.uint8))) > 0
