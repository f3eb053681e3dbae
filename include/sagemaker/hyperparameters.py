"""The built-in object-detection algorithm's hyperparameters and tuning ranges, checked against its documentation.

SageMaker takes every hyperparameter as a string. :func:`training_hyperparameters` turns the
pipeline's settings (YAML scalars) into that map with every documented hyperparameter present
(documented defaults fill the gaps), ``num_classes``/``num_training_samples`` from the data and
``label_width`` large enough for the most crowded image. :func:`parameter_ranges` builds the
tuning job's ``ParameterRanges`` from ranges inside the documented tunable bounds.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from typing import Any

Scalar = str | int | float | bool


class HyperparameterError(ValueError):
    """A hyperparameter or tuning range the algorithm does not accept."""


def _fail(name: str, value: Any, expected: str) -> HyperparameterError:
    return HyperparameterError(f"hyperparameter {name}={value!r}: expected {expected}")


def _integer(minimum: int) -> Callable[[str, Scalar], str]:
    def check(name: str, value: Scalar) -> str:
        if isinstance(value, bool) or not re.fullmatch(r"[+-]?\d+", str(value).strip()):
            raise _fail(name, value, f"an integer >= {minimum}")
        number = int(str(value))
        if number < minimum:
            raise _fail(name, value, f"an integer >= {minimum}")
        return str(number)

    return check


def _real(low: float, high: float, *, low_open: bool, high_open: bool) -> Callable[[str, Scalar], str]:
    interval = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"

    def check(name: str, value: Scalar) -> str:
        try:
            number = float(value) if not isinstance(value, bool) else math.nan
        except ValueError:
            number = math.nan
        above_low = number > low if low_open else number >= low
        below_high = number < high if high_open else number <= high
        if not (above_low and below_high):
            raise _fail(name, value, f"a number in {interval}")
        return repr(number)

    return check


def _choice(*allowed: str) -> Callable[[str, Scalar], str]:
    def check(name: str, value: Scalar) -> str:
        text = str(value).strip()
        if isinstance(value, bool) or text not in allowed:
            raise _fail(name, value, "one of " + ", ".join(allowed))
        return text

    return check


def _flag(true: str, false: str) -> Callable[[str, Scalar], str]:
    """A boolean written the algorithm's way (``1``/``0`` or ``True``/``False``)."""

    def check(name: str, value: Scalar) -> str:
        text = str(value).strip().lower()
        if text in ("1", "true"):
            return true
        if text in ("0", "false"):
            return false
        raise _fail(name, value, f"a boolean ({true} or {false})")

    return check


def _epoch_list(name: str, value: Scalar) -> str:
    text = str(value).replace(" ", "")
    if isinstance(value, bool) or not re.fullmatch(r"\d+(,\d+)*", text):
        raise _fail(name, value, "comma-separated epoch numbers such as 33,67")
    epochs = [int(part) for part in text.split(",")]
    if epochs != sorted(set(epochs)):
        raise _fail(name, value, "strictly increasing epoch numbers")
    return text


def _regex(name: str, value: Scalar) -> str:
    try:
        re.compile(str(value))
    except re.error as err:
        raise _fail(name, value, f"a regular expression ({err})") from None
    return str(value)


#: Documented hyperparameters: validator and default (``None``: omitted unless set).
DOCUMENTED: dict[str, tuple[Callable[[str, Scalar], str], str | None]] = {
    "num_classes": (_integer(1), None),
    "num_training_samples": (_integer(1), None),
    "base_network": (_choice("vgg-16", "resnet-50"), "vgg-16"),
    "use_pretrained_model": (_flag("1", "0"), "1"),
    "epochs": (_integer(1), "30"),
    "mini_batch_size": (_integer(1), "32"),
    "learning_rate": (_real(0, 1, low_open=True, high_open=False), "0.001"),
    "lr_scheduler_step": (_epoch_list, None),
    "lr_scheduler_factor": (_real(0, 1, low_open=True, high_open=True), "0.1"),
    "optimizer": (_choice("sgd", "adam", "rmsprop", "adadelta"), "sgd"),
    "momentum": (_real(0, 1, low_open=True, high_open=False), "0.9"),
    "weight_decay": (_real(0, 1, low_open=True, high_open=True), "0.0005"),
    "overlap_threshold": (_real(0, 1, low_open=True, high_open=False), "0.5"),
    "nms_threshold": (_real(0, 1, low_open=True, high_open=False), "0.45"),
    "image_shape": (_integer(300), "300"),
    "label_width": (_integer(7), "350"),
    "early_stopping": (_flag("True", "False"), "False"),
    "early_stopping_min_epochs": (_integer(1), "10"),
    "early_stopping_patience": (_integer(1), "5"),
    "early_stopping_tolerance": (_real(0, 1, low_open=False, high_open=False), "0.0"),
    "freeze_layer_pattern": (_regex, None),
}

#: Set from the data, not by hand.
DATA_DERIVED = ("num_classes", "num_training_samples")

LABEL_WIDTH_STEP = 50


def label_width_for(max_objects_per_image: int) -> int:
    """The label width ImageDetRecordIter needs: ``2 + 5 x max objects``, rounded up to a multiple of 50."""
    if max_objects_per_image < 1:
        raise HyperparameterError(f"max objects per image must be >= 1 (got {max_objects_per_image})")
    needed = 2 + 5 * max_objects_per_image
    return -(-needed // LABEL_WIDTH_STEP) * LABEL_WIDTH_STEP


def training_hyperparameters(
    settings: Mapping[str, Scalar],
    *,
    num_classes: int,
    num_training_samples: int,
    max_objects_per_image: int,
) -> dict[str, str]:
    """Every documented hyperparameter as a string, for ``CreateTrainingJob.HyperParameters``.

    ``settings`` are the pipeline's choices (unknown names are errors; an empty
    ``lr_scheduler_step`` means none). ``label_width`` is the larger of the setting (default 350,
    the documented default) and :func:`label_width_for` the data.
    """
    unknown = sorted(set(settings) - set(DOCUMENTED))
    if unknown:
        raise HyperparameterError(
            f"unknown hyperparameter(s) {', '.join(unknown)}; documented: {', '.join(DOCUMENTED)}"
        )
    set_by_hand = sorted(set(settings) & set(DATA_DERIVED))
    if set_by_hand:
        raise HyperparameterError(f"{', '.join(set_by_hand)} come from the data set and cannot be set")
    raw: dict[str, Scalar | None] = {name: default for name, (_, default) in DOCUMENTED.items()}
    raw.update({name: value for name, value in settings.items() if str(value).strip() != ""})
    raw["num_classes"] = num_classes
    raw["num_training_samples"] = num_training_samples
    out = {name: DOCUMENTED[name][0](name, value) for name, value in raw.items() if value is not None}
    out["label_width"] = str(max(int(out["label_width"]), label_width_for(max_objects_per_image)))
    return out


#: The documented tunable hyperparameters: range type and the widest bounds (or allowed values).
TUNABLE: dict[str, tuple[str, tuple[Any, ...]]] = {
    "learning_rate": ("continuous", (1e-6, 0.5)),
    "mini_batch_size": ("integer", (8, 64)),
    "momentum": ("continuous", (0.0, 0.999)),
    "optimizer": ("categorical", ("sgd", "adam", "rmsprop", "adadelta")),
    "weight_decay": ("continuous", (0.0, 0.999)),
}


def default_ranges() -> dict[str, dict[str, Any]]:
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
