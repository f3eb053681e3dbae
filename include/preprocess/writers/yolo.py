"""Ultralytics YOLO: ``data.yaml``, ``images/<split>/`` and ``labels/<split>/`` with ``class cx cy w h`` lines.

Coordinates are fractions of the image with 8 decimals (6, the common choice, moves a box edge
by up to 0.0003 px on a 640 px image; 8 keeps a round trip within 1e-5 px). YOLO label files
have no field for a note, so flagged boxes are listed in ``quality_flags.csv`` (label file,
line, class, flag) next to ``data.yaml``; they stay in the label files.
"""

from __future__ import annotations

import csv
import io
import posixpath

import yaml

from include import storage
from include.preprocess.writers.base import SPLIT_FOLDERS, ExportData, flag_of, images_of, write_files

FLAGS_CSV = "quality_flags.csv"


def _line(r: object, width: float, height: float) -> str:
    cx, cy = (r.xmin + r.xmax) / 2 / width, (r.ymin + r.ymax) / 2 / height
    w, h = (r.xmax - r.xmin) / width, (r.ymax - r.ymin) / height
    return f"{int(r.class_id)} {cx:.8f} {cy:.8f} {w:.8f} {h:.8f}\n"


def write_yolo(data: ExportData, output_uri: str) -> tuple[dict[str, str], list[str]]:
    targets, labels, flags = {}, {}, []
    splits = sorted(set(data.table["split"]), key=list(SPLIT_FOLDERS).index)
    for image, rows in images_of(data.table):
        first = rows[0]
        folder = SPLIT_FOLDERS.get(first.split, first.split)
        label = f"labels/{folder}/{posixpath.splitext(image)[0]}.txt"
        lines = [_line(r, float(first.width), float(first.height)) for r in rows]
        labels[storage.join(output_uri, label)] = "".join(lines).encode()
        targets[first.image_uri] = storage.join(output_uri, "images", folder, image)
        flags += [
            (label, n, r.class_name, r.quality_issue) for n, r in enumerate(rows, start=1) if flag_of(r.quality_issue)
        ]
    config = {
        "path": ".",
        **{SPLIT_FOLDERS.get(s, s): f"images/{SPLIT_FOLDERS.get(s, s)}" for s in splits},
        "nc": len(data.classes),
        "names": dict(sorted(data.classes.items())),
    }
    files = write_files(labels)
    files.append(storage.write_text(storage.join(output_uri, "data.yaml"), yaml.safe_dump(config, sort_keys=False)))
    if flags:
        buf = io.StringIO()
        writer = csv.writer(buf)
        writer.writerow(["label_file", "line", "class", "flag"])
        writer.writerows(flags)
        files.append(storage.write_text(storage.join(output_uri, FLAGS_CSV), buf.getvalue()))
    return targets, files
