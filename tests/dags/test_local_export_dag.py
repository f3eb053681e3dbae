"""A local run with ``export`` and ``deploy_runtime=onnxruntime``: the model trained in the run is exported,
its parity with MXNet is checked on held-out images and reported, and the endpoint serves the ONNX file.

``dag.test`` runs the pipeline DAG in this process; the deploy task starts a real endpoint server.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from devtools import local_stack
from include import storage
from tests.support.dag_runs import endpoint_servers, finished_run

pytestmark = pytest.mark.slow


def test_export_checks_parity_and_the_endpoint_serves_the_onnx_model(
    pipeline: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    runs, endpoints = tmp_path / "runs", tmp_path / "endpoints"
    monkeypatch.delenv("DETECTION_CONFIG_FILE", raising=False)
    for key, value in local_stack.quick_run_env(runs, endpoints).items():
        monkeypatch.setenv(key, value)
    conf = {"backend": "local", "dataset_source": "sample", "epochs": 1, "tune": False, "deploy": True,
            "export": True, "deploy_runtime": "onnxruntime", "quality_policy": "drop"}  # fmt: skip
    dr = pipeline.test(run_conf=conf)
    tries, xcom = finished_run(dr)
    states = {task: {state for state, _ in runs_} for task, runs_ in tries.items()}

    assert str(dr.state) == "success", tries
    assert states["export"] == {"success"} and states["smoke_test"] == {"success"}
    exported, layout = xcom["export"], xcom["resolve_config"]["layout"]
    record = json.loads(storage.read_text(exported["export_uri"]))
    assert exported["export_uri"] == storage.join(layout["export"], "export.json")
    assert record["model_uri"] == xcom["evaluate"]["model_uri"]
    parity = record["onnx"]["parity"]
    assert exported["parity_passed"] and parity["passed"] and parity["unmatched"] == 0
    assert parity["images"] == 10 and parity["detections"]["mxnet"] > 0  # the run's validation split, all of it
    assert parity["max_score_diff"] <= 1e-3 and parity["max_box_diff"] <= 1e-3
    assert 'id="export"' in storage.read_text(xcom["evaluate"]["report_uri"])
    from include.evaluation.promotion import registry_uri

    champion = json.loads(storage.read_text(registry_uri(storage.normalize(runs), pipeline.dag_id)))["champion"]
    assert champion["export_uri"] == exported["export_uri"]  # the export is recorded with the model
    # the endpoint served the ONNX file on ONNX Runtime and answered the smoke test; teardown stopped it
    assert xcom["smoke_test"]["detections"] > 0
    (stopped,) = xcom["teardown"]["stopped"]
    assert stopped["name"] == xcom["deploy"]["endpoint_name"] and stopped["port_free"] is True
    server_log = (endpoints / f"{stopped['name']}.log").read_text().splitlines()
    listening = next(json.loads(line) for line in server_log if '"event": "listening"' in line)
    assert (listening["runtime"], listening["model"]) == ("onnxruntime", exported["onnx_uri"])
    assert endpoint_servers(endpoints) == []
