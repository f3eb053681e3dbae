"""PSI and the two-sample tests on synthetic data: a shift drifts, the same distribution does not."""

from __future__ import annotations

import numpy as np
import pytest

from include.monitoring.drift import Thresholds, compare, numeric_psi, thresholds_for

LIMITS = Thresholds()


def test_a_shifted_distribution_drifts_and_the_same_one_does_not() -> None:
    rng = np.random.default_rng(0)
    baseline = rng.normal(180, 20, 2000).tolist()
    same = compare("input.brightness", baseline, rng.normal(180, 20, 500).tolist(), LIMITS, categorical=False)
    shifted = compare("input.brightness", baseline, rng.normal(150, 25, 500).tolist(), LIMITS, categorical=False)
    assert same is not None and not same.drifted and same.psi < 0.1 and same.method == "ks"
    assert shifted is not None and shifted.drifted and shifted.psi > 1
    assert shifted.description().startswith("input.brightness: PSI ")


def test_a_constant_baseline_feature_is_compared_as_categories() -> None:
    """Quantile bins put every 640 in one bin (PSI 0 against 1024-wide images); categories see the change."""
    baseline, current = [640] * 300, [1024] * 20 + [640] * 10
    assert numeric_psi(np.array(baseline, float), np.array(current, float)) == pytest.approx(0.0, abs=1e-9)
    drift = compare("input.width", baseline, current, LIMITS, categorical=False)
    assert drift is not None and drift.method == "chi-square" and drift.drifted and drift.psi > 5
    assert "current 1024 67%" in drift.summary


def test_small_samples_inflate_psi_but_the_test_keeps_them_from_drifting() -> None:
    rng = np.random.default_rng(1)
    drift = compare(
        "input.contrast", rng.normal(20, 2, 300).tolist(), rng.normal(20, 2, 12).tolist(), LIMITS, categorical=False
    )
    assert drift is not None and drift.psi > LIMITS.psi and not drift.drifted


def test_class_mix_by_chi_square() -> None:
    baseline = ["RBC"] * 800 + ["WBC"] * 100 + ["Platelets"] * 100
    drift = compare("prediction.class", baseline, ["WBC"] * 60 + ["RBC"] * 40, LIMITS, categorical=True)
    assert drift is not None and drift.drifted and drift.method == "chi-square"
    assert not compare("prediction.class", baseline, baseline[::10], LIMITS, categorical=True).drifted
    assert compare("prediction.class", baseline, [], LIMITS, categorical=True) is None


def test_thresholds_per_feature_over_the_default() -> None:
    settings = {"default": {"psi": 0.5}, "input.brightness": {"p_value": 0.001}}
    assert thresholds_for("input.brightness", settings) == Thresholds(psi=0.5, p_value=0.001)
    assert thresholds_for("input.width", settings) == Thresholds(psi=0.5, p_value=0.01)
