"""Drift of one feature between the baseline and the current data: PSI and a two-sample test from scipy.

A feature drifts when the distributions differ by a material amount (population stability index above the
feature's ``psi`` threshold) **and** the difference is not sampling noise (the two-sample test's p-value below
its ``p_value``): PSI alone drifts on any small batch (its expected value over 10 bins is about 9/n for the
same distribution, 0.3 with 30 images), a test alone flags differences too small to matter on large ones.
Setting ``psi: 0`` leaves the test alone, ``p_value: 1`` the PSI alone.

Continuous features are binned at the baseline's interior deciles and tested with Kolmogorov-Smirnov
(``scipy.stats.ks_2samp``). A feature with few distinct baseline values (BCCD: every image 640x480) is
compared as categories instead (quantile bins would put every value in one bin and see a PSI of 0 against
1024-wide images), with a chi-square goodness-of-fit test of the current counts against the baseline's
shares, as is a string feature. Shares are floored at 1e-4 so a category new to the data has a finite PSI.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

EPSILON = 1e-4
#: Numeric features with at most this many distinct baseline values are compared as categories.
MAX_CATEGORIES = 20
BINS = 10


@dataclass(frozen=True)
class Thresholds:
    psi: float = 0.25
    p_value: float = 0.01


@dataclass(frozen=True)
class FeatureDrift:
    """The comparison of one feature."""

    name: str
    method: str  # "ks" or "chi-square"
    psi: float
    statistic: float
    p_value: float
    baseline_n: int
    current_n: int
    thresholds: Thresholds
    summary: str  # baseline against current, in words

    @property
    def drifted(self) -> bool:
        return self.psi > self.thresholds.psi and self.p_value < self.thresholds.p_value

    def description(self) -> str:
        """The readable reason (Model Monitor's violation ``description``)."""
        test = "KS" if self.method == "ks" else "chi-square"
        return (
            f"{self.name}: PSI {self.psi:.2f} > {self.thresholds.psi:g} and {test} p {self.p_value:.2g} < "
            f"{self.thresholds.p_value:g} ({self.summary})"
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "feature": self.name,
            "method": self.method,
            "psi": self.psi,
            "statistic": self.statistic,
            "p_value": self.p_value,
            "baseline_n": self.baseline_n,
            "current_n": self.current_n,
            "psi_threshold": self.thresholds.psi,
            "p_value_threshold": self.thresholds.p_value,
            "drifted": self.drifted,
            "summary": self.summary,
        }


def psi_from_shares(expected: np.ndarray, actual: np.ndarray) -> float:
    """PSI = sum((a - e) * ln(a / e)) over bins, shares floored at :data:`EPSILON`."""
    e, a = np.clip(expected, EPSILON, None), np.clip(actual, EPSILON, None)
    return float(np.sum((a - e) * np.log(a / e)))


def numeric_psi(baseline: np.ndarray, current: np.ndarray, bins: int = BINS) -> float:
    """PSI over the baseline's interior quantiles (open-ended first and last bins)."""
    edges = np.unique(np.quantile(baseline, np.linspace(0, 1, bins + 1)[1:-1]))
    expected = np.bincount(np.searchsorted(edges, baseline, side="right"), minlength=len(edges) + 1) / len(baseline)
    actual = np.bincount(np.searchsorted(edges, current, side="right"), minlength=len(edges) + 1) / len(current)
    return psi_from_shares(expected, actual)


def category_label(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def _categorical(name: str, baseline: Sequence[Any], current: Sequence[Any], limits: Thresholds) -> FeatureDrift:
    from scipy import stats

    base, cur = Counter(category_label(v) for v in baseline), Counter(category_label(v) for v in current)
    categories = sorted(set(base) | set(cur))
    b = np.array([base[c] for c in categories], dtype=float)
    c = np.array([cur[k] for k in categories], dtype=float)
    expected_share = np.clip(b / b.sum(), EPSILON, None)
    expected_share /= expected_share.sum()
    chi2 = stats.chisquare(c, f_exp=expected_share * c.sum()) if len(categories) > 1 else None
    statistic, p = (float(chi2.statistic), float(chi2.pvalue)) if chi2 is not None else (0.0, 1.0)

    def mix(counter: Counter, n: float) -> str:
        return ", ".join(f"{k} {v / n:.0%}" for k, v in counter.most_common(3))

    summary = f"baseline {mix(base, b.sum())}; current {mix(cur, c.sum())}"
    return FeatureDrift(
        name,
        "chi-square",
        psi_from_shares(b / b.sum(), c / c.sum()),
        statistic,
        p,
        int(b.sum()),
        int(c.sum()),
        limits,
        summary,
    )


def compare(
    name: str, baseline: Sequence[Any], current: Sequence[Any], limits: Thresholds, categorical: bool
) -> FeatureDrift | None:
    """The drift of ``name`` (None when either side has no values)."""
    from scipy import stats

    baseline = [v for v in baseline if v is not None and not (isinstance(v, float) and math.isnan(v))]
    current = [v for v in current if v is not None and not (isinstance(v, float) and math.isnan(v))]
    if not baseline or not current:
        return None
    if categorical or len(set(baseline)) <= MAX_CATEGORIES:
        return _categorical(name, baseline, current, limits)
    b, c = np.asarray(baseline, dtype=float), np.asarray(current, dtype=float)
    ks = stats.ks_2samp(b, c)
    summary = (
        f"baseline median {np.median(b):.3g} [{np.quantile(b, 0.05):.3g}, {np.quantile(b, 0.95):.3g}]; "
        f"current median {np.median(c):.3g} [{np.quantile(c, 0.05):.3g}, {np.quantile(c, 0.95):.3g}]"
    )
    return FeatureDrift(
        name, "ks", numeric_psi(b, c), float(ks.statistic), float(ks.pvalue), len(b), len(c), limits, summary
    )


def thresholds_for(name: str, settings: Mapping[str, Mapping[str, float]]) -> Thresholds:
    """``settings[name]`` over ``settings["default"]`` over the built-in defaults."""
    merged = {**settings.get("default", {}), **settings.get(name, {})}
    return Thresholds(**{k: float(v) for k, v in merged.items() if k in ("psi", "p_value")})
