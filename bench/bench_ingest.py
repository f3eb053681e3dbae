"""Benchmark: ingest + image verification + quality gate at CUB scale, and the gate alone on 1M boxes.

Part 1 generates (once, cached under ``data/bench/``) a CUB-200-2011-layout sample set of
``--images`` drawn-shape JPEGs of up to 500x375 px (CUB's typical size), one box each, then
times ``ingest`` (read, verify and hash every image in parallel, write the table) and
``validate`` (GX gate). Reference, in the same run: the notebook's sizes step, a
single-threaded ``cv2.imread`` loop over a slice of the same images (reported as images/s).
It also times the verification pool with threads and with processes on that slice.

Part 2 writes a synthetic canonical table of ``--boxes`` boxes (5 per image, a few faulty)
and times ``validate(policy="drop")`` alone: read, GX checks, reports, cleaned table.
Reference: the same row rules as plain vectorised pandas masks. The one-off
``import great_expectations`` is timed separately.

    .venv/bin/python -m bench.bench_ingest [--images 12000] [--boxes 1000000] [--reference 2000]

The machine's CPUs may be shared with other work: figures are wall-clock and noisy.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
from include.preprocess.images import converted_names, verify_image, verify_images
from include.preprocess.ingest import ingest
from include.preprocess.quality.gate import validate
from include.preprocess.sample_data import generate_sample
from include.preprocess.workers import default_workers
from include.project import PROJECT_ROOT

CACHE = PROJECT_ROOT / "data" / "bench"


def cpu_seconds() -> float:
    """CPU time of this process and its finished children (user + system)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def timed(fn, *args, **kwargs):
    """``(result, wall seconds, CPU seconds)``; CPU time does not depend on other processes' load."""
    start, cpu = time.perf_counter(), cpu_seconds()
    result = fn(*args, **kwargs)
    return result, time.perf_counter() - start, cpu_seconds() - cpu


def sample_set(n_images: int) -> Path:
    """The generated CUB-layout set, reused when an identical one is cached."""
    folder = CACHE / f"cub-{n_images}-seed0"
    marker = folder / "complete.json"
    params = {"n_images": n_images, "seed": 0, "image_size": [500, 375]}
    if marker.exists() and json.loads(marker.read_text()) == params:
        return folder / "CUB_200_2011"
    shutil.rmtree(folder, ignore_errors=True)
    root, seconds, _ = timed(generate_sample, folder, n_images=n_images, seed=0, image_size=(500, 375))
    marker.write_text(json.dumps(params))
    print(f"generated {n_images} images in {seconds:.1f} s (cached in {folder})")
    return root


def notebook_sizes(paths: list[Path]) -> None:
    """The notebook's sizes step: ``cv2.imread`` each image for its shape, single-threaded."""
    import cv2

    cv2.setNumThreads(1)
    for path in paths:
        cv2.imread(str(path)).shape[:2]


def verify_on_processes(images: dict[str, str], output_uri: str) -> list:
    """The alternative to verify_images' threads: the same per-image function on a spawn process pool."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor
    from functools import partial

    uris, names = sorted(images), converted_names(images.values())
    task = partial(verify_image, output_uri=output_uri, policy="convert")
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(default_workers(), mp_context=context) as pool:
        rels = [images[u] for u in uris]
        return list(pool.map(task, uris, rels, [names[r] for r in rels], chunksize=64))


def rate(count: int, wall: float, cpu: float, unit: str) -> str:
    return f"{wall:7.2f} s wall {count / wall:9.0f} {unit}/s | {cpu:7.2f} s CPU {count / cpu:9.0f} {unit}/CPU-s"


def part_ingest(n_images: int, n_reference: int, work: Path, t_import: float) -> None:
    root = sample_set(n_images)
    lines = (root / "images.txt").read_text().splitlines()
    paths = [root / "images" / line.split()[1] for line in lines]
    slice_ = paths[:n_reference]
    _, ref_wall, ref_cpu = timed(notebook_sizes, slice_)
    ref_rate = len(slice_) / ref_wall
    print(
        f"reference  notebook sizes step, cv2.imread, 1 thread, {len(slice_)} images: "
        f"{rate(len(slice_), ref_wall, ref_cpu, 'images')}"
    )
    entries = {str(p): p.relative_to(root / "images").as_posix() for p in slice_}
    for name, verify in (("thread pool (used)", verify_images), ("process pool", verify_on_processes)):
        _, wall, cpu = timed(verify, entries, str(work / name.split()[0]))
        print(
            f"verify     {name}, same images: {rate(len(slice_), wall, cpu, 'images')} "
            f"({len(slice_) / wall / ref_rate:.2f}x reference)"
        )

    summary, t_ingest, c_ingest = timed(ingest, "cub", str(root), str(work / "ingest"))
    report, t_gate, c_gate = timed(validate, str(work / "ingest"), str(work / "quality"))
    images, boxes = summary["images"], summary["boxes"]
    total, cpu = t_ingest + t_gate, c_ingest + c_gate
    print(f"ingest     {images} images: {rate(images, t_ingest, c_ingest, 'images')} ({boxes / t_ingest:.0f} boxes/s)")
    print(f"gate       {boxes} boxes:  {rate(boxes, t_gate, c_gate, 'boxes')}  success={report['success']}")
    print(
        f"ingest + verify + gate: {rate(images, total, cpu, 'images')} ({boxes / total:.0f} boxes/s, "
        f"{images / total / ref_rate:.2f}x reference); with the GX import {total + t_import:.1f} s wall; "
        f"target < 60 s: {'met' if total + t_import < 60 else 'MISSED'}"
    )


def synthetic_table(n_boxes: int, folder: Path) -> None:
    """A canonical table of ``n_boxes`` boxes, 5 per 500x375 image, 20 classes, 15 faulty rows."""
    import numpy as np
    import pandas as pd

    from include.preprocess.annotations import add_normalized, write_table

    rng = np.random.default_rng(0)
    n_images = n_boxes // 5
    image = np.repeat(np.arange(n_images), 5)
    class_id = rng.integers(0, 20, n_boxes)
    xmin, ymin = rng.uniform(0, 400, n_boxes), rng.uniform(0, 275, n_boxes)
    xmax, ymax = xmin + rng.uniform(5, 100, n_boxes), ymin + rng.uniform(5, 100, n_boxes)
    xmax[:10] = xmin[:10]  # zero-width
    ymax[10:15] = 400  # beyond the image
    names = [f"{i:03d}.class" for i in range(20)]
    table = pd.DataFrame(
        {
            "image": [f"images/{i:07d}.jpg" for i in image],
            "image_uri": [f"s3://bucket/images/{i:07d}.jpg" for i in image],
            "width": 500,
            "height": 375,
            "depth": 3,
            "class_id": class_id,
            "class_name": np.array(names)[class_id],
            "xmin": xmin,
            "ymin": ymin,
            "xmax": xmax,
            "ymax": ymax,
            "xmin_norm": 0.0,
            "ymin_norm": 0.0,
            "xmax_norm": 0.0,
            "ymax_norm": 0.0,
            "split": np.where(image % 5 == 0, "validation", "train"),
            "source_file": "bounding_boxes.txt",
            "source_line": np.arange(1, n_boxes + 1),
            "annotated_width": np.nan,
            "annotated_height": np.nan,
            "content_hash": [f"{i:064x}" for i in image],
            "phash": "",  # no image files: the near-duplicate checks are skipped (bench_quality measures them)
            "phash_mirror": "",
        }
    )
    write_table(add_normalized(table), dict(enumerate(names)), str(folder))


def pandas_reference(folder: Path, tolerance: float = 2.0, min_side: float = 1.0) -> int:
    """The same row rules as vectorised pandas masks (no report); returns the offending row count."""
    from include.preprocess.annotations import read_table

    t = read_table(str(folder))
    w, h = t["xmax"] - t["xmin"], t["ymax"] - t["ymin"]
    bad = (
        t[["xmin", "ymin", "xmax", "ymax"]].isna().any(axis=1)
        | (t["xmin"] < -tolerance)
        | (t["ymin"] < -tolerance)
        | (t["xmax"] > t["width"] + tolerance)
        | (t["ymax"] > t["height"] + tolerance)
        | (w <= 0)
        | (h <= 0)
        | (w < min_side)
        | (h < min_side)
        | ~t["class_id"].between(0, t["class_id"].max())
        | t.duplicated(["image", "class_id", "xmin", "ymin", "xmax", "ymax"], keep="first")
    )
    per_image = t.groupby("image").agg(n=("image", "size"), hash=("content_hash", "first"))
    bad |= t["image"].isin(per_image.index[per_image["hash"].duplicated() | (per_image["n"] > 69)])
    return int(bad.sum())


def part_gate(n_boxes: int, work: Path) -> None:
    synthetic_table(n_boxes, work / "table")
    offending, t_ref, c_ref = timed(pandas_reference, work / "table")
    summary, t_gate, c_gate = timed(validate, str(work / "table"), str(work / "gate"), policy="drop", thumbnails=0)
    images = n_boxes // 5
    print(
        f"reference  plain pandas masks, {n_boxes} boxes: {rate(n_boxes, t_ref, c_ref, 'boxes')} "
        f"({offending} offending)"
    )
    print(
        f"gate       {n_boxes} boxes, {images} images: {rate(n_boxes, t_gate, c_gate, 'boxes')} "
        f"({images / t_gate:.0f} images/s, {t_ref / t_gate:.2f}x reference, {summary['rows_dropped']} dropped); "
        f"target < 10 s: {'met' if t_gate < 10 else 'MISSED'}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=12_000)
    parser.add_argument("--boxes", type=int, default=1_000_000)
    parser.add_argument("--reference", type=int, default=2_000, help="images in the cv2.imread reference slice")
    args = parser.parse_args()
    print(f"CPUs available: {default_workers()} (shared with other work: wall-clock figures are noisy)")
    print(f"load average {os.getloadavg()[0]:.1f}")
    _, t_import, c_import = timed(__import__, "great_expectations")
    print(
        f"import great_expectations: {t_import:.1f} s wall, {c_import:.1f} s CPU "
        "(once per process; not in the gate figures)"
    )
    with tempfile.TemporaryDirectory() as tmp:
        part_ingest(args.images, args.reference, Path(tmp) / "ingest", t_import)
        part_gate(args.boxes, Path(tmp) / "gate")
    print(f"load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
