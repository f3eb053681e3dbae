"""SageMaker Model Monitor's files: ``statistics.json``, ``constraints.json`` and ``constraint_violations.json``.

The shapes are those of the documented "Schema for Statistics" / "Schema for Constraints" (bring-your-own
container pages), so files written here are read by Model Monitor tooling and the pipeline alike; Model
Monitor's schedules are closed to new AWS customers, so the pipeline computes them with its own code on both
backends and keeps only the file formats. A numeric feature's ``kll`` sketch holds the raw values in one
uncompacted level (an exact sketch, as long as there are at most :data:`SKETCH_K` of them; beyond that a
seeded uniform sample, marked ``"sampled": true``): drift tests run on those values, the ten equal-width
buckets are for display. Our own thresholds ride in each feature's ``monitoringConfigOverrides`` and our
metadata (classes, score threshold, where the data came from) in a top-level ``detection`` object.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from include.monitoring.features import FEATURES, STRING

SCHEMA_VERSION = 0
#: Values a numeric feature's sketch keeps (a seeded sample beyond it).
SKETCH_K = 2048
BUCKETS = 10
STATISTICS_FILE = "statistics.json"
CONSTRAINTS_FILE = "constraints.json"
VIOLATIONS_FILE = "constraint_violations.json"
#: Model Monitor's check types this pipeline reports.
DRIFT_CHECK, COMPLETENESS_CHECK, MISSING_COLUMN_CHECK = (
    "baseline_drift_check",
    "completeness_check",
    "missing_column_check",
)


def _numeric(values: Sequence[Any], seed: int) -> dict[str, Any]:
    present = [float(v) for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    common = {"num_present": len(present), "num_missing": len(values) - len(present)}
    if not present:
        return {"common": common}
    n, total = len(present), math.fsum(present)
    mean = total / n
    low, high = min(present), max(present)
    width = (high - low) / BUCKETS or 1.0
    counts = [0] * BUCKETS
    for v in present:
        counts[min(BUCKETS - 1, int((v - low) / width))] += 1
    sample = present if n <= SKETCH_K else random.Random(seed).sample(present, SKETCH_K)
    return {
        "common": common,
        "mean": mean,
        "sum": total,
        "std_dev": math.sqrt(math.fsum((v - mean) ** 2 for v in present) / n),
        "min": low,
        "max": high,
        "distribution": {
            "kll": {
                "buckets": [
                    {"lower_bound": low + i * width, "upper_bound": low + (i + 1) * width, "count": float(c)}
                    for i, c in enumerate(counts)
                ],
                "sketch": {
                    "parameters": {"c": 0.64, "k": float(SKETCH_K)},
                    "data": [sample],
                    **({"sampled": True} if n > SKETCH_K else {}),
                },
            }
        },
    }


def _string(values: Sequence[Any]) -> dict[str, Any]:
    present = [str(v) for v in values if v is not None]
    counts = Counter(present)
    return {
        "common": {"num_present": len(present), "num_missing": len(values) - len(present)},
        "distinct_count": float(len(counts)),
        "distribution": {
            "categorical": {"buckets": [{"value": k, "count": float(c)} for k, c in counts.most_common()]}
        },
    }


def statistics(
    columns: Mapping[str, Sequence[Any]], images: int, about: Mapping[str, Any], groups: Sequence[str], seed: int = 0
) -> dict[str, Any]:
    """``statistics.json`` of the feature columns measured over ``images`` images; only the features of the
    measured ``groups`` (``input``, ``prediction``) are listed (a capture without responses has no predictions)."""
    features = []
    for name, values in columns.items():
        if name.split(".", 1)[0] not in groups:
            continue
        kind = FEATURES.get(name, STRING)
        body = (
            {"string_statistics": _string(values)}
            if kind == STRING
            else {"numerical_statistics": _numeric(values, seed)}
        )
        features.append({"name": name, "inferred_type": kind, **body})
    return {
        "version": SCHEMA_VERSION,
        "dataset": {"item_count": images},
        "features": features,
        "detection": dict(about),
    }


def constraints(stats: Mapping[str, Any], thresholds: Mapping[str, Mapping[str, float]]) -> dict[str, Any]:
    """``constraints.json`` suggested from a baseline's statistics: completeness, non-negativity, class domains,
    and each feature's drift thresholds (``thresholds[name]``) as its ``monitoringConfigOverrides``."""
    out = []
    for feature in stats["features"]:
        name, kind = feature["name"], feature["inferred_type"]
        if kind == STRING:
            s = feature["string_statistics"]
            extra = {
                "string_constraints": {
                    "domains": sorted(b["value"] for b in s["distribution"]["categorical"]["buckets"])
                }
            }
        else:
            s = feature["numerical_statistics"]
            extra = {"num_constraints": {"is_non_negative": s.get("min", 0.0) >= 0}}
        common = s["common"]
        total = common["num_present"] + common["num_missing"]
        out.append(
            {
                "name": name,
                "inferred_type": kind,
                "completeness": common["num_present"] / total if total else 1.0,
                **extra,
                "monitoringConfigOverrides": dict(thresholds.get(name, {})),
            }
        )
    return {
        "version": SCHEMA_VERSION,
        "features": out,
        "monitoring_config": {
            "evaluate_constraints": "Enabled",
            "emit_metrics": "Enabled",
            "datatype_check_threshold": 0.1,
            "domain_content_threshold": 0.1,
            "distribution_constraints": {
                "perform_comparison": "Enabled",
                "comparison_threshold": 0.1,
                "comparison_method": "Robust",
                "categorical_comparison_threshold": 0.1,
                "categorical_drift_method": "ChiSquared",
            },
        },
    }


def feature_values(stats: Mapping[str, Any], name: str) -> list[Any] | None:
    """The values a statistics file keeps of ``name``: the sketch's raw values (numeric) or the categories
    repeated by their counts (string); None when the file has no such feature."""
    for feature in stats.get("features", []):
        if feature["name"] != name:
            continue
        if "string_statistics" in feature:
            buckets = feature["string_statistics"].get("distribution", {}).get("categorical", {}).get("buckets", [])
            return [b["value"] for b in buckets for _ in range(int(b["count"]))]
        kll = feature["numerical_statistics"].get("distribution", {}).get("kll", {})
        return [v for level in kll.get("sketch", {}).get("data", []) for v in level]
    return None


def violations(items: Sequence[Mapping[str, str]]) -> dict[str, Any]:
    """``constraint_violations.json``: ``[{"feature_name", "constraint_check_type", "description"}]``."""
    return {"violations": [dict(item) for item in items]}
