"""Small JPEG thumbnails of images with boxes drawn on them, for the reports' tables and grids.

Pillow decodes (JPEGs in draft mode: libjpeg scales by 1/2..1/8 while decoding), OpenCV draws
and encodes. Measured for 640 x 480 BCCD images: 12.7 ms and about 10 KiB per thumbnail,
against 166 ms and 71 KiB for the same drawing with matplotlib (the evaluation samples' way),
which matters when a report shows hundreds of them. A box that reaches outside the image is
drawn on a grey margin, so "outside the image" is visible; a zero-area box gets a ring around it.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from include import storage

if TYPE_CHECKING:
    import numpy as np

SIDE = 240  # longest side of a thumbnail, pixels
JPEG_QUALITY = 80
HIGHLIGHT = "#e3000f"
MARGIN_LIMIT = 0.5  # a margin for boxes outside the image, at most this share of the image side
EDGE = (235, 235, 235)
FONT = 0  # cv2.FONT_HERSHEY_SIMPLEX
FONT_SCALE = 0.38


@dataclass(frozen=True)
class Mark:
    """A box to draw: pixel corners in the original image, a colour, a line width and an optional label."""

    box: tuple[float, float, float, float]
    color: str
    width: int = 1
    label: str = ""


def _rgb(color: str) -> tuple[int, int, int]:
    return tuple(int(color[k : k + 2], 16) for k in (1, 3, 5))  # type: ignore[return-value]


def load(uri: str, side: int = SIDE) -> tuple[np.ndarray, int, int]:
    """``(RGB pixels at about 2 x side, original width, original height)`` of an image file."""
    import numpy as np
    from PIL import Image

    with Image.open(io.BytesIO(storage.read_bytes(uri))) as im:
        width, height = im.size
        im.draft("RGB", (2 * side, 2 * side))
        return np.asarray(im.convert("RGB")), width, height


def draw(pixels: np.ndarray, size: tuple[int, int], marks: Sequence[Mark], side: int = SIDE) -> np.ndarray:
    """The image scaled to ``side`` with ``marks`` (in original pixels of an image of ``size``) drawn on it."""
    import cv2
    import numpy as np

    width, height = size
    corners = [m.box for m in marks if all(np.isfinite(m.box))]
    left = max([0.0] + [-x0 for x0, _, _, _ in corners])
    top = max([0.0] + [-y0 for _, y0, _, _ in corners])
    right = max([0.0] + [x1 - width for _, _, x1, _ in corners])
    bottom = max([0.0] + [y1 - height for _, _, _, y1 in corners])
    left, right = (min(v, MARGIN_LIMIT * width) for v in (left, right))
    top, bottom = (min(v, MARGIN_LIMIT * height) for v in (top, bottom))
    scale = side / max(width + left + right, height + top + bottom)
    canvas_w, canvas_h = round((width + left + right) * scale), round((height + top + bottom) * scale)
    canvas = np.full((max(canvas_h, 1), max(canvas_w, 1), 3), EDGE, dtype=np.uint8)
    x_off, y_off = round(left * scale), round(top * scale)
    inner = cv2.resize(
        pixels, (max(round(width * scale), 1), max(round(height * scale), 1)), interpolation=cv2.INTER_AREA
    )
    canvas[y_off : y_off + inner.shape[0], x_off : x_off + inner.shape[1]] = inner[
        : canvas_h - y_off, : canvas_w - x_off
    ]
    for mark in marks:
        if not all(np.isfinite(mark.box)):
            continue
        x0, y0, x1, y1 = ((v + off) * scale for v, off in zip(mark.box, (left, top, left, top), strict=True))
        color = _rgb(mark.color)
        p0, p1 = (round(x0), round(y0)), (round(x1), round(y1))
        if abs(p1[0] - p0[0]) < 2 or abs(p1[1] - p0[1]) < 2:
            center = (round((x0 + x1) / 2), round((y0 + y1) / 2))
            cv2.circle(canvas, center, 7, color, mark.width, cv2.LINE_AA)
        cv2.rectangle(canvas, p0, p1, color, mark.width, cv2.LINE_AA)
        if mark.label:
            (text_w, text_h), _ = cv2.getTextSize(mark.label, FONT, FONT_SCALE, 1)
            x = min(max(p0[0], 0), max(canvas.shape[1] - text_w - 4, 0))
            y = p0[1] - text_h - 4 if p0[1] - text_h - 4 >= 0 else max(p1[1], p0[1]) + 1
            cv2.rectangle(canvas, (x, y), (x + text_w + 4, y + text_h + 4), color, cv2.FILLED)
            cv2.putText(canvas, mark.label, (x + 2, y + text_h + 1), FONT, FONT_SCALE, (255, 255, 255), 1, cv2.LINE_AA)
    return canvas


def side_by_side(*images: np.ndarray, gap: int = 6) -> np.ndarray:
    """Images next to each other on one white strip (top-aligned)."""
    import numpy as np

    height = max(i.shape[0] for i in images)
    width = sum(i.shape[1] for i in images) + gap * (len(images) - 1)
    strip = np.full((height, width, 3), 255, dtype=np.uint8)
    x = 0
    for image in images:
        strip[: image.shape[0], x : x + image.shape[1]] = image
        x += image.shape[1] + gap
    return strip


def to_jpeg(pixels: np.ndarray) -> bytes:
    """RGB pixels as JPEG bytes."""
    import cv2

    ok, encoded = cv2.imencode(".jpg", pixels[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise ValueError("OpenCV could not encode a thumbnail as JPEG")
    return encoded.tobytes()
