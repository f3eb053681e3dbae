"""Reading im2rec detection records: labels, missing indexes, bad records, batches."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from include.recordio_codec import RecordFormatError, parse_label, scan_offsets
from include.training.recordio_data import Batchify, RecordChannel, RecordDataError


def test_parse_label_keeps_valid_boxes_and_counts_objects() -> None:
    label = [2, 5, 1, 0.1, 0.2, 0.5, 0.6, 0, 0.5, 0.5, 0.5, 0.9, -1, 0, 0, 0, 0]
    boxes, count = parse_label(label, "x.rec record 7")
    assert count == 3
    np.testing.assert_allclose(boxes, [[1, 0.1, 0.2, 0.5, 0.6]], rtol=1e-6)


def test_parse_label_reads_wider_headers_and_objects() -> None:
    label = [4, 6, 640, 480, 2, 0.1, 0.1, 0.3, 0.3, 0.0]
    boxes, count = parse_label(label, "x")
    assert count == 1 and boxes[0, 0] == 2


@pytest.mark.parametrize(
    ("label", "words"),
    [
        ([2], "starts with 2, 5"),
        ([2, 5, 1, 0.1, 0.2], "im2rec --pack-label"),
        ([2, 5, 0, 10, 20, 50, 60], "normalized"),
        ([2, 5, 0.5, 0.1, 0.1, 0.2, 0.2], "whole numbers"),
    ],
)
def test_parse_label_errors_name_the_record(label: list[float], words: str) -> None:
    with pytest.raises(RecordFormatError, match=f"train.rec record 3: .*{words}"):
        parse_label(label, "train.rec record 3")


def test_channel_reads_records_and_rebuilds_a_missing_index(tiny_data: Path, tmp_path: Path) -> None:
    with_idx = RecordChannel(tiny_data / "train", tmp_path / "cache-a")
    bare = tmp_path / "bare"
    bare.mkdir()
    shutil.copy(tiny_data / "train" / "train.rec", bare / "train.rec")
    without_idx = RecordChannel(bare, tmp_path / "cache-b")
    offsets = [int(line.split("\t")[1]) for line in (tiny_data / "train" / "train.idx").read_text().splitlines()]
    assert scan_offsets(bare / "train.rec") == offsets
    assert len(with_idx) == len(without_idx) == 24
    for i in (0, 23):
        (img_a, boxes_a), (img_b, boxes_b) = with_idx[i], without_idx[i]
        assert img_a.shape == (96, 96, 3) and img_a.dtype == np.uint8
        np.testing.assert_array_equal(img_a, img_b)
        np.testing.assert_array_equal(boxes_a, boxes_b)
    assert with_idx.class_ids() <= {0, 1, 2} and 1 <= with_idx.max_objects <= 3


def test_channel_errors(tmp_path: Path) -> None:
    with pytest.raises(RecordDataError, match="no .rec files"):
        RecordChannel(tmp_path, tmp_path / "cache")
    (tmp_path / "junk.rec").write_bytes(b"not a recordio file")
    with pytest.raises(RecordFormatError, match="junk.rec: bad magic number at byte 0"):
        RecordChannel(tmp_path, tmp_path / "cache")


def test_batchify_scales_pads_and_flips() -> None:
    image = np.zeros((50, 100, 3), dtype=np.uint8)
    image[:, :50] = 255  # left half white
    boxes = np.array([[1, 0.0, 0.2, 0.5, 0.6]], dtype=np.float32)
    empty = np.zeros((0, 5), dtype=np.float32)
    images, gt_boxes, gt_ids = Batchify(64)([(image, boxes), (image, empty)])
    assert images.shape == (2, 3, 64, 64) and images.dtype == np.float32
    np.testing.assert_allclose(gt_boxes[0, 0], [0.0, 12.8, 32.0, 38.4], rtol=1e-5)
    assert gt_ids[0, 0, 0] == 1 and gt_ids[1, 0, 0] == -1
    flipped, f_boxes, _ = Batchify(64, flip_probability=1.0)([(image, boxes)])
    np.testing.assert_allclose(f_boxes[0, 0], [32.0, 12.8, 64.0, 38.4], rtol=1e-5)
    assert flipped[0, 0, 0, 0] < images[0, 0, 0, 0]  # the white half moved to the right
