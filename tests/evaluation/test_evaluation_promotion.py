"""The promotion gate's rule (the champion comes from the registry: tests/tracking/test_registry.py)."""

from __future__ import annotations

import pytest

from include.evaluation.promotion import PromotionInputError, decide_promotion


def test_first_model_above_the_threshold_is_promoted() -> None:
    decision = decide_promotion({"map": 0.62}, 0.5, None)
    assert decision == {"promote": True, "reason": "mAP 0.62 meets the threshold 0.50 and there is no champion yet",
                        "champion": None}


def test_model_below_the_threshold_is_not_promoted() -> None:
    decision = decide_promotion({"map": 0.41}, 0.5, {"version": 3, "map": 0.2})
    assert decision["promote"] is False and decision["reason"] == "mAP 0.41 is below the threshold 0.50"


def test_worse_model_is_not_promoted_and_the_reason_names_the_champion() -> None:
    decision = decide_promotion({"map": 0.70}, 0.5, {"version": 7, "map": 0.78})
    assert decision["promote"] is False
    assert decision["reason"] == "mAP 0.70 does not beat the champion (version 7) at 0.78"


def test_better_or_equal_model_is_promoted() -> None:
    assert decide_promotion({"map": 0.7}, 0.5, {"version": 1, "map": 0.6})["reason"] == (
        "mAP 0.70 beats the champion (version 1) at 0.60 and meets the threshold 0.50")
    assert decide_promotion({"map": 0.6}, 0.5, {"version": 1, "map": 0.6})["reason"].startswith(
        "mAP 0.60 matches the champion (version 1)")


def test_close_scores_get_enough_digits_to_differ() -> None:
    assert decide_promotion({"map": 0.4996}, 0.5, None)["reason"] == "mAP 0.4996 is below the threshold 0.5000"


def test_bad_inputs_are_named() -> None:
    with pytest.raises(PromotionInputError, match="evaluation: 'map' must be a number, got None"):
        decide_promotion({}, 0.5, None)
    with pytest.raises(PromotionInputError, match="champion version 2: 'map' must be a number, got 'x'"):
        decide_promotion({"map": 0.6}, 0.5, {"version": 2, "map": "x"})


def test_the_reason_names_the_split_the_figures_come_from() -> None:
    test = {"map": 0.7, "split": "test"}
    assert decide_promotion(test, 0.5, None)["reason"] == (
        "test mAP 0.70 meets the threshold 0.50 and there is no champion yet")
    assert decide_promotion(test, 0.5, {"version": 4, "map": 0.6, "split": "test"})["reason"] == (
        "test mAP 0.70 beats the champion (version 4) at 0.60 and meets the threshold 0.50")
    assert decide_promotion(test, 0.5, {"version": 4, "map": 0.8, "split": "validation"})["reason"] == (
        "test mAP 0.70 does not beat the champion (version 4), measured on validation, at 0.80")
