"""The local object-detection algorithm: trains a GluonCV SSD from RecordIO channels as SageMaker's does.

Run as ``python -m include.training.ssd_trainer --request job.json --workdir DIR`` (the local
executor's child process): it reads the CreateTrainingJob request, stages the channels, checks the
hyperparameters against the data, trains, prints the algorithm's metric lines (and human lines) on
stdout, writes the best epoch's model to ``DIR/model.tar.gz`` with
:func:`include.model_artifact.export_model` and its outcome to ``DIR/result.json``.

Training follows the hyperparameters: optimizer, learning rate with its step schedule, momentum,
weight decay, mini-batch size, epochs, early stopping, frozen layers, pretrained base weights.
Augmentation is a random horizontal flip only (the RecordIO build already adds flipped copies).
Runs are seeded (:data:`SEED`), so a request trains the same model again up to floating-point order.
Validation runs every epoch: VOC07 11-point mAP (gluoncv ``VOC07MApMetric``, the Pascal VOC metric
of the MXNet SSD example) at IoU ``overlap_threshold`` after NMS at ``nms_threshold``; the weights
of the best epoch are kept and exported.

A hybridized SSD caches the graph of its first call: called first in training mode it would keep
returning training outputs at validation. ``net.set_nms`` clears that cache, so it is called before
every validation, before every training epoch and before export.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from include.training import metric_log
from include.training.channel_conversion import recordio_channels
from include.training.hyperparameters import DEFAULTS, validate_hyperparameters
from include.training.recordio_data import Batchify, RecordChannel, loader
from include.training.ssd_network import build_ssd, freeze
from include.training.training_request import TrainingRequest, find_class_map, parse_request, stage_channel

RESULT_FILE = "result.json"
MODEL_FILE = "model.tar.gz"
NMS_TOPK = 400
POST_NMS = 100
LOG_INTERVAL = 10  # batches between running-loss lines
SEED = 0  # the same data and hyperparameters train the same model (up to floating-point order)

Emit = Callable[[str], None]


@dataclass
class EpochStats:
    """What one epoch did and how long it took (seconds)."""

    epoch: int
    learning_rate: float
    cross_entropy: float
    smooth_l1: float
    validation_map: float
    records: int
    train_seconds: float
    data_seconds: float
    compute_seconds: float
    validation_seconds: float
    cpu_seconds: float  # CPU time of the training pass (all threads): a measure that ignores other load

    @property
    def throughput(self) -> float:
        return self.records / self.train_seconds if self.train_seconds > 0 else 0.0


@dataclass
class TrainingOutcome:
    """The epochs run, the best one, and why training ended (completed, early_stopping, max_runtime)."""

    epochs: list[EpochStats] = field(default_factory=list)
    best_epoch: int | None = None
    best_map: float | None = None
    best_class_ap: dict[str, float] = field(default_factory=dict)
    stop_reason: str = "completed"


class EarlyStopping:
    """SageMaker's rule: stop once the relative mAP gain stays <= tolerance for ``patience`` epochs
    (counted only from ``min_epochs`` on)."""

    def __init__(self, min_epochs: int, patience: int, tolerance: float) -> None:
        self.min_epochs, self.patience, self.tolerance = min_epochs, patience, tolerance
        self.best: float | None = None
        self.stale = 0

    def should_stop(self, epoch: int, value: float) -> bool:
        if self.best is None or value - self.best > self.tolerance * max(self.best, 0.0) and value > self.best:
            self.best, self.stale = value, 0
        else:
            self.stale += 1
        return epoch + 1 >= self.min_epochs and self.stale >= self.patience


def seed_everything(seed: int) -> None:
    """Seed MXNet (weight init), NumPy (shuffling) and Python's ``random``."""
    import random

    import mxnet as mx
    import numpy as np

    random.seed(seed)
    np.random.seed(seed)
    mx.random.seed(seed)


def learning_rate_at(epoch: int, hp: dict[str, Any]) -> float:
    """``learning_rate`` times ``lr_scheduler_factor`` for every ``lr_scheduler_step`` epoch reached."""
    drops = sum(1 for step in hp["lr_scheduler_step"] if epoch >= step)
    return hp["learning_rate"] * hp["lr_scheduler_factor"] ** drops


def make_trainer(net: Any, hp: dict[str, Any]) -> Any:
    """A Gluon trainer with the requested optimizer (momentum applies to sgd only, as in MXNet)."""
    import mxnet as mx

    params: dict[str, Any] = {"learning_rate": hp["learning_rate"], "wd": hp["weight_decay"]}
    if hp["optimizer"] == "sgd":
        params["momentum"] = hp["momentum"]
    trainable = {k: v for k, v in net.collect_params().items() if v.grad_req != "null"}
    return mx.gluon.Trainer(trainable, hp["optimizer"], params)


def evaluate_map(net: Any, data: Any, hp: dict[str, Any], class_names: list[str]) -> tuple[float, dict[str, float]]:
    """VOC07 mAP at ``overlap_threshold`` over ``data``, with per-class AP; leaves the net in inference mode."""
    import mxnet as mx
    from gluoncv.utils.metrics.voc_detection import VOC07MApMetric

    size = hp["image_shape"]
    net.set_nms(nms_thresh=hp["nms_threshold"], nms_topk=NMS_TOPK, post_nms=POST_NMS)
    metric = VOC07MApMetric(iou_thresh=hp["overlap_threshold"], class_names=class_names)
    for images, gt_boxes, gt_ids in data:
        ids, scores, boxes = net(mx.nd.array(images))
        metric.update(boxes.clip(0, size), ids, scores, mx.nd.array(gt_boxes), mx.nd.array(gt_ids))
    names, values = metric.get()
    per_class = {n: float(v) for n, v in zip(names[:-1], values[:-1], strict=True) if not math.isnan(v)}
    mean = values[-1]
    return (0.0 if math.isnan(mean) else float(mean)), per_class


@dataclass
class TrainingStep:
    """What one training step needs besides the batch: the (hybridized) net, its trainer, targets and loss."""

    net: Any
    trainer: Any
    targets: Any
    loss_fn: Any

    @classmethod
    def create(cls, net: Any, hp: dict[str, Any]) -> TrainingStep:
        from gluoncv.loss import SSDMultiBoxLoss
        from gluoncv.model_zoo.ssd.target import SSDTargetGenerator

        net.hybridize(static_alloc=True, static_shape=True)
        targets = SSDTargetGenerator(iou_thresh=0.5, stds=(0.1, 0.1, 0.2, 0.2), negative_mining_ratio=-1)
        return cls(net, make_trainer(net, hp), targets, SSDMultiBoxLoss())


def train_epoch(
    step: TrainingStep, data: Any, epoch: int, lr: float, emit: Emit, deadline: float | None = None
) -> EpochStats | None:
    """One pass over ``data``; its stats, or None when ``deadline`` cut it short."""
    import mxnet as mx

    ce_sum = l1_sum = data_s = compute_s = 0.0
    batches = records = 0
    cpu_started = time.process_time()
    started = tick = time.perf_counter()
    for images, gt_boxes, gt_ids in data:
        x, boxes, ids = mx.nd.array(images), mx.nd.array(gt_boxes), mx.nd.array(gt_ids)
        loaded = time.perf_counter()
        data_s += loaded - tick
        with mx.autograd.record():
            cls_preds, box_preds, anchors = step.net(x)
            with mx.autograd.pause():
                cls_targets, box_targets, _ = step.targets(anchors, None, boxes, ids)
            total, cls_loss, box_loss = step.loss_fn(cls_preds, box_preds, cls_targets, box_targets)
            mx.autograd.backward(total)
        step.trainer.step(1)
        ce_sum += float(cls_loss[0].sum().asscalar())
        l1_sum += float(box_loss[0].sum().asscalar())
        batches += 1
        records += len(images)
        tick = time.perf_counter()
        compute_s += tick - loaded
        if batches % LOG_INTERVAL == 0:
            emit(metric_log.train_loss_line(epoch, batches, "cross_entropy", ce_sum / batches))
            emit(metric_log.train_loss_line(epoch, batches, "smooth_l1", l1_sum / batches))
        if deadline is not None and time.monotonic() > deadline:
            emit(f"MaxRuntimeInSeconds reached during epoch {epoch}: stopping with the best epoch so far")
            return None
    if batches % LOG_INTERVAL:
        emit(metric_log.train_loss_line(epoch, batches, "cross_entropy", ce_sum / batches))
        emit(metric_log.train_loss_line(epoch, batches, "smooth_l1", l1_sum / batches))
    return EpochStats(epoch, lr, ce_sum / max(batches, 1), l1_sum / max(batches, 1), 0.0, records,
                      time.perf_counter() - started, data_s, compute_s, 0.0, time.process_time() - cpu_started)


def train_ssd(
    net: Any,
    train_data: Any,
    validation_data: Any,
    hp: dict[str, Any],
    class_names: list[str],
    emit: Emit,
    deadline: float | None = None,
) -> tuple[TrainingOutcome, dict[str, Any]]:
    """Train ``net`` (hybridized here) for ``hp['epochs']``; the outcome and the best epoch's parameters.

    ``deadline`` (``time.monotonic()`` value) stops training between batches, keeping the best
    epoch so far (``stop_reason='max_runtime'``).
    """
    step = TrainingStep.create(net, hp)
    stopper = EarlyStopping(hp["early_stopping_min_epochs"], hp["early_stopping_patience"],
                            hp["early_stopping_tolerance"])
    outcome = TrainingOutcome()
    best_params: dict[str, Any] = {}
    epochs = hp["epochs"]
    for epoch in range(epochs):
        lr = learning_rate_at(epoch, hp)
        step.trainer.set_learning_rate(lr)
        net.set_nms(nms_thresh=hp["nms_threshold"], nms_topk=NMS_TOPK, post_nms=POST_NMS)  # clear cached graph
        stats = train_epoch(step, train_data, epoch, lr, emit, deadline)
        if stats is None:
            outcome.stop_reason = "max_runtime"
            break
        emit(metric_log.throughput_line(stats.throughput))
        v_start = time.perf_counter()
        stats.validation_map, class_ap = evaluate_map(net, validation_data, hp, class_names)
        stats.validation_seconds = time.perf_counter() - v_start
        emit(metric_log.validation_line(epoch, stats.validation_map))
        emit(metric_log.progress_line(int(100 * (epoch + 1) / epochs)))
        emit(
            f"Epoch {epoch}: lr={lr:.3g} cross_entropy={stats.cross_entropy:.4f} smooth_l1={stats.smooth_l1:.4f} "
            f"validation mAP={stats.validation_map:.4f} train {stats.train_seconds:.1f}s "
            f"(data {stats.data_seconds:.1f}s) validation {stats.validation_seconds:.1f}s"
        )
        outcome.epochs.append(stats)
        if outcome.best_map is None or stats.validation_map > outcome.best_map:
            outcome.best_epoch, outcome.best_map, outcome.best_class_ap = epoch, stats.validation_map, class_ap
            best_params = {name: p.data().copy() for name, p in net.collect_params().items()}
        if hp["early_stopping"] and stopper.should_stop(epoch, stats.validation_map):
            outcome.stop_reason = "early_stopping"
            emit(f"Early stopping after epoch {epoch}: no validation mAP gain above "
                 f"{hp['early_stopping_tolerance']} for {hp['early_stopping_patience']} epochs")
            break
        if deadline is not None and time.monotonic() > deadline:
            outcome.stop_reason = "max_runtime"
            emit(f"MaxRuntimeInSeconds reached after epoch {epoch}: stopping with the best epoch so far")
            break
    return outcome, best_params


def export_best(
    net: Any,
    best_params: dict[str, Any],
    hp: dict[str, Any],
    hp_strings: dict[str, str],
    classes: dict[int, str],
    path: Path,
) -> None:
    """Restore the best epoch's parameters, switch to the inference graph and write ``model.tar.gz``."""
    import mxnet as mx

    from include.model_artifact import export_model

    for name, param in net.collect_params().items():
        param.set_data(best_params[name])
    net.set_nms(nms_thresh=hp["nms_threshold"], nms_topk=NMS_TOPK, post_nms=POST_NMS)
    net.hybridize(static_alloc=True, static_shape=True)
    size = hp["image_shape"]
    net(mx.nd.zeros((1, 3, size, size)))[0].wait_to_read()
    export_model(net, hp_strings, classes, str(path))


def load_model_channel(net: Any, folder: Path, hp: dict[str, Any], emit: Emit) -> None:
    """Incremental training: start from the weights of the ``model`` channel's model.tar.gz."""
    import tempfile

    import mxnet as mx

    from include.model_artifact import HYPERPARAMS_FILE, PARAMS_FILE, unpack

    archives = sorted(folder.rglob("*.tar.gz"))
    if not archives:
        raise ValueError(f"model channel {folder}: no model.tar.gz")
    with tempfile.TemporaryDirectory() as tmp:
        unpacked = unpack(str(archives[0]), Path(tmp))
        previous = json.loads((unpacked / HYPERPARAMS_FILE).read_text())
        for name in ("base_network", "image_shape", "num_classes"):
            if str(previous.get(name)) != str(hp[name]):
                raise ValueError(
                    f"model channel {archives[0]}: hyperparameter {name}={previous.get(name)!r} of the model "
                    f"differs from {name}={hp[name]!r} of this job"
                )
        saved = {k.split(":", 1)[-1]: v for k, v in mx.nd.load(str(unpacked / PARAMS_FILE)).items()}
    params = net.collect_params()
    missing = [name for name in params if name not in saved]
    if missing:
        raise ValueError(f"model channel {archives[0]}: parameters {missing[:3]}... are not in the model")
    for name, param in params.items():
        param.set_data(saved[name])
    emit(f"Initialized all {len(params)} parameters from the model channel ({archives[0].name})")


def _watch_parent(interval: float = 0.5) -> None:
    """Exit at once when the parent process goes away (killed executor or task)."""
    parent = os.getppid()

    def watch() -> None:
        while True:
            time.sleep(interval)
            if os.getppid() != parent:
                os._exit(143)

    threading.Thread(target=watch, name="parent-watchdog", daemon=True).start()


def run_job(request: TrainingRequest, workdir: Path, emit: Emit, data_workers: int) -> dict[str, Any]:
    """Stage, check, train and export; the outcome as a JSON-able dict (raises ValueError on bad input)."""
    start = time.monotonic()
    deadline = start + request.max_runtime_s if request.max_runtime_s else None
    hp = validate_hyperparameters(request.hyperparameters)
    emit(f"Staging channels {', '.join(sorted(request.channels))} ({request.channel_format})")
    if request.channel_format == "recordio":
        data = workdir / "input" / "data"
        folders = {name: stage_channel(uri, data / name) for name, uri in request.channels.items()}
        class_source = request.channels["train"]
    else:
        folders = recordio_channels(request, workdir, emit)
        class_source = folders["train"].as_uri()
    train = RecordChannel(folders["train"], workdir / "index" / "train")
    validation = RecordChannel(folders["validation"], workdir / "index" / "validation")
    classes, classes_uri = find_class_map(class_source, hp["num_classes"])
    emit(f"Class map: {classes_uri or 'none found, using class_<id> names'}; "
         f"{len(train)} training and {len(validation)} validation records")
    hp = validate_hyperparameters(
        request.hyperparameters,
        num_classes=len(classes) if classes_uri else None,
        num_training_samples=len(train),
        max_objects=max(train.max_objects, validation.max_objects),
    )
    for channel in (train, validation):
        too_big = sorted(c for c in channel.class_ids() if c >= hp["num_classes"])
        if too_big:
            raise ValueError(f"hyperparameter num_classes={hp['num_classes']} does not match the data: "
                             f"{channel.folder} uses class id(s) {too_big}")
    class_names = [classes[i] for i in range(hp["num_classes"])]
    seed_everything(SEED)
    net = build_ssd(hp["base_network"], hp["image_shape"], class_names, bool(hp["use_pretrained_model"]), emit)
    if "model" in folders:
        load_model_channel(net, folders["model"], hp, emit)
    frozen = freeze(net, hp["freeze_layer_pattern"])
    if hp["freeze_layer_pattern"]:
        emit(f"freeze_layer_pattern {hp['freeze_layer_pattern']!r} froze {len(frozen)} parameter(s)")
    if hp["kv_store"]:
        emit(f"kv_store={hp['kv_store']} has no effect on a single local host")
    size, batch = hp["image_shape"], hp["mini_batch_size"]
    train_data = loader(train, batch, Batchify(size, flip_probability=0.5), shuffle=True, workers=data_workers)
    validation_data = loader(validation, batch, Batchify(size), shuffle=False, workers=data_workers)
    emit(f"Training {hp['base_network']} SSD at {size}px for {hp['epochs']} epochs, batch {batch}, "
         f"{hp['optimizer']} lr {hp['learning_rate']}")
    outcome, best_params = train_ssd(net, train_data, validation_data, hp, class_names, emit, deadline)
    model_path = None
    if best_params:
        model_path = workdir / MODEL_FILE
        hp_strings = {**DEFAULTS, **request.hyperparameters}
        export_best(net, best_params, hp, hp_strings, classes, model_path)
        emit(f"Exported the model of epoch {outcome.best_epoch} (validation mAP {outcome.best_map:.4f})")
    return {
        "status": "Stopped" if outcome.stop_reason == "max_runtime" else "Completed",
        "stop_reason": outcome.stop_reason,
        "model_path": str(model_path) if model_path else None,
        "best_epoch": outcome.best_epoch,
        "best_validation_map": outcome.best_map,
        "best_class_ap": outcome.best_class_ap,
        "epochs": [{**asdict(e), "throughput": e.throughput} for e in outcome.epochs],
        "classes": {str(k): v for k, v in classes.items()},
        "classes_uri": classes_uri,
        "frozen_parameters": len(frozen),
        "num_training_records": len(train),
        "num_validation_records": len(validation),
        "seconds": time.monotonic() - start,
    }


def main(argv: list[str] | None = None) -> int:
    """Child-process entry: run the request in ``--workdir``; 0 done, 2 client error, 1 algorithm error."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--request", required=True, type=Path, help="CreateTrainingJob request (JSON)")
    parser.add_argument("--workdir", required=True, type=Path)
    parser.add_argument("--data-workers", type=int, default=1, help="data-loader threads (0: none)")
    args = parser.parse_args(argv)
    _watch_parent()
    import cv2

    cv2.setNumThreads(1)

    def emit(line: str) -> None:
        print(line, flush=True)

    try:
        request = parse_request(json.loads(args.request.read_text()))
        result, code = run_job(request, args.workdir, emit, args.data_workers), 0
    except ValueError as exc:
        emit(f"ClientError: {exc}")
        result, code = {"status": "Failed", "failure_reason": f"ClientError: {exc}"}, 2
    except Exception as exc:  # noqa: BLE001 - any other failure is the algorithm's, reported like SageMaker's
        emit(traceback.format_exc().rstrip())
        result, code = {"status": "Failed", "failure_reason": f"AlgorithmError: {type(exc).__name__}: {exc}"}, 1
    tmp = args.workdir / f".{RESULT_FILE}.tmp"
    tmp.write_text(json.dumps(result, indent=2))
    os.replace(tmp, args.workdir / RESULT_FILE)
    return code


if __name__ == "__main__":
    sys.exit(main())
