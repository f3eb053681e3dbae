"""Ingest: class selection, splits, image verification and conversion, issues instead of silent drops."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from include import storage
from include.preprocess.annotations import read_classes, read_table
from include.preprocess.images import converted_names
from include.preprocess.ingest import assign_split, ingest, resolve_classes
from include.preprocess.issues import read_issues
from include.preprocess.sample_data import generate_sample
from tests.support.ingest_helpers import shapes_voc, write_voc_annotation

CUB_NAMES = {1: "001.circle", 2: "002.square", 3: "003.triangle", 4: "004.cross", 5: "005.ring"}


def test_classes_resolve_by_id_full_name_or_cub_name():
    assert resolve_classes(CUB_NAMES, None) == [1, 2, 3, 4, 5]
    assert resolve_classes(CUB_NAMES, ["5", "001.circle", "Triangle"]) == [1, 3, 5]
    with pytest.raises(ValueError, match=r"class 'hexagon' is not in the data set \(classes: 1:001.circle"):
        resolve_classes(CUB_NAMES, ["hexagon"])


def test_cub_subset_is_renumbered_in_original_id_order(tmp_path):
    root = generate_sample(tmp_path / "data", n_images=40, seed=2)
    # faults in classes the subset leaves out are not the subset's problems
    lines = (root / "images.txt").read_text().splitlines()
    circles = [i for i, line in enumerate(lines) if "001.circle/" in line]
    (root / "images" / lines[circles[0]].split()[1]).unlink()
    lines[circles[1]] = f"{circles[1] + 1} ../../circle.jpg"
    (root / "images.txt").write_text("\n".join(lines) + "\n")
    summary = ingest("cub", str(root), str(tmp_path / "out"), classes=["ring", "2"])
    table = read_table(str(tmp_path / "out"))
    assert read_classes(str(tmp_path / "out")) == {0: "002.square", 1: "005.ring"}
    assert dict(zip(table["class_name"], table["class_id"], strict=True)) == {"002.square": 0, "005.ring": 1}
    assert summary["images"] == 16 and summary["issues"] == 0  # 8 images per class; other classes' images leave
    # train_test_split.txt gives train and the held-out test split; validation is drawn from train
    assert summary["split_source"] == {
        "train": "data set",
        "validation": "seeded from train (validation_fraction 0.2, seed 42)",
        "test": "data set",
    }
    lines = {int(a): int(b) for a, b in (x.split() for x in (root / "train_test_split.txt").read_text().splitlines())}
    for row in table.itertuples():
        assert row.split in (("train", "validation") if lines[row.source_line] == 1 else ("test",))
    assert summary["splits"]["validation"]["images"] > 0 and summary["splits"]["test"]["images"] > 0


def test_seeded_split_is_stratified_and_deterministic(tmp_path):
    root = generate_sample(tmp_path / "data", n_images=60, seed=0, layout="groundtruth", max_objects=3)
    a = ingest("groundtruth", str(root), str(tmp_path / "a"), validation_fraction=0.25, seed=7)
    b = ingest("groundtruth", str(root), str(tmp_path / "b"), validation_fraction=0.25, seed=7)
    ingest("groundtruth", str(root), str(tmp_path / "c"), validation_fraction=0.25, seed=8)
    ta, tb, tc = (read_table(str(tmp_path / x)) for x in "abc")
    assert a["split_source"] == {
        "train": "seeded",
        "validation": "seeded from train (validation_fraction 0.25, seed 7)",
        "test": "seeded from train (test_fraction 0.15, seed 7)",
    }
    assert a["splits"] == b["splits"]
    pd.testing.assert_frame_equal(ta, tb)
    assert not ta["split"].equals(tc["split"])
    assert 12 <= a["splits"]["validation"]["images"] <= 18
    assert 6 <= a["splits"]["test"]["images"] <= 12
    assert (ta.groupby("image")["split"].nunique() == 1).all()  # whole images go to one split
    assert pd.crosstab(ta["split"], ta["class_id"]).gt(0).all().all()  # every class in every split


def test_no_test_split_when_the_fraction_is_zero(tmp_path):
    root = generate_sample(tmp_path / "data", n_images=30, seed=0, layout="groundtruth", max_objects=2)
    summary = ingest("groundtruth", str(root), str(tmp_path / "a"), seed=7, test_fraction=0)
    assert summary["splits"]["test"] == {"images": 0, "boxes": 0} and "test" not in summary["split_source"]
    with pytest.raises(ValueError, match="validation_fraction 0.6 \\+ test_fraction 0.5 leave no training images"):
        ingest("groundtruth", str(root), str(tmp_path / "b"), validation_fraction=0.6, test_fraction=0.5)


def test_assign_split_keeps_single_image_classes_in_train():
    boxes = pd.DataFrame({"image": ["a", "b", "c", "c"], "class_id": [0, 1, 1, 0]})
    out, _ = assign_split(boxes, 0.5, seed=0)
    assert out.loc[0, "split"] == "train"  # class 0's only image (c's majority is a tie -> first box, class 1)
    assert sorted(out.drop_duplicates("image")["split"]) == ["train", "train", "validation"]
    with pytest.raises(ValueError, match="validation_fraction"):
        assign_split(boxes, 1.0, seed=0)


def test_a_data_set_s_own_splits_are_kept_and_only_missing_ones_drawn():
    images = [f"img{i:02d}" for i in range(20)]
    own = ["validation" if i < 4 else "train" for i in range(20)]
    boxes = pd.DataFrame({"image": images, "class_id": [0] * 20, "split": own})
    out, sources = assign_split(boxes, 0.2, seed=3, test_fraction=0.25)
    assert (out["split"][:4] == "validation").all()  # the data set's own validation images stay
    assert (out["split"] == "validation").sum() == 4 and (out["split"] == "test").sum() == 5  # round(20 x 0.25)
    test_source = "seeded from train (test_fraction 0.25, seed 3)"
    assert sources == {"train": "data set", "validation": "data set", "test": test_source}


def _reencode(path: Path, fmt: str, mode: str) -> None:
    image = Image.open(path).convert("RGB")
    image = image.quantize(16) if mode == "P" else image.convert(mode)
    buf = io.BytesIO()
    image.save(buf, fmt)
    path.write_bytes(buf.getvalue())  # keeps the .jpg name


@pytest.fixture
def odd_formats(tmp_path: Path) -> tuple[Path, dict]:
    """A VOC set whose .jpg files are partly PNG (RGB, RGBA, palette) or grayscale, sizes given as 0 or wrong."""
    root = tmp_path / "voc"
    meta = shapes_voc(root, 8)
    for stem, fmt, mode in (
        ("img_000", "PNG", "RGB"),
        ("img_001", "PNG", "RGBA"),
        ("img_002", "PNG", "P"),
        ("img_003", "JPEG", "L"),
    ):
        _reencode(root / "JPEGImages" / f"{stem}.jpg", fmt, mode)
        write_voc_annotation(root, stem, f"{stem}.jpg", (0, 0, 3), meta[stem]["objects"])
    write_voc_annotation(root, "img_004", "img_004.jpg", (100, 50, 3), meta["img_004"]["objects"])
    return root, meta


def test_other_formats_are_converted_and_real_sizes_win(odd_formats, tmp_path):
    root, meta = odd_formats
    out = tmp_path / "out"
    summary = ingest("voc", str(root), str(out))
    assert summary["images"] == 8 and summary["issues"] == 0
    assert summary["converted_images"] == 4 and summary["size_mismatches"] == 1
    table = read_table(str(out)).set_index("image")
    for stem, fmt, mode in (
        ("img_000", "PNG", "RGB"),
        ("img_001", "PNG", "RGBA"),
        ("img_002", "PNG", "P"),
        ("img_003", "JPEG", "L"),
    ):
        row = table.loc[f"JPEGImages/{stem}.jpg"]
        assert (row["image_format"], row["image_mode"], bool(row["converted"])) == (fmt, mode, True)
        assert row["image_uri"] == storage.join(storage.normalize(out), "images", "JPEGImages", f"{stem}.jpg")
        assert (row["width"], row["height"]) == meta[stem]["size"][:2]
        assert pd.isna(row["annotated_width"])
        with Image.open(storage.local_path(row["image_uri"])) as converted:
            assert (converted.format, converted.mode, converted.size) == ("JPEG", "RGB", meta[stem]["size"][:2])
    row = table.loc["JPEGImages/img_004.jpg"]
    assert (row["annotated_width"], row["annotated_height"]) == (100, 50)
    assert (row["width"], row["height"]) == meta["img_004"]["size"][:2]
    assert row["xmax_norm"] == pytest.approx(row["xmax"] / meta["img_004"]["size"][0])
    assert not row["converted"] and row["image_uri"] == row["source_image_uri"]


def test_reject_policy_reports_instead_of_converting(odd_formats, tmp_path):
    root, _ = odd_formats
    summary = ingest("voc", str(root), str(tmp_path / "out"), image_policy="reject")
    assert summary["images"] == 4 and summary["issues_by_check"] == {"image_files": 4}
    reasons = {i.file: i.reason for i in read_issues(str(tmp_path / "out"))}
    assert reasons["Annotations/img_001.xml"] == "PNG image in mode RGBA is not an RGB JPEG (image policy 'reject')"
    assert reasons["Annotations/img_003.xml"].startswith("JPEG image in mode L")
    with pytest.raises(ValueError, match="unknown image policy"):
        ingest("voc", str(root), str(tmp_path / "x"), image_policy="keep")


def test_converted_names_stay_unique():
    names = converted_names(["a/x.png", "a/x.jpg", "b/y.PNG", "c/z.jpeg"])
    assert names == {"a/x.jpg": "a/x.jpg", "a/x.png": "a/x.png.jpg", "b/y.PNG": "b/y.jpg", "c/z.jpeg": "c/z.jpeg"}


def images_class(root: Path, image_id: int) -> str:
    """The CUB class name of an image id."""
    labels = dict(line.split() for line in (root / "image_class_labels.txt").read_text().splitlines())
    names = dict(line.split() for line in (root / "classes.txt").read_text().splitlines())
    return names[labels[str(image_id)]]


def test_rejected_entries_become_issues_with_file_and_line(tmp_path):
    root = generate_sample(tmp_path / "data", n_images=10, seed=4)
    images = (root / "images.txt").read_text().splitlines()
    missing, truncated = images[0].split()[1], images[1].split()[1]
    (root / "images" / missing).unlink()
    data = (root / "images" / truncated).read_bytes()
    (root / "images" / truncated).write_bytes(data[: len(data) // 2])
    images[2] = "3 ../../escape.jpg"
    (root / "images.txt").write_text("\n".join(images) + "\n11 001.circle/unboxed.jpg\n")
    (root / "train_test_split.txt").write_text((root / "train_test_split.txt").read_text() + "11 1\n")
    (root / "image_class_labels.txt").write_text((root / "image_class_labels.txt").read_text() + "11 1\n")
    summary = ingest("cub", str(root), str(tmp_path / "out"))
    issues = read_issues(str(tmp_path / "out"))
    found = {(i.file, i.line, i.check): i.reason for i in issues}
    assert found[("bounding_boxes.txt", 1, "image_files")] == "missing image file"
    assert found[("bounding_boxes.txt", 2, "image_files")].startswith("truncated JPEG image: image file is truncated")
    assert found[("bounding_boxes.txt", 3, "image_files")] == "path outside data set root: ../../escape.jpg"
    assert found[("images.txt", 11, "images_have_boxes")] == "image id 11 has no line in bounding_boxes.txt"
    assert summary["images"] == 7 and summary["issues"] == 4
    entry = json.loads((tmp_path / "out" / "ingest_issues.json").read_text())[0]
    assert entry.keys() == {"file", "line", "image", "check", "reason", "class_name"}
    assert {i.class_name for i in issues if i.check == "image_files"} == {images_class(root, n) for n in (1, 2, 3)}


def test_unknown_format_and_misplaced_label_attribute(tmp_path):
    with pytest.raises(ValueError, match="unknown data set format 'coco'"):
        ingest("coco", str(tmp_path), str(tmp_path / "out"))
    with pytest.raises(ValueError, match="label_attribute applies to the groundtruth format"):
        ingest("voc", str(tmp_path), str(tmp_path / "out"), label_attribute="x")
    shapes_voc(tmp_path / "voc", 4)  # a data set with its own split lists: the fraction is unused, still checked
    with pytest.raises(ValueError, match=r"validation_fraction must be in \(0, 1\), got 1.5"):
        ingest("voc", str(tmp_path / "voc"), str(tmp_path / "out"), validation_fraction=1.5)
    assert not (tmp_path / "out").exists()


def test_truncated_jpeg_is_caught_even_after_gluoncv_relaxed_pillow(tmp_path, monkeypatch):
    from PIL import ImageFile

    # what `import gluoncv` does to the whole process (gluoncv/data/mhp.py)
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    root = generate_sample(tmp_path / "data", n_images=4, seed=5)
    truncated = (root / "images.txt").read_text().splitlines()[0].split()[1]
    data = (root / "images" / truncated).read_bytes()
    (root / "images" / truncated).write_bytes(data[: len(data) // 2])
    ingest("cub", str(root), str(tmp_path / "out"))
    reasons = [i.reason for i in read_issues(str(tmp_path / "out")) if i.check == "image_files"]
    assert len(reasons) == 1 and reasons[0].startswith("truncated JPEG image")
    assert ImageFile.LOAD_TRUNCATED_IMAGES is True  # restored for the rest of the process
