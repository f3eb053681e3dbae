"""JSON Schemas of Model Monitor's statistics, constraints and violations files (the documented shapes).

The SageMaker SDK's ``Statistics`` / ``Constraints`` classes only load JSON, without checking it, so a
baseline given by hand (or written by Model Monitor itself) is checked here before monitoring trusts it.
"""

from __future__ import annotations

from typing import Any

_COMMON = {
    "type": "object",
    "required": ["num_present", "num_missing"],
    "properties": {"num_present": {"type": "number", "minimum": 0}, "num_missing": {"type": "number", "minimum": 0}},
}
_BUCKET = {
    "type": "object",
    "required": ["lower_bound", "upper_bound", "count"],
    "properties": {k: {"type": "number"} for k in ("lower_bound", "upper_bound", "count")},
}
_NUMERICAL = {
    "type": "object",
    "required": ["common"],
    "properties": {
        "common": _COMMON,
        **{k: {"type": "number"} for k in ("mean", "sum", "std_dev", "min", "max")},
        "distribution": {
            "type": "object",
            "properties": {
                "kll": {
                    "type": "object",
                    "required": ["buckets"],
                    "properties": {
                        "buckets": {"type": "array", "items": _BUCKET},
                        "sketch": {
                            "type": "object",
                            "required": ["data"],
                            "properties": {
                                "parameters": {"type": "object"},
                                "data": {"type": "array", "items": {"type": "array", "items": {"type": "number"}}},
                            },
                        },
                    },
                }
            },
        },
    },
}
_STRING = {
    "type": "object",
    "required": ["common"],
    "properties": {
        "common": _COMMON,
        "distinct_count": {"type": "number", "minimum": 0},
        "distribution": {
            "type": "object",
            "properties": {
                "categorical": {
                    "type": "object",
                    "required": ["buckets"],
                    "properties": {
                        "buckets": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "required": ["value", "count"],
                                "properties": {"value": {"type": "string"}, "count": {"type": "number"}},
                            },
                        }
                    },
                }
            },
        },
    },
}
_TYPE = {"enum": ["Integral", "Fractional", "String", "Unknown"]}


def _features(properties: dict[str, Any], **rules: Any) -> dict[str, Any]:
    """The ``features`` list both files have: named, typed objects with ``properties`` of their own."""
    item = {"type": "object", "required": ["name", "inferred_type"], **rules}
    item["properties"] = {"name": {"type": "string"}, "inferred_type": _TYPE, **properties}
    return {"type": "array", "items": item}


STATISTICS = {
    "type": "object",
    "required": ["version", "dataset", "features"],
    "properties": {
        "version": {"const": 0},
        "dataset": {"type": "object", "required": ["item_count"], "properties": {"item_count": {"type": "integer"}}},
        "features": _features(
            {"numerical_statistics": _NUMERICAL, "string_statistics": _STRING},
            oneOf=[{"required": ["numerical_statistics"]}, {"required": ["string_statistics"]}],
        ),
    },
}
CONSTRAINTS = {
    "type": "object",
    "required": ["version", "features"],
    "properties": {
        "version": {"const": 0},
        "features": _features(
            {
                "completeness": {"type": "number", "minimum": 0, "maximum": 1},
                "num_constraints": {"type": "object", "properties": {"is_non_negative": {"type": "boolean"}}},
                "string_constraints": {
                    "type": "object",
                    "properties": {"domains": {"type": "array", "items": {"type": "string"}}},
                },
                "monitoringConfigOverrides": {"type": "object"},
            }
        ),
        "monitoring_config": {
            "type": "object",
            "properties": {
                "evaluate_constraints": {"enum": ["Enabled", "Disabled"]},
                "emit_metrics": {"enum": ["Enabled", "Disabled"]},
                "datatype_check_threshold": {"type": "number"},
                "domain_content_threshold": {"type": "number"},
                "distribution_constraints": {
                    "type": "object",
                    "properties": {
                        "perform_comparison": {"enum": ["Enabled", "Disabled"]},
                        "comparison_threshold": {"type": "number"},
                        "comparison_method": {"enum": ["Simple", "Robust"]},
                        "categorical_comparison_threshold": {"type": "number"},
                        "categorical_drift_method": {"enum": ["LInfinity", "ChiSquared"]},
                    },
                },
            },
        },
    },
}
VIOLATIONS = {
    "type": "object",
    "required": ["violations"],
    "properties": {
        "violations": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["feature_name", "constraint_check_type", "description"],
                "properties": {
                    "feature_name": {"type": "string"},
                    "constraint_check_type": {
                        "enum": [
                            "data_type_check",
                            "completeness_check",
                            "baseline_drift_check",
                            "missing_column_check",
                            "extra_column_check",
                            "categorical_values_check",
                        ]
                    },
                    "description": {"type": "string"},
                },
            },
        }
    },
}


def check(document: Any, schema: dict[str, Any], where: str) -> Any:
    """``document`` when it fits ``schema``; ``ValueError`` naming ``where`` and the first offending path."""
    import jsonschema

    error = jsonschema.exceptions.best_match(jsonschema.Draft202012Validator(schema).iter_errors(document))
    if error is not None:
        path = "/".join(str(p) for p in error.absolute_path) or "(top level)"
        raise ValueError(f"{where}: not a Model Monitor file: at {path}: {error.message[:300]}")
    return document
