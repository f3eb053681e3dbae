"""Benchmark: the quality gate with the object-detection checks on 12,000 images (< 60 s), the near-duplicate share.

Data: bench_ingest's cached CUB-layout set of ``--images`` drawn-shape JPEGs (up to 500x375 px),
plus ``--copies`` resized (75 %) and re-encoded (JPEG quality 70) copies of training images
listed as test images, so the near-duplicate and leakage checks have something to find. The set
is ingested once (bench_ingest times ingest; the perceptual hashes ingest adds are timed here per
image), then the gate runs ``--repeat`` times under policy drop with the local profile's
``mobilenet-1.0`` at 256 px.

Figures: the gate's wall time (min / median / max over the repeats) and each phase's (quality.json's
``seconds``: GX rules, near-duplicates, box statistics, pictures), and the near-duplicate check's
share of the gate. References measured in the same run: the gate's checks before this work (the
GX rules alone, ``table_checks``), and the all-pairs Hamming search done as XOR plus a byte
popcount table (the usual way without numpy 2's ``bitwise_count``) against the BLAS product the
gate uses, on the same hashes.

    .venv/bin/python -m bench.bench_quality [--images 12000] [--copies 120] [--repeat 3]

The machine's CPUs may be shared with other work: figures are wall-clock and noisy.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "2")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from PIL import Image  # noqa: E402

from bench.bench_ingest import CACHE, sample_set, timed  # noqa: E402
from include.preprocess.annotations import read_classes, read_table  # noqa: E402
from include.preprocess.images import perceptual_hashes  # noqa: E402
from include.preprocess.ingest import ingest  # noqa: E402
from include.preprocess.quality.duplicates import hash_bits, near_pairs  # noqa: E402
from include.preprocess.quality.expectations import table_checks  # noqa: E402
from include.preprocess.quality.gate import validate  # noqa: E402
from include.preprocess.workers import default_workers  # noqa: E402

TARGET_S = 60.0


def with_copies(n_images: int, n_copies: int) -> Path:
    """The cached set plus ``n_copies`` resized, re-encoded copies of training images as test images (cached)."""
    source = sample_set(n_images)
    folder = CACHE / f"cub-{n_images}-copies-{n_copies}"
    marker = folder / "complete.json"
    if marker.exists() and json.loads(marker.read_text()) == {"images": n_images, "copies": n_copies}:
        return folder
    lines = {
        name: (source / name).read_text().splitlines()
        for name in (
            "images.txt",
            "image_class_labels.txt",
            "bounding_boxes.txt",
            "train_test_split.txt",
            "classes.txt",
        )
    }
    train = [int(line.split()[0]) for line in lines["train_test_split.txt"] if line.split()[1] == "1"]
    chosen = np.random.default_rng(0).choice(train, size=n_copies, replace=False)
    paths = {int(a): b for a, b in (line.split(maxsplit=1) for line in lines["images.txt"])}
    labels = {int(a): b for a, b in (line.split() for line in lines["image_class_labels.txt"])}
    boxes = {int(line.split()[0]): [float(v) for v in line.split()[1:]] for line in lines["bounding_boxes.txt"]}
    (folder / "images").mkdir(parents=True, exist_ok=True)
    for path in paths.values():  # the originals, linked
        target = folder / "images" / path
        target.parent.mkdir(parents=True, exist_ok=True)
        if not target.exists():
            target.symlink_to(source / "images" / path)
    next_id = max(paths) + 1
    for k, original in enumerate(chosen):
        with Image.open(source / "images" / paths[original]) as im:
            small = im.resize((round(im.width * 0.75), round(im.height * 0.75)))
        buf = io.BytesIO()
        small.save(buf, "JPEG", quality=70)
        rel = f"copies/copy_{k:04d}.jpg"
        (folder / "images" / rel).parent.mkdir(exist_ok=True)
        (folder / "images" / rel).write_bytes(buf.getvalue())
        image_id = next_id + k
        lines["images.txt"].append(f"{image_id} {rel}")
        lines["image_class_labels.txt"].append(f"{image_id} {labels[original]}")
        lines["bounding_boxes.txt"].append(f"{image_id} " + " ".join(f"{v * 0.75:.2f}" for v in boxes[original]))
        lines["train_test_split.txt"].append(f"{image_id} 0")
    for name, text in lines.items():
        (folder / name).write_text("\n".join(text) + "\n")
    marker.write_text(json.dumps({"images": n_images, "copies": n_copies}))
    return folder


def hash_cost(table: pd.DataFrame, n: int = 300) -> float:
    """Seconds per image for the perceptual hashes on the draft decode ingest already does."""
    uris = list(dict.fromkeys(table["image_uri"]))[:n]
    decoded = []
    for uri in uris:
        with Image.open(uri.removeprefix("file://")) as im:
            im.draft("RGB", (max(im.width // 8, 64), max(im.height // 8, 64)))
            decoded.append(im.convert("RGB"))
    started = time.perf_counter()
    for im in decoded:
        perceptual_hashes(im)
    return (time.perf_counter() - started) / len(decoded)


def xor_popcount_pairs(hashes: list[str], distance: int) -> int:
    """The reference: all pairs by XOR of the hash bytes and a 256-entry popcount table."""
    packed = np.array([np.frombuffer(bytes.fromhex(h), dtype=np.uint8) for h in hashes])
    table = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint16)
    found = 0
    for i in range(len(packed) - 1):
        found += int((table[packed[i + 1 :] ^ packed[i]].sum(axis=1) <= distance).sum())
    return found


def spread(values: list[float]) -> str:
    return f"{min(values):6.2f} s min {statistics.median(values):6.2f} s median {max(values):6.2f} s max"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=12_000)
    parser.add_argument("--copies", type=int, default=120, help="resized copies of training images, as test images")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--pairs-subset", type=int, default=4_000, help="images in the pair-search reference")
    args = parser.parse_args()
    print(f"CPUs available: {default_workers()} (shared with other work: wall-clock figures are noisy)")
    print(f"load average {os.getloadavg()[0]:.1f}")
    _, t_import, _ = timed(__import__, "great_expectations")
    print(f"import great_expectations: {t_import:.1f} s (once per process; in the first run's figure only)")
    root = with_copies(args.images, args.copies)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        summary, t_ingest, _ = timed(ingest, "cub", str(root), str(work / "ingest"))
        table = read_table(str(work / "ingest"))
        print(
            f"ingested {summary['images']} images, {summary['boxes']} boxes in {t_ingest:.1f} s "
            f"(perceptual hashes included: {hash_cost(table) * 1000:.2f} ms per image)"
        )
        runs, phases = [], []
        for k in range(args.repeat):
            result, wall, _ = timed(
                validate,
                str(work / "ingest"),
                str(work / f"quality-{k}"),
                policy="drop",
                base_network="mobilenet-1.0",
                image_shape=256,
            )
            report = json.loads((work / f"quality-{k}" / "quality.json").read_text())
            runs.append(wall)
            phases.append(report["seconds"])
        checks = {c["name"]: c for c in report["checks"]}
        near, leak = checks["near_duplicates"], checks["split_leakage"]
        image_code = pd.factorize(table["image"])[0]
        _, t_gx, _ = timed(
            table_checks, table.reset_index(drop=True), image_code, read_classes(str(work / "ingest")), 350, 1.0, 2.0
        )

    print(
        f"gate       {summary['images']} images, {summary['boxes']} boxes, {args.repeat} runs: {spread(runs)}; "
        f"target < {TARGET_S:.0f} s: {'met' if max(runs) < TARGET_S else 'MISSED'}"
    )
    for phase in phases[0]:
        values = [p[phase] for p in phases]
        print(
            f"  {phase:<20} {spread(values)}  ({100 * statistics.median(values) / statistics.median(runs):4.1f} % "
            "of the gate)"
        )
    print(
        f"found      leakage: {leak['pairs_found']} pairs ({args.copies} copies placed), near-duplicates within a "
        f"split: {near['pairs_found']} pairs; dropped {result['rows_dropped']} boxes, {result['images_dropped']} "
        "images"
    )
    print(
        f"reference  the GX rules alone (the gate's checks before): {t_gx:.2f} s; the gate takes "
        f"{statistics.median(runs) / t_gx:.1f}x that"
    )
    per_image = table.drop_duplicates("image").set_index("image")["phash"]
    paired = list(dict.fromkeys(name for p in leak["pairs"] for name in (p["image"], p["other"])))
    others = [name for name in per_image.index if name not in set(paired)]
    hashes = per_image[(paired + others)[: args.pairs_subset]].tolist()  # the copied pairs and other images
    bits = hash_bits(hashes)
    (_, _, found_blas), t_blas, _ = timed(near_pairs, bits, None, 40)
    found_xor, t_xor, _ = timed(xor_popcount_pairs, hashes, 40)
    assert found_xor == len(found_blas), (found_xor, len(found_blas))
    print(
        f"reference  all pairs of {len(hashes)} hashes: BLAS (used) {t_blas:.2f} s, XOR + popcount table "
        f"{t_xor:.2f} s ({t_xor / t_blas:.1f}x slower), {found_xor} pairs both"
    )
    print(f"load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
