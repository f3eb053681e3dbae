"""The promotion gate's rule: a model is promoted when its evaluation mAP (on the held-out test split, or on
validation when the data set has none) reaches the threshold and is at least the champion's.

The champion is the registry version holding the alias ``champion``
(:mod:`include.tracking.registry`); this module only decides and says why, in a sentence for the
task log, the MLflow run and the approval form.
"""

from __future__ import annotations

import math
from typing import Any


class PromotionInputError(ValueError):
    """An evaluation or champion without what the gate needs."""


def _score(entry: dict[str, Any], what: str) -> float:
    value = entry.get("map") if isinstance(entry, dict) else None
    if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
        raise PromotionInputError(f"{what}: 'map' must be a number, got {value!r}")
    return float(value)


def _pair(a: float, b: float) -> tuple[str, str]:
    """``a`` and ``b`` with 2 decimals, or as many more as it takes to tell different values apart."""
    for digits in range(2, 7):
        fa, fb = f"{a:.{digits}f}", f"{b:.{digits}f}"
        if fa != fb or a == b:
            return fa, fb
    return f"{a!r}", f"{b!r}"


def decide_promotion(evaluation: dict[str, Any], threshold: float, champion: dict[str, Any] | None) -> dict[str, Any]:
    """Whether a model with ``evaluation['map']`` should replace ``champion`` (``{"version", "map", "split"}`` or
    None).

    Returns ``{"promote": bool, "reason": str, "champion": champion}``. Writes nothing.
    """
    score = _score(evaluation, "evaluation")
    split = evaluation.get("split", "")
    what = f"{split} mAP".strip()  # "test mAP": the split the figure comes from
    if score < threshold:
        s, t = _pair(score, threshold)
        return {"promote": False, "reason": f"{what} {s} is below the threshold {t}", "champion": champion}
    if champion is None:
        s, t = _pair(score, threshold)
        reason = f"{what} {s} meets the threshold {t} and there is no champion yet"
        return {"promote": True, "reason": reason, "champion": None}
    best = _score(champion, f"champion version {champion.get('version')}")
    s, c = _pair(score, best)
    who = f"the champion (version {champion.get('version')})"
    if champion.get("split") and champion["split"] != split:  # e.g. a champion from before the test split
        who += f", measured on {champion['split']},"
    if score < best:
        return {"promote": False, "reason": f"{what} {s} does not beat {who} at {c}", "champion": champion}
    verb = "beats" if score > best else "matches"
    reason = f"{what} {s} {verb} {who} at {c} and meets the threshold {_pair(score, threshold)[1]}"
    return {"promote": True, "reason": reason, "champion": champion}
