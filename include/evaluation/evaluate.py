"""The evaluation stage: the trained artifact, measured on the held-out test channel.

``evaluate`` loads ``model.tar.gz`` exactly as the endpoint does, runs it over every record of
the test channel (the split no training decision saw: validation picked the epoch and the
tuning trial) and writes, under ``output_uri``::

    evaluation.json          mAP, per-class AP and counts, COCO mAP, settings, URIs, timings
    charts/*.png             validation mAP and losses per epoch (and tuning trials when tuned)
    samples/sample_NN.png    validation images with predicted and ground-truth boxes
    label_issues.json        likely label errors of the scored split, ranked by cleanlab (label_issues.py)
    label_issues/*.jpg       the worst of them drawn (the label and the model's box)
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
from include.evaluation.channel_data import ChannelImage, channel_files, read_channel
from include.evaluation.label_issues import Record, draw_issues, find_label_issues, report_section
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
from include.run_layout import (
    LABEL_ISSUES_JSON,
    QUALITY_JSON,
    RECORDIO_SUMMARY,
    TRAINING_JSON,
    TRAINING_LOG,
    TUNING_JSON,
)

log = logging.getLogger(__name__)

EVALUATION_FILE = "evaluation.json"
REPORT_FILE = "report.html"
BATCH_SIZE = 8
#: Splits evaluation can score: the held-out test split, or validation (the data that selected the epoch).
EVALUATION_SPLITS = ("test", "validation")
#: Below these, a split's figures move by whole points with a single image: the report warns.
MIN_SPLIT_IMAGES = 50
MIN_CLASS_OBJECTS = 10


class EvaluationInputError(ValueError):
    """The training output or data set given to evaluation is unusable."""


@dataclass
class Measurement:
    """What one pass of the detector over the validation channel produced."""

    evaluator: DetectionEvaluator
    samples: list[tuple[ChannelImage, np.ndarray]] = field(default_factory=list)
    records: list[Record] = field(default_factory=list)  # every record's detections and truth (label issues)
    seconds: float = 0.0


def _has_records(channel_uri: str) -> bool:
    try:
        return bool(channel_files(channel_uri))
    except ValueError:
        return False


def evaluation_channel(
    data_uri: str | None, record: dict[str, Any], training_uri: str, split: str | None = None
) -> tuple[str, str | None, str]:
    """The channel folder to score, the RecordIO output folder holding it (when known) and its split.

    ``split=None`` takes the held-out ``test`` channel when the build has one, else ``validation``
    (the figures are then the selection data's: optimistic, and the report says so). Without a data
    URI, the training request's own validation channel is the only one known.
    """
    if split not in (None, *EVALUATION_SPLITS):
        raise ValueError(f"split must be one of {', '.join(EVALUATION_SPLITS)}, got {split!r}")
    data_uri = data_uri or record.get("data_uri")
    if data_uri:
        chosen = split or ("test" if _has_records(storage.join(data_uri, "test")) else "validation")
        return storage.join(data_uri, chosen), storage.normalize(data_uri), chosen
    if split == "test":
        raise EvaluationInputError("no data URI given: pass the RecordIO output folder (--data) to score test")
    for channel in record.get("InputDataConfig") or []:
        if channel.get("ChannelName") == "validation":
            uri = ((channel.get("DataSource") or {}).get("S3DataSource") or {}).get("S3Uri")
            if uri:
                return storage.normalize(uri), None, "validation"
    raise EvaluationInputError(
        f"no data URI given and {storage.join(training_uri, TRAINING_JSON)} records neither 'data_uri' nor a "
        "validation channel in InputDataConfig: pass the RecordIO output folder (--data)"
    )


def _optional_json(uri: str | None, name: str) -> dict[str, Any] | None:
    """``name`` in the folder ``uri`` (or ``uri`` itself when it is a .json file); None when absent."""
    if uri is None:
        return None
    target = uri if uri.rstrip("/").endswith(".json") else storage.join(uri, name)
    return read_json_object(target) if storage.exists(target) else None


def _batches(items: Iterable[ChannelImage], size: int) -> Iterator[list[ChannelImage]]:
    iterator = iter(items)
    while batch := list(islice(iterator, size)):
        yield batch


def _in_frame(boxes: np.ndarray, frame: int, first_coord: int) -> np.ndarray:
    """A copy of ``boxes`` whose normalized corners (from column ``first_coord``) are scaled to ``frame`` pixels."""
    out = np.array(boxes, dtype=np.float64).reshape(-1, first_coord + 4)
    out[:, first_coord:first_coord + 4] *= frame
    return out


def measure(
    detector: Any,
    channel_uri: str,
    iou: float = 0.5,
    samples: int = 0,
    score_threshold: float = 0.5,
    keep: bool = False,
) -> Measurement:
    """Run ``detector`` over a channel folder, matching its detections to the ground truth.

    Boxes are compared in pixels of the network input (an ``image_shape`` square), the frame in
    which the trainer computes ``validation:mAP``; the first ``samples`` images are kept for drawing,
    and with ``keep`` every record's detections and truth (for the label issues).
    ``score_threshold`` is the confusion matrix's (the APs take every detection).
    """
    result = Measurement(DetectionEvaluator(len(detector.classes), iou=iou, score_threshold=score_threshold))
    frame = detector.image_shape
    started = time.perf_counter()
    for batch in _batches(read_channel(channel_uri), BATCH_SIZE):
        for item, detections in zip(batch, detector.predict_batch([b.image for b in batch]), strict=True):
            try:
                result.evaluator.add(_in_frame(detections, frame, 2), _in_frame(item.boxes, frame, 1))
            except MetricInputError as exc:
                raise EvaluationInputError(
                    f"{item.source} record {item.index}: {exc} (the model has {len(detector.classes)} classes)"
                ) from None
            if len(result.samples) < samples:
                result.samples.append((item, detections))
            if keep:
                result.records.append(Record(item.source, item.index, item.name, np.asarray(detections), item.boxes))
    result.seconds = time.perf_counter() - started
    if result.evaluator.images == 0:
        raise EvaluationInputError(f"{channel_uri} holds no records")
    return result


def _charts(
    curves: TrainingCurves | None, tuning: dict[str, Any] | None, measured: Measurement, metrics: Any,
    classes: dict[int, str], split: str,
) -> tuple[dict[str, Picture], list[str]]:
    """The charts the run's data allows, by file stem, and a note for each one it does not."""
    evaluator = measured.evaluator
    aps = {c.class_id: c.ap for c in metrics.classes}
    makers = {
        "precision_recall": (
            f"Precision-recall per class on {split}",
            lambda: charts.pr_chart(evaluator.pr_curves(), classes, aps, evaluator.iou, split),
        ),
        "confusion_matrix": (
            f"Confusion matrix on {split}",
            lambda: charts.confusion_chart(evaluator.confusion, classes, evaluator.score_threshold, split),
        ),
    }
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


def _sample_pictures(kept: list[tuple[ChannelImage, np.ndarray]], classes: dict[int, str],
                     score_threshold: float) -> list[Picture]:
    from include.evaluation.samples import draw_detections

    pictures = []
    for item, detections in kept:
        name = item.name
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
    split: str | None = None,
    promotion_threshold: float | None = None,
    label_issues: bool = True,
    label_issues_shown: int = 20,
    monitoring: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Evaluate a training run's model on the held-out test channel and write the report (see the module doc).

    ``training_uri`` is a training output folder, or a tuning job's folder (its best trial is
    evaluated and its trials charted). ``data_uri`` is the RecordIO output folder; ``None``
    takes the one ``training.json`` records. ``split`` picks the channel (default: ``test`` when
    the build has one, else ``validation``, noted as optimistic). ``quality_uri`` (the quality
    gate's folder or its ``quality.json``) adds the gate's summary; ``tuning_uri`` (a tuning job's
    folder or its ``tuning.json``) the tuning chart when ``training_uri`` is the best trial's
    folder; ``promotion_threshold`` the gate's threshold to the report's verdict. With
    ``label_issues``, cleanlab ranks likely label errors of the scored split (the
    ``label_issues_shown`` worst drawn in the report). With ``monitoring`` (the keyword arguments of
    :func:`include.monitoring.monitor.write_baseline` but the predictions), the model's answers on the scored
    split become the prediction side of a monitoring baseline in ``monitoring/``. Returns a small summary for
    XCom: ``map``, ``split``, ``coco_map``, ``report_uri``, ``evaluation_uri``...
    """
    from include.model_artifact import load_detector

    if not 0.0 <= score_threshold <= 1.0:
        raise ValueError(f"score_threshold must be within 0..1, got {score_threshold}")
    if samples < 0:
        raise ValueError(f"samples must not be negative, got {samples}")
    resolved = resolve_training(training_uri)
    log.info("%s", resolved.describe(training_uri))
    training_uri, record, model_uri = resolved.training_uri, resolved.record, resolved.model_uri
    tuning = _optional_json(tuning_uri, TUNING_JSON) or resolved.tuning
    channel_uri, recordio_uri, split = evaluation_channel(data_uri, record, training_uri, split)
    started = time.perf_counter()
    detector = load_detector(model_uri)
    load_seconds = time.perf_counter() - started
    measured = measure(detector, channel_uri, iou, samples, score_threshold, keep=label_issues or bool(monitoring))
    metrics = measured.evaluator.result(detector.classes, interpolation, score_threshold)
    log.info("%s mAP@%g (%s) %.4f, COCO mAP %.4f on %d images", split, iou, interpolation, metrics.map,
             metrics.coco_map, metrics.images)

    notes = _split_notes(split, metrics)
    try:
        curves: TrainingCurves | None = read_training_curves(training_uri, record)
    except TrainingRecordError as exc:
        curves = None
        notes.append(f"no training curves: {exc}")
    chart_pictures, chart_notes = _charts(curves, tuning, measured, metrics, detector.classes, split)
    notes += chart_notes
    started = time.perf_counter()
    issues, issue_pictures = _label_issues(measured, detector, (channel_uri, split), recordio_uri, label_issues_shown,
                                           notes) if label_issues else (None, {})
    issue_seconds = time.perf_counter() - started
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
            **({"label issues seconds": round(issue_seconds, 3)} if issues else {}),
        },
        notes=notes,
        split=split,
        promotion_threshold=promotion_threshold,
        label_issues=report_section(issues, issue_pictures) if issues else "",
    )
    locations = {"model": model_uri, "training": storage.normalize(training_uri), "channel": channel_uri}
    classes = detector.classes
    content.confusion = {
        "rows": [*(classes[c] for c in range(len(classes))), "no object"],
        "columns": [*(classes[c] for c in range(len(classes))), "missed"],
        "counts": measured.evaluator.confusion.tolist(),
        "score_threshold": score_threshold,
    }
    _write_label_issues(output_uri, issues, issue_pictures)
    result = _write_outputs(output_uri, content, list(chart_pictures), locations)
    if monitoring:
        from include.monitoring.monitor import BASELINE_FOLDER, write_baseline

        result["monitoring_baseline"] = write_baseline(
            storage.join(output_uri, BASELINE_FOLDER), predictions=[r.detections for r in measured.records],
            classes=detector.classes, **{**monitoring, "about": {**monitoring.get("about", {}), "model_uri": model_uri,
                                                                 "prediction_split": split}},
        )  # fmt: skip
    if issues:
        result["label_issues"] = {"issues": len(issues["issues"]), "images_flagged": issues["images_flagged"],
                                  "uri": storage.join(output_uri, LABEL_ISSUES_JSON)}
    return result


def _label_issues(measured: Measurement, detector: Any, channel: tuple[str, str], recordio_uri: str | None,
                  shown: int, notes: list[str]) -> tuple[dict[str, Any] | None, dict[int, Picture]]:
    """cleanlab's ranking of the scored split's records and the worst issues drawn; None when not asked or possible.

    A failure here is noted, not raised: the label issues are a second look at the data, the
    metrics and the promotion gate do not depend on them.
    """
    if not measured.records:
        return None, {}
    table_uri = (_optional_json(recordio_uri, RECORDIO_SUMMARY) or {}).get("input_uri")
    try:
        channel_uri, split = channel
        document = find_label_issues(measured.records, detector.classes, detector.image_shape, table_uri, shown, split)
        pictures = draw_issues(document, shown, channel_uri)
    except Exception as exc:  # noqa: BLE001 -- see the docstring
        notes.append(f"no label issues: {type(exc).__name__}: {exc}")
        log.exception("label issues failed")
        return None, {}
    log.info("label issues: %d images flagged of %d", document["images_flagged"], document["images"])
    return document, pictures


def _write_label_issues(output_uri: str, document: dict[str, Any] | None, pictures: dict[int, Picture]) -> None:
    """``label_issues.json`` and ``label_issues/*.jpg`` (the folder emptied first: a retry leaves its own files)."""
    storage.remove(storage.join(output_uri, "label_issues"), recursive=True)
    if document is None:
        return
    for rank, picture in pictures.items():
        storage.write_bytes(storage.join(output_uri, "label_issues", f"image_{rank:03d}.jpg"), picture.png)
    storage.write_text(storage.join(output_uri, LABEL_ISSUES_JSON), json.dumps(document, indent=1) + "\n")


def _split_notes(split: str, metrics: Any) -> list[str]:
    """Warnings about the scored split: not held out, or too small for its figures to mean much."""
    notes = []
    if split != "test":
        notes.append(
            "no held-out test split: these figures are on the validation split, which selected the epoch "
            "(and the tuning trial), so they are optimistic"
        )
    if metrics.images < MIN_SPLIT_IMAGES:
        notes.append(
            f"the {split} split has {metrics.images} images (fewer than {MIN_SPLIT_IMAGES}): one image moves "
            "its mAP by whole points"
        )
    small = [f"{c.name} ({c.gt_objects})" for c in metrics.classes if c.gt_objects < MIN_CLASS_OBJECTS]
    if small:
        notes.append(
            f"classes with fewer than {MIN_CLASS_OBJECTS} objects in the {split} split: {', '.join(small)}: "
            "their AP is noise"
        )
    return notes


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
        "split": content.split,
        "model_uri": locations["model"],
        "training_uri": locations["training"],
        "channel_uri": locations["channel"],
        "selection": {
            "split": "validation",
            "map": content.training.get("best_validation_map"),
            "source": "the training job's best epoch (the split that selected it)",
        },
        "training": content.training,
        "confusion_matrix": content.confusion,
        "hyperparameters": dict(content.hyperparameters),
        "start_weights": dict(content.start_weights),
        "files": files,
        "notes": list(content.notes),
        "timings": dict(content.timings),
    }
    storage.write_text(evaluation_uri, json.dumps(document, indent=2) + "\n")
    content.artifacts = _artifacts(locations, evaluation_uri, report_uri, content.split)
    storage.write_text(report_uri, render_report(content))
    return {
        "map": metrics.map,
        "split": content.split,
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
        "promotion_threshold": content.promotion_threshold,
    }


def _artifacts(locations: dict[str, str], evaluation_uri: str, report_uri: str, split: str) -> dict[str, str]:
    """The URIs the report lists (the training log only where there is one)."""
    log_uri = storage.join(locations["training"], TRAINING_LOG)
    return {
        "model": locations["model"],
        "training output": locations["training"],
        **({"training log": log_uri} if storage.exists(log_uri) else {}),
        f"{split} channel": locations["channel"],
        "evaluation.json": evaluation_uri,
        "report": report_uri,
    }
