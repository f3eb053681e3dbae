"""Annotation readers: one per data set layout, all returning :class:`SourceData`."""

from __future__ import annotations

from collections.abc import Callable

from include.preprocess.readers.base import AnnotationFormatError, SourceData

FORMATS = ("cub", "voc", "groundtruth", "imagejson", "coco", "yolo", "labelstudio", "cvat", "jumpstart")
#: The format value that means "detect it from the layout" (:mod:`.detect`).
AUTO = "auto"

__all__ = ["AUTO", "FORMATS", "AnnotationFormatError", "SourceData", "read_source", "resolve_format"]


def resolve_format(fmt: str | None, source_uri: str) -> tuple[str, str | None]:
    """``(format, evidence)``: ``fmt`` itself, or the format detected from the layout when it is auto or empty."""
    if fmt and fmt != AUTO:
        return fmt, None
    from include.preprocess.readers.detect import detect_format

    return detect_format(source_uri)


def read_source(fmt: str, source_uri: str, label_attribute: str | None = None, workers: int = 8) -> SourceData:
    """Read ``source_uri`` with the reader for ``fmt`` (one of :data:`FORMATS`)."""
    from include.preprocess.readers.coco import read_coco
    from include.preprocess.readers.cub import read_cub
    from include.preprocess.readers.cvat import read_cvat
    from include.preprocess.readers.groundtruth import read_groundtruth
    from include.preprocess.readers.imagejson import read_imagejson
    from include.preprocess.readers.jumpstart import read_jumpstart
    from include.preprocess.readers.labelstudio import read_labelstudio
    from include.preprocess.readers.voc import read_voc
    from include.preprocess.readers.yolo import read_yolo

    readers: dict[str, Callable[[], SourceData]] = {
        "cub": lambda: read_cub(source_uri),
        "voc": lambda: read_voc(source_uri, workers=workers),
        "groundtruth": lambda: read_groundtruth(source_uri, label_attribute=label_attribute),
        "imagejson": lambda: read_imagejson(source_uri, workers=workers),
        "coco": lambda: read_coco(source_uri),
        "yolo": lambda: read_yolo(source_uri),
        "labelstudio": lambda: read_labelstudio(source_uri),
        "cvat": lambda: read_cvat(source_uri),
        "jumpstart": lambda: read_jumpstart(source_uri),
    }
    if fmt not in readers:
        raise ValueError(f"unknown data set format {fmt!r}; expected one of {', '.join(FORMATS)} or {AUTO}")
    if label_attribute and fmt != "groundtruth":
        raise ValueError(f"label_attribute applies to the groundtruth format, not {fmt!r}")
    return readers[fmt]()
