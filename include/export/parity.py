"""Parity: the exported model on ONNX Runtime gives the MXNet endpoint's detections for the same images.

Both models get the same decoded images and each runs its own serving code path (MXNet: the endpoint's
:class:`include.model_artifact.Detector`; ONNX Runtime: :class:`include.ssd_numpy.OnnxSsd`), so the check
covers preprocessing, the graph and the post-processing. Per image, every MXNet detection must have a
detection of the same class on ONNX Runtime with the score and each normalized coordinate within the
tolerances, one to one, and none may be left over on either side.

Why a matching and not a row-by-row comparison: floating-point drift between the runtimes (1e-6) can swap
two detections whose scores tie to 1e-6, and that is not a difference a user can see; a missing,
extra, reclassified or moved detection is, and fails the check.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from itertools import islice
from typing import Any

import numpy as np

from include import storage

#: The channels parity reads, first found first: images the model was not trained on.
PARITY_CHANNELS = ("test", "validation")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
#: Unmatched rows listed in a result (all are counted).
MAX_LISTED = 20


class ParityError(RuntimeError):
    """The exported model's detections differ from the MXNet model's beyond the tolerances."""


@dataclass(frozen=True)
class Tolerances:
    """Largest differences accepted: score, and each corner coordinate (normalized to 0..1)."""

    score: float = 1e-3
    box: float = 1e-3


@dataclass
class ImageParity:
    """One image's comparison."""

    name: str
    reference: int
    candidate: int
    matched: int = 0
    same_order: bool = False
    max_score_diff: float = 0.0
    max_box_diff: float = 0.0
    unmatched_reference: list[list[float]] = field(default_factory=list)
    unmatched_candidate: list[list[float]] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.unmatched_reference and not self.unmatched_candidate


def match_detections(name: str, reference: np.ndarray, candidate: np.ndarray, tolerances: Tolerances) -> ImageParity:
    """Pair each reference row with the closest free candidate row of its class within the tolerances.

    Rows are ``[class_id, score, xmin, ymin, xmax, ymax]``, best first. Reference rows are taken in
    order; each takes the candidate row with the smallest largest difference.
    """
    result = ImageParity(name, len(reference), len(candidate))
    free = np.ones(len(candidate), dtype=bool)
    pairs = []
    for i, row in enumerate(reference):
        score_diff = np.abs(candidate[:, 1] - row[1])
        box_diff = np.abs(candidate[:, 2:6] - row[2:6]).max(axis=1, initial=0.0)
        fits = free & (candidate[:, 0] == row[0]) & (score_diff <= tolerances.score) & (box_diff <= tolerances.box)
        if not fits.any():
            result.unmatched_reference.append(row.tolist())
            continue
        j = int(np.argmin(np.where(fits, np.maximum(score_diff, box_diff), np.inf)))
        free[j] = False
        pairs.append((i, j))
        result.max_score_diff = max(result.max_score_diff, float(score_diff[j]))
        result.max_box_diff = max(result.max_box_diff, float(box_diff[j]))
    result.matched = len(pairs)
    result.unmatched_candidate = candidate[free].tolist()
    result.same_order = result.passed and all(i == j for i, j in pairs)
    return result


def _batches(items: Iterable[tuple[str, np.ndarray]], size: int) -> Iterator[list[tuple[str, np.ndarray]]]:
    iterator = iter(items)
    while batch := list(islice(iterator, size)):
        yield batch


def compare_models(
    reference: Any,
    candidate: Any,
    images: Iterable[tuple[str, np.ndarray]],
    tolerances: Tolerances = Tolerances(),
    batch_size: int = 8,
    names: tuple[str, str] = ("mxnet", "onnxruntime"),
) -> dict[str, Any]:
    """Run both models (``predict_batch``) over ``(name, RGB image)`` pairs; the parity result (JSON-able).

    ``passed`` is true when every image's detections match; ``images_in_same_order`` counts the
    images whose detections also come in the same order. Timings are each model's seconds in all.
    """
    seconds = dict.fromkeys(names, 0.0)
    compared: list[ImageParity] = []
    for batch in _batches(images, batch_size):
        pixels = [image for _, image in batch]
        outputs = []
        for model, runtime in zip((reference, candidate), names, strict=True):
            started = time.perf_counter()
            outputs.append(model.predict_batch(pixels))
            seconds[runtime] += time.perf_counter() - started
        for (name, _), ref, cand in zip(batch, *outputs, strict=True):
            compared.append(match_detections(name, ref, cand, tolerances))
    if not compared:
        raise ValueError("parity needs at least one image")
    failed = [c for c in compared if not c.passed]
    unmatched = [
        {"image": c.name, "model": runtime, "row": [round(v, 6) for v in row]}
        for c in failed
        for runtime, rows in zip(names, (c.unmatched_reference, c.unmatched_candidate), strict=True)
        for row in rows
    ]
    return {
        "passed": not failed,
        "reference": names[0],
        "candidate": names[1],
        "tolerances": asdict(tolerances),
        "images": len(compared),
        "detections": {names[0]: sum(c.reference for c in compared), names[1]: sum(c.candidate for c in compared)},
        "matched": sum(c.matched for c in compared),
        "images_in_same_order": sum(c.same_order for c in compared),
        "images_failed": [c.name for c in failed],
        "unmatched": len(unmatched),
        "unmatched_rows": unmatched[:MAX_LISTED],
        "max_score_diff": max(c.max_score_diff for c in compared),
        "max_box_diff": max(c.max_box_diff for c in compared),
        "ms_per_image": {runtime: round(1000 * s / len(compared), 1) for runtime, s in seconds.items()},
    }


def summary_line(parity: dict[str, Any]) -> str:
    """One sentence for logs and errors."""
    verdict = "equal" if parity["passed"] else "DIFFERENT"
    counts = parity["detections"]
    return (
        f"{parity['candidate']} vs {parity['reference']} on {parity['images']} images: detections {verdict} "
        f"({counts[parity['reference']]} vs {counts[parity['candidate']]}, {parity['matched']} matched, "
        f"{parity['unmatched']} unmatched; max score diff {parity['max_score_diff']:.2g}, "
        f"max box diff {parity['max_box_diff']:.2g}; tolerances {parity['tolerances']})"
    )


# --- images ---------------------------------------------------------------------------------


def channel_images(recordio_uri: str, limit: int) -> Iterator[tuple[str, np.ndarray]]:
    """Up to ``limit`` images of a RecordIO build's held-out channel (``test`` if there is one, else ``validation``)."""
    from include.evaluation.channel_data import read_channel

    channel = next(
        (storage.join(recordio_uri, c) for c in PARITY_CHANNELS if storage.isdir(storage.join(recordio_uri, c))),
        None,
    )
    if channel is None:
        raise FileNotFoundError(f"{recordio_uri} has no {' or '.join(PARITY_CHANNELS)} channel to check parity on")
    for item in islice(read_channel(channel), limit):
        yield item.name, item.image


def folder_images(folder_uri: str, limit: int) -> Iterator[tuple[str, np.ndarray]]:
    """Up to ``limit`` JPEG/PNG files of a folder, in name order."""
    from include.model_artifact import decode_image

    files = sorted(u for u in storage.listdir(folder_uri) if u.lower().endswith(IMAGE_SUFFIXES))
    if not files:
        raise FileNotFoundError(f"{folder_uri} holds no {', '.join(IMAGE_SUFFIXES)} files to check parity on")
    for uri in files[:limit]:
        try:
            yield uri.rsplit("/", 1)[-1], decode_image(storage.read_bytes(uri))
        except ValueError as exc:
            raise ValueError(f"{uri}: {exc}") from None
