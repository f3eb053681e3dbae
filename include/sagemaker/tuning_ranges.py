"""The built-in object-detection algorithm's tuning ranges, checked against its documentation.

:func:`parameter_ranges` builds a tuning job's ``ParameterRanges`` from ranges inside the
documented tunable bounds (:data:`TUNABLE`, :func:`documented_ranges`). Those bounds are the
widest a request may use, not good defaults: a learning rate of 0.5 diverged (loss 305) and a
weight decay near 0.999 wipes the weights out. :func:`default_ranges` are the ranges a tuning job
gets when the configuration names none: a decade either side of the profile's learning rate,
weight decay 1e-5..1e-3, both log-scaled, the batch size around the profile's, momentum only for
sgd (adam, rmsprop and adadelta ignore it here), and not the optimizer (one learning-rate range
means different things to different optimizers). The hyperparameters themselves are validated
by :mod:`include.training.hyperparameters` (one table for both backends).

=================  ============================  ===========================================
hyperparameter     SageMaker's documented range  default tuning range
=================  ============================  ===========================================
learning_rate      1e-6 .. 0.5                   lr / 10 .. lr x 10, Logarithmic
weight_decay       0 .. 0.999                    1e-5 .. 1e-3, Logarithmic
mini_batch_size    8 .. 64                       batch / 2 .. batch x 2 (within 8 .. 64)
momentum           0 .. 0.999                    0.8 .. 0.99, ReverseLogarithmic (sgd only)
optimizer          sgd, adam, rmsprop, adadelta  not tuned
=================  ============================  ===========================================
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from include.training.hyperparameters import OPTIMIZERS, HyperparameterError

#: The documented tunable hyperparameters (SageMaker's "Tune an Object Detection Model" page): range type and
#: the widest bounds (or allowed values).
TUNABLE: dict[str, tuple[str, tuple[Any, ...]]] = {
    "learning_rate": ("continuous", (1e-6, 0.5)),
    "mini_batch_size": ("integer", (8, 64)),
    "momentum": ("continuous", (0.0, 0.999)),
    "optimizer": ("categorical", OPTIMIZERS),
    "weight_decay": ("continuous", (0.0, 0.999)),
}


def default_ranges(hyperparameters: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Tuning ranges around the profile's ``hyperparameters`` (see the module docstring), inside :data:`TUNABLE`."""
    from include.training.hyperparameters import DEFAULTS

    hp = {**DEFAULTS, **{k: str(v) for k, v in hyperparameters.items()}}
    (lr_low, lr_high), (batch_low, batch_high) = TUNABLE["learning_rate"][1], TUNABLE["mini_batch_size"][1]
    lr, batch = float(hp["learning_rate"]), int(float(hp["mini_batch_size"]))
    ranges: dict[str, dict[str, Any]] = {
        "learning_rate": {"type": "continuous", "min": max(lr / 10, lr_low), "max": min(lr * 10, lr_high),
                          "scaling": "Logarithmic"},
        "weight_decay": {"type": "continuous", "min": 1e-5, "max": 1e-3, "scaling": "Logarithmic"},
        "mini_batch_size": {"type": "integer", "min": max(batch // 2, batch_low), "max": min(batch * 2, batch_high),
                            "scaling": "Auto"},
    }
    if hp["optimizer"] == "sgd":
        ranges["momentum"] = {"type": "continuous", "min": 0.8, "max": 0.99, "scaling": "ReverseLogarithmic"}
    return ranges


def documented_ranges() -> dict[str, dict[str, Any]]:
    """The documented tuning ranges, in the configuration's shape (``type``, ``min``/``max`` or ``values``)."""
    out: dict[str, dict[str, Any]] = {}
    for name, (kind, bounds) in TUNABLE.items():
        if kind == "categorical":
            out[name] = {"type": kind, "values": list(bounds)}
        else:
            out[name] = {"type": kind, "min": bounds[0], "max": bounds[1], "scaling": "Auto"}
    return out


def _number_text(kind: str, value: float) -> str:
    return str(int(value)) if kind == "integer" else repr(float(value))


def _numeric_range(name: str, kind: str, bounds: tuple[Any, ...], spec: Mapping[str, Any]) -> dict[str, str]:
    low, high = spec.get("min"), spec.get("max")
    if low is None or high is None or not low < high:
        raise HyperparameterError(f"tuning range {name}: needs min < max (got min={low}, max={high})")
    if low < bounds[0] or high > bounds[1]:
        raise HyperparameterError(
            f"tuning range {name}: [{low}, {high}] is outside the tunable [{bounds[0]}, {bounds[1]}]"
        )
    if kind == "integer" and (int(low) != low or int(high) != high):
        raise HyperparameterError(f"tuning range {name}: integer bounds expected (got {low}, {high})")
    scaling = spec.get("scaling") or "Auto"
    allowed = ("Auto", "Linear", "Logarithmic") + (("ReverseLogarithmic",) if kind == "continuous" else ())
    if scaling not in allowed:
        raise HyperparameterError(f"tuning range {name}: scaling {scaling!r} is not one of {', '.join(allowed)}")
    if scaling == "Logarithmic" and low <= 0:
        raise HyperparameterError(f"tuning range {name}: Logarithmic scaling needs min > 0 (got {low})")
    if scaling == "ReverseLogarithmic" and high >= 1:
        raise HyperparameterError(f"tuning range {name}: ReverseLogarithmic scaling needs max < 1 (got {high})")
    return {
        "Name": name,
        "MinValue": _number_text(kind, low),
        "MaxValue": _number_text(kind, high),
        "ScalingType": scaling,
    }


def parameter_ranges(ranges: Mapping[str, Mapping[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """``ParameterRanges`` of a tuning job from ranges shaped ``{name: {type, min, max, values, scaling}}``."""
    if not ranges:
        raise HyperparameterError("a tuning job needs at least one tuning range")
    out: dict[str, list[dict[str, Any]]] = {
        "ContinuousParameterRanges": [],
        "IntegerParameterRanges": [],
        "CategoricalParameterRanges": [],
    }
    for name, spec in ranges.items():
        if name not in TUNABLE:
            raise HyperparameterError(f"tuning range {name}: not tunable; tunable: {', '.join(TUNABLE)}")
        kind, bounds = TUNABLE[name]
        if spec.get("type") != kind:
            raise HyperparameterError(f"tuning range {name}: must be {kind} (got {spec.get('type')!r})")
        if kind == "categorical":
            values = [str(v) for v in spec.get("values") or []]
            bad = [v for v in values if v not in bounds]
            if not values or bad or len(set(values)) != len(values):
                raise HyperparameterError(
                    f"tuning range {name}: values must be distinct and among {', '.join(bounds)} (got {values})"
                )
            out["CategoricalParameterRanges"].append({"Name": name, "Values": values})
        else:
            key = "IntegerParameterRanges" if kind == "integer" else "ContinuousParameterRanges"
            out[key].append(_numeric_range(name, kind, bounds, spec))
    return out
