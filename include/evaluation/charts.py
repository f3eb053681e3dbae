"""PNG charts of a training run and a tuning job (matplotlib, Agg canvas, no pyplot state).

Each function returns the PNG bytes; the caller decides where they go (``storage.write_bytes``).
Figures are built as ``matplotlib.figure.Figure`` objects on their own Agg canvas, so nothing
is registered with pyplot and nothing leaks between calls or threads.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from itertools import accumulate
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from include.evaluation.training_run import TrainingCurves

SIZE = (8.0, 4.5)
DPI = 100
BEST_COLOR = "#d62728"
LOSS_COLORS = {"train:cross_entropy": "#1f77b4", "train:smooth_l1": "#ff7f0e"}


class ChartDataError(ValueError):
    """The data a chart needs is missing or malformed."""


def new_figure(size: tuple[float, float] = SIZE) -> Figure:
    """A figure (inches) on its own Agg canvas, with constrained layout; pyplot never sees it."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def to_png(fig: Figure) -> bytes:
    """The figure rendered as PNG bytes."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    return buf.getvalue()


def _style(ax: Axes, title: str, xlabel: str, ylabel: str) -> None:
    ax.set_title(title, fontsize=13, fontweight="bold")
    ax.set_xlabel(xlabel, fontsize=11)
    ax.set_ylabel(ylabel, fontsize=11)
    ax.grid(True, alpha=0.3)


#: Up to this many epochs every one gets its own tick.
EVERY_EPOCH = 20


def _integer_x(ax: Axes, epochs: Sequence[int] = ()) -> None:
    """Whole-number ticks; with few epochs, one per epoch and half an epoch of margin (a single epoch
    would otherwise get matplotlib's auto limits of +-0.055 and ticks at -0.045 .. 0.045)."""
    from matplotlib.ticker import MaxNLocator

    if epochs and max(epochs) - min(epochs) < EVERY_EPOCH:
        ax.set_xlim(min(epochs) - 0.5, max(epochs) + 0.5)
        ax.set_xticks(range(min(epochs), max(epochs) + 1))
        return
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
    _integer_x(ax, epochs)
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
        _integer_x(ax, epochs)
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


def pr_chart(curves: dict[int, tuple[Any, Any]], class_names: dict[int, str], aps: dict[int, float], iou: float,
             split: str) -> bytes:
    """Precision against recall per class (every detection a point), each labelled with its AP."""
    from include.evaluation.samples import class_color

    if not curves:
        raise ChartDataError(f"no class has ground truth in the {split} split: no precision-recall curve")
    fig = new_figure((7.0, 5.0))
    ax = fig.add_subplot()
    for c, (recall, precision) in sorted(curves.items()):
        label = f"{class_names.get(c, c)} (AP {aps[c]:.3f})" if aps.get(c) is not None else str(class_names.get(c, c))
        if len(recall):
            ax.step(recall, precision, where="post", color=class_color(c), linewidth=1.8, label=label)
        else:
            ax.plot([], [], color=class_color(c), label=f"{label}: no detections")
    _style(ax, f"Precision-recall per class ({split}, IoU {iou:g})", "recall", "precision")
    ax.set_xlim(0.0, 1.0)
    ax.set_ylim(0.0, 1.02)
    ax.legend(loc="lower left", fontsize=9)
    return to_png(fig)


def confusion_chart(counts: Any, class_names: dict[int, str], score_threshold: float, split: str) -> bytes:
    """Ground truth (rows, then false detections) against predictions (columns, then missed boxes), as counts."""
    import numpy as np

    n = len(counts) - 1
    names = [str(class_names.get(c, c)) for c in range(n)]
    counts = np.asarray(counts)
    size = max(4.5, 1.0 + 0.9 * (n + 1))
    fig = new_figure((size + 1.2, size))
    ax = fig.add_subplot()
    shown = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)  # row shares: colour by recall, not by size
    ax.imshow(shown, cmap="Blues", vmin=0.0, vmax=1.0)
    for (i, j), value in np.ndenumerate(counts):
        ax.text(j, i, str(value), ha="center", va="center", fontsize=9,
                color="white" if shown[i, j] > 0.55 else "#1d2330")
    ax.set_xticks(range(n + 1), [*names, "missed"], rotation=30, ha="right")
    ax.set_yticks(range(n + 1), [*names, "no object"])
    ax.set_xlabel(f"predicted class (score >= {score_threshold:g})", fontsize=11)
    ax.set_ylabel("ground truth", fontsize=11)
    ax.set_title(f"Confusion matrix ({split}, IoU matching)", fontsize=13, fontweight="bold")
    return to_png(fig)
