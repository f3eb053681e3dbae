"""The promotion gate and the per-DAG registry."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from include.evaluation.promotion import (
    PromotionInputError,
    RegistryError,
    decide_promotion,
    read_registry,
    record_champion,
    registry_uri,
)


@pytest.fixture()
def registry(tmp_path: Path) -> str:
    return registry_uri(str(tmp_path / "runs"), "object_detection")


def test_registry_lives_under_the_dag_folder(tmp_path: Path) -> None:
    uri = registry_uri(str(tmp_path), "my dag:1")
    assert uri == f"file://{tmp_path}/my_dag_1/registry.json"


def test_first_model_above_the_threshold_becomes_champion(registry: str) -> None:
    decision = decide_promotion({"map": 0.62}, registry, 0.5, {"run_id": "run-1"})
    assert decision == {"promote": True, "reason": "mAP 0.62 meets the threshold 0.50 and there is no champion yet",
                        "champion": None}
    entry = record_champion(registry, {"run_id": "run-1", "model_uri": "s3://b/m.tar.gz"}, {"map": 0.62})
    stored = read_registry(registry)
    assert stored["champion"] == entry and stored["history"] == [entry]
    assert entry["map"] == 0.62 and entry["model_uri"] == "s3://b/m.tar.gz" and entry["promoted_at"]


def test_model_below_the_threshold_is_not_promoted(registry: str) -> None:
    decision = decide_promotion({"map": 0.41}, registry, 0.5, {"run_id": "run-1"})
    assert decision["promote"] is False
    assert decision["reason"] == "mAP 0.41 is below the threshold 0.50"


def test_worse_model_is_not_promoted_and_the_reason_names_the_champion(registry: str) -> None:
    record_champion(registry, {"run_id": "run-X"}, {"map": 0.78})
    decision = decide_promotion({"map": 0.70}, registry, 0.5, {"run_id": "run-2"})
    assert decision["promote"] is False
    assert decision["reason"] == "mAP 0.70 does not beat the champion run run-X at 0.78"
    assert decision["champion"]["run_id"] == "run-X"


def test_better_or_equal_model_replaces_the_champion(registry: str) -> None:
    record_champion(registry, {"run_id": "run-1"}, {"map": 0.6})
    better = decide_promotion({"map": 0.7}, registry, 0.5, {"run_id": "run-2"})
    assert better["promote"] is True
    assert better["reason"] == "mAP 0.70 beats the champion run run-1 at 0.60 and meets the threshold 0.50"
    assert decide_promotion({"map": 0.6}, registry, 0.5, {"run_id": "run-3"})["reason"].startswith(
        "mAP 0.60 matches the champion run run-1")
    record_champion(registry, {"run_id": "run-2"}, {"map": 0.7})
    stored = read_registry(registry)
    assert stored["champion"]["run_id"] == "run-2"
    assert [h["run_id"] for h in stored["history"]] == ["run-1", "run-2"]


def test_close_scores_get_enough_digits_to_differ(registry: str) -> None:
    decision = decide_promotion({"map": 0.4996}, registry, 0.5, {"run_id": "r"})
    assert decision["reason"] == "mAP 0.4996 is below the threshold 0.5000"


def test_a_retried_run_replaces_its_own_history_entry(registry: str) -> None:
    record_champion(registry, {"run_id": "run-1"}, {"map": 0.6})
    record_champion(registry, {"run_id": "run-1"}, {"map": 0.6})
    assert len(read_registry(registry)["history"]) == 1


def test_bad_inputs_are_named(registry: str) -> None:
    with pytest.raises(PromotionInputError, match="evaluation: 'map' must be a number, got None"):
        decide_promotion({}, registry, 0.5, {"run_id": "r"})
    with pytest.raises(PromotionInputError, match="candidate needs a 'run_id'"):
        decide_promotion({"map": 0.5}, registry, 0.5, {"model_uri": "x"})
    Path(registry[len("file://"):]).parent.mkdir(parents=True)
    Path(registry[len("file://"):]).write_text('{"champion": null,\n "history": [}')
    with pytest.raises(RegistryError, match="registry.json line 2: not valid JSON"):
        decide_promotion({"map": 0.6}, registry, 0.5, {"run_id": "r"})
    Path(registry[len("file://"):]).write_text(json.dumps({"champion": {"run_id": "a"}, "history": []}))
    with pytest.raises(PromotionInputError, match="champion: 'map' must be a number"):
        read_registry(registry)


def test_registry_on_s3(s3_bucket: str) -> None:
    uri = registry_uri(f"s3://{s3_bucket}/runs", "dag")
    assert decide_promotion({"map": 0.9}, uri, 0.5, {"run_id": "r1"})["promote"] is True
    record_champion(uri, {"run_id": "r1"}, {"map": 0.9})
    assert read_registry(uri)["champion"]["run_id"] == "r1"
    assert decide_promotion({"map": 0.8}, uri, 0.5, {"run_id": "r2"})["reason"] == (
        "mAP 0.80 does not beat the champion run r1 at 0.90")
