"""Augmented-manifest and image+JSON channels built from the canonical table."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

from include import storage
from include.preprocess import channels
from tests.support.recordio_data import expected_records


def pixel_boxes(table, image: str, flipped: bool) -> list[dict]:
    rows = table[table["image"] == image]
    out = []
    for r in rows.itertuples():
        left = r.width - r.xmax if flipped else r.xmin
        out.append(
            {"class_id": r.class_id, "left": left, "top": r.ymin, "width": r.xmax - r.xmin, "height": r.ymax - r.ymin}
        )
    return out


def decoded(path: Path) -> np.ndarray:
    return cv2.imdecode(np.frombuffer(path.read_bytes(), np.uint8), cv2.IMREAD_COLOR)


def test_manifest_channels_in_ground_truth_format(synthetic, tmp_path):
    out = tmp_path / "out"
    result = channels.build_manifest_channels(synthetic.table_uri, str(out), label_attribute="birds-box", workers=1)
    assert result["attribute_names"] == ["source-ref", "birds-box"] and result["flipped_images"] == 4
    expected = expected_records(synthetic.table, "train")
    table = synthetic.table
    for split in ("train", "validation"):
        assert result[split] == {
            "uri": storage.normalize(out / split / f"{split}.manifest"),
            "records": len(expected[split]),
        }
        lines = (out / split / f"{split}.manifest").read_text().splitlines()
        assert len(lines) == len(expected[split])
        for line, (path, _) in zip(lines, expected[split], strict=True):
            entry = json.loads(line)
            source = path.removeprefix("flipped/")
            row = table[table["image"] == source].iloc[0]
            if path.startswith("flipped/"):
                assert entry["source-ref"] == storage.normalize(out / "images" / path)
                mirrored = decoded(out / "images" / path)
                assert np.abs(cv2.flip(decoded(synthetic.root / source), 1).astype(int) - mirrored).mean() < 3
            else:
                assert entry["source-ref"] == row["image_uri"]
            label = entry["birds-box"]
            assert label["image_size"] == [{"width": row["width"], "height": row["height"], "depth": 3}]
            assert label["annotations"] == pixel_boxes(table, source, path.startswith("flipped/"))
            meta = entry["birds-box-metadata"]
            assert meta["class-map"] == {"0": "bird", "1": "cat"} and meta["type"] == "groundtruth/object-detection"
            assert len(meta["objects"]) == len(label["annotations"])


def test_image_json_channels(synthetic, tmp_path):
    out = tmp_path / "out"
    result = channels.build_image_json_channels(synthetic.table_uri, str(out), flip="all", workers=2)
    expected = expected_records(synthetic.table, "all")
    assert result["files_written"] == 2 * sum(len(v) for v in expected.values())
    for split in ("train", "validation"):
        assert result[split]["records"] == len(expected[split])
        images = sorted(p.relative_to(out / split).as_posix() for p in (out / split).rglob("*") if p.is_file())
        assert images == sorted(path for path, _ in expected[split])
        for path, _ in expected[split]:
            source = path.removeprefix("flipped/")
            doc = json.loads((out / f"{split}_annotation" / (path.rsplit(".", 1)[0] + ".json")).read_text())
            assert doc["file"] == path
            assert doc["categories"] == [{"class_id": 0, "name": "bird"}, {"class_id": 1, "name": "cat"}]
            assert doc["annotations"] == pixel_boxes(synthetic.table, source, path.startswith("flipped/"))
            image = (out / split / path).read_bytes()
            if path.startswith("flipped/"):
                assert image[:4] == (synthetic.root / source).read_bytes()[:4]  # same format as the source
                reference = cv2.flip(decoded(synthetic.root / source), 1)
                assert np.abs(decoded(out / split / path).astype(int) - reference).mean() < 3
            else:
                assert image == (synthetic.root / source).read_bytes()
