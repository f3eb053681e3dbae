"""Small synthetic detection data sets written straight to im2rec-format RecordIO, for tests and benchmarks.

Coloured circles, squares and triangles (and more classes by colour) on noisy backgrounds; the
train channel gets a mirrored copy of every image, like the pipeline's RecordIO build.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

SHAPES = ("circle", "square", "triangle")
COLOURS = ((230, 40, 40), (40, 200, 40), (40, 80, 230), (230, 200, 30), (200, 40, 200))


def class_names(num_classes: int) -> list[str]:
    """``circle``, ``square``, ``triangle``, then those shapes in a second colour."""
    return [f"{SHAPES[i % 3]}{'' if i < 3 else '_' + str(i // 3)}" for i in range(num_classes)]


def draw_image(rng: np.random.Generator, width: int, height: int, num_classes: int, max_objects: int
               ) -> tuple[np.ndarray, list[list[float]]]:
    """An RGB image and its objects ``[cls, xmin, ymin, xmax, ymax]`` (normalized)."""
    import cv2

    base = rng.integers(60, 200, size=3)
    img = np.clip(base + rng.normal(0, 25, size=(height, width, 3)), 0, 255).astype(np.uint8)
    objects: list[list[float]] = []
    taken: list[tuple[int, int, int, int]] = []
    for _ in range(int(rng.integers(1, max_objects + 1))):
        side = int(rng.integers(min(width, height) // 6, min(width, height) // 3))
        for _attempt in range(20):
            x0, y0 = int(rng.integers(0, width - side)), int(rng.integers(0, height - side))
            box = (x0, y0, x0 + side, y0 + side)
            if all(box[2] <= t[0] or box[0] >= t[2] or box[3] <= t[1] or box[1] >= t[3] for t in taken):
                break
        else:
            continue
        taken.append(box)
        cls = int(rng.integers(0, num_classes))
        colour = tuple(int(c) for c in COLOURS[(cls + cls // 3) % len(COLOURS)])
        shape = SHAPES[cls % 3]
        x0, y0, x1, y1 = box
        if shape == "circle":
            cv2.circle(img, ((x0 + x1) // 2, (y0 + y1) // 2), side // 2, colour, -1)
        elif shape == "square":
            cv2.rectangle(img, (x0, y0), (x1 - 1, y1 - 1), colour, -1)
        else:
            pts = np.array([[(x0 + x1) // 2, y0], [x0, y1 - 1], [x1 - 1, y1 - 1]], dtype=np.int32)
            cv2.fillPoly(img, [pts], colour)
        objects.append([cls, x0 / width, y0 / height, x1 / width, y1 / height])
    return img, objects


def _write_channel(folder: Path, name: str, samples: list[tuple[np.ndarray, list[list[float]]]]) -> int:
    import cv2
    import mxnet as mx

    folder.mkdir(parents=True, exist_ok=True)
    writer = mx.recordio.MXIndexedRecordIO(str(folder / f"{name}.idx"), str(folder / f"{name}.rec"), "w")
    for key, (img, objects) in enumerate(samples):
        label = np.array([2, 5] + [v for obj in objects for v in obj], dtype=np.float32)
        header = mx.recordio.IRHeader(0, label, key, 0)
        ok, jpeg = cv2.imencode(".jpg", cv2.cvtColor(img, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95])
        assert ok
        writer.write_idx(key, mx.recordio.pack(header, jpeg.tobytes()))
    writer.close()
    return len(samples)


def write_shapes_recordio(
    root: Path,
    n_train: int,
    n_validation: int,
    *,
    size: tuple[int, int] = (128, 128),
    num_classes: int = 3,
    max_objects: int = 3,
    flip: bool = True,
    seed: int = 0,
) -> dict[str, int]:
    """Write ``root/train/train.rec``, ``root/validation/validation.rec`` (+ .idx) and ``root/classes.json``.

    Returns the record counts per channel (train doubled by mirrored copies when ``flip``).
    """
    rng = np.random.default_rng(seed)
    width, height = size
    train = [draw_image(rng, width, height, num_classes, max_objects) for _ in range(n_train)]
    if flip:
        train += [
            (img[:, ::-1].copy(), [[c, 1 - x1, y0, 1 - x0, y1] for c, x0, y0, x1, y1 in objs]) for img, objs in train
        ]
    validation = [draw_image(rng, width, height, num_classes, max_objects) for _ in range(n_validation)]
    root.mkdir(parents=True, exist_ok=True)
    (root / "classes.json").write_text(json.dumps({str(i): n for i, n in enumerate(class_names(num_classes))}))
    return {
        "train": _write_channel(root / "train", "train", train),
        "validation": _write_channel(root / "validation", "validation", validation),
    }
