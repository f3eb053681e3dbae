"""Detection samples from a channel of im2rec ``--pack-label`` RecordIO files, batched for the SSD.

A channel folder holds one or more ``.rec`` files (with their ``.idx`` when im2rec wrote one; a
missing index is rebuilt by walking the record frames). Records and labels are read with the
pipeline's one RecordIO codec (:mod:`include.recordio_codec`), which reads labels as
ImageDetRecordIter does. Labels are read once up front (they are small); images are decoded on
demand by the loader's worker thread.

Batches are NumPy arrays made with :func:`include.model_artifact.preprocess_array` (the exact
preprocessing of evaluation and serving) plus an optional random horizontal flip.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from include.model_artifact import decode_image, preprocess_array
from include.recordio_codec import (
    RecordFormatError,
    detection_record,
    read_index,
    read_payload,
    scan_offsets,
    unpack,
)

if TYPE_CHECKING:
    import numpy as np


class RecordDataError(RecordFormatError):
    """A channel is not usable detection data (no records, an image that does not decode)."""


class RecordChannel:
    """The records of one channel folder: labels in memory, images decoded on demand (thread-safe)."""

    def __init__(self, folder: Path, index_cache: Path) -> None:
        self.folder = folder
        rec_files = sorted(folder.rglob("*.rec"))
        if not rec_files:
            raise RecordDataError(f"{folder}: no .rec files in the channel")
        self._files: list[tuple[Path, IO[bytes]]] = []
        self._items: list[tuple[int, int, int]] = []  # (file number, key, byte offset)
        self.labels: list[np.ndarray] = []
        self.max_objects = 0
        self._lock = threading.Lock()
        for number, rec in enumerate(rec_files):
            idx = rec.with_suffix(".idx")
            if not idx.is_file():
                idx = index_cache / f"{number}-{rec.stem}.idx"
                idx.parent.mkdir(parents=True, exist_ok=True)
                idx.write_text("".join(f"{k}\t{off}\n" for k, off in enumerate(scan_offsets(rec))))
            self._files.append((rec, rec.open("rb")))
            for key, offset in read_index(idx):
                record = detection_record(self._read(number, offset), f"{rec} record {key}")
                self._items.append((number, key, offset))
                self.labels.append(record.boxes)
                self.max_objects = max(self.max_objects, record.objects)

    def _read(self, number: int, offset: int) -> bytes:
        path, handle = self._files[number]
        with self._lock:
            handle.seek(offset)
            payload = read_payload(handle, str(path), offset)
        if payload is None:
            raise RecordDataError(f"{path}: no record at byte {offset} (a stale .idx?)")
        return payload

    def __len__(self) -> int:
        return len(self._items)

    def where(self, i: int) -> str:
        """File and key of sample ``i``, for messages."""
        number, key, _ = self._items[i]
        return f"{self._files[number][0]} record {key}"

    def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """RGB uint8 image and its boxes ``(n, 5)``."""
        number, _, offset = self._items[i]
        _, _, image_bytes = unpack(self._read(number, offset), self.where(i))
        try:
            image = decode_image(image_bytes)
        except ValueError as exc:
            raise RecordDataError(f"{self.where(i)}: the image bytes cannot be decoded") from exc
        return image, self.labels[i]

    def class_ids(self) -> set[int]:
        """Every class id used in the channel."""
        return {int(c) for boxes in self.labels for c in boxes[:, 0]}

    def close(self) -> None:
        for _, handle in self._files:
            handle.close()


@dataclass
class Batchify:
    """Collate samples into ``(images NCHW float32, boxes (N, M, 4) px, class ids (N, M, 1))``, NumPy.

    Boxes are scaled to ``image_shape`` pixels and padded with -1 to the most objects in the batch.
    """

    image_shape: int
    flip_probability: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        import numpy as np

        self._rng = np.random.default_rng(self.seed)

    def __call__(self, samples: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        import numpy as np

        images, labels = [], []
        for image, boxes in samples:
            if self.flip_probability and self._rng.random() < self.flip_probability:
                image = image[:, ::-1]
                boxes = boxes.copy()
                boxes[:, [1, 3]] = 1.0 - boxes[:, [3, 1]]
            images.append(image)
            labels.append(boxes)
        most = max(1, max(len(b) for b in labels))
        gt_boxes = np.full((len(samples), most, 4), -1.0, dtype=np.float32)
        gt_ids = np.full((len(samples), most, 1), -1.0, dtype=np.float32)
        for i, boxes in enumerate(labels):
            gt_boxes[i, : len(boxes)] = boxes[:, 1:5] * self.image_shape
            gt_ids[i, : len(boxes), 0] = boxes[:, 0]
        return preprocess_array(images, self.image_shape), gt_boxes, gt_ids


def loader(
    channel: RecordChannel,
    batch_size: int,
    batchify: Batchify,
    *,
    shuffle: bool,
    workers: int,
) -> Any:
    """A Gluon DataLoader over ``channel`` with ``workers`` prefetching threads (0: in the caller)."""
    import mxnet as mx

    return mx.gluon.data.DataLoader(
        channel,
        batch_size=min(batch_size, len(channel)),
        shuffle=shuffle,
        last_batch="rollover" if shuffle else "keep",
        batchify_fn=batchify,
        num_workers=workers,
        thread_pool=True,
        prefetch=2 * workers if workers else None,
    )
