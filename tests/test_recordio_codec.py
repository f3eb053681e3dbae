"""The one RecordIO codec: frames and payloads as MXNet writes them; training and evaluation read the same labels."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from include import recordio_codec as codec
from include.evaluation.channel_data import read_channel
from include.training.recordio_data import RecordChannel
from tests.support.evaluation_helpers import write_rec


def _jpeg(value: int) -> bytes:
    ok, data = cv2.imencode(".jpg", np.full((24, 32, 3), value, dtype=np.uint8))
    assert ok
    return data.tobytes()


def test_frames_match_mxnet_writer(tmp_path: Path) -> None:
    import mxnet as mx

    magic = codec.MAGIC_BYTES
    payloads = [b"", b"a", b"abcde", magic, magic + b"xyzw" + magic + b"q", b"12" + magic + b"34", b"abcd" * 3 + magic]
    writer = mx.recordio.MXRecordIO(str(tmp_path / "m.rec"), "w")
    for payload in payloads:
        writer.write(payload)
    writer.close()
    assert b"".join(codec.frame(p) for p in payloads) == (tmp_path / "m.rec").read_bytes()
    header = mx.recordio.IRHeader(0, [2.0, 5.0, 1.0, 0.123456, 0.5, 0.75, 1.0], 42, 0)
    assert codec.pack(list(header.label), 42, b"jpeg") == mx.recordio.pack(header, b"jpeg")


def test_records_split_by_the_magic_word_read_back_whole(tmp_path: Path) -> None:
    import mxnet as mx

    magic = codec.MAGIC_BYTES
    payloads = [b"abcd" * 3 + magic, magic + b"xyzw" + magic + b"q", b"", b"12" + magic + b"34"]
    writer = mx.recordio.MXIndexedRecordIO(str(tmp_path / "m.idx"), str(tmp_path / "m.rec"), "w")
    for key, payload in enumerate(payloads):
        writer.write_idx(key, payload)
    writer.close()
    assert [p for _, p in codec.iter_payloads(tmp_path / "m.rec")] == payloads
    index = codec.read_index(tmp_path / "m.idx")
    assert [offset for _, offset in index] == codec.scan_offsets(tmp_path / "m.rec")
    with (tmp_path / "m.rec").open("rb") as fh:
        for key, offset in index:
            fh.seek(offset)
            assert codec.read_payload(fh, "m.rec", offset) == payloads[key]


def test_unpack_reads_what_mxnet_packs() -> None:
    import mxnet as mx

    label = np.array([2, 5, 1, 0.1, 0.2, 0.3, 0.4], dtype=np.float32)
    header, parsed, image = codec.unpack(mx.recordio.pack(mx.recordio.IRHeader(7, label, 9, 0), b"img"), "x")
    assert (header.flag, header.id, image) == (7, 9, b"img")
    np.testing.assert_array_equal(parsed, label)
    header, value, image = codec.unpack(mx.recordio.pack(mx.recordio.IRHeader(0, 3.0, 1, 0), b"cls"), "x")
    assert (header.flag, value, image) == (0, 3.0, b"cls")


def test_training_and_evaluation_read_the_same_labels(tmp_path: Path) -> None:
    # Inside [0, 1]; overshooting within the tolerance (clipped); padding (class -1); no area (dropped);
    # an image without objects; two classes in one image.
    labels = [
        [[0, 0.1, 0.2, 0.5, 0.6]],
        [[1, -0.015, 0.3, 1.012, 0.9], [0, 0.2, 0.2, 0.4, 0.4]],
        [[1, 0.3, 0.3, 0.6, 0.7], [-1, 0, 0, 0, 0]],
        [[0, 0.5, 0.5, 0.5, 0.8], [1, 0.0, 0.0, 1.0, 1.0]],
        np.zeros((0, 5)),
    ]
    channel = tmp_path / "validation"
    write_rec(channel / "validation.rec", [(_jpeg(20 * i), np.array(b)) for i, b in enumerate(labels)])

    training = RecordChannel(channel, tmp_path / "index")
    evaluation = list(read_channel(str(channel)))
    assert len(training) == len(evaluation) == len(labels)
    for i, item in enumerate(evaluation):
        np.testing.assert_array_equal(training.labels[i], item.boxes)
        np.testing.assert_array_equal(training[i][1], item.boxes)
    np.testing.assert_allclose(evaluation[1].boxes[0], [1, 0.0, 0.3, 1.0, 0.9], rtol=1e-6)  # clipped
    assert len(evaluation[2].boxes) == 1 and len(evaluation[3].boxes) == 1 and len(evaluation[4].boxes) == 0
    training.close()


def test_a_corner_far_outside_the_image_is_refused_by_both(tmp_path: Path) -> None:
    channel = tmp_path / "validation"
    write_rec(channel / "v.rec", [(_jpeg(5), np.array([[0, 0.1, 0.1, 1.2, 0.5]]))])
    with pytest.raises(codec.RecordFormatError, match=r"v.rec record 0: box corners must be normalized"):
        RecordChannel(channel, tmp_path / "index")
    with pytest.raises(codec.RecordFormatError, match=r"v.rec record 0: box corners must be normalized"):
        list(read_channel(str(channel)))
