"""The local object-detection algorithm's training loop: a GluonCV SSD trained epoch by epoch, as SageMaker's.

Training follows the hyperparameters: optimizer, learning rate with its step schedule, momentum,
weight decay, mini-batch size, epochs, early stopping. Augmentation is a random horizontal flip
only (the RecordIO build already adds flipped copies). Runs are seeded (:data:`SEED`), so a
request trains the same model again up to floating-point order. Validation runs every epoch:
VOC07 11-point mAP (gluoncv ``VOC07MApMetric``, the Pascal VOC metric of the MXNet SSD example) at
IoU ``overlap_threshold`` after NMS at ``nms_threshold``; the weights of the best epoch are kept.
The job around it (request, channels, export) is :mod:`include.training.algorithm`.

A hybridized SSD caches the graph of its first call: called first in training mode it would keep
returning training outputs at validation. ``net.set_nms`` clears that cache, so it is called before
every validation, before every training epoch and before export.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from include.training import metric_log

NMS_TOPK = 400
POST_NMS = 100
MATCH_IOU = 0.5  # an anchor trains on a box it overlaps this much (plus each box's best anchor)
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
    batches: int = 0
    validation_cpu_seconds: float = 0.0
    cross_entropy_median: float = 0.0  # of the epoch's per-batch values: one bad batch moves the mean, not these
    cross_entropy_max: float = 0.0

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
    """What one training step needs besides the batch: the (hybridized) net, its trainer, targets and loss.

    The first ``warmup_batches`` updates raise the learning rate linearly from 1/``warmup_batches``
    of the epoch's rate to all of it (``updates`` counts them across epochs).
    """

    net: Any
    trainer: Any
    targets: Any
    loss_fn: Any
    warmup_batches: int = 0
    updates: int = 0

    @classmethod
    def create(cls, net: Any, hp: dict[str, Any], warmup_batches: int = 0) -> TrainingStep:
        from gluoncv.loss import SSDMultiBoxLoss
        from gluoncv.model_zoo.ssd.target import SSDTargetGenerator

        net.hybridize(static_alloc=True, static_shape=True)
        targets = SSDTargetGenerator(iou_thresh=MATCH_IOU, stds=(0.1, 0.1, 0.2, 0.2), negative_mining_ratio=-1)
        return cls(net, make_trainer(net, hp), targets, SSDMultiBoxLoss(), warmup_batches)

    def learning_rate(self, epoch_rate: float) -> float:
        """The rate of the next update: ``epoch_rate``, scaled down during the warm-up."""
        if self.updates >= self.warmup_batches:
            return epoch_rate
        return epoch_rate * (self.updates + 1) / self.warmup_batches


def train_epoch(
    step: TrainingStep, data: Any, epoch: int, lr: float, emit: Emit, deadline: float | None = None
) -> EpochStats | None:
    """One pass over ``data``; its stats, or None when ``deadline`` cut it short."""
    import mxnet as mx
    import numpy as np

    ce_values: list[float] = []
    l1_sum = data_s = compute_s = 0.0
    records = 0
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
        step.trainer.set_learning_rate(step.learning_rate(lr))
        step.trainer.step(1)
        step.updates += 1
        ce_values.append(float(cls_loss[0].sum().asscalar()))
        l1_sum += float(box_loss[0].sum().asscalar())
        batches = len(ce_values)
        records += len(images)
        tick = time.perf_counter()
        compute_s += tick - loaded
        if batches % LOG_INTERVAL == 0:
            emit(metric_log.train_loss_line(epoch, batches, "cross_entropy", sum(ce_values) / batches))
            emit(metric_log.train_loss_line(epoch, batches, "smooth_l1", l1_sum / batches))
        if deadline is not None and time.monotonic() > deadline:
            emit(f"MaxRuntimeInSeconds reached during epoch {epoch}: stopping with the best epoch so far")
            return None
    batches = len(ce_values)
    if batches % LOG_INTERVAL:
        emit(metric_log.train_loss_line(epoch, batches, "cross_entropy", sum(ce_values) / batches))
        emit(metric_log.train_loss_line(epoch, batches, "smooth_l1", l1_sum / batches))
    return EpochStats(epoch, lr, sum(ce_values) / max(batches, 1), l1_sum / max(batches, 1), 0.0, records,
                      time.perf_counter() - started, data_s, compute_s, 0.0, time.process_time() - cpu_started,
                      batches, 0.0, float(np.median(ce_values)) if ce_values else 0.0, max(ce_values, default=0.0))


def train_ssd(
    net: Any,
    train_data: Any,
    validation_data: Any,
    hp: dict[str, Any],
    class_names: list[str],
    emit: Emit,
    deadline: float | None = None,
    warmup_batches: int = 0,
) -> tuple[TrainingOutcome, dict[str, Any]]:
    """Train ``net`` (hybridized here) for ``hp['epochs']``; the outcome and the best epoch's parameters.

    ``deadline`` (``time.monotonic()`` value) stops training between batches, keeping the best
    epoch so far (``stop_reason='max_runtime'``). ``warmup_batches``: see :class:`TrainingStep`.
    """
    step = TrainingStep.create(net, hp, warmup_batches)
    stopper = EarlyStopping(hp["early_stopping_min_epochs"], hp["early_stopping_patience"],
                            hp["early_stopping_tolerance"])
    outcome = TrainingOutcome()
    best_params: dict[str, Any] = {}
    epochs = hp["epochs"]
    for epoch in range(epochs):
        lr = learning_rate_at(epoch, hp)
        net.set_nms(nms_thresh=hp["nms_threshold"], nms_topk=NMS_TOPK, post_nms=POST_NMS)  # clear cached graph
        stats = train_epoch(step, train_data, epoch, lr, emit, deadline)
        if stats is None:
            outcome.stop_reason = "max_runtime"
            break
        emit(metric_log.throughput_line(stats.throughput))
        v_start, v_cpu = time.perf_counter(), time.process_time()
        stats.validation_map, class_ap = evaluate_map(net, validation_data, hp, class_names)
        stats.validation_seconds = time.perf_counter() - v_start
        stats.validation_cpu_seconds = time.process_time() - v_cpu
        emit(metric_log.validation_line(epoch, stats.validation_map))
        emit(metric_log.progress_line(int(100 * (epoch + 1) / epochs)))
        emit(
            f"Epoch {epoch}: lr={lr:.3g} cross_entropy={stats.cross_entropy:.4f} "
            f"(median {stats.cross_entropy_median:.4f}, max {stats.cross_entropy_max:.4f} of {stats.batches} batches) "
            f"smooth_l1={stats.smooth_l1:.4f} "
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


