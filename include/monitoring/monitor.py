"""The monitoring pass and the baseline it compares with.

The **baseline** is computed when a model is evaluated: input statistics over the training and validation
images of the gated data set (what the model learned from), prediction statistics over the model's answers
on the held-out images (answers on its training images would be over-confident). It is written as
``statistics.json`` + ``constraints.json`` beside the model (``<job>/output/monitoring/``, not inside
``model.tar.gz``, whose members the algorithm's contract fixes), and its URI is kept on the model's registry
version, so the champion's baseline is found from the registry.

A **monitoring pass** reads what the endpoint saw (captured invocations in a time window, or a transform's
output), writes the current ``statistics.json``, compares every feature with the baseline
(:mod:`include.monitoring.drift`), and writes ``constraint_violations.json``, ``drift.json`` and
``monitoring.html``. Fewer than ``min_images`` images is "insufficient data": figures are written, nothing
is decided.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any

from include import storage
from include.monitoring import model_monitor, schema
from include.monitoring.drift import FeatureDrift, compare, thresholds_for
from include.monitoring.features import FEATURES, STRING, FeatureColumns, image_features, prediction_features
from include.monitoring.sources import (
    CAPTURE,
    Sample,
    capture_samples,
    source_kind,
    transform_samples,
)

log = logging.getLogger(__name__)

BASELINE_FOLDER = "monitoring"
DRIFT_FILE = "drift.json"
REPORT_FILE = "monitoring.html"
PASSED, DRIFTED, INSUFFICIENT = "passed", "drifted", "insufficient_data"
#: Default drift thresholds (``monitoring.thresholds`` and the baseline's constraints override them per feature).
DEFAULT_THRESHOLDS = {"default": {"psi": 0.25, "p_value": 0.01}}


class NothingToMonitor(ValueError):
    """No model to monitor yet (the registry has no champion): a scheduled pass has nothing to do, not a failure."""


def baseline_location(model_uri: str) -> str:
    """Where a model's baseline lives: ``monitoring/`` beside its ``model.tar.gz``."""
    return storage.join(storage.normalize(model_uri).rsplit("/", 1)[0], BASELINE_FOLDER)


def _read_images(uris: Sequence[str], workers: int = 4) -> list[dict[str, Any] | str]:
    """Each image's input features, or the error that kept it from being read (header reads: threads suffice)."""

    def one(uri: str) -> dict[str, Any] | str:
        try:
            return image_features(storage.read_bytes(uri))
        except (OSError, ValueError) as exc:
            return f"{uri}: {exc}"

    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(one, uris))


def measure(
    image_uris: Sequence[str] = (),
    predictions: Iterable[Sequence[Sequence[float]]] = (),
    samples: Iterable[Sample] = (),
    *,
    classes: Mapping[int, str],
    score_threshold: float,
) -> tuple[FeatureColumns, FeatureColumns]:
    """``(input columns, prediction columns)``: input features of ``image_uris`` and of the samples' images,
    prediction features of ``predictions`` and of the samples' answers."""
    inputs, outputs = FeatureColumns(), FeatureColumns()
    for result in _read_images(list(image_uris)):
        inputs.errors.append(result) if isinstance(result, str) else inputs.add(result)
    for rows in predictions:
        outputs.add(prediction_features(rows, classes, score_threshold))
    for sample in samples:
        if sample.image is not None:
            try:
                inputs.add(image_features(sample.image))
            except ValueError as exc:
                inputs.errors.append(f"{sample.name}: {exc}")
        if sample.prediction is not None:
            outputs.add(prediction_features(sample.prediction, classes, score_threshold))
    return inputs, outputs


def current_statistics(inputs: FeatureColumns, outputs: FeatureColumns, about: Mapping[str, Any]) -> dict[str, Any]:
    """One ``statistics.json`` of both column sets (``item_count``: the images seen)."""
    columns = {name: [*inputs.columns[name], *outputs.columns[name]] for name in FEATURES}
    groups = [g for g, cols in (("input", inputs), ("prediction", outputs)) if cols.images]
    about = {
        **about,
        "input_images": inputs.images,
        "prediction_images": outputs.images,
        "unreadable_images": len(inputs.errors),
    }
    return model_monitor.statistics(columns, max(inputs.images, outputs.images), about, groups)


def write_baseline(
    output_uri: str,
    image_uris: Sequence[str],
    predictions: Iterable[Sequence[Sequence[float]]],
    *,
    classes: Mapping[int, str],
    score_threshold: float,
    thresholds: Mapping[str, Mapping[str, float]],
    about: Mapping[str, Any],
) -> dict[str, Any]:
    """Write a baseline's ``statistics.json`` and ``constraints.json`` under ``output_uri``; a summary."""
    inputs, outputs = measure(image_uris, predictions, classes=classes, score_threshold=score_threshold)
    if inputs.errors:
        log.warning("baseline: %d images could not be read, e.g. %s", len(inputs.errors), inputs.errors[0])
    about = {
        **about,
        "kind": "baseline",
        "classes": {str(k): v for k, v in classes.items()},
        "score_threshold": score_threshold,
    }
    stats = current_statistics(inputs, outputs, about)
    merged = {**DEFAULT_THRESHOLDS, **thresholds}
    limits = {f["name"]: vars(thresholds_for(f["name"], merged)) for f in stats["features"]}
    constraints = model_monitor.constraints(stats, limits)
    uris = {
        "statistics": storage.join(output_uri, model_monitor.STATISTICS_FILE),
        "constraints": storage.join(output_uri, model_monitor.CONSTRAINTS_FILE),
    }
    storage.write_text(uris["statistics"], json.dumps(stats) + "\n")
    storage.write_text(uris["constraints"], json.dumps(constraints, indent=1) + "\n")
    log.info("monitoring baseline: %d images, %d answers -> %s", inputs.images, outputs.images, output_uri)
    return {"uri": storage.normalize(output_uri), **uris, "images": inputs.images, "predictions": outputs.images}


def read_baseline(uri: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(statistics, constraints)`` of the baseline folder ``uri`` (or its ``statistics.json``), checked against
    Model Monitor's schemas; a baseline without constraints gets none (the configured thresholds apply)."""
    folder = uri.rsplit("/", 1)[0] if uri.rstrip("/").endswith(".json") else uri
    stats_uri = storage.join(folder, model_monitor.STATISTICS_FILE)
    if not storage.exists(stats_uri):
        raise FileNotFoundError(f"no baseline at {folder}: {model_monitor.STATISTICS_FILE} is missing")
    stats = schema.check(json.loads(storage.read_text(stats_uri)), schema.STATISTICS, stats_uri)
    constraints_uri = storage.join(folder, model_monitor.CONSTRAINTS_FILE)
    constraints = {"version": 0, "features": []}
    if storage.exists(constraints_uri):
        constraints = schema.check(json.loads(storage.read_text(constraints_uri)), schema.CONSTRAINTS, constraints_uri)
    return stats, constraints


def _thresholds(constraints: Mapping[str, Any], configured: Mapping[str, Mapping[str, float]]) -> dict[str, Any]:
    """Built-in defaults, then the baseline's per-feature overrides, then the configuration's."""
    merged: dict[str, dict[str, float]] = {k: dict(v) for k, v in DEFAULT_THRESHOLDS.items()}
    for feature in constraints.get("features", []):
        merged.setdefault(feature["name"], {}).update(feature.get("monitoringConfigOverrides") or {})
    for name, values in configured.items():
        merged.setdefault(name, {}).update(values)
    return merged


def compare_statistics(
    baseline: Mapping[str, Any],
    constraints: Mapping[str, Any],
    current: Mapping[str, Any],
    thresholds: Mapping[str, Mapping[str, float]],
) -> list[FeatureDrift]:
    """Every feature both statistics hold, compared."""
    limits = _thresholds(constraints, thresholds)
    out = []
    for feature in current["features"]:
        name = feature["name"]
        base = model_monitor.feature_values(baseline, name)
        if base is None:
            continue
        drift = compare(
            name,
            base,
            model_monitor.feature_values(current, name) or [],
            thresholds_for(name, limits),
            categorical=feature["inferred_type"] == STRING,
        )
        if drift is not None:
            out.append(drift)
    return out


def _violations(drifts: Sequence[FeatureDrift]) -> list[dict[str, str]]:
    """Model Monitor's violations of the drifted features."""
    return [
        {"feature_name": d.name, "constraint_check_type": model_monitor.DRIFT_CHECK, "description": d.description()}
        for d in drifts
        if d.drifted
    ]


def _samples(
    source: str, input_uri: str | None, start: datetime | None, end: datetime | None
) -> tuple[Iterable[Sample], str, int]:
    kind = source_kind(source)
    if kind == CAPTURE:
        return capture_samples(source, start, end), kind, 0
    samples, errors = transform_samples(source, input_uri)
    return samples, kind, errors


def monitor(
    source: str,
    baseline_uri: str,
    output_uri: str,
    *,
    input_uri: str | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    score_threshold: float | None = None,
    min_images: int = 30,
    thresholds: Mapping[str, Mapping[str, float]] | None = None,
    about: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """One monitoring pass of ``source`` (a capture prefix, or a transform's output whose inputs are under
    ``input_uri`` or where its ``transform.json`` says) against the baseline at ``baseline_uri``; see the module
    docstring. Returns the summary: ``status`` (passed, drifted, insufficient_data), ``reason``, ``drifted``
    (feature names), the files' URIs and counts."""
    from include.monitoring.report import render

    baseline, constraints = read_baseline(baseline_uri)
    facts = baseline.get("detection") or {}
    classes = {int(k): v for k, v in (facts.get("classes") or {}).items()}
    threshold = float(facts.get("score_threshold", 0.5) if score_threshold is None else score_threshold)
    samples, kind, transform_failures = _samples(source, input_uri, start, end)
    inputs, outputs = measure(samples=samples, classes=classes, score_threshold=threshold)
    window = {"start": start.isoformat() if start else None, "end": end.isoformat() if end else None}
    about = {
        **(about or {}),
        "kind": "current",
        "source": storage.normalize(source),
        "source_kind": kind,
        "window": window,
        "baseline": storage.normalize(baseline_uri),
        "score_threshold": threshold,
    }
    current = current_statistics(inputs, outputs, about)
    drifts = compare_statistics(baseline, constraints, current, thresholds or {})
    images = max(inputs.images, outputs.images)
    violations = _violations(drifts) if images >= min_images else []
    if images < min_images:
        status = INSUFFICIENT
        reason = (
            f"insufficient data: {images} images in {source} (window {window['start']} to {window['end']}), "
            f"fewer than monitoring.min_images = {min_images}; nothing was decided"
        )
    elif violations:
        status = DRIFTED
        reason = f"drift in {len(violations)} feature(s) of {source} against {baseline_uri}: " + "; ".join(
            v["description"] for v in violations
        )
    else:
        status = PASSED
        reason = f"no drift: {len(drifts)} features of {images} images within their thresholds"
    uris = {
        name: storage.join(output_uri, file)
        for name, file in (
            ("statistics", model_monitor.STATISTICS_FILE),
            ("violations", model_monitor.VIOLATIONS_FILE),
            ("drift", DRIFT_FILE),
            ("report", REPORT_FILE),
        )
    }
    result = {
        "status": status,
        "reason": reason,
        "drifted": [v["feature_name"] for v in violations],
        "images": images,
        "input_images": inputs.images,
        "prediction_images": outputs.images,
        "unreadable_images": len(inputs.errors),
        "transform_errors": transform_failures,
        "source": storage.normalize(source),
        "source_kind": kind,
        "baseline_uri": storage.normalize(baseline_uri),
        "window": window,
        "min_images": min_images,
        **{f"{name}_uri": uri for name, uri in uris.items()},
    }
    storage.write_text(uris["statistics"], json.dumps(current) + "\n")
    storage.write_text(uris["violations"], json.dumps(model_monitor.violations(violations), indent=1) + "\n")
    storage.write_text(
        uris["drift"],
        json.dumps({**result, "features": [d.as_dict() for d in drifts], "unreadable": inputs.errors[:100]}, indent=1)
        + "\n",
    )
    storage.write_text(uris["report"], render(result, drifts, baseline, current))
    log.log(logging.WARNING if status != PASSED else logging.INFO, "monitoring: %s", reason)
    return result
