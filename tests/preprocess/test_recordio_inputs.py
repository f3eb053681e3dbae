"""What the RecordIO build makes of its inputs: sizes against the table, EXIF turns, quality, odd tables."""

from __future__ import annotations

import io
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from include.preprocess import augment, lst, recordio
from tests.support.recordio_data import write_dataset


def jpeg(size: tuple[int, int], orientation: int | None = None, seed: int = 0) -> bytes:
    """A smooth random RGB JPEG of ``size`` (width, height), optionally with an EXIF orientation tag."""
    from PIL import Image

    noise = np.random.default_rng(seed).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    pixels = cv2.GaussianBlur(noise, (0, 0), 3)  # smooth, so re-encoding keeps it close
    exif = Image.Exif()
    if orientation is not None:
        exif[augment.EXIF_ORIENTATION] = orientation
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "JPEG", quality=90, exif=exif.tobytes())
    return buf.getvalue()


def one_image_table(tmp_path: Path, data: bytes, size: tuple[int, int], split_of_second: str = "validation"):
    """A table of ``x.jpg`` (``data``, listed as ``size``) in train and a 40x30 ``y.jpg``."""
    root = tmp_path / "data"
    root.mkdir(exist_ok=True)
    (root / "x.jpg").write_bytes(data)
    (root / "y.jpg").write_bytes(jpeg((40, 30), seed=1))
    rows = [
        {"image": name, "image_uri": (root / name).as_uri(), "width": w, "height": h, "depth": 3,
         "class_id": 0, "xmin": 2.0, "ymin": 3.0, "xmax": 20.0, "ymax": 12.0, "split": split,
         "source_file": "t.csv"}
        for name, (w, h), split in (("x.jpg", size, "train"), ("y.jpg", (40, 30), split_of_second))
    ]
    return write_dataset(root, tmp_path / "table", rows, {0: "thing"})


def records(out: Path, split: str) -> list[bytes]:
    """The image bytes of every record of a channel (read with mxnet.recordio)."""
    import mxnet as mx

    reader = mx.recordio.MXRecordIO(str(out / split / f"{split}.rec"), "r")
    images = [mx.recordio.unpack(item)[1] for item in iter(reader.read, None)]
    reader.close()
    return images


def test_pass_through_checks_the_jpeg_header_against_the_table(tmp_path):
    data = jpeg((60, 50))
    ds = one_image_table(tmp_path, data, (100, 80))
    out = tmp_path / "out"
    with pytest.raises(augment.ImageError, match=r"x.jpg .*not the table's 100x80: its header says 60x50"):
        recordio.build_recordio(ds.table_uri, str(out), resize=None, flip="none", workers=1)
    with pytest.raises(augment.ImageError, match=r"x.jpg .*not the table's 100x80"):  # the resize path checks too
        recordio.build_recordio(ds.table_uri, str(out), resize=32, flip="none", workers=1)
    assert not list(out.rglob("*.rec"))
    ds = one_image_table(tmp_path, data, (60, 50))
    recordio.build_recordio(ds.table_uri, str(out), resize=None, flip="none", workers=1)
    assert records(out, "train") == [data]  # right size, no EXIF turn: the file's own bytes


@pytest.mark.parametrize("decoder", augment.DECODERS)
def test_exif_orientation_is_ignored_and_never_passed_on(tmp_path, decoder):
    data = jpeg((64, 48), orientation=6)  # "turn 90 degrees clockwise to display"
    stored = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    assert augment.exif_orientation(data) == 6 and augment.exif_orientation(jpeg((64, 48))) == 1
    ds = one_image_table(tmp_path, data, (64, 48))
    for resize in (None, 32, 12):  # pass-through, full-size decode, decode at 1/4 scale
        out = tmp_path / f"out-{resize}"
        recordio.build_recordio(ds.table_uri, str(out), resize=resize, flip="train", decoder=decoder, workers=1)
        original, mirrored = records(out, "train")
        assert original != data and augment.exif_orientation(original) == 1
        # every reader now sees the stored frame, the one the table's size and boxes are in
        img = cv2.imdecode(np.frombuffer(original, np.uint8), cv2.IMREAD_COLOR)
        flipped = cv2.imdecode(np.frombuffer(mirrored, np.uint8), cv2.IMREAD_COLOR)
        shape = stored.shape if resize is None else augment.im2rec_size(64, 48, resize)[::-1] + (3,)
        assert img.shape == flipped.shape == shape
        if resize is None:
            assert cv2.PSNR(img, stored) > 35 and cv2.PSNR(flipped, cv2.flip(stored, 1)) > 35


def test_jpeg_quality_option_reaches_the_encoder(tmp_path):
    ds = one_image_table(tmp_path, jpeg((120, 90)), (120, 90))
    sizes = {}
    for quality in (30, 95):
        out = tmp_path / f"q{quality}"
        recordio.build_recordio(ds.table_uri, str(out), resize=64, quality=quality, flip="none", workers=1)
        images = records(out, "train") + records(out, "validation")
        assert all(cv2.imdecode(np.frombuffer(i, np.uint8), 1).shape[0] == 64 for i in images)
        sizes[quality] = sum(len(i) for i in images)
        assert json.loads((out / "recordio.json").read_text())["options"]["quality"] == quality
    assert sizes[30] < 0.6 * sizes[95]
    out = tmp_path / "pass"  # no resize: the JPEGs pass through whatever the quality
    recordio.build_recordio(ds.table_uri, str(out), resize=None, quality=30, flip="none", workers=1)
    assert records(out, "train") == [(ds.root / "x.jpg").read_bytes()]


def test_an_empty_split_is_refused_before_anything_is_written(tmp_path):
    ds = one_image_table(tmp_path, jpeg((40, 30)), (40, 30), split_of_second="train")
    out = tmp_path / "out"
    with pytest.raises(lst.AnnotationTableError, match=r"table: no images in split\(s\) validation"):
        recordio.build_recordio(ds.table_uri, str(out), workers=1)
    assert not out.exists()


def test_the_table_file_itself_is_an_input(tmp_path):
    ds = one_image_table(tmp_path, jpeg((40, 30)), (40, 30))
    out = tmp_path / "out"
    result = recordio.build_recordio(f"{ds.table_uri}/annotations.parquet", str(out), resize=None, workers=1)
    assert result["records"] == {"train": 2, "validation": 1}
    assert json.loads((out / "classes.json").read_text()) == {"0": "thing"}


def test_cli_rejects_zero_quality_and_shards(synthetic, tmp_path, capsys):
    from include.cli import main

    for flag, message in (("--quality", "quality must be within 1..100"), ("--shards", "shards must be at least 1")):
        args = ["build-recordio", "--input", synthetic.table_uri, "--output", str(tmp_path / "o"), flag, "0",
                "--skip-gate"]
        assert main(args) != 0
        assert message in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
