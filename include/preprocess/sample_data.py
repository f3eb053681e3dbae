"""The embedded sample data set: drawn shapes a detector can learn, as real JPEG files.

Five classes told apart by shape and colour (a red circle, a blue square, a green
triangle, a yellow cross, a purple ring), with varied sizes, aspect ratios and positions,
on textured, noisy backgrounds with distracting lines. Every image has its own random
generator seeded from ``(seed, image index)``, so the same seed gives byte-identical
files whatever the order or parallelism of the generation.

Layouts: ``cub`` writes the CUB-200-2011 layout (one object per image, classes named like
``001.circle``, a stratified train/test split with about one image in five in test);
``groundtruth`` writes a SageMaker Ground Truth output manifest (``output.manifest``, label
attribute ``shapes``, relative ``source-ref``) with 1..``max_objects`` objects per image and
no split of its own.

    python -m include.preprocess.sample_data OUT [--images N] [--layout cub|groundtruth]
"""

from __future__ import annotations

import argparse
import math
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

from include import storage
from include.preprocess.readers.groundtruth import groundtruth_line

if TYPE_CHECKING:
    import numpy as np

#: class name -> BGR colour (OpenCV order)
SHAPES: dict[str, tuple[int, int, int]] = {
    "circle": (40, 40, 220),
    "square": (220, 110, 30),
    "triangle": (60, 170, 40),
    "cross": (30, 200, 235),
    "ring": (200, 60, 170),
}
LAYOUTS = ("cub", "groundtruth")
LABEL_ATTRIBUTE = "shapes"
JPEG_QUALITY = 90
CUB_FOLDER = "CUB_200_2011"
MANIFEST = "output.manifest"

Box = tuple[int, int, int, int]  # xmin, ymin, xmax, ymax (pixels, max exclusive)


def _background(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """A muted tint, low-frequency (mostly brightness) texture and a few thin grey distracting lines."""
    import cv2
    import numpy as np

    base = rng.integers(80, 180) + rng.integers(-20, 21, size=3)  # a muted tint: the shapes are the saturated things
    grid = (height // 24 + 2, width // 24 + 2)
    texture = rng.normal(0, 30, size=(*grid, 1)) + rng.normal(0, 8, size=(*grid, 3))
    texture = cv2.resize(texture, (width, height), interpolation=cv2.INTER_CUBIC)
    image = np.clip(base + texture, 0, 255).astype(np.uint8)
    for _ in range(int(rng.integers(2, 7))):
        p1 = (int(rng.integers(0, width)), int(rng.integers(0, height)))
        p2 = (int(rng.integers(0, width)), int(rng.integers(0, height)))
        grey = int(rng.integers(40, 220))
        cv2.line(image, p1, p2, (grey, grey, grey), int(rng.integers(1, 3)), cv2.LINE_AA)
    return image


def _overlap(a: Box, b: Box) -> float:
    """Intersection over the smaller box's area."""
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    if w <= 0 or h <= 0:
        return 0.0
    return w * h / min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))


def _place(rng: np.random.Generator, width: int, height: int, taken: list[Box]) -> Box | None:
    """A box of varied size and aspect ratio inside the image, overlapping others little (None if none fits)."""
    for _ in range(30):
        side = rng.uniform(0.2, 0.5) * min(width, height)
        aspect = math.exp(rng.uniform(math.log(0.6), math.log(1.6)))
        w, h = max(12, round(side * math.sqrt(aspect))), max(12, round(side / math.sqrt(aspect)))
        x0, y0 = int(rng.integers(2, width - w - 1)), int(rng.integers(2, height - h - 1))
        box = (x0, y0, x0 + w, y0 + h)
        if all(_overlap(box, other) < 0.2 for other in taken):
            return box
    return None


def _draw(image: np.ndarray, shape: str, box: Box, rng: np.random.Generator) -> None:
    """Draw ``shape`` filling ``box`` (pixels x0..x1-1, y0..y1-1) in its colour, jittered."""
    import cv2
    import numpy as np

    colour = tuple(int(c) for c in np.clip(np.array(SHAPES[shape]) + rng.integers(-25, 26, size=3), 0, 255))
    x0, y0, x1, y1 = box
    x1, y1 = x1 - 1, y1 - 1  # last pixel inside the box
    w, h = x1 - x0, y1 - y0
    centre, axes = ((x0 + x1) // 2, (y0 + y1) // 2), (w // 2, h // 2)
    if shape == "circle":
        cv2.ellipse(image, centre, axes, 0, 0, 360, colour, -1, cv2.LINE_AA)
    elif shape == "ring":
        thickness = max(3, min(w, h) // 5)
        inner = (axes[0] - thickness // 2, axes[1] - thickness // 2)
        cv2.ellipse(image, centre, inner, 0, 0, 360, colour, thickness, cv2.LINE_AA)
    elif shape == "square":
        cv2.rectangle(image, (x0, y0), (x1, y1), colour, -1)
    elif shape == "triangle":
        points = np.array([[x0, y1], [x1, y1], [(x0 + x1) // 2, y0]], dtype=np.int32)
        cv2.fillPoly(image, [points], colour, cv2.LINE_AA)
    else:  # cross
        cv2.rectangle(image, (x0, centre[1] - h // 6), (x1, centre[1] + h // 6), colour, -1)
        cv2.rectangle(image, (centre[0] - w // 6, y0), (centre[0] + w // 6, y1), colour, -1)


def render(seed: int, index: int, image_size: tuple[int, int], classes: list[int]) -> tuple[bytes, list, tuple]:
    """One image: JPEG bytes, ``[(class index, box)]`` and its (width, height).

    ``classes`` are the objects to draw (class indices into :data:`SHAPES`); objects that
    find no free place are left out. The image is 80-100 % of ``image_size`` on each side.
    """
    import cv2
    import numpy as np

    rng = np.random.default_rng([seed, index])
    width = int(rng.integers(int(image_size[0] * 0.8), image_size[0] + 1))
    height = int(rng.integers(int(image_size[1] * 0.8), image_size[1] + 1))
    image = _background(rng, width, height)
    names = list(SHAPES)
    objects: list[tuple[int, Box]] = []
    for class_index in classes:
        box = _place(rng, width, height, [b for _, b in objects])
        if box is None:
            continue
        _draw(image, names[class_index], box, rng)
        objects.append((class_index, box))
    noisy = np.clip(image + rng.normal(0, 7, size=image.shape), 0, 255).astype(np.uint8)
    ok, encoded = cv2.imencode(".jpg", noisy, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise RuntimeError(f"could not encode sample image {index}")
    return encoded.tobytes(), objects, (width, height)


def _write(path: Path, data: bytes | str) -> None:
    storage.write_bytes(str(path), data.encode() if isinstance(data, str) else data)


def _cub(out: Path, n_images: int, seed: int, image_size: tuple[int, int], workers: int) -> Path:
    import numpy as np

    root = out / CUB_FOLDER
    names = list(SHAPES)
    class_of = np.random.default_rng(seed).permutation(np.arange(n_images) % len(names))
    folders = {k: f"{k + 1:03d}.{name}" for k, name in enumerate(names)}
    paths, nth_in_class, seen = [], [], dict.fromkeys(range(len(names)), 0)
    for i in range(n_images):
        c = int(class_of[i])
        seen[c] += 1
        nth_in_class.append(seen[c])
        paths.append(f"{folders[c]}/{names[c]}_{i + 1:05d}.jpg")

    def one(i: int) -> str:
        data, objects, _ = render(seed, i, image_size, [int(class_of[i])])
        _write(root / "images" / paths[i], data)
        (_, (x0, y0, x1, y1)) = objects[0]
        return f"{i + 1} {x0:.1f} {y0:.1f} {x1 - x0:.1f} {y1 - y0:.1f}"

    with ThreadPoolExecutor(workers) as pool:
        boxes = list(pool.map(one, range(n_images)))
    _write(root / "classes.txt", "".join(f"{k + 1} {folders[k]}\n" for k in range(len(names))))
    _write(root / "images.txt", "".join(f"{i + 1} {p}\n" for i, p in enumerate(paths)))
    _write(root / "image_class_labels.txt", "".join(f"{i + 1} {int(c) + 1}\n" for i, c in enumerate(class_of)))
    _write(root / "bounding_boxes.txt", "".join(f"{line}\n" for line in boxes))
    # every fifth image of a class (the 2nd, 7th, ...) is a test image, so each class has both splits
    _write(root / "train_test_split.txt", "".join(f"{i + 1} {int(k % 5 != 2)}\n" for i, k in enumerate(nth_in_class)))
    return root


def _groundtruth(
    out: Path, n_images: int, seed: int, image_size: tuple[int, int], max_objects: int, workers: int
) -> Path:
    import numpy as np

    class_map = dict(enumerate(SHAPES))

    def one(i: int) -> str:
        rng = np.random.default_rng([seed, i, 1])
        wanted = [int(c) for c in rng.integers(0, len(SHAPES), size=int(rng.integers(1, max_objects + 1)))]
        data, objects, (width, height) = render(seed, i, image_size, wanted)
        path = f"images/sample_{i + 1:05d}.jpg"
        _write(out / path, data)
        boxes = [(c, x0, y0, x1 - x0, y1 - y0) for c, (x0, y0, x1, y1) in objects]
        return groundtruth_line(
            path,
            (width, height, 3),
            boxes,
            class_map,
            LABEL_ATTRIBUTE,
            "labeling-job/sample-shapes",
            "2024-01-01T00:00:00.000000",
        )

    with ThreadPoolExecutor(workers) as pool:
        lines = list(pool.map(one, range(n_images)))
    _write(out / MANIFEST, "".join(f"{line}\n" for line in lines))
    return out


def generate_sample(
    output_dir: str | Path,
    n_images: int = 300,
    seed: int = 0,
    layout: str = "cub",
    max_objects: int = 1,
    image_size: tuple[int, int] = (320, 288),
    workers: int = 4,
) -> Path:
    """Write the sample data set under ``output_dir``; returns the data set root to ingest.

    ``image_size`` is (width, height), the largest an image gets. ``cub`` returns
    ``<output_dir>/CUB_200_2011`` and needs ``max_objects == 1``; ``groundtruth`` returns
    ``output_dir`` (holding ``output.manifest`` and ``images/``).
    """
    if layout not in LAYOUTS:
        raise ValueError(f"unknown sample layout {layout!r}; expected one of {', '.join(LAYOUTS)}")
    if n_images < 1 or max_objects < 1:
        raise ValueError(f"n_images and max_objects must be positive, got {n_images} and {max_objects}")
    if layout == "cub" and max_objects != 1:
        raise ValueError("the CUB-200-2011 layout holds one box per image: use max_objects=1 or layout='groundtruth'")
    if min(image_size) < 64:
        raise ValueError(f"image_size must be at least 64x64, got {image_size}")
    out = Path(output_dir).expanduser().resolve()
    if layout == "cub":
        return _cub(out, n_images, seed, image_size, workers)
    return _groundtruth(out, n_images, seed, image_size, max_objects, workers)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m include.preprocess.sample_data", description=__doc__.split("\n")[0]
    )
    parser.add_argument("output", help="folder to write the data set into")
    parser.add_argument("--images", type=int, default=300, help="number of images (default 300)")
    parser.add_argument("--layout", choices=LAYOUTS, default="cub")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--max-objects", type=int, default=None, help="objects per image at most (groundtruth; default 4)"
    )
    args = parser.parse_args(argv)
    max_objects = args.max_objects or (4 if args.layout == "groundtruth" else 1)
    root = generate_sample(
        args.output, n_images=args.images, seed=args.seed, layout=args.layout, max_objects=max_objects
    )
    print(root)


if __name__ == "__main__":
    main()
