"""Helpers of the ingest and quality-gate tests: small VOC sets and exporters from the canonical table."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path

import pandas as pd
import pytest

from include.preprocess.annotations import COLUMNS
from include.preprocess.readers.groundtruth import groundtruth_line
from include.preprocess.readers.imagejson import imagejson_record
from include.preprocess.sample_data import SHAPES, render
from tests.support.shared_data import BCCD

needs_bccd = pytest.mark.skipif(not BCCD.is_dir(), reason=f"BCCD data set not found at {BCCD}")

#: (name, xmin, ymin, xmax, ymax) in VOC's 1-based pixel indices
VocObject = tuple[str, float, float, float, float]


def voc_xml(filename: str, size: tuple[int, int, int], objects: Iterable[VocObject]) -> str:
    width, height, depth = size
    body = "".join(
        f"<object><name>{name}</name><difficult>0</difficult><bndbox><xmin>{x0}</xmin><ymin>{y0}</ymin>"
        f"<xmax>{x1}</xmax><ymax>{y1}</ymax></bndbox></object>"
        for name, x0, y0, x1, y1 in objects
    )
    return (
        f"<annotation><folder>JPEGImages</folder><filename>{filename}</filename><size><width>{width}</width>"
        f"<height>{height}</height><depth>{depth}</depth></size>{body}</annotation>"
    )


def shapes_voc(root: Path, n_images: int, seed: int = 0, classes: tuple[int, ...] = (0, 1)) -> dict[str, dict]:
    """A VOC set of ``n_images`` drawn-shape images (one object each, classes cycling), every other one in val.

    Returns ``{stem: {"objects": [...VOC objects...], "size": (w, h, 3), "split": ...}}``.
    """
    names = list(SHAPES)
    (root / "Annotations").mkdir(parents=True)
    (root / "JPEGImages").mkdir()
    (root / "ImageSets" / "Main").mkdir(parents=True)
    meta = {}
    for i in range(n_images):
        stem = f"img_{i:03d}"
        data, objects, (width, height) = render(seed, i, (160, 128), [classes[i % len(classes)]])
        (root / "JPEGImages" / f"{stem}.jpg").write_bytes(data)
        voc_objects = [(names[c], x0 + 1, y0 + 1, x1, y1) for c, (x0, y0, x1, y1) in objects]
        meta[stem] = {"objects": voc_objects, "size": (width, height, 3), "split": "train" if i % 4 < 2 else "val"}
        write_voc_annotation(root, stem, f"{stem}.jpg", meta[stem]["size"], voc_objects)
    for split in ("train", "val"):
        stems = [s for s, m in meta.items() if m["split"] == split]
        (root / "ImageSets" / "Main" / f"{split}.txt").write_text("".join(f"{s}\n" for s in stems))
    return meta


def write_voc_annotation(
    root: Path, stem: str, filename: str, size: tuple[int, int, int], objects: Iterable[VocObject]
) -> None:
    (root / "Annotations" / f"{stem}.xml").write_text(voc_xml(filename, size, objects))


def _objects(rows: pd.DataFrame) -> list[tuple[int, float, float, float, float]]:
    return [(int(r.class_id), r.xmin, r.ymin, r.xmax - r.xmin, r.ymax - r.ymin) for r in rows.itertuples(index=False)]


def export_groundtruth(table: pd.DataFrame, classes: dict[int, str], folder: Path) -> Path:
    """``train.manifest`` and ``validation.manifest`` with absolute local ``source-ref`` paths."""
    folder.mkdir(parents=True)
    for split, rows in table.groupby("split"):
        lines = [
            groundtruth_line(
                image_uri.removeprefix("file://"),
                (int(group["width"].iloc[0]), int(group["height"].iloc[0]), 3),
                _objects(group),
                classes,
                "cells",
                "labeling-job/cells",
                "2024-01-01T00:00:00",
            )
            for image_uri, group in rows.groupby("image_uri", sort=True)
        ]
        (folder / f"{split}.manifest").write_text("".join(f"{line}\n" for line in lines))
    return folder


def export_imagejson(table: pd.DataFrame, classes: dict[int, str], folder: Path) -> Path:
    """SageMaker's channel layout: images (symlinked) in train/ and validation/, one JSON each in *_annotation/."""
    for image_uri, group in table.groupby("image_uri", sort=True):
        split = group["split"].iloc[0]
        name = Path(image_uri).name
        (folder / split).mkdir(parents=True, exist_ok=True)
        (folder / f"{split}_annotation").mkdir(parents=True, exist_ok=True)
        os.symlink(image_uri.removeprefix("file://"), folder / split / name)
        size = (int(group["width"].iloc[0]), int(group["height"].iloc[0]), 3)
        record = imagejson_record(name, size, _objects(group), classes)
        (folder / f"{split}_annotation" / f"{Path(name).stem}.json").write_text(json.dumps(record))
    return folder


#: Every column but where the image and the box were read from (readers differ there), plus the image hash.
COMPARED = [c for c in COLUMNS if c not in ("image", "image_uri", "source_file", "source_line")] + ["content_hash"]


def comparable(table: pd.DataFrame) -> pd.DataFrame:
    """The columns every reader must agree on, keyed by image file name, in a fixed order."""
    out = table[COMPARED].assign(name=table["image"].str.rsplit("/", n=1).str[-1])
    return out.sort_values(["name", "class_id", "xmin", "ymin", "xmax", "ymax"]).reset_index(drop=True)


def all_findings(report: dict) -> list[tuple[str, str, str]]:
    """``(check, file, reason)`` for every failed row of every check in a quality.json report."""
    return [(c["name"], r["file"], r["reason"]) for c in report["checks"] for r in c["rows"]]
