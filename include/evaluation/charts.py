"""PNG charts of a training run and a tuning job (matplotlib, Agg canvas, no pyplot state).

Each function returns the PNG bytes; the caller decides where they go (``storage.write_bytes``).
Figures are built with :func:`include.reports.figures.new_figure` (their own Agg canvas).
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import accumulate
from typing import TYPE_CHECKING, Any

from include.reports.figures import new_figure, to_png

if TYPE_CHECKING:
    from matplotlib.axes import Axes

    from include.evaluation.training_run import TrainingCurves

BEST_COLOR = "#d62728"
LOSS_COLORS = {"train:cross_entropy": "#1f77b4", "train:smooth_l1": "#ff7f0e"}


class ChartDataError(ValueError):
    """The data a chart needs is missing or malformed."""


def _style(ax: Axes, title: str, xlabel: str, ylabel: str) -> None:
    ax.set_title(title, fontsize=13, fontweight="bold")
    ax.set_xlabel(xlabel, fontsize=11)
    ax.set_ylabel(ylabel, fontsize=11)
    ax.grid(True, alpha=0.3)


def _integer_x(ax: Axes) -> None:
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def map_chart(curves: TrainingCurves) -> bytes:
    """Validation mAP per epoch with the best epoch marked."""
    epochs, values = curves.values("validation:mAP")
    if not epochs:
        raise ChartDataError("the training run logged no validation mAP: nothing to chart")
    best_epoch, best = curves.best_epoch()
    fig = new_figure()
    ax = fig.add_subplot()
    ax.plot(epochs, values, marker="o", markersize=4, linewidth=1.8, color="#2ca02c", label="validation mAP")
    ax.scatter([best_epoch], [best], s=180, marker="*", color=BEST_COLOR, zorder=3,
               label=f"best: {best:.3f} at epoch {best_epoch}")
    ax.axhline(best, color=BEST_COLOR, linewidth=0.8, linestyle=":")
    _style(ax, "Validation mAP per epoch", "epoch", "mAP (IoU 0.5)")
    ax.set_ylim(0.0, max(1.0, max(values) * 1.05))
    _integer_x(ax)
    ax.legend(loc="best")
    return to_png(fig)


def loss_chart(curves: TrainingCurves) -> bytes:
    """Training losses per epoch: cross-entropy (classification) and smooth L1 (box regression)."""
    fig = new_figure((10.0, 4.5))
    axes = fig.subplots(1, 2, sharex=True)
    drawn = 0
    for ax, name, title in zip(axes, LOSS_COLORS, ("Cross-entropy loss", "Smooth L1 loss"), strict=True):
        epochs, values = curves.values(name)
        if epochs:
            ax.plot(epochs, values, marker="o", markersize=4, linewidth=1.8, color=LOSS_COLORS[name])
            drawn += 1
        else:
            ax.text(0.5, 0.5, "not logged", transform=ax.transAxes, ha="center", va="center", color="gray")
        _style(ax, title, "epoch", "loss (epoch end)")
        _integer_x(ax)
    if not drawn:
        raise ChartDataError("the training run logged no training losses: nothing to chart")
    fig.suptitle("Training losses per epoch", fontsize=14, fontweight="bold")
    return to_png(fig)


def _objective(trial: dict[str, Any], number: int) -> float:
    try:
        return float(trial["objective"])
    except (TypeError, ValueError):
        name = trial.get("name", f"number {number}")
        raise ChartDataError(f"tuning trial {name}: objective {trial['objective']!r} is not a number") from None


def tuning_chart(trials: Sequence[dict[str, Any]], objective: str = "validation:mAP") -> bytes:
    """Each trial's objective in launch order, with the best-so-far curve and the best trial named."""
    scored = [(i, t) for i, t in enumerate(trials, start=1) if t.get("objective") is not None]
    if not scored:
        raise ChartDataError("no tuning trial has an objective value: nothing to chart")
    numbers = [i for i, _ in scored]
    values = [_objective(t, i) for i, t in scored]
    running = list(accumulate(values, max))
    best_k = values.index(running[-1])
    fig = new_figure()
    ax = fig.add_subplot()
    ax.scatter(numbers, values, s=45, color="#1f77b4", zorder=3, label="trial objective")
    ax.step(numbers, running, where="post", color=BEST_COLOR, linewidth=2, label="best so far")
    failed = [i for i, t in enumerate(trials, start=1) if t.get("objective") is None]
    if failed:
        ax.scatter(failed, [0.0] * len(failed), s=60, marker="x", color="gray", zorder=3, clip_on=False,
                   label="failed (no objective)")
    ax.annotate(
        f"{scored[best_k][1].get('name', f'trial {numbers[best_k]}')}: {values[best_k]:.3f}",
        (numbers[best_k], values[best_k]), xytext=(8, -16), textcoords="offset points", fontsize=9,
    )
    _style(ax, f"Tuning: {objective} per trial", "trial (launch order)", objective)
    ax.set_ylim(0.0, max(1.0, max(values) * 1.05))
    ax.set_xlim(0.5, len(trials) + 0.5)
    _integer_x(ax)
    ax.legend(loc="best")
    return to_png(fig)
