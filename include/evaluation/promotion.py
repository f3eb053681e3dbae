"""The promotion gate and the per-DAG model registry (``<storage base>/<dag id>/registry.json``).

A candidate is promoted when its validation mAP reaches the configured threshold and is at
least the current champion's. The registry is a small JSON document::

    {"champion": {"run_id": ..., "map": ..., "model_uri": ..., "promoted_at": ...} | null,
     "history": [every champion so far, oldest first]}

It is rewritten whole and atomically (temporary object, then rename/upload). Two runs of one
DAG that record champions at the same moment would race (last writer wins), so the DAG runs the
gate in a pool of one slot; reading is always safe.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from typing import Any

from include import storage
from include.run_layout import safe_id

REGISTRY_FILE = "registry.json"


class RegistryError(ValueError):
    """A registry file that is not a registry."""


class PromotionInputError(ValueError):
    """An evaluation or candidate without what the gate needs."""


def registry_uri(base_uri: str, dag_id: str) -> str:
    """Where a DAG's registry lives under the storage base URI."""
    return storage.join(base_uri, safe_id(dag_id), REGISTRY_FILE)


def read_registry(uri: str) -> dict[str, Any]:
    """The registry at ``uri``; an empty one (no champion, no history) when the file does not exist yet."""
    if not storage.exists(uri):
        return {"champion": None, "history": []}
    try:
        registry = json.loads(storage.read_text(uri))
    except json.JSONDecodeError as exc:
        raise RegistryError(f"{uri} line {exc.lineno}: not valid JSON ({exc.msg})") from None
    if not isinstance(registry, dict) or not isinstance(registry.get("history"), list):
        raise RegistryError(f"{uri}: expected an object with 'champion' and a 'history' list")
    champion = registry.get("champion")
    if champion is not None:
        _score(champion, f"{uri} champion")
    return registry


def _score(entry: dict[str, Any], what: str) -> float:
    value = entry.get("map") if isinstance(entry, dict) else None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        raise PromotionInputError(f"{what}: 'map' must be a number, got {value!r}")
    return float(value)


def _pair(a: float, b: float) -> tuple[str, str]:
    """``a`` and ``b`` with 2 decimals, or as many more as it takes to tell different values apart."""
    for digits in range(2, 7):
        fa, fb = f"{a:.{digits}f}", f"{b:.{digits}f}"
        if fa != fb or a == b:
            return fa, fb
    return f"{a!r}", f"{b!r}"


def decide_promotion(
    evaluation: dict[str, Any], registry_uri: str, threshold: float, candidate: dict[str, Any]
) -> dict[str, Any]:
    """Whether ``candidate`` (its ``run_id`` at least) with ``evaluation['map']`` should replace the champion.

    Returns ``{"promote": bool, "reason": str, "champion": dict | None}`` (the current champion);
    the reason is a sentence for the task log. Writes nothing: see :func:`record_champion`.
    """
    score = _score(evaluation, "evaluation")
    if not candidate.get("run_id"):
        raise PromotionInputError(f"candidate needs a 'run_id', got keys {sorted(candidate)}")
    champion = read_registry(registry_uri).get("champion")
    what = f"{evaluation.get('split', '')} mAP".strip()  # "test mAP": the split the figure comes from
    if score < threshold:
        s, t = _pair(score, threshold)
        return {"promote": False, "reason": f"{what} {s} is below the threshold {t}", "champion": champion}
    if champion is None:
        s, t = _pair(score, threshold)
        reason = f"{what} {s} meets the threshold {t} and there is no champion yet"
        return {"promote": True, "reason": reason, "champion": None}
    best = float(champion["map"])
    s, c = _pair(score, best)
    who = f"the champion run {champion.get('run_id')}"
    if score < best:
        return {"promote": False, "reason": f"{what} {s} does not beat {who} at {c}", "champion": champion}
    verb = "beats" if score > best else "matches"
    reason = f"{what} {s} {verb} {who} at {c} and meets the threshold {_pair(score, threshold)[1]}"
    return {"promote": True, "reason": reason, "champion": champion}


def record_champion(registry_uri: str, candidate: dict[str, Any], evaluation: dict[str, Any]) -> dict[str, Any]:
    """Make ``candidate`` the champion (atomic rewrite); a retry of the same run replaces its entry."""
    if not candidate.get("run_id"):
        raise PromotionInputError(f"candidate needs a 'run_id', got keys {sorted(candidate)}")
    registry = read_registry(registry_uri)
    entry = {
        **candidate,
        "map": _score(evaluation, "evaluation"),
        "coco_map": evaluation.get("coco_map"),
        "promoted_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    history = [h for h in registry["history"] if h.get("run_id") != entry["run_id"]] + [entry]
    storage.write_text(registry_uri, json.dumps({"champion": entry, "history": history}, indent=2) + "\n")
    return entry
