"""The validation channel's images and ground truth, read back from its RecordIO files.

Records are im2rec ``--pack-label`` records: the label is ``[header width, object width,
class, xmin, ymin, xmax, ymax, ..., class, ...]`` with normalized corners, the payload an
encoded image. Every ``*.rec`` in the channel folder (``<data>/validation/``) is read, in
name order, so a sharded channel reads the same as a single file.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from itertools import count

import numpy as np

from include import storage

VALIDATION_CHANNEL = "validation"


class RecordFormatError(ValueError):
    """A record whose frame, label or image cannot be read."""


class ChannelNotFoundError(ValueError):
    """A channel folder without any ``.rec`` file."""


@dataclass(frozen=True)
class ValidationImage:
    """One validation image: RGB uint8 pixels and its boxes ``[M, 5]`` (class, normalized corners)."""

    source: str
    index: int
    image: np.ndarray
    boxes: np.ndarray


def channel_files(channel_uri: str) -> list[str]:
    """The ``.rec`` files of a channel folder, sorted."""
    files = [u for u in storage.listdir(channel_uri) if u.endswith(".rec")] if storage.isdir(channel_uri) else []
    if not files:
        raise ChannelNotFoundError(f"no .rec files in {storage.normalize(channel_uri)}: not a RecordIO channel folder")
    return files


def parse_label(label: np.ndarray, where: str) -> np.ndarray:
    """Boxes ``[M, 5]`` (class, xmin, ymin, xmax, ymax) from a packed detection label."""
    label = np.asarray(label, dtype=np.float64).ravel()
    if label.size < 2:
        raise RecordFormatError(f"{where}: label has {label.size} values, expected a packed detection label")
    header, width = int(label[0]), int(label[1])
    body = label[header:]
    if header < 2 or width < 5 or body.size % width:
        raise RecordFormatError(
            f"{where}: label header width {header} / object width {width} do not fit its {label.size} values"
        )
    boxes = body.reshape(-1, width)[:, :5]
    return boxes[boxes[:, 0] >= 0]


def read_validation(channel_uri: str) -> Iterator[ValidationImage]:
    """Yield every image of a channel folder with its ground truth (files from any storage URI)."""
    import mxnet as mx

    from include.model_artifact import decode_image

    for rec_uri in channel_files(channel_uri):
        with storage.local_copy(rec_uri) as path:
            reader = mx.recordio.MXRecordIO(str(path), "r")
            try:
                for index in count():
                    where = f"{rec_uri} record {index}"
                    try:
                        item = reader.read()
                    except mx.base.MXNetError:
                        raise RecordFormatError(f"{where}: not a RecordIO frame (corrupt or truncated file)") from None
                    if item is None:
                        break
                    header, payload = mx.recordio.unpack(item)
                    boxes = parse_label(header.label, where)
                    try:
                        image = decode_image(payload)
                    except ValueError as exc:
                        raise RecordFormatError(f"{where}: {exc}") from None
                    yield ValidationImage(source=rec_uri, index=index, image=image, boxes=boxes)
            finally:
                reader.close()
