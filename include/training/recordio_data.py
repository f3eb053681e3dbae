"""Detection samples from a channel of im2rec ``--pack-label`` RecordIO files, batched for the SSD.

A channel folder holds one or more ``.rec`` files (with their ``.idx`` when im2rec wrote one; a
missing index is rebuilt by walking the record frames). Each record's label is
``[A, B, cls, xmin, ymin, xmax, ymax, ...]`` with header width ``A >= 2``, object width
``B >= 5`` and normalized corners; like ImageDetRecordIter, boxes with ``xmax <= xmin`` or
``ymax <= ymin`` (and padding objects with a negative class) are dropped. Labels are read once
up front (they are small); images are decoded on demand by the loader's worker thread.

Batches are NumPy arrays made with :func:`include.model_artifact.preprocess_array` (the exact
preprocessing of evaluation and serving) plus an optional random horizontal flip.
"""

from __future__ import annotations

import struct
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from include.model_artifact import decode_image, preprocess_array

if TYPE_CHECKING:
    import numpy as np

RECORD_MAGIC = 0xCED7230A  # dmlc-core RecordIOWriter::kMagic
_LENGTH_MASK = (1 << 29) - 1
COORD_TOLERANCE = 0.02  # normalized coordinates may overshoot [0, 1] by this much (then clipped)


class RecordDataError(ValueError):
    """A channel, a RecordIO file or one of its records is not usable detection data."""


def _scan_offsets(rec: Path) -> list[int]:
    """Byte offsets of the records of a ``.rec`` file, by walking its frames (dmlc recordio)."""
    offsets: list[int] = []
    size = rec.stat().st_size
    with rec.open("rb") as fh:
        pos = 0
        while pos < size:
            head = fh.read(8)
            if len(head) < 8:
                raise RecordDataError(f"{rec}: truncated record frame at byte {pos}")
            magic, lrec = struct.unpack("<II", head)
            if magic != RECORD_MAGIC:
                raise RecordDataError(f"{rec}: bad magic number at byte {pos}; not a RecordIO file")
            cflag, length = lrec >> 29, lrec & _LENGTH_MASK
            if cflag in (0, 1):
                offsets.append(pos)
            pos += 8 + ((length + 3) & ~3)
            fh.seek(pos)
    return offsets


def parse_label(label: Any, where: str) -> tuple[np.ndarray, int]:
    """Split a packed detection label into valid boxes ``(n, 5)`` = cls, xmin, ymin, xmax, ymax.

    Returns the boxes and the number of objects the record carries (valid or not).
    """
    import numpy as np

    flat = np.asarray(label, dtype=np.float64).reshape(-1)
    if flat.size < 2:
        raise RecordDataError(f"{where}: label has {flat.size} value(s); a detection label starts with 2, 5")
    head, width = int(flat[0]), int(flat[1])
    if head < 2 or width < 5 or flat.size < head or (flat.size - head) % width:
        raise RecordDataError(
            f"{where}: label {flat[:8].tolist()}... is not [A>=2, B>=5, objects of B values] (im2rec --pack-label)"
        )
    objects = flat[head:].reshape(-1, width)[:, :5]
    objects = objects[objects[:, 0] >= 0]
    if len(objects) and not np.allclose(objects[:, 0], np.round(objects[:, 0])):
        raise RecordDataError(f"{where}: class ids must be whole numbers, got {objects[:, 0].tolist()}")
    coords = objects[:, 1:5]
    if coords.size and (coords.min() < -COORD_TOLERANCE or coords.max() > 1 + COORD_TOLERANCE):
        raise RecordDataError(f"{where}: box corners must be normalized to [0, 1], got {coords.tolist()}")
    objects[:, 1:5] = np.clip(coords, 0.0, 1.0)
    valid = (objects[:, 3] > objects[:, 1]) & (objects[:, 4] > objects[:, 2])
    return objects[valid].astype(np.float32), (flat.size - head) // width


class RecordChannel:
    """The records of one channel folder: labels in memory, images decoded on demand (thread-safe)."""

    def __init__(self, folder: Path, index_cache: Path) -> None:
        import mxnet as mx

        self.folder = folder
        rec_files = sorted(folder.rglob("*.rec"))
        if not rec_files:
            raise RecordDataError(f"{folder}: no .rec files in the channel")
        self._readers = []
        self._items: list[tuple[int, int]] = []  # (reader number, key)
        self.labels: list[np.ndarray] = []
        self.max_objects = 0
        self._lock = threading.Lock()
        for number, rec in enumerate(rec_files):
            idx = rec.with_suffix(".idx")
            if not idx.is_file():
                idx = index_cache / f"{number}-{rec.stem}.idx"
                idx.parent.mkdir(parents=True, exist_ok=True)
                idx.write_text("".join(f"{k}\t{off}\n" for k, off in enumerate(_scan_offsets(rec))))
            reader = mx.recordio.MXIndexedRecordIO(str(idx), str(rec), "r")
            self._readers.append(reader)
            for key in reader.keys:
                header, _ = mx.recordio.unpack(self._read(number, key))
                where = f"{rec} record {key}"
                if header.flag <= 0:
                    raise RecordDataError(f"{where}: a single-value label (classification record), not a detection")
                boxes, count = parse_label(header.label, where)
                self._items.append((number, key))
                self.labels.append(boxes)
                self.max_objects = max(self.max_objects, count)

    def _read(self, number: int, key: int) -> bytes:
        with self._lock:
            return self._readers[number].read_idx(key)

    def __len__(self) -> int:
        return len(self._items)

    def where(self, i: int) -> str:
        """File and key of sample ``i``, for messages."""
        number, key = self._items[i]
        return f"{self._readers[number].uri} record {key}"

    def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """RGB uint8 image and its boxes ``(n, 5)``."""
        import mxnet as mx

        _, payload = mx.recordio.unpack(self._read(*self._items[i]))
        try:
            image = decode_image(payload)
        except ValueError as exc:
            raise RecordDataError(f"{self.where(i)}: the image bytes cannot be decoded") from exc
        return image, self.labels[i]

    def class_ids(self) -> set[int]:
        """Every class id used in the channel."""
        return {int(c) for boxes in self.labels for c in boxes[:, 0]}

    def close(self) -> None:
        for reader in self._readers:
            reader.close()


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
