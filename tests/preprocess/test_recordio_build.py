"""The RecordIO build read back with mxnet.recordio and mx.io.ImageDetRecordIter, against im2rec.py itself."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from include import storage
from include.preprocess import augment, lst, recordio
from tests.support.recordio_data import BCCD, IM2REC, bccd_rows, expected_records, synthetic_images, write_dataset


@pytest.fixture(scope="module")
def mx():
    import mxnet

    return mxnet


def read_records(mx, out: Path, split: str) -> list[tuple[int, object, bytes]]:
    """(key, IRHeader, image bytes) of every record, in .idx order; checks a sequential read agrees."""
    folder = out / split
    indexed = mx.recordio.MXIndexedRecordIO(str(folder / f"{split}.idx"), str(folder / f"{split}.rec"), "r")
    records = [(key, *mx.recordio.unpack(indexed.read_idx(key))) for key in indexed.keys]
    indexed.close()
    sequential = mx.recordio.MXRecordIO(str(folder / f"{split}.rec"), "r")
    raw = iter(sequential.read, None)
    assert [mx.recordio.unpack(item)[0].id for item in raw] == [k for k, _, _ in records]
    sequential.close()
    return records


def check_labels(records, expected) -> None:
    assert len(records) == len(expected)
    for i, ((key, header, _), (_, boxes)) in enumerate(zip(records, expected, strict=True)):
        assert key == header.id == i and header.id2 == 0
        assert header.flag == len(header.label) == 2 + 5 * len(boxes)
        assert list(header.label[:2]) == [2.0, 5.0]
        np.testing.assert_allclose(header.label[2:].reshape(-1, 5), boxes, atol=1e-4)


def det_iter_labels(mx, out: Path, split: str, label_pad_width: int, shape=(3, 64, 64)) -> list[np.ndarray]:
    """Every record's label as mx.io.ImageDetRecordIter delivers it (variable width, padded)."""
    folder = out / split
    it = mx.io.ImageDetRecordIter(
        path_imgrec=str(folder / f"{split}.rec"),
        path_imgidx=str(folder / f"{split}.idx"),
        data_shape=shape,
        batch_size=2,
        label_width=-1,
        label_pad_width=label_pad_width,
        shuffle=False,
        preprocess_threads=1,
    )
    labels = []
    for batch in it:
        assert batch.data[0].shape[1:] == shape
        for row in batch.label[0].asnumpy()[: batch.data[0].shape[0] - batch.pad]:
            # ImageDetRecordIter prefixes [.., height, width, label length] to the record's label
            assert tuple(row[1:3]) == shape[1:]
            labels.append(row[4 : 4 + int(row[3])])
    return labels


def test_pass_through_build_reproduces_boxes_and_bytes(mx, synthetic, tmp_path):
    out = tmp_path / "out"
    summary = recordio.build_recordio(synthetic.table_uri, str(out), workers=1)
    assert summary["records"] == {"train": 8, "validation": 2}
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) == [
        "classes.json",
        "recordio.json",
        "train/train.idx",
        "train/train.lst",
        "train/train.rec",
        "validation/validation.idx",
        "validation/validation.lst",
        "validation/validation.rec",
    ]
    expected = expected_records(synthetic.table, "train")
    for split in ("train", "validation"):
        records = read_records(mx, out, split)
        check_labels(records, expected[split])
        for (_, _, image), (path, _) in zip(records, expected[split], strict=True):
            source = (synthetic.root / path.removeprefix("flipped/")).read_bytes()
            if path.endswith(".jpg") and not path.startswith("flipped/"):
                assert image == source  # pass-through: the original JPEG bytes
            else:  # the PNG is converted, mirrored copies are re-encoded: JPEG at quality 95
                assert augment.is_jpeg(image)
                decoded = cv2.imdecode(np.frombuffer(image, np.uint8), cv2.IMREAD_COLOR)
                reference = cv2.imdecode(np.frombuffer(source, np.uint8), cv2.IMREAD_COLOR)
                if path.startswith("flipped/"):
                    reference = cv2.flip(reference, 1)
                assert decoded.shape == reference.shape
                assert np.abs(decoded.astype(int) - reference).mean() < 3
        labels = det_iter_labels(mx, out, split, label_pad_width=350)
        assert len(labels) == len(expected[split])
        for label, (_, boxes) in zip(labels, expected[split], strict=True):
            np.testing.assert_allclose(label[2:].reshape(-1, 5), boxes, atol=1e-4)
    meta = json.loads((out / "recordio.json").read_text())
    assert meta["options"] == {
        "resize": None,
        "quality": 95,
        "flip": "train",
        "label_width": 350,
        "decoder": "fast",
        "shards": 1,
    }
    assert meta["max_objects"] == 3 and meta["label_width_required"] == 17
    assert (out / "classes.json").read_bytes() == (Path(synthetic.table_uri) / "classes.json").read_bytes()
    assert meta["channels"]["train"]["records"] == 8 and meta["channels"]["train"]["flipped"] == 4
    assert meta["channels"]["train"]["objects"] == 2 * (1 + 2 + 3 + 1)
    for split in ("train", "validation"):
        for name, info in meta["channels"][split]["files"].items():
            data = (out / split / name).read_bytes()
            assert info["bytes"] == len(data)
            assert info["sha256"] == hashlib.sha256(data).hexdigest()


def test_exact_resized_build_is_byte_identical_to_im2rec(mx, tmp_path):
    names = [f"BloodImage_{i:05d}" for i in range(8)]
    rows = bccd_rows(names[:6], "train") + bccd_rows(names[6:], "validation")
    data = write_dataset(BCCD, tmp_path / "table", rows, {0: "RBC", 1: "WBC", 2: "Platelets"})
    out = tmp_path / "out"
    recordio.build_recordio(
        data.table_uri, str(out), resize=96, flip="none", workers=2, label_width=300, decoder="exact"
    )
    ref = tmp_path / "im2rec"
    ref.mkdir()
    shutil.copy(out / "train" / "train.lst", ref / "train.lst")
    cmd = [sys.executable, str(IM2REC), "--resize", "96", "--pack-label", str(ref / "train.lst"), str(BCCD)]
    subprocess.run(cmd, check=True, capture_output=True, timeout=120)
    assert (out / "train" / "train.rec").read_bytes() == (ref / "train.rec").read_bytes()
    assert (out / "train" / "train.idx").read_text() == (ref / "train.idx").read_text()
    for _, _, image in read_records(mx, out, "train"):
        assert cv2.imdecode(np.frombuffer(image, np.uint8), cv2.IMREAD_COLOR).shape == (96, 128, 3)


def test_resize_follows_im2rec_sizes_and_flips_mirror(mx, synthetic, tmp_path):
    out = tmp_path / "out"
    recordio.build_recordio(synthetic.table_uri, str(out), resize=40, flip="all", workers=1)
    expected = expected_records(synthetic.table, "all")
    sizes = synthetic.table.drop_duplicates("image").set_index("image")[["width", "height"]]
    for split in ("train", "validation"):
        records = read_records(mx, out, split)
        check_labels(records, expected[split])
        decoded = [cv2.imdecode(np.frombuffer(img, np.uint8), cv2.IMREAD_COLOR) for _, _, img in records]
        for img, (path, _) in zip(decoded, expected[split], strict=True):
            w, h = sizes.loc[path.removeprefix("flipped/")]
            # im2rec: shorter side to 40, the other side floored
            assert img.shape[:2] == ((h * 40 // w, 40) if h > w else (40, w * 40 // h))
        for original, flipped in zip(decoded[::2], decoded[1::2], strict=True):
            assert np.abs(cv2.flip(original, 1).astype(int) - flipped).mean() < 3
        labels = det_iter_labels(mx, out, split, label_pad_width=350)
        for label, (_, boxes) in zip(labels, expected[split], strict=True):
            np.testing.assert_allclose(label[2:].reshape(-1, 5), boxes, atol=1e-4)


@pytest.mark.parametrize("resize", [64, 256])  # 410x300 -> 64: decoded at 1/4 scale; -> 256: fast IDCT
def test_fast_decoder_keeps_im2rec_sizes_and_close_pixels(mx, tmp_path, resize):
    root = tmp_path / "data"
    root.mkdir()
    img = cv2.resize(cv2.imread(str(BCCD / "JPEGImages" / "BloodImage_00000.jpg")), (410, 300))
    cv2.imwrite(str(root / "big.jpg"), img, [cv2.IMWRITE_JPEG_QUALITY, 92])
    base = {"image_uri": (root / "big.jpg").as_uri(), "width": 410, "height": 300, "depth": 3, "class_id": 0}
    box = {"xmin": 10.0, "ymin": 20.0, "xmax": 200.0, "ymax": 150.0, "source_file": "t.csv"}
    rows = [
        {"image": "big.jpg", "split": "train", **base, **box},
        {"image": "v.jpg", "split": "validation", **base, **box},
    ]
    data = write_dataset(root, tmp_path / "table", rows, {0: "thing"})
    images, records = {}, {}
    for decoder in augment.DECODERS:
        out = tmp_path / f"out-{decoder}"
        recordio.build_recordio(data.table_uri, str(out), resize=resize, flip="none", workers=1, decoder=decoder)
        ((_, header, image),) = read_records(mx, out, "train")
        images[decoder], records[decoder] = cv2.imdecode(np.frombuffer(image, np.uint8), cv2.IMREAD_COLOR), image
        np.testing.assert_allclose(header.label, [2, 5, 0, 10 / 410, 20 / 300, 200 / 410, 150 / 300], atol=1e-4)
        assert json.loads((out / "recordio.json").read_text())["options"]["decoder"] == decoder
    assert augment.reduction(410, 300, augment.im2rec_size(410, 300, resize)) == (4 if resize == 64 else 1)
    assert images["fast"].shape == images["exact"].shape == ((64, 87, 3) if resize == 64 else (256, 349, 3))
    assert records["fast"] != records["exact"]
    assert cv2.PSNR(images["fast"], images["exact"]) > 30


@pytest.mark.parametrize("mode", ["RGB", "L", "CMYK"])
def test_fast_decoder_reads_every_jpeg_colour_mode_and_rejects_damage(tmp_path, mode):
    from PIL import Image

    bgr = cv2.imread(str(BCCD / "JPEGImages" / "BloodImage_00000.jpg"))
    Image.fromarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)).convert(mode).save(tmp_path / "x.jpg", quality=92)
    data = (tmp_path / "x.jpg").read_bytes()
    h, w = bgr.shape[:2]
    fast, exact = (augment.decode(data, w, h, decoder=d) for d in augment.DECODERS)
    assert fast.shape == exact.shape == (h, w, 3)
    assert cv2.PSNR(fast, exact) > 40
    for damaged in (data[: len(data) // 2], data[:100]):  # libjpeg-turbo declines, OpenCV cannot either
        with pytest.raises(augment.ImageError, match=r"here: cannot decode"):
            augment.decode(damaged, w, h, where="here", decoder="fast")


def test_rerun_and_sharding_give_identical_files(synthetic, tmp_path):
    outs = {}
    for name, shards, workers in (("a", 1, 1), ("b", 1, 1), ("c", 3, 2), ("d", 5, 1)):
        outs[name] = tmp_path / name
        recordio.build_recordio(synthetic.table_uri, str(outs[name]), resize=32, shards=shards, workers=workers)
        assert not (outs[name] / recordio.WORK_DIR).exists()
    files = [f"{s}/{s}.{k}" for s in ("train", "validation") for k in ("rec", "idx", "lst")]
    for name in ("b", "c", "d"):
        for f in files:
            assert (outs[name] / f).read_bytes() == (outs["a"] / f).read_bytes(), (name, f)
    meta = {n: json.loads((p / "recordio.json").read_text()) for n, p in outs.items()}
    assert meta["a"] == meta["b"]
    assert meta["c"]["options"].pop("shards") == 3
    meta["a"]["options"].pop("shards")
    assert meta["c"] == meta["a"]


def test_mapped_shards_plan_build_merge(synthetic, tmp_path):
    out = str(tmp_path / "out")
    specs = recordio.plan_shards(synthetic.table_uri, out, 2, resize=32, flip="none")
    assert json.loads(json.dumps(specs)) == specs and [s["shard"] for s in specs] == [0, 1]
    results = [recordio.build_shard(s, workers=1) for s in specs]
    assert json.loads(json.dumps(results)) == results
    with pytest.raises(recordio.ShardError, match="expected results of shards 0..1"):
        recordio.merge_shards(out, results[:1])
    summary = recordio.merge_shards(out, results[::-1])
    assert summary["records"] == {"train": 4, "validation": 2}
    lines = (tmp_path / "out" / "train" / "train.lst").read_text().splitlines()
    assert [line.split("\t")[0] for line in lines] == ["0", "1", "2", "3"]


def test_one_shard_is_moved_into_place_and_a_retried_merge_completes(synthetic, tmp_path):
    reference = tmp_path / "reference"
    recordio.build_recordio(synthetic.table_uri, str(reference), resize=32, workers=1)
    out = tmp_path / "out"
    results = [
        recordio.build_shard(s, workers=1) for s in recordio.plan_shards(synthetic.table_uri, str(out), 1, resize=32)
    ]
    (out / "train").mkdir()
    shard = out / recordio.WORK_DIR / "shard-00000"
    (shard / "train.rec").rename(out / "train" / "train.rec")  # an earlier attempt moved this file, then died
    (shard / "train.idx").rename(out / "train" / "train.idx")
    (out / "train" / "train.idx").write_text("0\t0\n")  # ... and this one is not the shard's
    with pytest.raises(recordio.ShardError, match="train.idx is gone"):
        recordio.merge_shards(str(out), results)
    (out / "train" / "train.idx").unlink()
    with pytest.raises(FileNotFoundError):
        recordio.merge_shards(str(out), results)
    results = [
        recordio.build_shard(s, workers=1) for s in recordio.plan_shards(synthetic.table_uri, str(out), 1, resize=32)
    ]
    (shard / "train.rec").rename(out / "train" / "train.rec")
    recordio.merge_shards(str(out), results)
    assert not (out / recordio.WORK_DIR).exists()
    for name in ("recordio.json", *(f"{s}/{s}.{k}" for s in ("train", "validation") for k in recordio.KINDS)):
        assert (out / name).read_bytes() == (reference / name).read_bytes(), name


def test_a_held_out_test_split_gets_its_own_channel_sharded_like_the_others(mx, tmp_path):
    root = tmp_path / "data"
    rows = synthetic_images(root)
    rows = [{**r, "split": "test"} if r["image"] in ("birds/c.jpg", "d.png") else r for r in rows]
    data = write_dataset(root, tmp_path / "table", rows, {0: "bird", 1: "cat"})
    one = recordio.build_recordio(data.table_uri, str(tmp_path / "one"), resize=32, workers=1)
    assert one["records"] == {"train": 4, "validation": 2, "test": 2}  # train only is mirrored
    specs = recordio.plan_shards(data.table_uri, str(tmp_path / "two"), 2, resize=32)
    two = recordio.merge_shards(str(tmp_path / "two"), [recordio.build_shard(s, workers=1) for s in specs])
    assert two["records"] == one["records"]
    for name in (f"test/test.{k}" for k in recordio.KINDS):
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes(), name
    check_labels(read_records(mx, tmp_path / "one", "test"), expected_records(data.table, "train")["test"])
    assert recordio.finished_build(str(tmp_path / "one"))["channels"]["test"]["images"] == 2


def test_without_test_images_there_is_no_test_channel(synthetic, tmp_path, caplog):
    out = tmp_path / "out"
    assert "test" not in recordio.build_recordio(synthetic.table_uri, str(out), resize=32, workers=1)["records"]
    assert not (out / "test").exists() and "no test images" in caplog.text


def test_tasks_rerun_after_the_merge_find_the_finished_build(synthetic, tmp_path):
    out = str(tmp_path / "out")
    specs = recordio.plan_shards(synthetic.table_uri, out, 2, resize=32)
    results = [recordio.build_shard(s, workers=1) for s in specs]
    first = recordio.merge_shards(out, results)
    files = {p: p.read_bytes() for p in (tmp_path / "out").rglob("*") if p.is_file()}
    assert recordio.merge_shards(out, results) == first  # the merge cleared and run again
    rerun = [recordio.build_shard(s, workers=1) for s in specs]  # a shard cleared with its downstream
    assert all(r["finished"] for r in rerun)
    assert recordio.merge_shards(out, rerun) == first
    assert {p: p.read_bytes() for p in (tmp_path / "out").rglob("*") if p.is_file()} == files
    (tmp_path / "out" / "validation" / "validation.rec").write_bytes(b"cut short")
    with pytest.raises(recordio.ShardError, match=r"plan.json is missing and .* holds no finished build"):
        recordio.merge_shards(out, results)
    with pytest.raises(recordio.ShardError, match=r"work.json is missing"):
        recordio.build_shard(specs[0], workers=1)


def test_a_merge_failing_mid_write_leaves_the_earlier_channel_files(synthetic, tmp_path):
    out = tmp_path / "out"
    recordio.build_recordio(synthetic.table_uri, str(out), resize=32, workers=1)
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    specs = recordio.plan_shards(synthetic.table_uri, str(out), 2, resize=24)
    results = [recordio.build_shard(s, workers=1) for s in specs]
    (out / recordio.WORK_DIR / "shard-00001" / "train.rec").unlink()  # the second part goes missing mid-copy
    with pytest.raises(FileNotFoundError, match="shard-00001"):
        recordio.merge_shards(str(out), results)
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file() and recordio.WORK_DIR not in p.parts} == before
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]
    (out / "train" / ".train.rec.k1ll3d.tmp").write_bytes(b"half")  # what a SIGKILLed merge leaves behind
    recordio.plan_shards(synthetic.table_uri, str(out), 1, resize=24)
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]


def test_failure_mid_write_leaves_no_partial_rec(synthetic, tmp_path):
    out = tmp_path / "out"
    recordio.build_recordio(synthetic.table_uri, str(out), resize=32, workers=1)
    before = (out / "train" / "train.rec").read_bytes()
    (synthetic.root / "birds" / "c.jpg").write_bytes(b"\xff\xd8\xff not really a JPEG")
    fresh = tmp_path / "fresh"
    for target in (out, fresh):
        with pytest.raises(augment.ImageError, match=r"birds/c.jpg .*cannot decode"):
            recordio.build_recordio(synthetic.table_uri, str(target), resize=32, workers=1)
        assert not [p for p in target.rglob("*") if p.name.endswith(".tmp")]
        assert not list((target / recordio.WORK_DIR).rglob("*.rec"))
    assert not list(fresh.rglob("*.rec"))
    assert (out / "train" / "train.rec").read_bytes() == before  # the earlier build is untouched


def test_label_width_too_small_fails_before_writing(bccd, tmp_path):
    needed = lst.required_label_width(bccd.table)
    out = tmp_path / "out"
    with pytest.raises(lst.LabelWidthError, match=rf"needs label_width >= {needed}"):
        recordio.build_recordio(bccd.table_uri, str(out), label_width=needed - 1, workers=1)
    assert not out.exists()
    assert (
        recordio.build_recordio(bccd.table_uri, str(out), label_width=needed, flip="none", workers=1)[
            "label_width_required"
        ]
        == needed
    )


def test_options_are_validated(synthetic, tmp_path):
    for bad in ({"resize": 0}, {"quality": 101}, {"flip": "both"}, {"decoder": "turbo"}):
        with pytest.raises(ValueError):
            recordio.build_recordio(synthetic.table_uri, str(tmp_path / "x"), workers=1, **bad)
    with pytest.raises(ValueError, match="shards must be at least 1"):
        recordio.plan_shards(synthetic.table_uri, str(tmp_path / "x"), 0)


@pytest.mark.parametrize("shards", [1, 2])  # one shard's files are moved into place, several concatenated
def test_s3_input_and_output(mx, moto_endpoint, tmp_path, shards):
    import boto3

    s3 = boto3.client("s3")
    bucket = f"detection-data-{shards}"
    s3.create_bucket(Bucket=bucket)
    root = tmp_path / "data"
    rows = synthetic_images(root)
    for row in rows:
        row["image_uri"] = f"s3://{bucket}/images/{row['image']}"
    for path in {r["image"] for r in rows}:
        s3.upload_file(str(root / path), bucket, f"images/{path}")
    data = write_dataset(root, tmp_path / "table", rows, {0: "bird", 1: "cat"})
    table_uri = f"s3://{bucket}/table"
    for name in ("annotations.parquet", "classes.json"):
        storage.upload_file(Path(data.table_uri) / name, f"{table_uri}/{name}")
    out = f"s3://{bucket}/out"
    summary = recordio.build_recordio(table_uri, out, resize=32, workers=1, shards=shards)
    assert summary["summary_uri"] == f"{out}/recordio.json"
    keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix="out/")["Contents"])
    assert keys == [
        "out/classes.json",
        "out/recordio.json",
        "out/train/train.idx",
        "out/train/train.lst",
        "out/train/train.rec",
        "out/validation/validation.idx",
        "out/validation/validation.lst",
        "out/validation/validation.rec",
    ]
    local = tmp_path / "download"
    for key in keys:
        (local / key).parent.mkdir(parents=True, exist_ok=True)
        s3.download_file(bucket, key, str(local / key))
    expected = expected_records(data.table, "train")
    for split in ("train", "validation"):
        check_labels(read_records(mx, local / "out", split), expected[split])


def test_cli_build_recordio_options(synthetic, tmp_path):
    from include.cli import main

    for extra, decoder, flip in (([], "fast", "train"), (["--exact", "--no-flip"], "exact", "none")):
        out = tmp_path / decoder
        args = ["build-recordio", "--input", synthetic.table_uri, "--output", str(out), "--resize", "32", *extra]
        assert main(args) == 1  # the table has not been through the quality gate
        assert main([*args, "--skip-gate"]) == 0
        options = json.loads((out / "recordio.json").read_text())["options"]
        assert (options["decoder"], options["flip"], options["resize"]) == (decoder, flip, 32)
