"""Records planned from the canonical table, and their im2rec detection ``.lst`` lines.

One record per image and split, in the order of the images' relative paths; with flip
augmentation each image is followed by its mirrored copy, listed under ``flipped/<image>``
(a path no source file has: the copy exists only inside the ``.rec``, built in memory).
A ``.lst`` line is ``id \\t 2 \\t 5 \\t cls \\t xmin \\t ymin \\t xmax \\t ymax [...] \\t path``
with box corners normalized to [0, 1] and written with 6 decimals.
"""

from __future__ import annotations

import itertools
import math
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from operator import attrgetter
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, TypeAlias

from include.preprocess.annotations import SPLITS
from include.recordio_codec import HEADER_WIDTH, OBJECT_WIDTH

if TYPE_CHECKING:
    import pandas as pd

#: The canonical table as a DataFrame, or its columns as plain lists (``annotations.read_columns``).
Table: TypeAlias = "pd.DataFrame | Mapping[str, list[Any]]"

FLIP_MODES = ("train", "none", "all")
FLIPPED_PREFIX = "flipped/"
DECIMALS = 6
_IMAGE_FIELDS = attrgetter("split", "image_uri", "width", "height")  # equal on every row of one image
COLUMNS = (
    "image",
    "image_uri",
    "width",
    "height",
    "depth",
    "split",
    "class_id",
    "source_file",
    "source_line",
    "xmin",
    "ymin",
    "xmax",
    "ymax",
    "xmin_norm",
    "ymin_norm",
    "xmax_norm",
    "ymax_norm",
)


class AnnotationTableError(ValueError):
    """The canonical table cannot be turned into records (names the offending row)."""


class LabelWidthError(ValueError):
    """``label_width`` is too small for the image with the most objects."""


@dataclass(frozen=True)
class Box:
    """One object: class id, pixel corners and normalized corners."""

    class_id: int
    xmin: float
    ymin: float
    xmax: float
    ymax: float
    xmin_norm: float
    ymin_norm: float
    xmax_norm: float
    ymax_norm: float

    def mirrored(self, width: int) -> Box:
        """The box in the horizontally flipped image: ``x' = W - w - x``, same class."""
        return replace(
            self,
            xmin=width - self.xmax,
            xmax=width - self.xmin,
            xmin_norm=(width - self.xmax) / width,
            xmax_norm=(width - self.xmin) / width,
        )


@dataclass(frozen=True)
class Record:
    """One image record of a channel: a source image, possibly mirrored, and its boxes."""

    path: str  # the .lst path: the table's relative path, or flipped/<path> for a mirrored copy
    source: str  # the table's relative path of the source image
    uri: str
    width: int
    height: int
    depth: int
    flipped: bool
    boxes: tuple[Box, ...]

    def label(self) -> list[str]:
        """The label fields of the .lst line (header, then 5 per object), as text."""
        fields = [str(HEADER_WIDTH), str(OBJECT_WIDTH)]
        for b in self.boxes:
            fields.append(str(b.class_id))
            fields.extend(f"{v:.{DECIMALS}f}" for v in (b.xmin_norm, b.ymin_norm, b.xmax_norm, b.ymax_norm))
        return fields


def lst_line(record_id: int, record: Record) -> str:
    """The tab-separated .lst line of ``record`` (with its newline)."""
    return "\t".join([str(record_id), *record.label(), record.path]) + "\n"


def parse_lst_line(line: str, where: str = "") -> tuple[int, list[float], str]:
    """``(id, label floats, path)`` of a .lst line, read exactly as im2rec reads it."""
    parts = [p.strip() for p in line.strip().split("\t")]
    if len(parts) < 3:
        raise AnnotationTableError(f"{where}: a .lst line needs an id, a label and a path, got {line!r}")
    try:
        return int(parts[0]), [float(p) for p in parts[1:-1]], parts[-1]
    except ValueError as exc:
        raise AnnotationTableError(f"{where}: bad .lst line {line!r}: {exc}") from exc


def check_flip(flip: str) -> str:
    if flip not in FLIP_MODES:
        raise ValueError(f"flip must be one of {', '.join(FLIP_MODES)}, got {flip!r}")
    return flip


def _where(row: SimpleNamespace) -> str:
    return f"{row.source_file}:{row.source_line} (image {row.image})"


def _box(row: SimpleNamespace) -> Box:
    values = (row.xmin, row.ymin, row.xmax, row.ymax, row.xmin_norm, row.ymin_norm, row.xmax_norm, row.ymax_norm)
    if not all(v is not None and math.isfinite(v) for v in values):
        raise AnnotationTableError(f"{_where(row)}: box has a missing or non-finite coordinate {values}")
    if row.class_id < 0:
        raise AnnotationTableError(f"{_where(row)}: class_id {row.class_id} is negative")
    return Box(int(row.class_id), *(float(v) for v in values))


def _columns(table: Table) -> Mapping[str, list[Any]]:
    """The columns the plan reads, as plain Python lists (fast, unlike per-group pandas access)."""
    if isinstance(table, Mapping):
        return table
    return {c: table[c].astype(object).where(table[c].notna(), None).tolist() for c in COLUMNS}


def _rows(table: Table) -> Iterator[SimpleNamespace]:
    """The table's rows sorted by image (stable)."""
    columns = _columns(table)
    images = columns["image"]
    for i in sorted(range(len(images)), key=images.__getitem__):
        yield SimpleNamespace(**{c: columns[c][i] for c in COLUMNS})


def _record(rows: list[SimpleNamespace]) -> tuple[str, Record]:
    """The split and the record of one image's rows, checked for consistency."""
    first = rows[0]
    for row in rows[1:]:
        if _IMAGE_FIELDS(row) != _IMAGE_FIELDS(first):
            raise AnnotationTableError(
                f"{_where(row)}: split, image_uri or size differ from {_where(first)} of the same image"
            )
    if first.split not in SPLITS:
        raise AnnotationTableError(f"{_where(first)}: split {first.split!r} is not one of {', '.join(SPLITS)}")
    if first.width <= 0 or first.height <= 0:
        raise AnnotationTableError(f"{_where(first)}: image size {first.width}x{first.height} is not positive")
    return first.split, Record(
        path=first.image,
        source=first.image,
        uri=first.image_uri,
        width=int(first.width),
        height=int(first.height),
        depth=int(first.depth),
        flipped=False,
        boxes=tuple(_box(row) for row in rows),
    )


def plan_records(table: Table, flip: str = "train") -> dict[str, list[Record]]:
    """Records per split (``train``, ``validation``, ``test``), ordered by image path, mirrored copies after each image.

    Raises :class:`AnnotationTableError` naming the row when an image's split, URI or size is
    inconsistent or invalid, or a box coordinate is missing.
    """
    check_flip(flip)
    columns = _columns(table)
    images = set(columns["image"])
    channels: dict[str, list[Record]] = {split: [] for split in SPLITS}
    for _, group in itertools.groupby(_rows(columns), key=lambda row: row.image):
        rows = list(group)
        split, record = _record(rows)
        channels[split].append(record)
        if flip == "all" or (flip == "train" and split == "train"):
            path = FLIPPED_PREFIX + record.path
            if path in images:
                raise AnnotationTableError(f"{_where(rows[0])}: its flipped copy's path {path} is a source image too")
            boxes = tuple(b.mirrored(record.width) for b in record.boxes)
            channels[split].append(replace(record, path=path, flipped=True, boxes=boxes))
    return channels


def _most_objects(table: Table) -> tuple[str | None, int]:
    """The image with the most boxes (the first by path on a tie) and its count; ``(None, 0)`` when empty."""
    counts = Counter(_columns(table)["image"])
    most = max(counts.values(), default=0)
    return min((image for image, n in counts.items() if n == most), default=None), most


def required_label_width(table: Table) -> int:
    """The smallest ``label_width`` that holds every image: ``2 + 5 x`` (most objects in one image)."""
    return HEADER_WIDTH + OBJECT_WIDTH * _most_objects(table)[1]


def check_label_width(table: Table, label_width: int) -> int:
    """Return the required label width; raise :class:`LabelWidthError` when ``label_width`` is below it."""
    image, most = _most_objects(table)
    needed = HEADER_WIDTH + OBJECT_WIDTH * most
    if label_width < needed:
        raise LabelWidthError(
            f"label_width {label_width} is too small: image {image} has {most} objects, "
            f"which needs label_width >= {needed} (2 + 5 x {most})"
        )
    return needed
