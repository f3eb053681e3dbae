"""Small canonical tables for the RecordIO tests (JPEGs written here, a slice of BCCD) and what they should give."""

from __future__ import annotations

import importlib.util
import os
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tests.support.shared_data import BCCD

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MXNET_CPU_WORKER_NTHREADS", "1")

#: ``tools/im2rec.py`` shipped inside the mxnet wheel (found without importing MXNet).
IM2REC = Path(importlib.util.find_spec("mxnet").origin).parent / "tools" / "im2rec.py"


@dataclass
class Dataset:
    root: Path  # images, relative paths as in the table's 'image' column
    table_uri: str  # folder with annotations.parquet + classes.json
    table: object  # the canonical DataFrame
    classes: dict[int, str]


def canonical(rows: list[dict], classes: dict[int, str]):
    """A canonical table from rows holding image, image_uri, size, class_id, pixel box, split."""
    import pandas as pd

    from include.preprocess.annotations import add_normalized, conform

    df = pd.DataFrame(rows)
    df["class_name"] = df["class_id"].map(classes)
    df["source_line"] = range(1, len(df) + 1)
    return conform(add_normalized(df))


def write_dataset(root: Path, table_dir: Path, rows: list[dict], classes: dict[int, str]) -> Dataset:
    from include.preprocess.annotations import write_table

    table = canonical(rows, classes)
    write_table(table, classes, str(table_dir))
    return Dataset(root, str(table_dir), table, classes)


def synthetic_images(root: Path) -> list[dict]:
    """Write a few JPEGs (landscape, portrait, grey-level) and a PNG; one to three boxes each."""
    import cv2
    import numpy as np

    rng = np.random.default_rng(7)
    specs = [
        ("birds/a.jpg", 120, 90, "train"),
        ("birds/b.jpg", 90, 130, "train"),
        ("birds/c.jpg", 100, 100, "train"),
        ("d.png", 110, 80, "train"),
        ("e.jpg", 64, 48, "validation"),
        ("f.jpg", 80, 120, "validation"),
    ]
    rows = []
    for n, (rel, w, h, split) in enumerate(specs):
        yy, xx = np.mgrid[0:h, 0:w]
        img = np.stack([xx * 255 // w, yy * 255 // h, (xx + yy) * 127 // (w + h) + 60], axis=2).astype(np.uint8)
        img = cv2.GaussianBlur(img + rng.integers(0, 24, img.shape, dtype=np.uint8), (5, 5), 0)
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(path), img, [cv2.IMWRITE_JPEG_QUALITY, 90])
        for k in range(1 + n % 3):
            x0, y0 = rng.integers(0, w // 2), rng.integers(0, h // 2)
            x1, y1 = rng.integers(x0 + 5, w + 1), rng.integers(y0 + 5, h + 1)
            rows.append(
                {
                    "image": rel,
                    "image_uri": path.as_uri(),
                    "width": w,
                    "height": h,
                    "depth": 3,
                    "class_id": (n + k) % 2,
                    "xmin": float(x0),
                    "ymin": float(y0),
                    "xmax": float(x1),
                    "ymax": float(y1),
                    "split": split,
                    "source_file": "synthetic.csv",
                }
            )
    return rows


def bccd_rows(names: list[str], split: str) -> list[dict]:
    """Boxes of BCCD images from their VOC XML (classes RBC=0, WBC=1, Platelets=2)."""
    ids = {"RBC": 0, "WBC": 1, "Platelets": 2}
    rows = []
    for name in names:
        xml = BCCD / "Annotations" / f"{name}.xml"
        tree = ET.parse(xml).getroot()
        size = tree.find("size")
        w, h = int(size.findtext("width")), int(size.findtext("height"))
        for obj in tree.iter("object"):
            box = obj.find("bndbox")
            xmin, ymin, xmax, ymax = (float(box.findtext(k)) for k in ("xmin", "ymin", "xmax", "ymax"))
            if xmax <= xmin or ymax <= ymin:
                continue
            rows.append(
                {
                    "image": f"JPEGImages/{name}.jpg",
                    "image_uri": (BCCD / "JPEGImages" / f"{name}.jpg").as_uri(),
                    "width": w,
                    "height": h,
                    "depth": 3,
                    "class_id": ids[obj.findtext("name").strip()],
                    "xmin": xmin,
                    "ymin": ymin,
                    "xmax": min(xmax, w),
                    "ymax": min(ymax, h),
                    "split": split,
                    "source_file": f"Annotations/{name}.xml",
                }
            )
    return rows


def expected_records(table, flip: str) -> dict[str, list[tuple[str, np.ndarray]]]:
    """(lst path, [[cls, xmin, ymin, xmax, ymax], ...]) per split, computed from the table directly."""
    out = {}
    for split in ("train", "validation", "test"):
        part = table[table["split"] == split]
        records = []
        for image in sorted(part["image"].unique()):
            boxes = part[part["image"] == image][["class_id", "xmin_norm", "ymin_norm", "xmax_norm", "ymax_norm"]]
            boxes = boxes.to_numpy(dtype=float)
            records.append((image, boxes))
            if flip == "all" or (flip == "train" and split == "train"):
                mirrored = boxes.copy()
                mirrored[:, 1], mirrored[:, 3] = 1 - boxes[:, 3], 1 - boxes[:, 1]
                records.append(("flipped/" + image, mirrored))
        out[split] = records
    return out
