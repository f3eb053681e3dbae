"""VOC and COCO detection metrics: a hand-computed case, agreement with GluonCV, COCO sanity."""

from __future__ import annotations

import numpy as np
import pytest

from include.evaluation.metrics import (
    COCO_MAX_DETS,
    DetectionEvaluator,
    MetricInputError,
    box_iou,
    match_coco,
    match_voc,
)


def det(cls: int, score: float, box: list[float]) -> list[float]:
    return [cls, score, *box]


def gt(cls: int, box: list[float]) -> list[float]:
    return [cls, *box]


def hand_case() -> DetectionEvaluator:
    """Class 0: 3 objects, ranked TP, FP (duplicate), TP, FP, FP. Class 1: 1 object found. Class 2: no objects."""
    ev = DetectionEvaluator(num_classes=3)
    ev.add(
        np.array([det(0, 0.9, [0, 0, 9, 9]), det(0, 0.8, [0, 0, 9, 9]), det(0, 0.5, [40, 40, 49, 49]),
                  det(2, 0.95, [60, 60, 69, 69])]),
        np.array([gt(0, [0, 0, 9, 9]), gt(0, [20, 20, 29, 29])]),
    )
    ev.add(
        np.array([det(0, 0.6, [50, 50, 59, 59]), det(0, 0.7, [0, 0, 9, 9]), det(1, 0.3, [30, 30, 39, 39])]),
        np.array([gt(0, [0, 0, 9, 9]), gt(1, [30, 30, 39, 39])]),
    )
    ev.add(np.zeros((0, 6)), np.zeros((0, 5)))  # an image with nothing in it counts but changes nothing
    return ev


def test_hand_computed_voc_ap_both_interpolations() -> None:
    # class 0 ranked: TP FP TP FP FP -> precision 1, 1/2, 2/3, 1/2, 2/5; recall 1/3, 1/3, 2/3, 2/3, 2/3
    # 11-point: recall >= 0, .1, .2, .3 -> 1; >= .4, .5, .6 -> 2/3; >= .7 .. 1 -> 0  => (4 + 3 * 2/3) / 11 = 6/11
    # all-point: 1/3 * 1 + 1/3 * 2/3 = 5/9
    ev = hand_case()
    eleven = ev.result({0: "a", 1: "b", 2: "c"}, interpolation="11-point", score_threshold=0.65)
    area = ev.result(interpolation="all-point")
    c0, c1, c2 = eleven.classes
    assert c0.ap == pytest.approx(6 / 11) and area.classes[0].ap == pytest.approx(5 / 9)
    assert c1.ap == pytest.approx(1.0) and area.classes[1].ap == pytest.approx(1.0)
    assert c2.ap is None and c2.coco_ap is None  # no ground truth: left out of the mean
    assert eleven.map == pytest.approx((6 / 11 + 1) / 2)
    assert area.map == pytest.approx((5 / 9 + 1) / 2)
    assert (c0.name, c0.gt_objects, c0.detections, c0.true_positives) == ("a", 3, 5, 2)
    assert (c2.gt_objects, c2.detections, c2.true_positives) == (0, 1, 0)
    # at score >= 0.65: class 0 keeps 0.9 (TP), 0.8 (FP), 0.7 (TP)
    assert (c0.detections_above_threshold, c0.true_positives_above_threshold) == (3, 2)
    assert (eleven.images, eleven.gt_objects, eleven.detections) == (3, 4, 7)


def test_hand_computed_coco_ap() -> None:
    # exact boxes: the same ranking at every IoU threshold; 101 points: recall <= 1/3 (34 points) -> 1,
    # 1/3 < recall <= 2/3 (33 points) -> 2/3, above -> 0  => (34 + 22) / 101 for class 0
    result = hand_case().result()
    assert result.classes[0].coco_ap == pytest.approx(56 / 101)
    assert result.coco_map == pytest.approx((56 / 101 + 1) / 2)


def test_coco_partial_overlap_counts_only_the_thresholds_it_reaches() -> None:
    ev = DetectionEvaluator(num_classes=1)
    ev.add(np.array([det(0, 0.9, [0, 0, 10, 7.9])]), np.array([gt(0, [0, 0, 10, 10])]))  # IoU 0.79
    result = ev.result()
    assert result.classes[0].coco_ap == pytest.approx(0.6)  # TP at 0.50 .. 0.75 (6 of 10 thresholds)
    assert result.map == pytest.approx(1.0)


def random_case(rng: np.random.Generator, images: int, classes: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Ground truth and noisy detections around it (some misses, wrong classes, pure false positives)."""
    out = []
    for _ in range(images):
        m = int(rng.integers(0, 6))
        xy = rng.uniform(0, 250, (m, 2))
        g = np.concatenate([rng.integers(0, classes, (m, 1)), xy, xy + rng.uniform(8, 90, (m, 2))], axis=1)
        n = int(rng.integers(0, 14))
        if m:
            src = g[rng.integers(0, m, n)]
            boxes = src[:, 1:] + rng.normal(0, 6, (n, 4))
            cls = np.where(rng.random(n) < 0.85, src[:, 0], rng.integers(0, classes, n))
        else:
            xy = rng.uniform(0, 250, (n, 2))
            boxes, cls = np.concatenate([xy, xy + 30], axis=1), rng.integers(0, classes, n)
        boxes[:, 2:] = np.maximum(boxes[:, 2:], boxes[:, :2] + 1)
        d = np.concatenate([cls[:, None], rng.random((n, 1)), boxes], axis=1)
        out.append((d, g))
    return out


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_voc_agrees_with_gluoncv(seed: int) -> None:
    from gluoncv.utils.metrics.voc_detection import VOC07MApMetric, VOCMApMetric

    classes = 4
    names = [f"c{i}" for i in range(classes)]
    ev = DetectionEvaluator(classes, iou=0.5)
    references = {"11-point": VOC07MApMetric(0.5, names), "all-point": VOCMApMetric(0.5, names)}
    for d, g in random_case(np.random.default_rng(seed), images=40, classes=classes):
        ev.add(d, g)
        for metric in references.values():
            metric.update(d[None, :, 2:], d[None, :, 0], d[None, :, 1], g[None, :, 1:], g[None, :, 0])
    for interpolation, metric in references.items():
        result = ev.result(interpolation=interpolation)
        _, values = metric.get()
        ours = [np.nan if c.ap is None else c.ap for c in result.classes]
        np.testing.assert_allclose(ours, values[:-1], rtol=0, atol=1e-12)
        assert result.map == pytest.approx(values[-1], abs=1e-12)
        assert 0.05 < result.map < 0.95  # a case with something to get right and wrong


def test_coco_perfect_detections_score_one_and_shifted_boxes_score_lower() -> None:
    rng = np.random.default_rng(5)
    cases = random_case(rng, images=20, classes=3)
    perfect, shifted = DetectionEvaluator(3), DetectionEvaluator(3)
    for _, g in cases:
        d = np.concatenate([g[:, :1], rng.random((len(g), 1)), g[:, 1:]], axis=1)
        perfect.add(d, g)
        moved = d.copy()
        moved[:, [2, 4]] += 0.15 * (g[:, 3] - g[:, 1])[:, None]  # 15 % of the width to the right
        shifted.add(moved, g)
    best, worse = perfect.result(), shifted.result()
    assert best.coco_map == pytest.approx(1.0) and best.map == pytest.approx(1.0)
    assert worse.map == pytest.approx(1.0)  # IoU ~0.74 still passes 0.5
    assert 0.3 < worse.coco_map < 0.8  # ... but not the strict thresholds


def test_coco_keeps_at_most_100_detections_per_image_and_class() -> None:
    ev = DetectionEvaluator(1)
    false_positives = [det(0, 0.9, [200, 200, 210, 210])] * COCO_MAX_DETS
    ev.add(np.array([*false_positives, det(0, 0.1, [0, 0, 10, 10])]), np.array([gt(0, [0, 0, 10, 10])]))
    result = ev.result()
    assert result.classes[0].coco_ap == 0.0  # the 101st detection is cut off
    assert result.classes[0].ap == pytest.approx(1 / 101)  # VOC keeps it: recall 1 at precision 1/101


def test_matching_rules_differ_on_a_taken_best_box() -> None:
    # detection 2 overlaps gt 0 best (taken by detection 1) and gt 1 enough: VOC calls it a duplicate,
    # COCO gives it gt 1.
    iou = np.array([[0.9, 0.0], [0.8, 0.6]])
    assert match_voc(iou, 0.5).tolist() == [True, False]
    assert match_coco(iou, np.array([0.5, 0.7])).tolist() == [[True, True], [True, False]]


def test_box_iou_with_and_without_the_voc_pixel_offset() -> None:
    a, b = np.array([[0.0, 0.0, 9.0, 9.0]]), np.array([[5.0, 0.0, 14.0, 9.0], [20.0, 20.0, 30.0, 30.0]])
    np.testing.assert_allclose(box_iou(a, b), [[36 / 126, 0.0]])
    np.testing.assert_allclose(box_iou(a, b, offset=1.0), [[50 / 150, 0.0]])


def test_bad_input_is_rejected_with_the_row() -> None:
    ev = DetectionEvaluator(2)
    with pytest.raises(MetricInputError, match="detections row 1 has class id 2.0, not in 0..1"):
        ev.add(np.array([det(0, 0.5, [0, 0, 1, 1]), det(2, 0.5, [0, 0, 1, 1])]), np.zeros((0, 5)))
    with pytest.raises(MetricInputError, match=r"ground truth must be an \[N, 5\] array"):
        ev.add(np.zeros((0, 6)), np.zeros((2, 4)))
    with pytest.raises(ValueError, match="no ground-truth objects in the 0 evaluated images"):
        ev.result()
    with pytest.raises(ValueError, match="unknown interpolation"):
        hand_case().result(interpolation="101-point")  # type: ignore[arg-type]


def test_confusion_matrix_counts_hits_confusions_misses_and_false_detections() -> None:
    evaluator = DetectionEvaluator(2, iou=0.5, voc_offset=0.0, score_threshold=0.5)
    gt = np.array([[0, 0, 0, 10, 10], [1, 20, 20, 30, 30], [1, 40, 40, 50, 50]], dtype=float)
    det = np.array([
        [0, 0.9, 0, 0, 10, 10],  # class 0 found as class 0
        [0, 0.8, 20, 20, 30, 30],  # class 1 taken for class 0
        [1, 0.7, 60, 60, 70, 70],  # nothing there: a false detection
        [1, 0.3, 40, 40, 50, 50],  # below the score threshold: the class-1 box at 40 is missed
    ], dtype=float)
    evaluator.add(det, gt)
    # rows: ground truth 0, 1, no object; columns: predicted 0, 1, missed
    assert evaluator.confusion.tolist() == [[1, 0, 0], [1, 0, 1], [0, 1, 0]]
    curves = evaluator.pr_curves()
    recall, precision = curves[1]
    assert recall.tolist() == [0.0, 0.5] and precision.tolist() == [0.0, 0.5]  # ranked: 0.7 (miss), 0.3 (hit)
