"""The model registry on a real MLflow server: sources the server accepts, aliases and their history, rollback,
a champion whose version was deleted, and the promotion gate's decisions."""

from __future__ import annotations

from pathlib import Path

import pytest

from include.configs import load_config
from include.tracking.promotion import gate
from include.tracking.registry import CHAMPION, PREVIOUS, Registry, RegistryError
from include.tracking.rest import TrackingError
from tests.support.tracking_fixtures import model_run


def _versions(ref, tmp_path: Path, maps: list[float]) -> Registry:
    registry = Registry(ref.uri, ref.registered_model)
    for i, value in enumerate(maps):
        run_id, source = model_run(ref, tmp_path, f"m{i}")
        registry.register(source, run_id, {"map": value, "coco_map": value / 2})
    return registry


def test_the_server_takes_a_local_model_only_from_inside_its_runs_artifacts(tracking_ref, tmp_path) -> None:
    registry = Registry(tracking_ref.uri, tracking_ref.registered_model)
    run_id, source = model_run(tracking_ref, tmp_path, "model")
    outside = (tmp_path / "model.tar.gz").as_uri()
    with pytest.raises(TrackingError, match="INVALID_PARAMETER_VALUE: Invalid model version source"):
        registry.register(outside, run_id, {})
    version = registry.register(source, run_id, {"map": 0.5})
    assert (version.version, version.status, version.source) == (1, "READY", source)
    assert registry.register(source, run_id, {"map": 0.5}).version == 1  # a retried gate finds it


def test_champion_moves_keep_previous_and_a_history(tracking_ref, tmp_path, mlflow_client) -> None:
    registry = _versions(tracking_ref, tmp_path, [0.5, 0.6, 0.7])
    registry.set_champion(1, action="approve", by="auto", reason="first")
    assert registry.aliases() == {CHAMPION: 1}
    move = registry.set_champion(3, action="approve", by="alice", reason="better")
    assert move["replaced"] == 1 and registry.aliases() == {CHAMPION: 3, PREVIOUS: 1}
    assert mlflow_client.get_registered_model(tracking_ref.registered_model).aliases == {
        "champion": "3",
        "previous": "1",
    }
    registry.rollback(None, by="bob", reason="regression")
    assert registry.aliases() == {CHAMPION: 1, PREVIOUS: 3}
    history = registry.history()
    assert [(h["action"], h["champion"], h["replaced"], h["by"]) for h in history] == [
        ("approve", 1, None, "auto"),
        ("approve", 3, 1, "alice"),
        ("rollback", 1, 3, "bob"),
    ]
    with pytest.raises(RegistryError, match=r"version 2 .* has never been champion \(champions so far: \[1, 3\]\)"):
        registry.rollback(2, by="bob", reason="x")
    with pytest.raises(RegistryError, match="has no version 9 \\(versions: 3, 2, 1\\)"):
        registry.set_champion(9, action="approve", by="x", reason="x")
    assert [(v.version, v.aliases) for v in registry.versions()] == [(3, ("previous",)), (2, ()), (1, ("champion",))]


def test_rollback_without_a_previous_version_says_so(tracking_ref, tmp_path) -> None:
    registry = _versions(tracking_ref, tmp_path, [0.5])
    with pytest.raises(RegistryError, match="no 'previous' version to roll back to"):
        registry.rollback(None, by="x", reason="x")


def test_a_champion_whose_version_was_deleted_is_reported_not_crashed_on(
    tracking_ref, tmp_path, mlflow_server, mlflow_client
) -> None:
    registry = _versions(tracking_ref, tmp_path, [0.8])
    registry.set_champion(1, action="approve", by="auto", reason="first")
    mlflow_client.delete_model_version(tracking_ref.registered_model, "1")  # MLflow drops its aliases with it
    lookup = registry.lookup(CHAMPION)
    assert lookup.version is None
    assert lookup.note == (
        f"alias 'champion' of '{tracking_ref.registered_model}' is gone: version 1, which held it, "
        "was deleted (or the alias removed by hand)"
    )
    with pytest.raises(RegistryError, match="has no version 1"):
        registry.version(1)

    # the gate of the next run: no champion to beat, and the note in its reason
    run_id, source = model_run(tracking_ref, tmp_path, "next")
    cfg = load_config(
        overrides={"tracking": {"uri": mlflow_server}, "evaluation": {"promotion_threshold": 0.3}}, environ={}
    )
    evaluation = {
        "map": 0.4,
        "coco_map": 0.2,
        "evaluation_uri": "file:///e.json",
        "report_uri": "file:///r.html",
        "model_uri": "file:///m.tar.gz",
    }
    training = {
        "job_name": "job",
        "artifact_uri": "file:///m.tar.gz",
        "tracking": {"run_id": run_id, "model_source": source},
    }
    decision = gate(cfg, tracking_ref, evaluation, training)
    assert decision["promote"] is True and decision["version"] == 2 and decision["champion"] is None
    assert decision["reason"].startswith("mAP 0.40 meets the threshold 0.30 and there is no champion yet; note: alias")


def test_the_gate_registers_every_model_and_holds_a_weaker_one(tracking_ref, tmp_path, mlflow_server) -> None:
    registry = _versions(tracking_ref, tmp_path, [0.7])
    registry.set_champion(1, action="approve", by="auto", reason="first")
    cfg = load_config(overrides={"tracking": {"uri": mlflow_server}}, environ={})
    run_id, source = model_run(tracking_ref, tmp_path, "challenger")
    evaluation = {
        "map": 0.65,
        "coco_map": 0.3,
        "evaluation_uri": "file:///e.json",
        "report_uri": "file:///r.html",
        "model_uri": "file:///m.tar.gz",
    }
    training = {
        "job_name": "job-2",
        "artifact_uri": "file:///m2.tar.gz",
        "tracking": {"run_id": run_id, "model_source": source},
    }
    decision = gate(cfg, tracking_ref, evaluation, training)
    assert decision["promote"] is False
    assert decision["reason"] == "mAP 0.65 does not beat the champion (version 1) at 0.70"
    held = registry.version(2)
    assert held.tags["detection.gate"] == "hold" and held.tags["detection.approval"] == "not requested"
    assert held.model_data_url == "file:///m2.tar.gz" and held.score == 0.65
    assert registry.aliases() == {CHAMPION: 1}
    # a champion registered by hand, without the figure the gate compares
    hand_run, hand_source = model_run(tracking_ref, tmp_path, "by-hand")
    registry.set_champion(registry.register(hand_source, hand_run, {}).version, action="promote", by="x", reason="x")
    decision = gate(cfg, tracking_ref, {**evaluation, "map": 0.99}, training)
    assert decision["promote"] is False and "records no map to compare with" in decision["reason"]


def test_the_gate_keeps_the_runs_export_on_the_version_and_the_form_names_the_test_split(
    tracking_ref, tmp_path, mlflow_server
) -> None:
    import json

    from include.tracking.promotion import approval_request

    registry = Registry(tracking_ref.uri, tracking_ref.registered_model)
    first, source = model_run(tracking_ref, tmp_path, "validation-era")
    registry.set_champion(
        registry.register(source, first, {"map": 0.5, "map_split": "validation", "coco_map": 0.2}).version,
        action="approve",
        by="auto",
        reason="first",
    )
    export = tmp_path / "export.json"
    export.write_text(
        json.dumps(
            {
                "formats": ["onnx", "neo"],
                "onnx": {
                    "uri": "file:///x/onnx/model.onnx",
                    "sha256": "ab" * 32,
                    "parity": {"passed": True, "images": 10, "max_score_diff": 5.2e-06, "max_box_diff": 1.1e-06},
                },
                "neo": {
                    "job_name": "neo-job",
                    "compiled_artifact_uri": "s3://b/neo/model-ml_c5.tar.gz",
                    "target": "ml_c5",
                },
            }
        )
    )
    run_id, source = model_run(tracking_ref, tmp_path, "exported")
    evaluation = {
        "map": 0.55,
        "split": "test",
        "coco_map": 0.25,
        "evaluation_uri": "file:///e.json",
        "report_uri": "file:///r.html",
        "model_uri": "file:///m.tar.gz",
    }
    training = {
        "job_name": "job",
        "artifact_uri": "file:///m.tar.gz",
        "tracking": {"run_id": run_id, "model_source": source},
    }
    cfg = load_config(overrides={"tracking": {"uri": mlflow_server}}, environ={})
    decision = gate(cfg, tracking_ref, evaluation, training, str(export))
    assert decision["reason"] == (
        "test mAP 0.55 beats the champion (version 1), measured on validation, at 0.50 and meets the threshold 0.50"
    )
    tags = registry.version(decision["version"]).tags
    assert (tags["map"], tags["map_split"]) == ("0.55", "test")
    assert tags["detection.export.uri"] == export.as_uri() and tags["detection.export.formats"] == "onnx,neo"
    assert (tags["detection.export.onnx_sha256"], tags["detection.export.parity"]) == ("ab" * 32, "passed")
    assert (tags["detection.export.parity_images"], tags["detection.export.parity_max_score_diff"]) == ("10", "5.2e-06")
    assert tags["detection.export.neo_model_uri"] == "s3://b/neo/model-ml_c5.tar.gz"

    form = approval_request(tracking_ref, decision, evaluation, 60)
    assert form["subject"] == (
        f"Promote version 2 of {tracking_ref.registered_model}? test mAP 0.5500, the champion's 0.5000"
    )
    assert "| test mAP (VOC, IoU 0.5) | 0.5500 | 0.5000 (validation) |" in form["body"]
    assert f"**Export:** ONNX `{'ab' * 8}…`, parity with MXNet passed on 10 images" in form["body"]
    assert "Neo-compiled for ml_c5: `s3://b/neo/model-ml_c5.tar.gz`" in form["body"]
    # a run that exported nothing leaves no export tags
    plain, plain_source = model_run(tracking_ref, tmp_path, "plain")
    held = gate(
        cfg,
        tracking_ref,
        {**evaluation, "map": 0.1},
        {**training, "tracking": {"run_id": plain, "model_source": plain_source}},
        str(tmp_path / "none" / "export.json"),
    )
    assert held["export"] == {} and not any(
        k.startswith("detection.export.") for k in registry.version(held["version"]).tags
    )
