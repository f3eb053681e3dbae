"""Figures for the self-contained HTML reports (``quality.html``, ``report.html``).

Figures are ``matplotlib.figure.Figure`` objects on their own Agg canvas, so nothing is
registered with pyplot and nothing leaks between calls or threads. A :class:`Picture` is a
PNG or JPEG a page embeds as a ``data:`` URI, so the page opens the same from S3, a laptop
or an Airflow log link.
"""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from matplotlib.figure import Figure

SIZE = (8.0, 4.5)
DPI = 100
JPEG_MAGIC = b"\xff\xd8\xff"
#: tab10 without its grey, which would vanish on most images.
CLASS_COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#bcbd22", "#17becf")


def class_color(class_id: int) -> str:
    return CLASS_COLORS[class_id % len(CLASS_COLORS)]


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


@dataclass(frozen=True)
class Picture:
    """A PNG (charts) or JPEG (photographs) shown in a report."""

    title: str
    png: bytes  # the encoded image, PNG or JPEG
    caption: str = ""

    def data_uri(self) -> str:
        kind = "jpeg" if self.png.startswith(JPEG_MAGIC) else "png"
        return f"data:image/{kind};base64," + base64.b64encode(self.png).decode("ascii")
