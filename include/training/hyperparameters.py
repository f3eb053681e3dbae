"""The hyperparameters of SageMaker's built-in object-detection algorithm, with its documented ranges.

SageMaker passes every hyperparameter as a string; :func:`validate_hyperparameters` parses them into
typed values (defaults filled in) and rejects anything the algorithm would reject, naming the
parameter, the value and what is allowed. :func:`to_strings` goes back to the request form.

Local-only extension (documented): ``base_network`` also accepts ``mobilenet-1.0`` (GluonCV
SSD with a MobileNet 1.0 base, light enough for a CPU), and with it ``image_shape`` may go below
SageMaker's minimum of 300 (down to :data:`LOCAL_MIN_IMAGE_SHAPE`); and ``base_lr_factor`` (local
only, default 1) sets the base network's learning rate to that fraction of ``learning_rate``, which
fine-tuning from ImageNet weights wants lower than the new layers' (SageMaker's algorithm has no
such hyperparameter). Requests for the ``sagemaker`` backend must use :data:`SAGEMAKER_BASE_NETWORKS`
and no local-only hyperparameter; ``for_sagemaker=True`` enforces that.

Two data-dependent checks are stricter than SageMaker, to catch a request that would misbehave
there: ``num_training_samples`` must equal the number of training records (SageMaker leaves the
learning-rate schedule undefined otherwise) and every class id must be below ``num_classes``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

SAGEMAKER_BASE_NETWORKS: tuple[str, ...] = ("vgg-16", "resnet-50")
LOCAL_BASE_NETWORKS: tuple[str, ...] = (*SAGEMAKER_BASE_NETWORKS, "mobilenet-1.0")
OPTIMIZERS: tuple[str, ...] = ("sgd", "adam", "rmsprop", "adadelta")
SAGEMAKER_MIN_IMAGE_SHAPE = 300
LOCAL_MIN_IMAGE_SHAPE = 64
#: Hyperparameters only the local algorithm knows.
LOCAL_ONLY: tuple[str, ...] = ("base_lr_factor",)

#: SageMaker's default ``label_width``: room for (350 - 2) / 5 = 69 objects per image.
DEFAULT_LABEL_WIDTH = 350

#: Names SageMaker itself adds to training jobs it starts (a tuning job adds the objective metric).
RESERVED_NAMES: tuple[str, ...] = ("_tuning_objective_metric",)


class HyperparameterError(ValueError):
    """A hyperparameter is unknown, missing, malformed or out of range."""


@dataclass(frozen=True)
class Hyperparameter:
    """One documented hyperparameter: how to parse it, what is allowed, its default."""

    name: str
    parse: Callable[[str], Any]
    allowed: str
    default: str | None  # None: required
    check: Callable[[Any], bool] = lambda value: True


def _int(text: str) -> int:
    value = float(text)
    if not value.is_integer():
        raise ValueError(text)
    return int(value)


def _bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered not in ("true", "false"):
        raise ValueError(text)
    return lowered == "true"


def _binary(text: str) -> int:
    if text.strip() not in ("0", "1"):
        raise ValueError(text)
    return int(text)


def _steps(text: str) -> tuple[int, ...]:
    parts = [p.strip() for p in text.split(",") if p.strip()]
    steps = tuple(_int(p) for p in parts)
    if any(b <= a for a, b in zip(steps, steps[1:], strict=False)):
        raise ValueError(text)
    return steps


def _regex(text: str) -> str:
    re.compile(text)
    return text


def _choice(values: tuple[str, ...]) -> Callable[[str], str]:
    def parse(text: str) -> str:
        if text.strip() not in values:
            raise ValueError(text)
        return text.strip()

    return parse


SPECS: dict[str, Hyperparameter] = {
    spec.name: spec
    for spec in (
        Hyperparameter("num_classes", _int, "a positive integer", None, lambda v: v >= 1),
        Hyperparameter("num_training_samples", _int, "a positive integer", None, lambda v: v >= 1),
        Hyperparameter(
            "base_network", _choice(LOCAL_BASE_NETWORKS), f"one of {', '.join(LOCAL_BASE_NETWORKS)}", "vgg-16"
        ),
        Hyperparameter("use_pretrained_model", _binary, "0 or 1", "1"),
        Hyperparameter("epochs", _int, "a positive integer", "30", lambda v: v >= 1),
        Hyperparameter("mini_batch_size", _int, "a positive integer", "32", lambda v: v >= 1),
        Hyperparameter("learning_rate", float, "a float in (0, 1]", "0.001", lambda v: 0 < v <= 1),
        Hyperparameter(
            "lr_scheduler_step", _steps, "comma-separated increasing positive epochs, e.g. '10,20'", "",
            lambda v: all(s >= 1 for s in v),
        ),
        Hyperparameter("lr_scheduler_factor", float, "a float in (0, 1)", "0.1", lambda v: 0 < v < 1),
        Hyperparameter("optimizer", _choice(OPTIMIZERS), f"one of {', '.join(OPTIMIZERS)}", "sgd"),
        Hyperparameter("momentum", float, "a float in (0, 1]", "0.9", lambda v: 0 < v <= 1),
        Hyperparameter("weight_decay", float, "a float in (0, 1)", "0.0005", lambda v: 0 < v < 1),
        Hyperparameter("overlap_threshold", float, "a float in (0, 1]", "0.5", lambda v: 0 < v <= 1),
        Hyperparameter("nms_threshold", float, "a float in (0, 1]", "0.45", lambda v: 0 < v <= 1),
        Hyperparameter(
            "image_shape", _int,
            f"an integer >= {SAGEMAKER_MIN_IMAGE_SHAPE} (>= {LOCAL_MIN_IMAGE_SHAPE} with base_network mobilenet-1.0)",
            "300", lambda v: v >= LOCAL_MIN_IMAGE_SHAPE,
        ),
        Hyperparameter("label_width", _int, "a positive integer >= 2 + 5 x the most objects in one image",
                       str(DEFAULT_LABEL_WIDTH),
                       lambda v: v >= 7),
        Hyperparameter("early_stopping", _bool, "True or False", "False"),
        Hyperparameter("early_stopping_min_epochs", _int, "a positive integer", "10", lambda v: v >= 1),
        Hyperparameter("early_stopping_patience", _int, "a positive integer", "5", lambda v: v >= 1),
        Hyperparameter("early_stopping_tolerance", float, "a float in [0, 1]", "0.0", lambda v: 0 <= v <= 1),
        Hyperparameter("freeze_layer_pattern", _regex, "a Python regular expression over parameter names", ""),
        Hyperparameter("kv_store", _choice(("", "dist_sync", "dist_async")), "dist_sync or dist_async", ""),
        Hyperparameter("base_lr_factor", float, "a float in (0, 1] (local only)", "1.0", lambda v: 0 < v <= 1),
    )
}

#: The documented defaults, as SageMaker strings (required ones left out).
DEFAULTS: dict[str, str] = {name: spec.default for name, spec in SPECS.items() if spec.default is not None}


def label_width(hp: Mapping[str, Any]) -> int:
    """The ``label_width`` of a set of hyperparameters (SageMaker's default when it is not set)."""
    return int(hp.get("label_width", DEFAULT_LABEL_WIDTH))


def _fail(name: str, value: str, allowed: str, why: str = "is not allowed") -> HyperparameterError:
    return HyperparameterError(f"hyperparameter {name}={value!r} {why}: expected {allowed}")


def validate_hyperparameters(
    hp: Mapping[str, Any],
    num_classes: int | None = None,
    num_training_samples: int | None = None,
    max_objects: int | None = None,
    *,
    for_sagemaker: bool = False,
) -> dict[str, Any]:
    """Parse ``hp`` (SageMaker strings) into typed values with every default filled in.

    ``num_classes``, ``num_training_samples`` and ``max_objects`` describe the data (class count of
    the class map, training records, most objects in one record) and are checked against the
    hyperparameters when given. ``for_sagemaker`` rejects the local-only extensions.
    Raises :class:`HyperparameterError` naming the parameter, its value and what is allowed.
    """
    unknown = sorted(set(hp) - set(SPECS) - set(RESERVED_NAMES))
    if unknown:
        raise HyperparameterError(
            f"unknown hyperparameter(s) {', '.join(unknown)}: the object-detection algorithm takes "
            f"{', '.join(SPECS)}"
        )
    out: dict[str, Any] = {}
    for name, spec in SPECS.items():
        raw = hp.get(name)
        if raw is None:
            if spec.default is None:
                raise HyperparameterError(f"hyperparameter {name} is required: expected {spec.allowed}")
            raw = spec.default
        text = str(raw)
        try:
            value = spec.parse(text)
        except (ValueError, TypeError, re.error) as exc:
            raise _fail(name, text, spec.allowed, "cannot be parsed") from exc
        if not spec.check(value):
            raise _fail(name, text, spec.allowed, "is out of range")
        out[name] = value
    _check_combinations(out, hp, for_sagemaker)
    _check_data(out, hp, num_classes, num_training_samples, max_objects)
    return out


def _check_combinations(out: dict[str, Any], hp: Mapping[str, Any], for_sagemaker: bool) -> None:
    network = out["base_network"]
    local_only = [name for name in LOCAL_ONLY if name in hp]
    if for_sagemaker and local_only:
        raise HyperparameterError(
            f"hyperparameter {local_only[0]}={hp[local_only[0]]!r} is local only: SageMaker's algorithm lacks it"
        )
    if for_sagemaker and network not in SAGEMAKER_BASE_NETWORKS:
        raise _fail("base_network", network, f"one of {', '.join(SAGEMAKER_BASE_NETWORKS)} on SageMaker",
                    "is a local-only base network")
    if out["image_shape"] < SAGEMAKER_MIN_IMAGE_SHAPE and (for_sagemaker or network in SAGEMAKER_BASE_NETWORKS):
        raise _fail("image_shape", str(hp.get("image_shape", DEFAULTS["image_shape"])),
                    f"an integer >= {SAGEMAKER_MIN_IMAGE_SHAPE} with base_network {network}", "is out of range")


def _check_data(
    out: dict[str, Any],
    hp: Mapping[str, Any],
    num_classes: int | None,
    num_training_samples: int | None,
    max_objects: int | None,
) -> None:
    if num_classes is not None and out["num_classes"] != num_classes:
        raise _fail("num_classes", str(hp["num_classes"]), f"{num_classes}, the number of classes in the data",
                    "does not match the data")
    if num_training_samples is not None and out["num_training_samples"] != num_training_samples:
        raise _fail("num_training_samples", str(hp["num_training_samples"]),
                    f"{num_training_samples}, the number of records in the train channel", "does not match the data")
    if max_objects is not None and out["label_width"] < 2 + 5 * max_objects:
        raise _fail("label_width", str(hp.get("label_width", DEFAULTS["label_width"])),
                    f"at least {2 + 5 * max_objects} (2 + 5 x {max_objects} objects in one image)", "is too small")


def to_strings(hp: Mapping[str, Any]) -> dict[str, str]:
    """Hyperparameters (typed or strings) as the strings a CreateTrainingJob request carries."""
    out: dict[str, str] = {}
    for name, value in hp.items():
        if isinstance(value, bool):
            out[name] = "True" if value else "False"
        elif isinstance(value, (tuple, list)):
            out[name] = ",".join(str(int(v)) for v in value)
        else:
            out[name] = str(value)
    return out
