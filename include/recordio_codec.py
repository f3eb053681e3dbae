"""MXNet RecordIO detection records, the one codec: framing, the image header, the packed label.

The RecordIO build writes with it, the local trainer and evaluation read with it, so the three
cannot disagree on a record:

* **framing** (dmlc-core ``RecordIOWriter``/``Reader``): every record is ``magic, lrec, data``
  padded with zeros to 4 bytes, ``lrec = cflag << 29 | length``. A magic word at a 4-aligned
  offset inside the data splits it into continuation parts (cflag 1 = first, 2 = middle,
  3 = last; the reader puts the magic back between them). The sheet in
  ``shared/reference`` says 0x3ed7230a and ``cflag << 30``; dmlc-core's sources and MXNet's own
  writer (which the tests compare against) use :data:`MAGIC` and 29 bits.
* **image header** (``mxnet.recordio.IRHeader``): ``flag, label, id, id2`` as ``<IfQQ``; with
  ``flag > 0`` the label is the ``flag`` float32 values that follow, then the image bytes.
* **detection label** (``im2rec.py --pack-label``): ``[A, B, cls, xmin, ymin, xmax, ymax, ...]``
  with header width ``A >= 2``, object width ``B >= 5`` and corners normalized to [0, 1].
  :func:`parse_label` reads it as ``ImageDetRecordIter`` does: padding objects (class < 0) are
  skipped, corners overshooting [0, 1] by up to :data:`COORD_TOLERANCE` are clipped, and boxes
  without area are dropped.

Written here rather than through ``mxnet.recordio`` so that build workers and readers never pay
MXNet's import; the tests check the frames and payloads are byte-identical to MXNet's.
"""

from __future__ import annotations

import itertools
import struct
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    import numpy as np

MAGIC = 0xCED7230A  # dmlc-core RecordIOWriter::kMagic
MAGIC_BYTES = struct.pack("<I", MAGIC)
#: A record (one part of it) must be smaller than this: ``lrec`` keeps 29 bits for the length.
MAX_RECORD = 1 << 29
_LENGTH_MASK = MAX_RECORD - 1
IR_FORMAT = "<IfQQ"  # mxnet.recordio IRHeader: flag, label, id, id2
IR_SIZE = struct.calcsize(IR_FORMAT)
#: The label layout ``im2rec.py --pack-label`` writes: 2 header values, then 5 per object.
HEADER_WIDTH = 2
OBJECT_WIDTH = 5
#: Normalized corners may overshoot [0, 1] by this much (then clipped), as annotation tools round.
COORD_TOLERANCE = 0.02


class RecordFormatError(ValueError):
    """A RecordIO file, frame, header or label that cannot be read; the message names the file and record."""


class ImageHeader(NamedTuple):
    """``mxnet.recordio.IRHeader``: ``flag`` label values follow it when positive."""

    flag: int
    label: float
    id: int
    id2: int


# --- writing ---------------------------------------------------------------------------------


def _lrec(cflag: int, length: int) -> bytes:
    return MAGIC_BYTES + struct.pack("<I", (cflag << 29) | length)


def frame(payload: bytes) -> bytes:
    """One RecordIO record as dmlc-core writes it: magic, ``lrec``, data, zero padding to 4 bytes."""
    import numpy as np

    size = len(payload)
    if size >= MAX_RECORD:
        raise ValueError(f"a RecordIO record must be smaller than 2^29 bytes, got {size}")
    words = np.frombuffer(payload, dtype="<u4", count=size // 4)
    parts, start = [], 0
    for pos in (np.flatnonzero(words == MAGIC) * 4).tolist():
        parts += [_lrec(1 if start == 0 else 2, pos - start), payload[start:pos]]
        start = pos + 4
    parts += [_lrec(3 if start else 0, size - start), payload[start:], b"\0" * (-size % 4)]
    return b"".join(parts)


def pack(label: Sequence[float], record_id: int, image: bytes) -> bytes:
    """``mx.recordio.pack(IRHeader(0, label, record_id, 0), image)`` for a list label."""
    return struct.pack(IR_FORMAT, len(label), 0.0, record_id, 0) + struct.pack(f"<{len(label)}f", *label) + image


# --- reading ---------------------------------------------------------------------------------


def _frame_header(fh: IO[bytes], pos: int) -> tuple[int, int] | str | None:
    """``(cflag, length)`` of the frame at ``pos`` (the file's position), what is wrong with it, or
    None at the end of the file."""
    head = fh.read(8)
    if not head:
        return None
    if len(head) < 8:
        return f"truncated at byte {pos}"
    magic, lrec = struct.unpack("<II", head)
    if magic != MAGIC:
        return f"bad magic number at byte {pos}"
    return lrec >> 29, lrec & _LENGTH_MASK


def read_payload(fh: IO[bytes], where: str, offset: int) -> bytes | None:
    """The record starting at the file position ``offset`` (parts joined); None at the end of the file."""
    parts: list[bytes] = []
    pos = offset
    while True:
        frame_header = _frame_header(fh, pos)
        if frame_header is None and not parts:
            return None
        if not isinstance(frame_header, tuple):
            raise RecordFormatError(f"{where}: not a RecordIO frame ({frame_header or f'it ends at byte {pos}'})")
        cflag, length = frame_header
        data = fh.read(length)
        if len(data) < length:
            raise RecordFormatError(f"{where}: not a RecordIO frame (truncated at byte {pos + 8 + len(data)})")
        fh.seek(-length % 4, 1)
        parts.append(data)
        pos += 8 + length + (-length % 4)
        if cflag in (0, 3):
            return MAGIC_BYTES.join(parts)


def iter_payloads(path: Path, name: str | None = None) -> Iterator[tuple[str, bytes]]:
    """``(where, payload)`` of every record of a ``.rec`` file, in order; ``where`` is
    ``"<name> record <n>"`` (``name`` defaults to the path) for messages."""
    with path.open("rb") as fh:
        for number in itertools.count():
            where = f"{name or path} record {number}"
            payload = read_payload(fh, where, fh.tell())
            if payload is None:
                return
            yield where, payload


def scan_offsets(path: Path) -> list[int]:
    """Byte offsets of the records of a ``.rec`` file, by walking its frames (what an ``.idx`` holds)."""
    offsets: list[int] = []
    with path.open("rb") as fh:
        pos = 0
        while (frame_header := _frame_header(fh, pos)) is not None:
            if isinstance(frame_header, str):
                raise RecordFormatError(f"{path}: {frame_header}; not a RecordIO file")
            cflag, length = frame_header
            if cflag in (0, 1):
                offsets.append(pos)
            pos += 8 + length + (-length % 4)
            fh.seek(pos)
    return offsets


def read_index(path: Path) -> list[tuple[int, int]]:
    """``(key, byte offset)`` pairs of an ``.idx`` file (``MXIndexedRecordIO``'s tab-separated lines)."""
    pairs = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            key, offset = line.split("\t")
            pairs.append((int(key), int(offset)))
        except ValueError:
            raise RecordFormatError(f"{path}: line {number}: expected 'key<TAB>offset', got {line!r}") from None
    return pairs


def unpack(payload: bytes, where: str) -> tuple[ImageHeader, Any, bytes]:
    """``(header, label, image bytes)`` of a payload: ``label`` is a float32 array when ``flag > 0``,
    else the header's single value (``mx.recordio.unpack``)."""
    import numpy as np

    if len(payload) < IR_SIZE:
        raise RecordFormatError(f"{where}: {len(payload)} bytes, shorter than the {IR_SIZE}-byte image header")
    header = ImageHeader(*struct.unpack_from(IR_FORMAT, payload))
    body = payload[IR_SIZE:]
    if header.flag <= 0:
        return header, header.label, body
    if len(body) < 4 * header.flag:
        raise RecordFormatError(f"{where}: the header announces {header.flag} label values, the record is shorter")
    label = np.frombuffer(body, dtype="<f4", count=header.flag)
    return header, label, body[4 * header.flag :]


def parse_label(label: Any, where: str) -> tuple[np.ndarray, int]:
    """The valid boxes ``(n, 5)`` = cls, xmin, ymin, xmax, ymax of a packed detection label, and its object count.

    The count includes padding and boxes without area (what the record carries, for label widths).
    """
    import numpy as np

    flat = np.asarray(label, dtype=np.float64).reshape(-1)
    if flat.size < 2:
        raise RecordFormatError(f"{where}: label has {flat.size} value(s); a detection label starts with 2, 5")
    head, width = int(flat[0]), int(flat[1])
    if head < 2 or width < 5 or flat.size < head or (flat.size - head) % width:
        raise RecordFormatError(
            f"{where}: label {flat[:8].tolist()}... is not [A>=2, B>=5, objects of B values] (im2rec --pack-label)"
        )
    objects = flat[head:].reshape(-1, width)[:, :5]
    objects = objects[objects[:, 0] >= 0]
    if len(objects) and not np.allclose(objects[:, 0], np.round(objects[:, 0])):
        raise RecordFormatError(f"{where}: class ids must be whole numbers, got {objects[:, 0].tolist()}")
    coords = objects[:, 1:5]
    if coords.size and (coords.min() < -COORD_TOLERANCE or coords.max() > 1 + COORD_TOLERANCE):
        raise RecordFormatError(f"{where}: box corners must be normalized to [0, 1], got {coords.tolist()}")
    objects[:, 1:5] = np.clip(coords, 0.0, 1.0)
    valid = (objects[:, 3] > objects[:, 1]) & (objects[:, 4] > objects[:, 2])
    return objects[valid].astype(np.float32), (flat.size - head) // width


class DetectionRecord(NamedTuple):
    """One detection record: its header (``id`` is the ``.lst`` record id), valid boxes, object count, image bytes."""

    header: ImageHeader
    boxes: np.ndarray
    objects: int
    image: bytes


def detection_record(payload: bytes, where: str) -> DetectionRecord:
    """A detection record's payload read (see :func:`parse_label` for the boxes and the object count)."""
    header, label, image = unpack(payload, where)
    if header.flag <= 0:
        raise RecordFormatError(f"{where}: a single-value label (classification record), not a detection")
    boxes, count = parse_label(label, where)
    return DetectionRecord(header, boxes, count, image)
