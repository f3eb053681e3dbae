"""Detection metrics: Pascal VOC AP at one IoU and COCO AP averaged over IoU 0.50:0.95.

Written here in vectorized numpy rather than taken from a library, because one matching pass
has to serve both metrics and the per-class counts: GluonCV's ``VOCMApMetric`` has no COCO
mode and hides its match flags, its COCO metric needs pycocotools (not installed), and both
need MXNet arrays or a COCO annotation file. The VOC part is checked against GluonCV's metric
in the tests (same detections, same numbers).

Conventions, chosen to reproduce the reference implementations exactly:

* VOC (``validation:mAP``): a detection takes the ground-truth box it overlaps most; it is a
  true positive when that IoU is at least ``iou`` and no higher-scored detection took the box
  first (the VOC devkit / GluonCV rule). Boxes are in pixels with the VOC integer convention
  (``width = xmax - xmin + 1``), as GluonCV's metric computes them. AP interpolation is either
  ``"11-point"`` (VOC2007: mean of the best precision at recall >= 0, 0.1, ..., 1; GluonCV's
  ``VOC07MApMetric``, which its SSD training script and the local trainer use, hence the
  default) or ``"all-point"`` (VOC2010+: area under the precision envelope; ``VOCMApMetric``).
* COCO (mAP@[.5:.95]): a detection takes the best still-unmatched box with IoU >= t, for
  t = 0.50, 0.55, ..., 0.95; at most 100 detections per image and class; continuous
  coordinates (no +1); AP is the mean of the best precision at recall >= 0, 0.01, ..., 1
  (pycocotools' 101 points), averaged over thresholds and then classes.
* A class without ground truth has no AP (``None``) and is left out of the means, as in both
  references; a class with ground truth but no detections has AP 0.
* Detections with equal scores are ranked in the order they were added (stable sort), as
  pycocotools does; GluonCV's order of ties is its sort's, so tied scores can make the two differ.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np

Interpolation = Literal["11-point", "all-point"]
INTERPOLATIONS: tuple[str, ...] = ("11-point", "all-point")
#: VOC2007's recall grid, spelled as the devkit and GluonCV spell it (0:0.1:1).
VOC07_RECALLS = np.arange(0.0, 1.1, 0.1)
COCO_IOUS = np.linspace(0.5, 0.95, 10)
COCO_RECALLS = np.linspace(0.0, 1.0, 101)
COCO_MAX_DETS = 100
VOC_PIXEL_OFFSET = 1.0


class MetricInputError(ValueError):
    """Detections or ground truth with the wrong shape or class ids."""


def box_iou(a: np.ndarray, b: np.ndarray, offset: float = 0.0) -> np.ndarray:
    """Pairwise IoU of ``[N, 4]`` and ``[M, 4]`` corner boxes; ``offset`` 1 for VOC integer pixels."""
    tl = np.maximum(a[:, None, :2], b[None, :, :2])
    br = np.minimum(a[:, None, 2:4], b[None, :, 2:4])
    inter = np.clip(br - tl + offset, 0.0, None).prod(axis=2)
    area_a = (a[:, 2:4] - a[:, :2] + offset).prod(axis=1)
    area_b = (b[:, 2:4] - b[:, :2] + offset).prod(axis=1)
    union = area_a[:, None] + area_b[None, :] - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(union > 0, inter / union, 0.0)


def match_voc(iou: np.ndarray, threshold: float) -> np.ndarray:
    """True positives of detections (rows, best score first) under the VOC rule.

    Each detection takes its highest-IoU ground truth; only the first detection to take a
    ground truth with IoU >= ``threshold`` counts, later ones are duplicates (false positives).
    """
    n_det, n_gt = iou.shape
    tp = np.zeros(n_det, dtype=bool)
    if n_det == 0 or n_gt == 0:
        return tp
    best = iou.argmax(axis=1)
    hit = np.flatnonzero(iou[np.arange(n_det), best] >= threshold)
    _, first = np.unique(best[hit], return_index=True)
    tp[hit[first]] = True
    return tp


def match_coco(iou: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """``[T, D]`` true positives under the COCO rule: best still-unmatched ground truth with IoU >= t."""
    n_det, n_gt = iou.shape
    n_thr = len(thresholds)
    tp = np.zeros((n_thr, n_det), dtype=bool)
    if n_det == 0 or n_gt == 0:
        return tp
    rows = np.arange(n_thr)
    limit = np.minimum(thresholds, 1 - 1e-10)
    taken = np.zeros((n_thr, n_gt), dtype=bool)
    for d in range(n_det):  # greedy in score order: each step depends on the previous ones
        candidates = np.where(taken, -1.0, iou[d][None, :])
        best = candidates.argmax(axis=1)
        ok = candidates[rows, best] >= limit
        taken[rows[ok], best[ok]] = True
        tp[:, d] = ok
    return tp


def precision_recall(scores: np.ndarray, tp: np.ndarray, n_gt: int) -> tuple[np.ndarray, np.ndarray]:
    """Cumulative precision and recall, detections ranked by score (stable); ``tp`` is ``[..., D]``."""
    order = np.argsort(-scores, kind="mergesort")
    hits = np.cumsum(tp[..., order], axis=-1, dtype=np.float64)
    ranks = np.arange(1, len(scores) + 1, dtype=np.float64)
    return hits / ranks, hits / n_gt


def interpolated_ap(precision: np.ndarray, recall: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """Mean over ``grid`` of the best precision at recall >= r (0 where never reached); batched over rows."""
    precision, recall = np.atleast_2d(precision), np.atleast_2d(recall)
    if precision.shape[-1] == 0:
        return np.zeros(precision.shape[0])
    envelope = np.maximum.accumulate(precision[:, ::-1], axis=1)[:, ::-1]
    out = np.empty(precision.shape[0])
    for i in range(precision.shape[0]):
        idx = np.searchsorted(recall[i], grid, side="left")
        reached = idx < recall.shape[1]
        out[i] = np.where(reached, envelope[i, np.minimum(idx, recall.shape[1] - 1)], 0.0).mean()
    return out


def area_ap(precision: np.ndarray, recall: np.ndarray) -> float:
    """Area under the precision envelope (VOC2010+ "all-point" AP)."""
    mrec = np.concatenate(([0.0], recall, [1.0]))
    mpre = np.concatenate(([0.0], precision, [0.0]))
    envelope = np.maximum.accumulate(mpre[::-1])[::-1]
    return float(np.sum(np.diff(mrec) * envelope[1:]))


def average_precision(precision: np.ndarray, recall: np.ndarray, interpolation: Interpolation) -> float:
    """VOC AP of one class with the named interpolation."""
    if interpolation == "11-point":
        return float(interpolated_ap(precision, recall, VOC07_RECALLS)[0])
    if interpolation == "all-point":
        return area_ap(precision, recall)
    raise ValueError(f"unknown interpolation {interpolation!r}; expected one of {', '.join(INTERPOLATIONS)}")


@dataclass(frozen=True)
class ClassMetrics:
    """AP and counts of one class."""

    class_id: int
    name: str
    gt_objects: int
    detections: int
    true_positives: int
    ap: float | None
    coco_ap: float | None
    detections_above_threshold: int
    true_positives_above_threshold: int


@dataclass(frozen=True)
class EvaluationMetrics:
    """The evaluation of one model on one data set."""

    map: float
    coco_map: float
    iou: float
    interpolation: str
    score_threshold: float
    images: int
    gt_objects: int
    detections: int
    classes: list[ClassMetrics] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class _ClassRecord:
    scores: list[np.ndarray] = field(default_factory=list)
    voc_tp: list[np.ndarray] = field(default_factory=list)
    coco_scores: list[np.ndarray] = field(default_factory=list)
    coco_tp: list[np.ndarray] = field(default_factory=list)
    n_gt: int = 0


def _check(array: np.ndarray, width: int, what: str, num_classes: int) -> np.ndarray:
    array = np.asarray(array, dtype=np.float64)
    if array.size == 0:
        return array.reshape(0, width)
    if array.ndim != 2 or array.shape[1] != width:
        raise MetricInputError(f"{what} must be an [N, {width}] array, got shape {array.shape}")
    ids = array[:, 0]
    bad = (ids < 0) | (ids >= num_classes) | (ids != np.round(ids))
    if bad.any():
        row = int(np.argmax(bad))
        raise MetricInputError(f"{what} row {row} has class id {ids[row]!r}, not in 0..{num_classes - 1}")
    return array


class DetectionEvaluator:
    """Accumulates images one at a time and computes VOC and COCO metrics at the end.

    ``add`` takes detections ``[N, 6]`` (class id, score, xmin, ymin, xmax, ymax) and ground
    truth ``[M, 5]`` (class id, xmin, ymin, xmax, ymax), both in the same pixel frame.
    """

    def __init__(
        self, num_classes: int, iou: float = 0.5, voc_offset: float = VOC_PIXEL_OFFSET, score_threshold: float = 0.5
    ) -> None:
        if num_classes < 1:
            raise ValueError(f"num_classes must be positive, got {num_classes}")
        if not 0.0 < iou <= 1.0:
            raise ValueError(f"iou must be in (0, 1], got {iou}")
        self.num_classes = num_classes
        self.iou = iou
        self.voc_offset = voc_offset
        self.score_threshold = score_threshold
        self.images = 0
        self._records = [_ClassRecord() for _ in range(num_classes)]
        #: rows: ground-truth class, then "background" (a detection matching nothing);
        #: columns: predicted class, then "missed" (a ground-truth box no detection found)
        self.confusion = np.zeros((num_classes + 1, num_classes + 1), dtype=np.int64)

    def add(self, detections: np.ndarray, ground_truth: np.ndarray) -> None:
        det = _check(detections, 6, "detections", self.num_classes)
        gt = _check(ground_truth, 5, "ground truth", self.num_classes)
        self.images += 1
        for c in np.union1d(det[:, 0], gt[:, 0]).astype(int):
            d = det[det[:, 0] == c]
            d = d[np.argsort(-d[:, 1], kind="mergesort")]
            g = gt[gt[:, 0] == c, 1:5]
            record = self._records[c]
            record.n_gt += len(g)
            record.scores.append(d[:, 1])
            record.voc_tp.append(match_voc(box_iou(d[:, 2:6], g, self.voc_offset), self.iou))
            top = d[:COCO_MAX_DETS]
            record.coco_scores.append(top[:, 1])
            record.coco_tp.append(match_coco(box_iou(top[:, 2:6], g), COCO_IOUS))
        self._confuse(det, gt)

    def _confuse(self, det: np.ndarray, gt: np.ndarray) -> None:
        """Count one image into :attr:`confusion`: detections at or above the score threshold, best first, each
        matched greedily to the unmatched ground-truth box of any class it overlaps most (IoU >= :attr:`iou`)."""
        det = det[det[:, 1] >= self.score_threshold]
        det = det[np.argsort(-det[:, 1], kind="mergesort")]
        iou = box_iou(det[:, 2:6], gt[:, 1:5], self.voc_offset)
        free = np.ones(len(gt), dtype=bool)
        background, missed = self.num_classes, self.num_classes
        for i, row in enumerate(det):
            candidates = np.where(free, iou[i], -1.0) if len(gt) else np.zeros(0)
            j = int(np.argmax(candidates)) if len(candidates) else -1
            if j >= 0 and candidates[j] >= self.iou:
                free[j] = False
                self.confusion[int(gt[j, 0]), int(row[0])] += 1
            else:
                self.confusion[background, int(row[0])] += 1
        for j in np.flatnonzero(free):
            self.confusion[int(gt[j, 0]), missed] += 1

    def pr_curves(self) -> dict[int, tuple[np.ndarray, np.ndarray]]:
        """``{class id: (recall, precision)}`` at :attr:`iou`, every detection a point (classes with ground truth)."""
        curves = {}
        for c, record in enumerate(self._records):
            if record.n_gt:
                scores = np.concatenate(record.scores) if record.scores else np.zeros(0)
                voc_tp = np.concatenate(record.voc_tp) if record.voc_tp else np.zeros(0, dtype=bool)
                precision, recall = precision_recall(scores, voc_tp, record.n_gt)
                curves[c] = (recall, precision)
        return curves

    def result(
        self,
        class_names: dict[int, str] | None = None,
        interpolation: Interpolation = "11-point",
        score_threshold: float = 0.5,
    ) -> EvaluationMetrics:
        """AP per class, mAP (VOC, at :attr:`iou`) and COCO mAP; ``ValueError`` without any ground truth."""
        if interpolation not in INTERPOLATIONS:
            raise ValueError(f"unknown interpolation {interpolation!r}; expected one of {', '.join(INTERPOLATIONS)}")
        names = class_names or {}
        classes = [self._class_metrics(c, names.get(c, str(c)), interpolation, score_threshold)
                   for c in range(self.num_classes)]
        scored = [m for m in classes if m.ap is not None]
        if not scored:
            raise ValueError(f"no ground-truth objects in the {self.images} evaluated images: mAP is undefined")
        return EvaluationMetrics(
            map=float(np.mean([m.ap for m in scored])),
            coco_map=float(np.mean([m.coco_ap for m in scored])),
            iou=self.iou,
            interpolation=interpolation,
            score_threshold=score_threshold,
            images=self.images,
            gt_objects=sum(m.gt_objects for m in classes),
            detections=sum(m.detections for m in classes),
            classes=classes,
        )

    def _class_metrics(self, c: int, name: str, interpolation: Interpolation, score_threshold: float) -> ClassMetrics:
        record = self._records[c]
        scores = np.concatenate(record.scores) if record.scores else np.zeros(0)
        voc_tp = np.concatenate(record.voc_tp) if record.voc_tp else np.zeros(0, dtype=bool)
        above = scores >= score_threshold
        ap = coco_ap = None
        if record.n_gt:
            precision, recall = precision_recall(scores, voc_tp, record.n_gt)
            ap = average_precision(precision, recall, interpolation)
            coco_scores = np.concatenate(record.coco_scores)
            coco_tp = np.concatenate(record.coco_tp, axis=1)
            precision, recall = precision_recall(coco_scores, coco_tp, record.n_gt)
            coco_ap = float(interpolated_ap(precision, recall, COCO_RECALLS).mean())
        return ClassMetrics(
            class_id=c,
            name=name,
            gt_objects=record.n_gt,
            detections=len(scores),
            true_positives=int(voc_tp.sum()),
            ap=ap,
            coco_ap=coco_ap,
            detections_above_threshold=int(above.sum()),
            true_positives_above_threshold=int(voc_tp[above].sum()),
        )
