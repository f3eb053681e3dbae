"""What the quality gate, the data set, evaluation and the endpoint's life leave in a pipeline run.

Figures are read from the stages' own JSON documents and logged generically (every number, named
by its path: ``checks.box_inside_image.failed``, ``classes.RBC.ap``), so a check, a class or a
data split a stage adds later shows up without a change here. Training and tuning are in
:mod:`include.tracking.training`.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from include import storage
from include.run_layout import QUALITY_JSON
from include.tracking import artifacts
from include.tracking.rest import INVALID, TrackingError
from include.tracking.runs import FAILED, FINISHED, Metric, Run, TrackingRef, client, finish, log, step_run

if TYPE_CHECKING:
    from include.configs import PipelineConfig

#: Characters MLflow allows in a metric name (``/\\w.- :``); anything else becomes ``_``.
_NAME_FORBIDDEN = re.compile(r"[^/\w.\- :]")
#: Parts of quality.json that are not figures of a check (offending rows, the policy's own settings).
QUALITY_SKIP = frozenset({"rows", "expectations", "parameters", "input", "problems"})
#: Parts of evaluation.json that are settings or locations, not results.
EVALUATION_SKIP = frozenset({"hyperparameters", "files", "notes", "iou", "score_threshold"})
#: MLflow keeps a dataset digest of at most 36 characters.
DIGEST_LENGTH = 32
DATASET_CONTEXT = "training"


def metric_name(path: str) -> str:
    return _NAME_FORBIDDEN.sub("_", path)


def figures(document: Mapping[str, Any], skip: frozenset[str] = frozenset(), prefix: str = "") -> dict[str, float]:
    """Every number (and boolean, as 0/1) in ``document`` by its dotted path.

    Lists of objects with a ``name`` (checks, classes) are walked by that name; other lists and
    the keys in ``skip`` (at any depth) are left out.
    """
    out: dict[str, float] = {}
    for key, value in document.items():
        if key in skip:
            continue
        path = f"{prefix}{key}"
        if isinstance(value, bool):
            out[metric_name(path)] = float(value)
        elif isinstance(value, int | float):
            if math.isfinite(value):
                out[metric_name(path)] = float(value)
        elif isinstance(value, Mapping):
            out.update(figures(value, skip, f"{path}."))
        elif isinstance(value, list):
            for item in value:
                if isinstance(item, Mapping) and isinstance(item.get("name"), str):
                    rest = {k: v for k, v in item.items() if k != "name"}
                    out.update(figures(rest, skip, f"{path}.{item['name']}."))
    return out


def _metrics(values: Mapping[str, float], prefix: str = "") -> list[Metric]:
    return [Metric(metric_name(prefix + key), value) for key, value in values.items()]


# --- the run's settings ---------------------------------------------------------------------


def run_settings(cfg: PipelineConfig) -> dict[str, str]:
    """The run's settings a person compares runs by: every DAG param's effective value, by the param's name."""
    from include.configs import PARAM_KEYS

    data = cfg.model_dump(mode="json")
    out = {}
    for name, dotted in PARAM_KEYS.items():
        value: Any = data
        for part in dotted.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        out[name] = ",".join(map(str, value)) if isinstance(value, list) else str(value)
    return out


def record_run_settings(ref: TrackingRef, cfg: PipelineConfig, tags: Mapping[str, str]) -> None:
    """The settings as params of the pipeline run (as tags ``setting.<name>`` when a rerun changed one: MLflow
    keeps a param's first value), and ``tags``."""
    settings = run_settings(cfg)
    try:
        log(ref, ref.run_id, params=settings, tags=tags)
    except TrackingError as exc:
        if exc.code != INVALID:
            raise
        log(ref, ref.run_id, tags={**tags, **{f"setting.{k}": v for k, v in settings.items()}})


# --- the quality gate and the data set ------------------------------------------------------


def record_quality(ref: TrackingRef, quality_uri: str, failed: bool, tag_pipeline_run: bool = True) -> Run | None:
    """The ``validate`` run: every check's counts, the gate's settings, ``quality.json`` and ``quality.html``.

    Called whether the gate passed or not (a failed gate wrote its report and then raised); None
    when there is no report (the stage failed before writing one).
    """
    report_uri = storage.join(quality_uri, QUALITY_JSON)
    if not storage.exists(report_uri):
        return None
    report = json.loads(storage.read_text(report_uri))
    run = step_run(ref, "validate")
    params = {"policy": report.get("policy"), **{f"{k}": v for k, v in (report.get("parameters") or {}).items()}}
    passed = bool(report.get("success")) and not failed
    log(
        ref,
        run.run_id,
        metrics=_metrics(figures(report, QUALITY_SKIP)),
        params=params,
        tags={
            "detection.quality": "passed" if passed else "failed",
            "detection.checks_failed": ",".join(report.get("checks_failed") or []),
        },
    )
    for uri in storage.listdir(quality_uri):
        if uri.endswith((".json", ".html")):
            artifacts.log_file(ref, run, uri, "quality")
    if tag_pipeline_run:  # else the caller does, with the data set (one request fewer)
        log(ref, ref.run_id, tags={"detection.quality": "passed" if passed else "failed"})
    finish(ref, run.run_id, FINISHED if passed else FAILED)
    return run


def table_digest(table_uri: str) -> str:
    """The content digest of a table file (SHA-256, cut to MLflow's dataset digest length)."""
    return hashlib.sha256(storage.read_bytes(table_uri)).hexdigest()[:DIGEST_LENGTH]


def dataset_profile(table: Any) -> dict[str, Any]:
    """Counts of the canonical table: boxes, images, classes, and boxes and images per split and class."""
    per_split = {
        str(split): {"images": int(part["image"].nunique()), "boxes": int(len(part))}
        for split, part in table.groupby("split", sort=True)
    }
    per_class = {
        str(split): {str(name): int(n) for name, n in part["class_name"].value_counts().sort_index().items()}
        for split, part in table.groupby("split", sort=True)
    }
    return {
        "boxes": int(len(table)),
        "images": int(table["image"].nunique()),
        "classes": int(table["class_name"].nunique()),
        "per_split": per_split,
        "boxes_per_class": per_class,
    }


def _colspec(table: Any) -> str:
    """The table's columns as MLflow's dataset schema (``mlflow_colspec``), for the UI's dataset view."""
    kinds = {"i": "long", "u": "long", "f": "double", "b": "boolean"}
    columns = [
        {"type": kinds.get(dtype.kind, "string"), "name": str(name), "required": True}
        for name, dtype in table.dtypes.items()
    ]
    return json.dumps({"mlflow_colspec": columns})


def record_dataset(ref: TrackingRef, table_uri: str, name: str, tags: Mapping[str, Any] | None = None) -> str:
    """The gated table as the pipeline run's dataset input (source URI, digest, counts), and ``tags`` on the pipeline
    run; returns the digest."""
    import io

    import pandas as pd
    import pyarrow.parquet as pq

    data = storage.read_bytes(table_uri)
    table = pd.read_parquet(io.BytesIO(data), columns=["image", "class_name", "split"])
    columns = pq.read_schema(io.BytesIO(data)).empty_table().to_pandas()
    digest = hashlib.sha256(data).hexdigest()[:DIGEST_LENGTH]
    uri = storage.normalize(table_uri)
    dataset = {
        "name": name,
        "digest": digest,
        "source_type": "s3" if uri.startswith("s3://") else "local",
        "source": json.dumps({"uri": uri}),
        "schema": _colspec(columns),
        "profile": json.dumps(dataset_profile(table)),
    }
    inputs = [{"tags": [{"key": "mlflow.data.context", "value": DATASET_CONTEXT}], "dataset": dataset}]
    client(ref.uri).call("POST", "runs/log-inputs", {"run_id": ref.run_id, "datasets": inputs})
    log(ref, ref.run_id, tags={"detection.data_digest": digest, "detection.dataset": uri, **(tags or {})})
    return digest


# --- evaluation ------------------------------------------------------------------------------


def record_evaluation(ref: TrackingRef, result: Mapping[str, Any], evaluation_uri: str) -> Run:
    """The ``evaluate`` run: every figure of ``evaluation.json``, its settings, the report, charts and samples.

    The headline figures (``map``, ``coco_map``, on the split evaluation scored: ``split``, the held-out
    test split when there is one) also go on the pipeline run, where runs are compared.
    """
    document = json.loads(storage.read_text(result["evaluation_uri"]))
    run = step_run(ref, "evaluate")
    params = {key: document[key] for key in ("iou", "interpolation", "score_threshold", "split") if key in document}
    log(
        ref,
        run.run_id,
        metrics=_metrics(figures(document, EVALUATION_SKIP)),
        params=params,
        tags={"detection.model_uri": result.get("model_uri", "")},
    )
    for key in ("evaluation_uri", "report_uri"):
        artifacts.log_file(ref, run, result[key])
    for folder in ("charts", "samples"):
        artifacts.log_folder(ref, run, storage.join(evaluation_uri, folder), folder)
    headline = {key: float(document[key]) for key in ("map", "coco_map") if isinstance(document.get(key), int | float)}
    tags = {"detection.evaluate_run_id": run.run_id, "detection.evaluation_split": document.get("split", "")}
    log(ref, ref.run_id, metrics=_metrics(headline), tags=tags)
    finish(ref, run.run_id)
    return run


# --- events on the pipeline run -------------------------------------------------------------


def record_event(
    ref: TrackingRef, event: str, values: Mapping[str, Any], tags: Mapping[str, Any] | None = None
) -> None:
    """Tags ``<event>.<key>`` on the pipeline run (deploy, smoke_test, teardown, approval), with the time, and
    ``tags`` as they are (in the same request)."""
    stamp = datetime.now(UTC).isoformat(timespec="seconds")
    log(ref, ref.run_id, tags={f"{event}.at": stamp, **{f"{event}.{k}": v for k, v in values.items()}, **(tags or {})})
