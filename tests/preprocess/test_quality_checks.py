"""The gate's checks for object detection: near-duplicates and leakage, class-name typos, box statistics, policies."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from include.preprocess.annotations import COLUMNS, read_table
from include.preprocess.ingest import ingest
from include.preprocess.quality.checks import DEFAULT_POLICIES, ORDER, policies
from include.preprocess.quality.class_names import one_edit_apart, typo_check
from include.preprocess.quality.duplicates import near_pairs
from include.preprocess.quality.gate import QualityGateError, validate
from include.preprocess.quality.statistics import anchor_shapes, statistics_checks
from tests.support.ingest_helpers import shapes_voc, write_voc_annotation


def test_near_pairs_are_every_pair_within_the_distance():
    rng = np.random.default_rng(3)
    bits = rng.integers(0, 2, size=(2500, 256)).astype(np.float32) * 2 - 1
    for a, b, flipped in ((10, 2400, 7), (11, 12, 40), (100, 1500, 41)):
        bits[b] = bits[a]
        bits[b, :flipped] *= -1  # `flipped` bits differ
    i, j, d = near_pairs(bits, None, 40)  # blocks of 1024 rows: pairs across blocks are found too
    assert sorted(zip(i.tolist(), j.tolist(), d.tolist(), strict=True)) == [(10, 2400, 7), (11, 12, 40)]
    i, j, d = near_pairs(bits[:50], bits[2000:], 10)  # one set against another
    assert list(zip(i.tolist(), j.tolist(), d.tolist(), strict=True)) == [(10, 400, 7)]


def copy_image(source: Path, target: Path, scale: float = 1.0, quality: int = 95, mirror: bool = False) -> None:
    with Image.open(source) as im:
        out = im.resize((round(im.width * scale), round(im.height * scale))) if scale != 1 else im.copy()
    if mirror:
        out = out.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    buf = io.BytesIO()
    out.save(buf, "JPEG", quality=quality)
    target.write_bytes(buf.getvalue())


@pytest.fixture(scope="module")
def copies(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Drawn shapes (img_000..011, train: 0, 1, 4, 5, 8, 9) and three copies of training images."""
    root = tmp_path_factory.mktemp("copies") / "voc"
    meta = shapes_voc(root, 12)
    images = root / "JPEGImages"
    plans = {  # copy: (original, split, scale, quality, mirrored)
        "copy_resized": ("img_000", "val", 0.6, 60, False),
        "copy_mirrored": ("img_001", "val", 1.0, 90, True),
        "copy_recoded": ("img_004", "train", 1.0, 50, False),
    }
    for stem, (original, split, scale, quality, mirror) in plans.items():
        copy_image(images / f"{original}.jpg", images / f"{stem}.jpg", scale, quality, mirror)
        width, height, depth = meta[original]["size"]
        objects = [
            (n, x0 * scale, y0 * scale, x1 * scale, y1 * scale) for n, x0, y0, x1, y1 in meta[original]["objects"]
        ]
        write_voc_annotation(root, stem, f"{stem}.jpg", (round(width * scale), round(height * scale), depth), objects)
        with (root / "ImageSets" / "Main" / f"{split}.txt").open("a") as lst:
            lst.write(f"{stem}\n")
    out = root.parent / "ingested"
    ingest("voc", str(root), str(out))
    return out


def test_copies_across_the_split_are_leakage_and_within_it_near_duplicates(copies, tmp_path):
    with pytest.raises(QualityGateError, match=r"Annotations/copy_\w+.xml:1 split_leakage: validation image is a"):
        validate(str(copies), str(tmp_path))
    report = json.loads((tmp_path / "quality.json").read_text())
    checks = {c["name"]: c for c in report["checks"]}
    leak = {(p["image"], p["other"], p["mirrored"]) for p in checks["split_leakage"]["pairs"]}
    assert leak == {
        ("JPEGImages/copy_resized.jpg", "JPEGImages/img_000.jpg", False),
        ("JPEGImages/copy_mirrored.jpg", "JPEGImages/img_001.jpg", True),
    }
    assert all(p["distance"] <= 12 for p in checks["split_leakage"]["pairs"])
    near = checks["near_duplicates"]
    assert [(p["image"], p["other"]) for p in near["pairs"]] == [
        ("JPEGImages/img_004.jpg", "JPEGImages/copy_recoded.jpg")
    ]
    assert near["severity"] == "warning" and near["rows"][0]["related_image"] == "JPEGImages/copy_recoded.jpg"
    assert report["checks_blocking"] == ["split_leakage"]


def test_drop_removes_the_held_out_copies_and_keeps_the_training_images(copies, tmp_path):
    summary = validate(str(copies), str(tmp_path), policy="drop")
    images = set(read_table(str(tmp_path))["image"])
    assert summary["images_dropped"] == 2 and "JPEGImages/copy_resized.jpg" not in images
    assert {"JPEGImages/img_000.jpg", "JPEGImages/img_001.jpg", "JPEGImages/copy_recoded.jpg"} <= images
    assert "near_duplicates" in summary["warnings"] and "split_leakage" not in summary["warnings"]


def test_a_larger_distance_finds_more_and_zero_finds_only_identical_hashes(copies, tmp_path):
    validate(str(copies), str(tmp_path), checks={"split_leakage": "warn"}, near_duplicate_distance=0)
    report = json.loads((tmp_path / "quality.json").read_text())
    assert {c["name"]: c["pairs_found"] for c in report["checks"] if "pairs_found" in c} == {
        "near_duplicates": 0,
        "split_leakage": 0,
    }


def test_typos_by_case_spacing_or_one_character_when_the_name_is_rare():
    assert one_edit_apart("WBC", "WBc") and one_edit_apart("cat", "cta") and one_edit_apart("cat", "cats")
    assert not one_edit_apart("cat", "dog") and not one_edit_apart("cat", "cat")
    names = {0: "RBC", 1: "WBC", 2: "red blood-cell", 3: "Red_Blood_Cell", 4: "Platelets", 5: "Platelest"}
    ids = [0] * 400 + [1] * 40 + [2] * 3 + [3] * 50 + [4] * 60 + [5] * 2
    table = pd.DataFrame({c: 0.0 for c in ("xmin", "ymin", "xmax", "ymax")}, index=range(len(ids))).assign(
        class_id=ids,
        class_name=[names[k] for k in ids],
        source_file="a.xml",
        source_line=range(1, len(ids) + 1),
        image="a.jpg",
    )
    check = typo_check(table, names)
    assert [(t["name"], t["like"], t["differs_by"]) for t in check.details["typos"]] == [
        ("red blood-cell", "Red_Blood_Cell", "case, spaces or separators"),
        ("Platelest", "Platelets", "one character"),
    ]
    assert [(s["name"], s["like"]) for s in check.details["similar_names"]] == [("WBC", "RBC")]  # both real classes
    assert len(check.rows) == 5 and "a probable typo" in next(iter(check.rows.values()))["reason"]


def boxes_table(sizes: list[tuple[float, float]], images: list[int], image_side: int = 640) -> pd.DataFrame:
    """A canonical table of centred boxes of (width, height) pixels on square images."""
    rows = []
    for (w, h), image in zip(sizes, images, strict=True):
        x0, y0 = (image_side - w) / 2, (image_side - h) / 2
        rows.append(
            {
                "image": f"{image}.jpg",
                "class_id": 0,
                "class_name": "cell",
                "xmin": x0,
                "ymin": y0,
                "xmax": x0 + w,
                "ymax": y0 + h,
                "width": image_side,
                "height": image_side,
                "split": "train",
            }
        )
    table = pd.DataFrame(rows)
    for c, size in (("xmin", "width"), ("xmax", "width"), ("ymin", "height"), ("ymax", "height")):
        table[f"{c}_norm"] = table[c] / table[size]
    return table.reindex(columns=[*COLUMNS]).assign(**{k: table[k] for k in rows[0]})


def test_boxes_too_small_or_elongated_for_the_anchors_warn_and_dense_images_too():
    anchors = anchor_shapes("mobilenet-1.0", 300)
    assert anchors[0].tolist() == pytest.approx([30, 30]) and [42.43, 21.21] in np.round(anchors, 2).tolist()
    tiny = [(12.0, 12.0)] * 70  # 12 px of 640 -> 5.6 px of a 300 px input: no anchor reaches IoU 0.5
    long = [(600.0, 60.0)] * 20  # 10:1, beyond the anchors' 3:1
    fine = [(200.0, 180.0)] * 30
    table = boxes_table(tiny + long + fine, [0] * 110 + list(range(1, 11)))
    checks = statistics_checks(table, pd.factorize(table["image"])[0], {0: "cell"}, "mobilenet-1.0", 300, 69)
    sizes, aspects, counts = checks["box_sizes"].details, checks["aspect_ratios"].details, checks["object_counts"]
    assert sizes["too_small_for_anchors"] == 70 and sizes["problems"][0].startswith("most boxes (70 of 120) are too")
    assert sizes["coco_bands"] == {"small": 70, "medium": 0, "large": 50}
    assert aspects["too_elongated_for_anchors"] == 20 and "more elongated than the anchors" in aspects["problems"][0]
    assert counts.details["problems"] == [
        "1 image(s) hold more than 100 objects, the most detections the model returns (the largest holds 110)"
    ]
    assert sum(counts.details["objects_per_image"]["counts"]) == 11
    vgg = statistics_checks(table, pd.factorize(table["image"])[0], {0: "cell"}, "vgg-16", 300, 69)
    assert vgg["box_sizes"].details["first_anchor_px"] == 21.0  # 7 % of the side below 512 px, not 10 %


def test_policies_per_check_and_what_cannot_be_asked():
    default = policies("fail")
    assert set(default) == set(ORDER) and default["box_ordered"] == "fail" and default["split_coverage"] == "fail"
    assert all(default[name] == policy for name, policy in DEFAULT_POLICIES.items())
    assert policies("drop", {"near_duplicates": "drop"})["near_duplicates"] == "drop"
    for overrides, message in (
        ({"near_duplicate": "warn"}, "unknown quality check 'near_duplicate'"),
        ({"box_sizes": "drop"}, "box_sizes names no boxes to drop"),
        ({"split_coverage": "warn"}, "split_coverage can only fail"),
        ({"box_ordered": "ignore"}, "unknown policy 'ignore'"),
    ):
        with pytest.raises(ValueError, match=message):
            policies("fail", overrides)
