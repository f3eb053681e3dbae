"""Images with predicted (and ground-truth) boxes drawn, as PNG: evaluation samples and ``invoke --draw``.

Both are drawn in one colour per class: ground truth dashed over a thin black line (visible on
light and dark images), predictions solid and labelled with the class name and score. The
legend names each class and the two line styles.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from include.evaluation.charts import DPI, new_figure, to_png

if TYPE_CHECKING:
    from matplotlib.axes import Axes

#: tab10 without its grey, which would vanish on most images.
CLASS_COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#bcbd22", "#17becf")


#: Ground truth: the class colour in dashes over a black line, visible on light and dark images.
GT_UNDER = {"color": "black", "linewidth": 3.4}
GT_DASHES = {"linewidth": 1.8, "linestyle": (0, (4, 3))}


def class_color(class_id: int) -> str:
    return CLASS_COLORS[class_id % len(CLASS_COLORS)]


def _rectangle(ax: Axes, box: np.ndarray, width: int, height: int, **style: object) -> None:
    from matplotlib.patches import Rectangle

    x0, y0, x1, y1 = box[0] * width, box[1] * height, box[2] * width, box[3] * height
    ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, **style))


def draw_detections(
    image: np.ndarray,
    detections: np.ndarray,
    ground_truth: np.ndarray | None,
    class_names: dict[int, str],
    score_threshold: float = 0.5,
    title: str = "",
) -> bytes:
    """PNG of ``image`` (RGB uint8) with detections ``[N, 6]`` at/above the threshold and ground truth ``[M, 5]``.

    Both box arrays hold normalized corners (the endpoint's and the label's convention); ``None``
    for ``ground_truth`` when there is none to show (an endpoint's answer), which the legend then omits.
    """
    from matplotlib.legend_handler import HandlerTuple
    from matplotlib.lines import Line2D

    height, width = image.shape[:2]
    scale = max(1.0, 640 / max(width, height))
    fig = new_figure((width * scale / DPI + 0.2, height * scale / DPI + 1.1))
    ax = fig.add_subplot()
    ax.imshow(image)
    ax.set_axis_off()
    for row in () if ground_truth is None else ground_truth:
        _rectangle(ax, row[1:5], width, height, **GT_UNDER)
        _rectangle(ax, row[1:5], width, height, edgecolor=class_color(int(row[0])), **GT_DASHES)
    shown = detections[detections[:, 1] >= score_threshold] if len(detections) else detections.reshape(0, 6)
    for row in shown[::-1]:  # best last, so it is drawn on top
        cid = int(row[0])
        _rectangle(ax, row[2:6], width, height, edgecolor=class_color(cid), linewidth=2.2)
        inside = row[3] < 0.05  # no room above the box: label inside its top edge
        ax.text(
            row[2] * width, row[3] * height, f"{class_names.get(cid, cid)} {row[1]:.2f}", fontsize=8, color="white",
            va="top" if inside else "bottom", clip_on=True,
            bbox={"facecolor": class_color(cid), "edgecolor": "none", "pad": 1.5, "alpha": 0.9},
        )
    handles: list[object] = []
    labels = []
    truth = np.zeros((0, 5)) if ground_truth is None else np.asarray(ground_truth).reshape(-1, 5)
    for cid in sorted({int(c) for c in truth[:, 0]}):
        handles.append((Line2D([], [], **GT_UNDER), Line2D([], [], color=class_color(cid), **GT_DASHES)))
        labels.append(f"{class_names.get(cid, cid)} ground truth ({int((truth[:, 0] == cid).sum())})")
    for cid in sorted({int(c) for c in shown[:, 0]}):
        handles.append(Line2D([], [], color=class_color(cid), linewidth=2.5))
        labels.append(f"{class_names.get(cid, cid)} predicted ({int((shown[:, 0] == cid).sum())})")
    if handles:
        fig.legend(handles, labels, handler_map={tuple: HandlerTuple(ndivide=1)}, loc="outside lower center",
                   ncol=min(4, len(handles)), fontsize=8, frameon=False)
    ax.set_title(title or f"{len(shown)} detections with score >= {score_threshold:g}", fontsize=10)
    return to_png(fig)
