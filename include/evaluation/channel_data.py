"""A channel's images and ground truth (the held-out test split, or validation), read back from its RecordIO files.

Records are im2rec ``--pack-label`` records, read with the pipeline's one RecordIO codec
(:mod:`include.recordio_codec`), so evaluation's ground truth is exactly what training read.
Every ``*.rec`` in the channel folder (``<data>/test/``) is read, in name order, so a sharded
channel reads the same as a single file. The ``.lst`` beside it names each record's image.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from include import storage
from include.recordio_codec import RecordFormatError, detection_record, iter_payloads


class ChannelNotFoundError(ValueError):
    """A channel folder without any ``.rec`` file."""


@dataclass(frozen=True)
class ChannelImage:
    """One image of a channel: RGB uint8 pixels and its boxes ``[M, 5]`` (class, normalized corners).

    ``name`` is its path in the channel's ``.lst`` (the image file), or ``<.rec> record <n>`` without one.
    """

    source: str
    index: int
    image: np.ndarray
    boxes: np.ndarray
    name: str


def channel_files(channel_uri: str) -> list[str]:
    """The ``.rec`` files of a channel folder, sorted."""
    files = [u for u in storage.listdir(channel_uri) if u.endswith(".rec")] if storage.isdir(channel_uri) else []
    if not files:
        raise ChannelNotFoundError(f"no .rec files in {storage.normalize(channel_uri)}: not a RecordIO channel folder")
    return files


def _lst_paths(rec_uri: str) -> dict[int, str]:
    """``{record id: image path}`` from the ``.lst`` beside a ``.rec`` (empty when there is none)."""
    lst_uri = rec_uri[: -len(".rec")] + ".lst"
    if not storage.exists(lst_uri):
        return {}
    paths = {}
    for line in storage.read_text(lst_uri).splitlines():
        parts = line.split("\t")
        if len(parts) >= 3 and parts[0].strip().isdigit():
            paths[int(parts[0])] = parts[-1].strip()
    return paths


def read_channel(channel_uri: str) -> Iterator[ChannelImage]:
    """Yield every image of a channel folder with its ground truth (files from any storage URI)."""
    from include.model_artifact import decode_image

    for rec_uri in channel_files(channel_uri):
        paths = _lst_paths(rec_uri)
        with storage.local_copy(rec_uri) as path:
            for index, (where, payload) in enumerate(iter_payloads(path, rec_uri)):
                record = detection_record(payload, where)
                try:
                    image = decode_image(record.image)
                except ValueError as exc:
                    raise RecordFormatError(f"{where}: {exc}") from None
                name = paths.get(record.header.id) or f"{rec_uri.rsplit('/', 1)[-1]} record {index}"
                yield ChannelImage(source=rec_uri, index=index, image=image, boxes=record.boxes, name=name)
