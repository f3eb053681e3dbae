"""The validation channel's images and ground truth, read back from its RecordIO files.

Records are im2rec ``--pack-label`` records, read with the pipeline's one RecordIO codec
(:mod:`include.recordio_codec`), so evaluation's ground truth is exactly what training read.
Every ``*.rec`` in the channel folder (``<data>/validation/``) is read, in name order, so a
sharded channel reads the same as a single file.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from include import storage
from include.recordio_codec import RecordFormatError, detection_record, iter_payloads

VALIDATION_CHANNEL = "validation"


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


def read_validation(channel_uri: str) -> Iterator[ValidationImage]:
    """Yield every image of a channel folder with its ground truth (files from any storage URI)."""
    from include.model_artifact import decode_image

    for rec_uri in channel_files(channel_uri):
        with storage.local_copy(rec_uri) as path:
            for index, (where, payload) in enumerate(iter_payloads(path, rec_uri)):
                boxes, _, image_bytes = detection_record(payload, where)
                try:
                    image = decode_image(image_bytes)
                except ValueError as exc:
                    raise RecordFormatError(f"{where}: {exc}") from None
                yield ValidationImage(source=rec_uri, index=index, image=image, boxes=boxes)
