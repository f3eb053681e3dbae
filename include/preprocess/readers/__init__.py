"""Annotation readers: one per data set layout, all returning :class:`SourceData`."""

from __future__ import annotations

from collections.abc import Callable

from include.preprocess.readers.base import AnnotationFormatError, SourceData
from include.preprocess.readers.cub import read_cub
from include.preprocess.readers.groundtruth import read_groundtruth
from include.preprocess.readers.imagejson import read_imagejson
from include.preprocess.readers.jumpstart import read_jumpstart
from include.preprocess.readers.voc import read_voc

FORMATS = ("cub", "voc", "groundtruth", "imagejson", "jumpstart")

__all__ = ["FORMATS", "AnnotationFormatError", "SourceData", "read_source"]


def read_source(fmt: str, source_uri: str, label_attribute: str | None = None, workers: int = 8) -> SourceData:
    """Read ``source_uri`` with the reader for ``fmt`` (one of :data:`FORMATS`)."""
    readers: dict[str, Callable[[], SourceData]] = {
        "cub": lambda: read_cub(source_uri),
        "voc": lambda: read_voc(source_uri, workers=workers),
        "groundtruth": lambda: read_groundtruth(source_uri, label_attribute=label_attribute),
        "imagejson": lambda: read_imagejson(source_uri, workers=workers),
        "jumpstart": lambda: read_jumpstart(source_uri),
    }
    if fmt not in readers:
        raise ValueError(f"unknown data set format {fmt!r}; expected one of {', '.join(FORMATS)}")
    if label_attribute and fmt != "groundtruth":
        raise ValueError(f"label_attribute applies to the groundtruth format, not {fmt!r}")
    return readers[fmt]()
