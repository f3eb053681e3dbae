"""Charts and sample drawings: valid PNGs of a sensible size, no pyplot state, clear errors on missing data."""

from __future__ import annotations

import numpy as np
import pytest

from include.evaluation import charts
from include.evaluation.samples import draw_detections
from include.evaluation.training_run import TrainingCurves
from tests.support.evaluation_helpers import assert_sensible_png, decoded, png_size


@pytest.fixture()
def curves(training_log: str) -> TrainingCurves:
    return TrainingCurves.from_log(training_log)


def test_curves_keep_each_epochs_last_loss_and_find_the_best_epoch(curves: TrainingCurves) -> None:
    assert curves.values("train:cross_entropy") == ([0, 1, 2, 3], [2.2, 1.6, 1.2, 1.0])
    assert curves.values("validation:mAP")[1] == [0.05, 0.21, 0.34, 0.31]
    assert curves.best_epoch() == (2, 0.34)


def test_map_and_loss_charts_are_valid_pngs(curves: TrainingCurves) -> None:
    import matplotlib.pyplot as plt

    before = plt.get_fignums()
    assert_sensible_png(charts.map_chart(curves))
    assert_sensible_png(charts.loss_chart(curves))
    assert plt.get_fignums() == before  # nothing registered with pyplot


def test_a_single_epoch_gets_one_tick_at_its_epoch() -> None:
    from matplotlib.figure import Figure

    ax = Figure().add_subplot()
    ax.plot([0], [0.1])
    charts._integer_x(ax, [0])  # noqa: SLF001
    assert ax.get_xlim() == (-0.5, 0.5) and list(ax.get_xticks()) == [0]  # not -0.045 .. 0.045
    assert_sensible_png(charts.map_chart(TrainingCurves.from_log(
        "#quality_metric: host=algo-1, epoch=0, validation mAP <score>=(0.1)")))


def test_precision_recall_and_confusion_charts() -> None:
    curves = {0: (np.array([0.5, 1.0]), np.array([1.0, 0.66])), 1: (np.zeros(0), np.zeros(0))}
    assert_sensible_png(charts.pr_chart(curves, {0: "RBC", 1: "WBC"}, {0: 0.8, 1: 0.0}, 0.5, "test"))
    counts = np.array([[5, 1, 2], [0, 3, 1], [4, 0, 0]])
    assert_sensible_png(charts.confusion_chart(counts, {0: "RBC", 1: "WBC"}, 0.5, "test"))
    with pytest.raises(charts.ChartDataError, match="no precision-recall curve"):
        charts.pr_chart({}, {}, {}, 0.5, "test")


def test_tuning_chart_plots_trials_with_the_best_so_far() -> None:
    trials = [
        {"name": "tune-001", "hyperparameters": {"learning_rate": "0.01"}, "objective": 0.2},
        {"name": "tune-002", "hyperparameters": {"learning_rate": "0.001"}, "objective": 0.5},
        {"name": "tune-003", "hyperparameters": {"learning_rate": "0.1"}, "objective": None},  # failed trial
        {"name": "tune-004", "hyperparameters": {"learning_rate": "0.003"}, "objective": 0.4},
    ]
    assert_sensible_png(charts.tuning_chart(trials))


def test_charts_without_data_say_what_is_missing() -> None:
    empty = TrainingCurves.from_log("no metric lines here\n")
    with pytest.raises(charts.ChartDataError, match="no validation mAP"):
        charts.map_chart(empty)
    with pytest.raises(charts.ChartDataError, match="no training losses"):
        charts.loss_chart(empty)
    with pytest.raises(charts.ChartDataError, match="no tuning trial has an objective"):
        charts.tuning_chart([{"name": "t", "objective": None}])


def test_sample_drawing_shows_predictions_and_ground_truth() -> None:
    image = np.full((120, 160, 3), 40, dtype=np.uint8)
    detections = np.array([[0, 0.9, 0.1, 0.1, 0.5, 0.6], [1, 0.7, 0.5, 0.5, 0.9, 0.9], [1, 0.2, 0.0, 0.0, 1.0, 1.0]])
    truth = np.array([[0, 0.12, 0.1, 0.5, 0.62]])
    plain = draw_detections(image, np.zeros((0, 6)), np.zeros((0, 5)), {0: "cat", 1: "dog"})
    drawn = draw_detections(image, detections, truth, {0: "cat", 1: "dog"}, score_threshold=0.5)
    assert_sensible_png(drawn)
    assert png_size(drawn) == png_size(plain)
    assert np.abs(decoded(drawn).astype(int) - decoded(plain).astype(int)).sum() > 0  # boxes were drawn


def test_sample_drawing_puts_the_box_where_the_detection_is() -> None:
    grey = 40
    image = np.full((100, 200, 3), grey, dtype=np.uint8)
    detections = np.array([[1, 0.9, 0.5, 0.5, 1.0, 1.0], [0, 0.2, 0.0, 0.0, 0.4, 0.4]])
    drawn = decoded(draw_detections(image, detections, None, {1: "WBC"}, score_threshold=0.5))
    untouched = (drawn == grey).all(axis=2)  # the image's pixels the drawing left alone (and some of the text's)
    rows, cols = np.nonzero(untouched.sum(axis=1) > 100)[0], np.nonzero(untouched.sum(axis=0) > 50)[0]
    top, bottom, left, right = rows.min() + 3, rows.max() - 3, cols.min() + 3, cols.max() - 3  # inside its edges
    inside = drawn[top:bottom, left:right]
    changed_rows, changed_cols = np.nonzero((inside != grey).any(axis=2))
    height, width = inside.shape[:2]
    assert len(changed_cols) and changed_cols.min() >= width / 2 - 6  # the right half only
    assert changed_rows.min() >= height / 2 - 40  # the bottom half, and its label just above it
    assert (inside[: int(height * 0.45), : int(width * 0.45)] == grey).all()  # the low-scoring box is not drawn
