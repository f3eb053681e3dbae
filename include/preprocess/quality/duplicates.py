"""Near-duplicate images and train/held-out leakage, from the perceptual hashes ingest computed.

Each image has imagehash's 256-bit DCT hash (``phash`` with ``hash_size=16``) of itself and of
its mirror (:func:`include.preprocess.images.perceptual_hashes`). Two images are near-copies
when their hashes differ in at most ``distance`` bits (default 40). Measured on BCCD (364 blood
smears, 640 x 480, a hard homogeneous set): resized (50-125 %), re-encoded (JPEG q50-95, PNG),
brightened, contrast-stretched and greyscale copies stay within 6 bits; the one real re-shot
pair (BloodImage_00037 / 00038) is 26 bits apart; distinct images are 88 bits or more apart.
Crops beyond a few percent are out of reach of any whole-image hash.

All pairs are compared at once with BLAS: bits as +-1 float32 vectors, Hamming distance =
(256 - x . y) / 2, in blocks of rows (12,000 images in about 3 s on 2 cores; numpy 1.23 has no
popcount, and a BK-tree in Python is slower at a radius of 40). Mirrors are compared across
splits only (a mirrored training image in validation is leakage; within a split the training
flips make it no worse than any near-copy).

- ``near_duplicates``: the later image of a near pair within one split (not byte-identical
  pairs, which ``unique_images`` reports); dropping keeps the first of each group.
- ``split_leakage``: an image of a held-out split (validation, test) that is a copy or near-copy
  of an image of an earlier split (train first): evaluating on it measures memory, not
  generalisation. Dropping removes the held-out member; the training image stays.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from include.preprocess.annotations import SPLITS
from include.preprocess.quality.checks import Check

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

HASH_BITS = 256
DEFAULT_DISTANCE = 40
BLOCK_ROWS = 1024  # rows per BLAS block: 1024 x 12,000 float32 distances = 49 MB
PAIRS_LISTED = 1000  # quality.json lists this many pairs per check (every offending row is listed anyway)
SPLIT_WORDS = {"train": "training", "validation": "validation", "test": "test"}


@dataclass(frozen=True)
class Images:
    """One entry per image: its first table row, name, split, content hash and hash bits (+-1 float32)."""

    first_row: np.ndarray
    names: np.ndarray
    splits: np.ndarray
    content: np.ndarray
    bits: np.ndarray
    mirror_bits: np.ndarray


def hash_bits(hex_hashes: Any) -> np.ndarray:
    """Hex hashes -> an (N, 256) +-1 float32 matrix (an empty or missing hash cannot match: all zeros)."""
    import numpy as np

    out = np.zeros((len(hex_hashes), HASH_BITS), dtype=np.float32)
    for i, text in enumerate(hex_hashes):
        if isinstance(text, str) and len(text) == HASH_BITS // 4:
            out[i] = np.unpackbits(np.frombuffer(bytes.fromhex(text), dtype=np.uint8)) * 2.0 - 1.0
    return out


def images_of(table: pd.DataFrame, image_code: np.ndarray) -> Images:
    import numpy as np

    first_row = np.unique(image_code, return_index=True)[1]
    rows = table.iloc[first_row]
    return Images(
        first_row=first_row,
        names=rows["image"].to_numpy(dtype=object),
        splits=rows["split"].to_numpy(dtype=object),
        content=rows["content_hash"].to_numpy(dtype=object),
        bits=hash_bits(rows["phash"].tolist()),
        mirror_bits=hash_bits(rows["phash_mirror"].tolist()),
    )


def near_pairs(a: np.ndarray, b: np.ndarray | None, distance: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(i, j, d)`` of every pair within ``distance`` bits: rows of ``a`` against rows of ``b``.

    With ``b`` None, ``a`` against itself and only ``i < j``. A zero row (no hash) matches nothing.
    """
    import numpy as np

    found: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    other = a if b is None else b
    valid = np.abs(other).sum(axis=1) > 0
    for start in range(0, len(a), BLOCK_ROWS):
        block = a[start : start + BLOCK_ROWS]
        first = start if b is None else 0
        dist = (HASH_BITS - block @ other[first:].T) / 2
        hit = (dist <= distance) & valid[first:]
        if b is None:
            hit &= np.arange(first, len(other))[None, :] > np.arange(start, start + len(block))[:, None]
        hit &= (np.abs(block).sum(axis=1) > 0)[:, None]
        i, j = np.nonzero(hit)
        found.append((i + start, j + first, dist[i, j].astype(np.int64)))
    if not found:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, empty
    return tuple(np.concatenate(parts) for parts in zip(*found, strict=True))  # type: ignore[return-value]


def _pairs(images: Images, distance: int) -> list[tuple[int, int, int, bool]]:
    """``(i, j, distance, mirrored)`` image pairs: direct within and across splits, mirrored across splits."""
    import numpy as np

    pairs: dict[tuple[int, int], tuple[int, bool]] = {}
    for i, j, d in zip(*near_pairs(images.bits, None, distance), strict=True):
        pairs[(int(i), int(j))] = (int(d), False)
    rank = np.array([SPLITS.index(s) if s in SPLITS else len(SPLITS) for s in images.splits])
    held_out = np.nonzero(rank > 0)[0]
    for later_rank in sorted(set(rank[held_out])):
        later = np.nonzero(rank == later_rank)[0]
        earlier = np.nonzero(rank < later_rank)[0]
        if len(earlier) and len(later):
            for i, j, d in zip(*near_pairs(images.mirror_bits[later], images.bits[earlier], distance), strict=True):
                key = tuple(sorted((int(later[i]), int(earlier[j]))))
                if key not in pairs or pairs[key][0] > d:
                    pairs[key] = (int(d), True)  # type: ignore[index]
    return [(i, j, d, m) for (i, j), (d, m) in sorted(pairs.items())]


def duplicate_checks(
    table: pd.DataFrame, image_code: np.ndarray, members: dict[int, Any], distance: int = DEFAULT_DISTANCE
) -> dict[str, Check]:
    """The ``near_duplicates`` and ``split_leakage`` checks (``members``: image code -> its table positions)."""
    import numpy as np

    near = Check("near_duplicates", {"imagehash"}, evaluated=0)
    leak = Check("split_leakage", {"imagehash"}, evaluated=0)
    if "phash" not in table:
        for check in (near, leak):
            check.skipped = "the table has no perceptual hashes (phash): ingest it again"
        return {c.name: c for c in (near, leak)}
    if not table["phash"].fillna("").ne("").any():
        for check in (near, leak):
            check.skipped = "no image of the table has a perceptual hash (phash)"
        return {c.name: c for c in (near, leak)}
    images = images_of(table, image_code)
    rank = np.array([SPLITS.index(s) if s in SPLITS else len(SPLITS) for s in images.splits])
    near.evaluated = leak.evaluated = len(images.names)
    listed: dict[str, list[dict[str, Any]]] = {"near_duplicates": [], "split_leakage": []}
    for i, j, d, mirrored in _pairs(images, distance):
        how = f"phash distance {d} bits{', mirrored' if mirrored else ''}"
        if rank[i] == rank[j]:
            if images.content[i] == images.content[j]:
                continue  # byte-identical: unique_images reports it
            check, keep, flagged = near, i, j
            reason = f"near-copy of {images.names[keep]} in the same split ({how})"
        else:
            keep, flagged = (i, j) if rank[i] < rank[j] else (j, i)
            check = leak
            what = "copy" if images.content[i] == images.content[j] else "near-copy"
            reason = (
                f"{SPLIT_WORDS.get(images.splits[flagged], images.splits[flagged])} image is a {what} of "
                f"{SPLIT_WORDS.get(images.splits[keep], images.splits[keep])} image {images.names[keep]} ({how})"
            )
        positions = members[int(image_code[images.first_row[flagged]])]
        check.add_rows(table, positions, [reason] * len(positions), [images.names[keep]] * len(positions))
        listed[check.name].append(
            {
                "image": images.names[flagged],
                "split": images.splits[flagged],
                "other": images.names[keep],
                "other_split": images.splits[keep],
                "distance": d,
                "mirrored": mirrored,
            }
        )
    for check in (near, leak):
        pairs = listed[check.name]
        flagged_images = len({p["image"] for p in pairs})
        check.details = {
            "distance": distance,
            "pairs_found": len(pairs),
            "images_flagged": flagged_images,
            "pairs": pairs[:PAIRS_LISTED],
        }
    return {c.name: c for c in (near, leak)}
