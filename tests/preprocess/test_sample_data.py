"""The sample data set generator: deterministic bytes, both layouts, shapes where the boxes say."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from include.preprocess.sample_data import SHAPES, generate_sample, main


def _digests(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in root.rglob("*")
        if p.is_file()
    }


@pytest.mark.parametrize("layout", ["cub", "groundtruth"])
def test_same_seed_gives_identical_files(tmp_path, layout):
    objects = 3 if layout == "groundtruth" else 1
    a = generate_sample(tmp_path / "a", n_images=12, seed=9, layout=layout, max_objects=objects, workers=1)
    b = generate_sample(tmp_path / "b", n_images=12, seed=9, layout=layout, max_objects=objects, workers=4)
    c = generate_sample(tmp_path / "c", n_images=12, seed=10, layout=layout, max_objects=objects)
    da, db, dc = _digests(a), _digests(b), _digests(c)
    assert len(da) == 12 + (5 if layout == "cub" else 1)
    assert da == db
    assert len(dc) == len(da) and da != dc


def test_cub_layout_boxes_cover_the_drawn_shape(tmp_path):
    root = generate_sample(tmp_path, n_images=10, seed=0, image_size=(200, 160))
    paths = dict(line.split() for line in (root / "images.txt").read_text().splitlines())
    labels = dict(line.split() for line in (root / "image_class_labels.txt").read_text().splitlines())
    classes = dict(line.split() for line in (root / "classes.txt").read_text().splitlines())
    assert list(classes.values()) == [f"{i + 1:03d}.{name}" for i, name in enumerate(SHAPES)]
    for line in (root / "bounding_boxes.txt").read_text().splitlines():
        image_id, *box = line.split()
        x, y, w, h = (int(float(v)) for v in box)
        name = classes[labels[image_id]].split(".", 1)[1]
        assert paths[image_id].startswith(classes[labels[image_id]] + "/")
        with Image.open(root / "images" / paths[image_id]) as im:
            assert im.format == "JPEG" and im.mode == "RGB"
            assert 160 <= im.size[0] <= 200 and 128 <= im.size[1] <= 160
            assert 0 <= x and x + w <= im.size[0] and 0 <= y and y + h <= im.size[1]
            pixels = np.asarray(im, dtype=np.int16)
        # the class colour (BGR in SHAPES) dominates inside the box, not in the whole image
        colour = np.array(SHAPES[name][::-1])
        near = np.abs(pixels - colour).sum(axis=2) < 90
        assert near[y : y + h, x : x + w].mean() > 0.15
        assert near[y : y + h, x : x + w].sum() > 0.8 * near.sum()


def test_groundtruth_layout_and_cli(tmp_path, capsys):
    main([str(tmp_path), "--images", "6", "--layout", "groundtruth", "--seed", "2"])
    assert capsys.readouterr().out.strip() == str(tmp_path)
    records = [json.loads(line) for line in (tmp_path / "output.manifest").read_text().splitlines()]
    assert len(records) == 6
    counts = [len(r["shapes"]["annotations"]) for r in records]
    assert 1 <= min(counts) and max(counts) <= 4 and max(counts) > 1
    assert records[0]["shapes-metadata"]["class-map"] == {str(i): n for i, n in enumerate(SHAPES)}
    assert (tmp_path / records[0]["source-ref"]).is_file()


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="one box per image"):
        generate_sample(tmp_path, layout="cub", max_objects=3)
    with pytest.raises(ValueError, match="unknown sample layout"):
        generate_sample(tmp_path, layout="coco")
