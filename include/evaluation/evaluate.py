"""The evaluation stage: the trained artifact, measured again on the validation channel.

``evaluate`` loads ``model.tar.gz`` exactly as the endpoint does, runs it over every
validation record and writes, under ``output_uri``::

    evaluation.json          mAP, per-class AP and counts, COCO mAP, settings, URIs, timings
    charts/*.png             validation mAP and losses per epoch (and tuning trials when tuned)
    samples/sample_NN.png    validation images with predicted and ground-truth boxes
    report.html              everything above on one self-contained page
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from itertools import islice
from typing import Any

import numpy as np

from include import storage
from include.evaluation import charts
from include.evaluation.metrics import DetectionEvaluator, Interpolation, MetricInputError
from include.evaluation.report import Picture, ReportContent, render_report
from include.evaluation.training_run import (
    VALIDATION_MAP,
    TrainingCurves,
    TrainingRecordError,
    read_json_object,
    read_training_curves,
    resolve_training,
    start_weights,
    training_facts,
    training_job_name,
    training_timings,
    tuning_objective,
    tuning_trials,
)
from include.evaluation.validation_data import VALIDATION_CHANNEL, ValidationImage, read_validation
from include.run_layout import MODEL_ARCHIVE, QUALITY_JSON, RECORDIO_SUMMARY, TRAINING_JSON, TRAINING_LOG, TUNING_JSON

log = logging.getLogger(__name__)

EVALUATION_FILE = "evaluation.json"
REPORT_FILE = "report.html"
BATCH_SIZE = 8


class EvaluationInputError(ValueError):
    """The training output or data set given to evaluation is unusable."""


@dataclass
class Measurement:
    """What one pass of the detector over the validation channel produced."""

    evaluator: DetectionEvaluator
    samples: list[tuple[ValidationImage, np.ndarray]] = field(default_factory=list)
    seconds: float = 0.0


def _validation_channel(data_uri: str | None, record: dict[str, Any], training_uri: str) -> tuple[str, str | None]:
    """The validation channel folder and, when known, the RecordIO output folder holding it."""
    data_uri = data_uri or record.get("data_uri")
    if data_uri:
        return storage.join(data_uri, VALIDATION_CHANNEL), storage.normalize(data_uri)
    for channel in record.get("InputDataConfig") or []:
        if channel.get("ChannelName") == VALIDATION_CHANNEL:
            uri = ((channel.get("DataSource") or {}).get("S3DataSource") or {}).get("S3Uri")
            if uri:
                return storage.normalize(uri), None
    raise EvaluationInputError(
        f"no data URI given and {storage.join(training_uri, TRAINING_JSON)} records neither 'data_uri' nor a "
        "validation channel in InputDataConfig: pass the RecordIO output folder (--data)"
    )


def _model_uri(training_uri: str, record: dict[str, Any]) -> str:
    """``model.tar.gz`` in the training folder, else the artifact the record names."""
    local = storage.join(training_uri, MODEL_ARCHIVE)
    if storage.exists(local):
        return local
    remote = record.get("artifact_uri") or (record.get("ModelArtifacts") or {}).get("S3ModelArtifacts")
    if remote:
        return storage.normalize(remote)
    raise EvaluationInputError(f"{local} does not exist and training.json names no other model artifact")


def _optional_json(uri: str | None, name: str) -> dict[str, Any] | None:
    """``name`` in the folder ``uri`` (or ``uri`` itself when it is a .json file); None when absent."""
    if uri is None:
        return None
    target = uri if uri.rstrip("/").endswith(".json") else storage.join(uri, name)
    return read_json_object(target) if storage.exists(target) else None


def _batches(items: Iterable[ValidationImage], size: int) -> Iterator[list[ValidationImage]]:
    iterator = iter(items)
    while batch := list(islice(iterator, size)):
        yield batch


def _in_frame(boxes: np.ndarray, frame: int, first_coord: int) -> np.ndarray:
    """A copy of ``boxes`` whose normalized corners (from column ``first_coord``) are scaled to ``frame`` pixels."""
    out = np.array(boxes, dtype=np.float64).reshape(-1, first_coord + 4)
    out[:, first_coord:first_coord + 4] *= frame
    return out


def measure(detector: Any, channel_uri: str, iou: float = 0.5, samples: int = 0) -> Measurement:
    """Run ``detector`` over a channel folder, matching its detections to the ground truth.

    Boxes are compared in pixels of the network input (an ``image_shape`` square), the frame in
    which the trainer computes ``validation:mAP``; the first ``samples`` images are kept for drawing.
    """
    result = Measurement(DetectionEvaluator(len(detector.classes), iou=iou))
    frame = detector.image_shape
    started = time.perf_counter()
    for batch in _batches(read_validation(channel_uri), BATCH_SIZE):
        for item, detections in zip(batch, detector.predict_batch([b.image for b in batch]), strict=True):
            try:
                result.evaluator.add(_in_frame(detections, frame, 2), _in_frame(item.boxes, frame, 1))
            except MetricInputError as exc:
                raise EvaluationInputError(
                    f"{item.source} record {item.index}: {exc} (the model has {len(detector.classes)} classes)"
                ) from None
            if len(result.samples) < samples:
                result.samples.append((item, detections))
    result.seconds = time.perf_counter() - started
    if result.evaluator.images == 0:
        raise EvaluationInputError(f"{channel_uri} holds no records")
    return result


def _charts(curves: TrainingCurves | None, tuning: dict[str, Any] | None) -> tuple[dict[str, Picture], list[str]]:
    """The charts the run's data allows, by file stem, and a note for each one it does not."""
    makers = {}
    if curves is not None:
        makers["validation_map"] = ("Validation mAP per epoch", lambda: charts.map_chart(curves))
        makers["training_losses"] = ("Training losses per epoch", lambda: charts.loss_chart(curves))
    if tuning is not None:
        trials, objective = tuning_trials(tuning), tuning_objective(tuning)
        makers["tuning"] = ("Tuning trials", lambda: charts.tuning_chart(trials, objective))
    pictures, notes = {}, []
    for key, (title, make) in makers.items():
        try:
            pictures[key] = Picture(title, make())
        except (charts.ChartDataError, TrainingRecordError) as exc:
            notes.append(f"no chart '{title}': {exc}")
    return pictures, notes


def _sample_pictures(kept: list[tuple[ValidationImage, np.ndarray]], classes: dict[int, str],
                     score_threshold: float) -> list[Picture]:
    from include.evaluation.samples import draw_detections

    pictures = []
    for item, detections in kept:
        name = f"{item.source.rsplit('/', 1)[-1]} record {item.index}"
        shown = int((detections[:, 1] >= score_threshold).sum())
        title = f"{name}: {shown} detections >= {score_threshold:g}, {len(item.boxes)} ground truth"
        pictures.append(Picture(name, draw_detections(item.image, detections, item.boxes, classes, score_threshold,
                                                      title=title)))
    return pictures


def _training_facts(record: dict[str, Any], curves: TrainingCurves | None) -> dict[str, Any]:
    facts = training_facts(record)
    if curves is not None and curves.values(VALIDATION_MAP)[0]:
        facts["best_epoch"], facts["best_validation_map"] = curves.best_epoch()
        facts["epochs_logged"] = len(curves.values(VALIDATION_MAP)[0])
    return facts


def evaluate(
    training_uri: str,
    data_uri: str | None,
    output_uri: str,
    score_threshold: float = 0.5,
    samples: int = 6,
    quality_uri: str | None = None,
    iou: float = 0.5,
    interpolation: Interpolation = "11-point",
    tuning_uri: str | None = None,
) -> dict[str, Any]:
    """Evaluate a training run's model on the validation channel and write the report (see the module doc).

    ``training_uri`` is a training output folder, or a tuning job's folder (its best trial is
    evaluated and its trials charted). ``data_uri`` is the RecordIO output folder; ``None``
    takes the one ``training.json`` records. ``quality_uri`` (the quality gate's folder or its
    ``quality.json``) adds the gate's summary; ``tuning_uri`` (a tuning job's folder or its
    ``tuning.json``) the tuning chart when ``training_uri`` is the best trial's folder.
    Returns a small summary for XCom: ``map``, ``coco_map``, ``report_uri``, ``evaluation_uri``...
    """
    from include.model_artifact import load_detector

    if not 0.0 <= score_threshold <= 1.0:
        raise ValueError(f"score_threshold must be within 0..1, got {score_threshold}")
    if samples < 0:
        raise ValueError(f"samples must not be negative, got {samples}")
    training_uri, record, tuning = resolve_training(training_uri)
    tuning = _optional_json(tuning_uri, TUNING_JSON) or tuning
    channel_uri, recordio_uri = _validation_channel(data_uri, record, training_uri)
    model_uri = _model_uri(training_uri, record)
    started = time.perf_counter()
    detector = load_detector(model_uri)
    load_seconds = time.perf_counter() - started
    measured = measure(detector, channel_uri, iou, samples)
    metrics = measured.evaluator.result(detector.classes, interpolation, score_threshold)
    log.info("mAP@%g (%s) %.4f, COCO mAP %.4f on %d images", iou, interpolation, metrics.map, metrics.coco_map,
             metrics.images)

    notes: list[str] = []
    try:
        curves: TrainingCurves | None = read_training_curves(training_uri, record)
    except TrainingRecordError as exc:
        curves = None
        notes.append(f"no training curves: {exc}")
    chart_pictures, chart_notes = _charts(curves, tuning)
    notes += chart_notes
    for note in notes:
        log.warning("%s", note)
    content = ReportContent(
        title=f"Evaluation of {training_job_name(record) or storage.normalize(training_uri)}",
        metrics=metrics,
        training=_training_facts(record, curves),
        hyperparameters=record.get("HyperParameters") or record.get("hyperparameters") or detector.hyperparameters,
        data_counts=(_optional_json(recordio_uri, RECORDIO_SUMMARY) or {}).get("channels") or {},
        quality=_optional_json(quality_uri, QUALITY_JSON),
        charts=list(chart_pictures.values()),
        samples=_sample_pictures(measured.samples, detector.classes, score_threshold),
        trials=tuning_trials(tuning) if tuning else [],
        start_weights=start_weights(record),
        timings={
            **{f"training {k}": v for k, v in training_timings(record).items()},
            "evaluation model load seconds": round(load_seconds, 3),
            "evaluation inference and matching seconds": round(measured.seconds, 3),
            "evaluation images per second": round(metrics.images / max(measured.seconds, 1e-9), 2),
        },
        notes=notes,
    )
    locations = {"model": model_uri, "training": storage.normalize(training_uri), "validation": channel_uri}
    return _write_outputs(output_uri, content, list(chart_pictures), locations)


def _write_outputs(output_uri: str, content: ReportContent, chart_names: list[str],
                   locations: dict[str, str]) -> dict[str, Any]:
    """Write the pictures, evaluation.json and report.html under ``output_uri``; the XCom summary.

    The picture folders are emptied first, so a retried task leaves exactly its own files.
    """
    for folder in ("charts", "samples"):
        storage.remove(storage.join(output_uri, folder), recursive=True)
    files = {name: storage.join(output_uri, "charts", f"{name}.png") for name in chart_names}
    files.update({f"sample_{i:02d}": storage.join(output_uri, "samples", f"sample_{i:02d}.png")
                  for i in range(len(content.samples))})
    for uri, picture in zip(files.values(), [*content.charts, *content.samples], strict=True):
        storage.write_bytes(uri, picture.png)
    evaluation_uri = storage.join(output_uri, EVALUATION_FILE)
    report_uri = storage.join(output_uri, REPORT_FILE)
    metrics = content.metrics
    document = {
        **metrics.as_dict(),
        "model_uri": locations["model"],
        "training_uri": locations["training"],
        "validation_uri": locations["validation"],
        "training": content.training,
        "hyperparameters": dict(content.hyperparameters),
        "start_weights": dict(content.start_weights),
        "files": files,
        "notes": list(content.notes),
        "timings": dict(content.timings),
    }
    storage.write_text(evaluation_uri, json.dumps(document, indent=2) + "\n")
    content.artifacts = _artifacts(locations, evaluation_uri, report_uri)
    storage.write_text(report_uri, render_report(content))
    return {
        "map": metrics.map,
        "coco_map": metrics.coco_map,
        "iou": metrics.iou,
        "interpolation": metrics.interpolation,
        "score_threshold": metrics.score_threshold,
        "images": metrics.images,
        "gt_objects": metrics.gt_objects,
        "model_uri": locations["model"],
        "evaluation_uri": evaluation_uri,
        "report_uri": report_uri,
        "notes": list(content.notes),
    }


def _artifacts(locations: dict[str, str], evaluation_uri: str, report_uri: str) -> dict[str, str]:
    """The URIs the report lists (the training log only where there is one)."""
    log_uri = storage.join(locations["training"], TRAINING_LOG)
    return {
        "model": locations["model"],
        "training output": locations["training"],
        **({"training log": log_uri} if storage.exists(log_uri) else {}),
        "validation channel": locations["validation"],
        "evaluation.json": evaluation_uri,
        "report": report_uri,
    }
