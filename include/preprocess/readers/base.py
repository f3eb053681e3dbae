"""What every annotation reader returns, and the helpers they share.

A reader turns one data set layout into :class:`SourceData`: a raw box table in the
data set's own class ids (``class_key``), the declared classes, the data set's own split
when it has one, and the issues it found. Ingest then selects classes, splits, verifies
images and conforms the table. Sizes written in the annotations are kept as
``annotated_*`` (NaN when missing or zero); the real size comes from the image itself.
"""

from __future__ import annotations

import math
import posixpath
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from include import storage
from include.preprocess.issues import Issue

if TYPE_CHECKING:
    import pandas as pd

#: Columns of a reader's raw box table.
RAW_COLUMNS: dict[str, str] = {
    "image": "string",  # path relative to the reader's image root, '/' separated
    "image_uri": "string",
    "annotated_width": "float64",
    "annotated_height": "float64",
    "annotated_depth": "float64",
    "class_key": "int64",  # the data set's own class id
    "class_name": "string",
    "xmin": "float64",
    "ymin": "float64",
    "xmax": "float64",
    "ymax": "float64",
    "split": "string",  # 'train', 'validation' or <NA> when the data set has no split
    "source_file": "string",
    "source_line": "int64",
}


class AnnotationFormatError(ValueError):
    """An annotation file that cannot be parsed; the message names the file and line or record."""

    def __init__(self, file: str, line: int | None, message: str) -> None:
        where = f"{file}:{line}" if line is not None else file
        super().__init__(f"{where}: {message}")


@dataclass
class SourceData:
    """A data set as one reader found it."""

    root: str  # URI the annotation file names are relative to
    boxes: pd.DataFrame  # RAW_COLUMNS
    classes: dict[int, str]  # the data set's class id -> name
    issues: list[Issue] = field(default_factory=list)
    notes: dict[str, int] = field(default_factory=dict)  # counts worth reporting (e.g. unlisted files)
    #: what the annotation files count pixel coordinates from (VOC: 1); the table counts from 0
    coordinate_origin: float = 0.0

    @property
    def has_split(self) -> bool:
        return bool(len(self.boxes)) and bool(self.boxes["split"].notna().all())


class BoxRows:
    """Collects raw box rows and builds the :data:`RAW_COLUMNS` frame."""

    def __init__(self) -> None:
        self._rows: list[tuple] = []

    def add(
        self,
        image: str,
        image_uri: str,
        size: tuple[float, float, float],
        class_key: int,
        class_name: str,
        box: tuple[float, float, float, float],
        split: str | None,
        source_file: str,
        source_line: int,
    ) -> None:
        self._rows.append((image, image_uri, *size, class_key, class_name, *box, split, source_file, source_line))

    def frame(self) -> pd.DataFrame:
        import pandas as pd

        return pd.DataFrame(self._rows, columns=list(RAW_COLUMNS)).astype(RAW_COLUMNS)


def annotated_size(width: object, height: object, depth: object = None) -> tuple[float, float, float]:
    """Sizes as written in an annotation; missing, zero or unparsable values become NaN."""

    def one(value: object) -> float:
        try:
            number = float(value)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            return math.nan
        return number if number > 0 else math.nan

    return one(width), one(height), one(depth)


def ltwh_label(size: tuple[int, int, int], objects: list[tuple[int, float, float, float, float]]) -> dict[str, list]:
    """SageMaker's ``{"image_size", "annotations"}`` label for ``(class_id, left, top, width, height)`` pixel boxes.

    The shape of an image+JSON record and of a Ground Truth label attribute.
    """
    width, height, depth = size
    return {
        "image_size": [{"width": width, "height": height, "depth": depth}],
        "annotations": [{"class_id": c, "left": x, "top": y, "width": w, "height": h} for c, x, y, w, h in objects],
    }


def ltwh_label_size(label: dict) -> tuple[float, float, float]:
    """The size written in such a label's ``image_size`` (:func:`annotated_size`: NaN where missing)."""
    sizes = label.get("image_size") or [{}]
    return annotated_size(sizes[0].get("width"), sizes[0].get("height"), sizes[0].get("depth"))


def number(value: object, file: str, line: int, what: str) -> float:
    """``float(value)`` or an :class:`AnnotationFormatError` naming the file, line and field."""
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise AnnotationFormatError(file, line, f"{what} is not a number: {value!r}") from None


def integer(value: object, file: str, line: int, what: str) -> int:
    """``int(value)`` (integral numbers only) or an :class:`AnnotationFormatError`."""
    result = number(value, file, line, what)
    if not result.is_integer():
        raise AnnotationFormatError(file, line, f"{what} is not an integer: {value!r}")
    return int(result)


def ltwh_box(ann: object, file: str, line: int, where: str) -> tuple[float, float, float, float]:
    """``(xmin, ymin, xmax, ymax)`` from a SageMaker ``{"left", "top", "width", "height"}`` annotation."""
    if not isinstance(ann, dict):
        raise AnnotationFormatError(file, line, f"{where} is not a JSON object")
    left, top, width, height = (
        number(ann.get(k), file, line, f"{where} {k}") for k in ("left", "top", "width", "height")
    )
    return left, top, left + width, top + height


def declare_class(classes: dict[int, str], class_id: object, name: object, file: str, line: int) -> None:
    """Add ``class_id -> name`` to ``classes``; a class id named two ways is an error."""
    key = integer(class_id, file, line, "class id")
    if classes.setdefault(key, str(name)) != str(name):
        raise AnnotationFormatError(file, line, f"class {key} is named {name!r} here, {classes[key]!r} elsewhere")


def inside(base: str, ref: str) -> str | None:
    """``ref`` (a '/' path relative to folder ``base``, itself relative to a root) joined and normalized, or None.

    None means the reference is absolute or climbs out of ``base`` through ``..``: such
    entries are rejected rather than read from wherever they point.
    """
    ref = posixpath.normpath(ref.replace("\\", "/").strip()) if ref.strip() else ""
    if not ref or ref in (".", "..") or ref.startswith(("/", "../")) or ":" in ref.split("/")[0]:
        return None  # empty, absolute, climbing out, a drive or a URI scheme
    return posixpath.join(base, ref) if base else ref


def dataset_root(source_uri: str, marker: str, child: str | None = None) -> str:
    """The folder holding ``marker``: ``source_uri`` itself, its folder ``child``, or its only sub-folder that has it.

    Raises ``FileNotFoundError`` naming what was looked for.
    """
    root = storage.normalize(source_uri)
    if not storage.isdir(root):
        raise FileNotFoundError(f"data set folder not found: {root}")
    candidates = [root]
    if child:
        candidates.append(storage.join(root, child))
    for candidate in candidates:
        if storage.exists(storage.join(candidate, marker)):
            return candidate
    subfolders = [u for u in storage.listdir(root) if storage.exists(storage.join(u, marker))]
    if len(subfolders) == 1:
        return subfolders[0]
    raise FileNotFoundError(
        f"{root}: no {marker} found in the folder{f', {child}/' if child else ''} or one sub-folder"
    )
