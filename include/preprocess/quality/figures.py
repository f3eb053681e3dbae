"""The quality report's pictures: charts drawn from the checks' figures, sample images, offending boxes.

Every chart is drawn from numbers the checks put in ``quality.json`` (per-split class counts,
histograms with their edges, size bands, anchor sizes), so the page and the JSON show the same
figures. Pictures are written under ``figures/`` beside ``quality.json`` (which names them) and
embedded in ``quality.html``. Thumbnails are capped (``quality.thumbnails``) so a report of a
large, dirty data set stays small; ``quality.json`` still lists every offending row.
"""

from __future__ import annotations

from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from include.preprocess.quality.checks import IMAGE_CHECKS
from include.reports.figures import class_color, new_figure, to_png
from include.reports.thumbnails import HIGHLIGHT, Mark, draw, load, side_by_side, to_jpeg

if TYPE_CHECKING:
    import pandas as pd

FIGURES = "figures"
SAMPLES = 12
SPLIT_COLORS = {"train": "#1f77b4", "validation": "#ff7f0e", "test": "#2ca02c"}
MAX_CLASSES_CHARTED = 30


def _bars(ax: Any, per_split: dict[str, dict[str, int]]) -> None:
    import numpy as np

    names = list(next(iter(per_split.values()), {}))
    names = sorted(names, key=lambda n: -sum(c.get(n, 0) for c in per_split.values()))[:MAX_CLASSES_CHARTED]
    y = np.arange(len(names))
    height = 0.8 / max(len(per_split), 1)
    for k, (split, counts) in enumerate(per_split.items()):
        values = [counts.get(n, 0) for n in names]
        ax.barh(y + k * height, values, height, label=split, color=SPLIT_COLORS.get(split, "#7f7f7f"))
    ax.set_yticks(y + height * (len(per_split) - 1) / 2, names, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("boxes")
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(True, axis="x", alpha=0.3)


def class_counts_chart(per_split: dict[str, dict[str, int]]) -> bytes:
    """Boxes per class and split (horizontal bars; the largest classes when there are many)."""
    n = len(next(iter(per_split.values()), {}))
    fig = new_figure((8.0, min(1.2 + 0.32 * min(n, MAX_CLASSES_CHARTED), 10.0)))
    ax = fig.add_subplot()
    _bars(ax, per_split)
    more = f" (the {MAX_CLASSES_CHARTED} largest of {n})" if n > MAX_CLASSES_CHARTED else ""
    ax.set_title(f"Boxes per class and split{more}", fontsize=12, fontweight="bold")
    return to_png(fig)


def _histogram(ax: Any, hist: dict[str, list[float]], color: str, log_x: bool = False) -> None:
    import numpy as np

    edges, counts = np.array(hist["edges"]), np.array(hist["counts"])
    ax.bar(edges[:-1], counts, width=np.diff(edges), align="edge", color=color, edgecolor="white", linewidth=0.4)
    if log_x:
        ax.set_xscale("log")
    ax.grid(True, alpha=0.3)


def box_sizes_chart(details: dict[str, Any]) -> bytes:
    """Box side (sqrt of the area) in original pixels with COCO's bands, and in network pixels with the anchors."""
    fig = new_figure((10.0, 4.0))
    left, right = fig.subplots(1, 2)
    _histogram(left, details["original_side_px"], "#1f77b4", log_x=True)
    for limit, name in ((32, "small | medium"), (96, "medium | large")):
        left.axvline(limit, color="#d62728", linestyle="--", linewidth=1)
        left.annotate(
            name, (limit, 0.97), xycoords=("data", "axes fraction"), fontsize=7, rotation=90, ha="right", va="top"
        )
    bands = details["coco_bands"]
    left.set_title("Original pixels: " + ", ".join(f"{k} {v}" for k, v in bands.items()), fontsize=10)
    left.set_xlabel("box side = sqrt(width x height), px")
    left.set_ylabel("boxes")
    _histogram(right, details["network_side_px"], "#2ca02c", log_x=True)
    first = details["first_anchor_px"]
    right.axvline(first, color="#d62728", linestyle="--", linewidth=1, label="first anchor")
    right.axvline(first / 2**0.5, color="#d62728", linestyle=":", linewidth=1, label="smaller: IoU < 0.5 with it")
    right.legend(loc="upper right", fontsize=7)
    right.set_title(
        f"Network input ({details['image_shape']} px, {details['base_network']}): first anchor {first:.0f} px",
        fontsize=10,
    )
    right.set_xlabel("box side in the network input, px")
    fig.suptitle(
        f"Box sizes ({details['too_small_for_anchors']} too small for any anchor)", fontsize=12, fontweight="bold"
    )
    return to_png(fig)


def aspect_chart(details: dict[str, Any]) -> bytes:
    """log2(width / height) in the network input, with the anchors' aspect ratios."""
    import math

    fig = new_figure((8.0, 3.8))
    ax = fig.add_subplot()
    _histogram(ax, details["log2_width_over_height"], "#9467bd")
    for ratio in details["anchor_ratios"]:
        ax.axvline(math.log2(ratio), color="#d62728", linestyle="--", linewidth=0.8)
    ax.set_xlabel("log2(width / height) in the network input (dashed: anchor ratios)")
    ax.set_ylabel("boxes")
    ax.set_title(
        f"Box aspect ratios ({details['too_elongated_for_anchors']} too elongated for any anchor)",
        fontsize=12,
        fontweight="bold",
    )
    return to_png(fig)


def objects_chart(details: dict[str, Any]) -> bytes:
    """Objects per image, with what label_width allows and what the detector returns."""
    fig = new_figure((8.0, 3.8))
    ax = fig.add_subplot()
    _histogram(ax, details["objects_per_image"], "#8c564b")
    for limit, name in (
        (details["label_width_allows"], "label_width allows"),
        (details["detections_returned"], "detections returned"),
    ):
        if limit <= details["max"] * 1.2:
            ax.axvline(limit, color="#d62728", linestyle="--", linewidth=1)
            ax.annotate(
                name, (limit, 0.97), xycoords=("data", "axes fraction"), fontsize=8, rotation=90, ha="right", va="top"
            )
    ax.set_xlabel("objects in the image")
    ax.set_ylabel("images")
    ax.set_title(f"Objects per image (mean {details['mean']}, max {details['max']})", fontsize=12, fontweight="bold")
    return to_png(fig)


def charts(checks: dict[str, dict[str, Any]]) -> list[tuple[str, str, bytes, str]]:
    """``(name, title, PNG, where its numbers are in quality.json)`` for each chart the checks' figures allow."""
    makers = [
        (
            "class_counts",
            "Boxes per class and split",
            "split_coverage",
            "boxes",
            lambda c: class_counts_chart(c["boxes"]),
        ),
        ("box_sizes", "Box sizes", "box_sizes", "network_side_px", box_sizes_chart),
        ("aspect_ratios", "Box aspect ratios", "aspect_ratios", "log2_width_over_height", aspect_chart),
        ("objects_per_image", "Objects per image", "object_counts", "objects_per_image", objects_chart),
    ]
    out = []
    for name, title, check, key, make in makers:
        details = checks.get(check) or {}
        if details.get(key):
            out.append((name, title, make(details), f"checks[{check}]"))
    return out


def _marks(rows: pd.DataFrame, highlight: int | None) -> list[Mark]:
    """Every box of an image in its class colour, the highlighted row thick and red on top."""
    marks = [
        Mark((r.xmin, r.ymin, r.xmax, r.ymax), class_color(int(r.class_id)))
        for r in rows.itertuples()
        if r.Index != highlight
    ]
    if highlight is not None:
        r = rows.loc[highlight]
        marks.append(Mark((r.xmin, r.ymin, r.xmax, r.ymax), HIGHLIGHT, width=2, label=str(r.class_name)))
    return marks


def thumbnails(table: pd.DataFrame, checks: list[dict[str, Any]], limit: int) -> dict[str, bytes]:
    """Draw the first ``limit`` offending boxes (per-image checks: images) of the checks, in report order.

    Sets ``thumbnail`` on each finding drawn (its path under the quality folder); returns
    ``{path: JPEG}``. Each image is decoded once, on a thread pool.
    """
    wanted: dict[str, list[tuple[str, int | None, str | None]]] = defaultdict(list)
    by_image = table.groupby("image", sort=False).indices
    done: dict[tuple[str, int | None], str] = {}
    for check in checks:
        per_image = check["name"] in IMAGE_CHECKS
        for finding in check["rows"]:
            if finding.get("row") is None or len(done) >= limit:
                continue
            key = (check["name"], None if per_image else finding["row"])
            image = finding["image"]
            if per_image and (check["name"], image) in done:
                continue
            path = f"{FIGURES}/boxes/{check['name']}-{finding['row']}.jpg"
            done[(check["name"], image) if per_image else key] = path
            finding["thumbnail"] = path
            wanted[image].append((path, key[1], finding.get("related_image")))
    images = {image: table.iloc[by_image[image]] for image in wanted}
    related = {r for items in wanted.values() for _, _, r in items if r and r in by_image}
    images.update({image: table.iloc[by_image[image]] for image in related})

    def drawn(image: str, highlight: int | None) -> Any:
        rows = images[image]
        pixels, width, height = load(rows["image_uri"].iloc[0])
        return draw(pixels, (width, height), _marks(rows, highlight))

    def render(image: str) -> dict[str, bytes]:
        out = {}
        for path, row, other in wanted[image]:
            try:
                pictures = [drawn(image, row)] + ([drawn(other, None)] if other in images else [])
            except (OSError, ValueError):
                continue  # moved or unreadable since ingest: the finding keeps its text
            out[path] = to_jpeg(side_by_side(*pictures))
        return out

    with ThreadPoolExecutor(4) as pool:
        return {path: data for part in pool.map(render, sorted(wanted)) for path, data in part.items()}


def samples(table: pd.DataFrame, count: int = SAMPLES, seed: int = 0) -> list[dict[str, Any]]:
    """A seeded sample of images spread over the classes, each drawn with every box (``{"image", "file", "jpeg"}``)."""
    import numpy as np

    per_image = table.drop_duplicates("image")
    if per_image.empty or count <= 0:
        return []
    rng = np.random.default_rng(seed)
    queues = [list(rng.permutation(sorted(images))) for _, images in per_image.groupby("class_id")["image"]]
    chosen: list[str] = []  # round robin over the classes (of each image's first box)
    while len(chosen) < count and any(queues):
        chosen += [queue.pop() for queue in queues if queue][: count - len(chosen)]
    by_image = table.groupby("image", sort=False).indices

    def render(k_image: tuple[int, str]) -> dict[str, Any] | None:
        k, image = k_image
        rows = table.iloc[by_image[image]]
        try:
            pixels, width, height = load(rows["image_uri"].iloc[0])
        except (OSError, ValueError):
            return None  # moved or unreadable since ingest
        marks = [Mark((r.xmin, r.ymin, r.xmax, r.ymax), class_color(int(r.class_id)), 2) for r in rows.itertuples()]
        jpeg = to_jpeg(draw(pixels, (width, height), marks))
        return {
            "image": image,
            "split": rows["split"].iloc[0],
            "boxes": len(rows),
            "file": f"{FIGURES}/samples/{k:02d}.jpg",
            "jpeg": jpeg,
        }

    with ThreadPoolExecutor(4) as pool:
        return [sample for sample in pool.map(render, enumerate(chosen)) if sample is not None]
