"""What the boxes look like to the detector that will train on them: class balance, sizes, shapes, density.

These are summary checks: they name no single bad box but warn where training will suffer,
with the figures behind each warning kept in the check's details (``quality.json``) and drawn
in ``quality.html``.

Sizes and shapes are judged against the SSD's anchors at the configured ``base_network`` and
``image_shape`` (:func:`include.training.ssd_network.layout`, scaled as the network builds
them). Images are resized to ``image_shape`` squared, so a box is ``w_norm * N`` by
``h_norm * N`` network pixels. Its best overlap with any anchor shape, both centred
(an upper bound: the anchor grid only lowers it), says whether the matcher can ever give it an
anchor at IoU 0.5 (``ssd_trainer.MATCH_IOU``); a box none reaches trains on its single forced
best match only. Those boxes are split by why: too small for the first layer's anchors, or too
elongated for the anchor ratios (1/3 to 3).

- ``class_balance``: a class with under a tenth of the largest class's boxes (:data:`IMBALANCE`),
  or under :data:`MIN_TRAIN_BOXES` training boxes.
- ``box_sizes``: COCO size bands on the original pixels (small < 32², medium < 96², large) and the
  share of boxes too small for the anchors (a warning above :data:`UNREACHABLE_SHARE`).
- ``aspect_ratios``: the share of boxes too elongated for the anchors (same threshold).
- ``object_counts``: objects per image; an image with more objects than the detector returns
  (``ssd_trainer.POST_NMS``) can never be fully found.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from include.preprocess.quality.checks import Check
from include.training.ssd_network import layout
from include.training.ssd_trainer import MATCH_IOU, POST_NMS

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

IMBALANCE = 10.0
MIN_TRAIN_BOXES = 10
UNREACHABLE_SHARE = 0.10
COCO_BANDS = (("small", 32.0**2), ("medium", 96.0**2), ("large", math.inf))
SIZE_BINS = 40
BLOCK_ROWS = 65_536  # boxes per block of the anchor overlap: 65,536 x ~40 anchors of float32 stay small
ASPECT_BINS = 33  # log2(w/h) from -4 to 4 in quarter steps


def anchor_shapes(base_network: str, image_shape: int) -> np.ndarray:
    """Every anchor shape ``(width, height)`` in network pixels, as GluonCV's SSDAnchorGenerator makes them."""
    import numpy as np

    spec = layout(base_network, image_shape)
    sizes = [s * image_shape / spec.reference_size for s in spec.sizes]
    shapes = []
    for i, ratios in enumerate(spec.ratios):
        small, large = sizes[i], sizes[i + 1]
        shapes += [(small, small), (math.sqrt(small * large),) * 2]
        shapes += [(small * math.sqrt(r), small / math.sqrt(r)) for r in ratios[1:]]
    return np.array(shapes, dtype=np.float64)


def best_anchor_iou(widths: np.ndarray, heights: np.ndarray, anchors: np.ndarray) -> np.ndarray:
    """Each box's best IoU with any anchor shape, both centred on the same point (float32, in blocks of rows)."""
    import numpy as np

    best = np.empty(len(widths), dtype=np.float32)
    aw, ah = anchors[:, 0].astype(np.float32), anchors[:, 1].astype(np.float32)
    for start in range(0, len(widths), BLOCK_ROWS):
        w = widths[start : start + BLOCK_ROWS, None].astype(np.float32)
        h = heights[start : start + BLOCK_ROWS, None].astype(np.float32)
        inter = np.minimum(w, aw) * np.minimum(h, ah)
        union = w * h + aw * ah - inter
        best[start : start + BLOCK_ROWS] = (inter / np.where(union > 0, union, np.inf)).max(axis=1)
    return best


def _histogram(values: np.ndarray, edges: np.ndarray) -> dict[str, list[float]]:
    import numpy as np

    counts, edges = np.histogram(np.clip(values, edges[0], edges[-1]), bins=edges)
    return {"edges": [round(float(e), 4) for e in edges], "counts": [int(c) for c in counts]}


def _log_edges(values: np.ndarray, low: float, high: float) -> np.ndarray:
    """Logarithmic bin edges over the values, stretched to show ``low``..``high`` too."""
    import numpy as np

    low = max(min(values.min(initial=low), low) * 0.9, 0.5)
    high = max(values.max(initial=high), high) * 1.1
    return np.geomspace(low, high, SIZE_BINS + 1)


def _share(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f} %" if whole else "0 %"


def class_balance(table: pd.DataFrame, image_code: np.ndarray, classes: dict[int, str]) -> Check:
    import numpy as np

    ids = table["class_id"].to_numpy()
    valid = (ids >= 0) & (ids < len(classes))
    boxes = np.bincount(ids[valid], minlength=len(classes))
    train = np.bincount(ids[valid & (table["split"].to_numpy(dtype=object) == "train")], minlength=len(classes))
    pairs = np.unique(image_code[valid].astype(np.int64) * len(classes) + ids[valid])  # (image, class) once
    images = dict(enumerate(np.bincount(pairs % len(classes), minlength=len(classes)).tolist()))
    problems = []
    largest = int(boxes.max()) if len(boxes) else 0
    top = classes[int(boxes.argmax())] if len(boxes) else ""
    for k, name in sorted(classes.items()):
        if 0 < boxes[k] and boxes[k] * IMBALANCE < largest:
            problems.append(
                f"class {name!r} has {boxes[k]} boxes, {largest / boxes[k]:.0f}x fewer than {top!r} "
                f"({largest}): the detector will favour the larger classes"
            )
        if 0 < train[k] < MIN_TRAIN_BOXES:
            problems.append(f"class {name!r} has only {train[k]} training boxes (fewer than {MIN_TRAIN_BOXES})")
    per_class = {
        name: {"boxes": int(boxes[k]), "training_boxes": int(train[k]), "images": int(images.get(k, 0))}
        for k, name in sorted(classes.items())
    }
    return Check(
        "class_balance",
        {"pandas"},
        evaluated=int(valid.sum()),
        details={"problems": problems, "classes": per_class, "imbalance_ratio": IMBALANCE},
    )


def _network_boxes(table: pd.DataFrame, image_shape: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Box width and height in network pixels, and which boxes have a positive, finite size."""
    import numpy as np

    w = (table["xmax_norm"] - table["xmin_norm"]).to_numpy(dtype="float64") * image_shape
    h = (table["ymax_norm"] - table["ymin_norm"]).to_numpy(dtype="float64") * image_shape
    ok = np.isfinite(w) & np.isfinite(h) & (w > 0) & (h > 0)
    return w, h, ok


def anchor_reach(table: pd.DataFrame, base_network: str, image_shape: int) -> dict[str, Any]:
    """Which boxes no anchor reaches at IoU 0.5, and why: too small or too elongated."""
    import numpy as np

    w, h, ok = _network_boxes(table, image_shape)
    anchors = anchor_shapes(base_network, image_shape)
    best = np.zeros(len(w))
    best[ok] = best_anchor_iou(w[ok], h[ok], anchors)
    unreachable = ok & (best < MATCH_IOU)
    spec = layout(base_network, image_shape)
    first = spec.sizes[0] * image_shape / spec.reference_size
    too_small = unreachable & (np.sqrt(np.where(ok, w * h, 0)) < first)
    return {
        "ok": ok,
        "w": w,
        "h": h,
        "best_iou": best,
        "too_small": too_small,
        "too_elongated": unreachable & ~too_small,
        "first_anchor": first,
        "anchors": anchors,
    }


def box_sizes(table: pd.DataFrame, reach: dict[str, Any], base_network: str, image_shape: int) -> Check:
    import numpy as np

    area = ((table["xmax"] - table["xmin"]) * (table["ymax"] - table["ymin"])).to_numpy(dtype="float64")
    limits = [upper for _, upper in COCO_BANDS[:-1]]
    band = np.where(np.isnan(area), -1, np.searchsorted(limits, area, side="right"))  # 0 small, 1 medium, 2 large
    ok, w, h = reach["ok"], reach["w"], reach["h"]
    n, small = int(ok.sum()), int(reach["too_small"].sum())
    side = np.sqrt(np.where(ok, w * h, 0))[ok]
    first = reach["first_anchor"]
    problems = []
    if n and small / n > UNREACHABLE_SHARE:
        most = "most boxes" if small / n > 0.5 else f"{_share(small, n)} of the boxes"
        problems.append(
            f"{most} ({small} of {n}) are too small for the SSD's first anchors at image_shape {image_shape} "
            f"({base_network}: first anchor {first:.0f} px, {first / image_shape:.0%} of the side): no anchor "
            f"overlaps them at IoU {MATCH_IOU:g}, so each trains on one forced match only. Anchors scale with "
            "image_shape, so crop or tile the images to make the objects a larger part of them"
        )
    original = np.sqrt(area[np.isfinite(area) & (area > 0)])
    network_edges = _log_edges(side, first / 2, image_shape)
    original_edges = _log_edges(original, 16.0, 128.0)  # COCO's band limits (32, 96) always in view
    return Check(
        "box_sizes",
        {"numpy"},
        evaluated=n,
        details={
            "problems": problems,
            "coco_bands": {name: int((band == k).sum()) for k, (name, _) in enumerate(COCO_BANDS)},
            "coco_bands_by_class": _bands_by_class(table, band),
            "image_shape": image_shape,
            "base_network": base_network,
            "first_anchor_px": round(first, 2),
            "too_small_for_anchors": small,
            "network_side_px": _histogram(side, network_edges),
            "original_side_px": _histogram(original, original_edges),
        },
    )


def _bands_by_class(table: pd.DataFrame, band: np.ndarray) -> dict[str, dict[str, int]]:
    """COCO band counts per class name (one bincount over class x band codes; ``band``: 0..2, -1 unknown)."""
    import numpy as np
    import pandas as pd

    names = [name for name, _ in COCO_BANDS]
    class_code, class_names = pd.factorize(table["class_name"])
    ok = (class_code >= 0) & (band >= 0)
    counts = np.bincount(class_code[ok] * len(names) + band[ok], minlength=len(class_names) * len(names))
    return {
        str(name): dict(zip(names, counts[k * len(names) : (k + 1) * len(names)].tolist(), strict=True))
        for k, name in sorted(enumerate(class_names), key=lambda p: str(p[1]))
    }


def aspect_ratios(reach: dict[str, Any]) -> Check:
    import numpy as np

    ok, w, h = reach["ok"], reach["w"], reach["h"]
    n, elongated = int(ok.sum()), int(reach["too_elongated"].sum())
    log_ratio = np.log2(w[ok] / h[ok])
    problems = []
    if n and elongated / n > UNREACHABLE_SHARE:
        problems.append(
            f"{_share(elongated, n)} of the boxes ({elongated} of {n}) are more elongated than the anchors "
            f"(width/height 1/3 to 3 in the network input): no anchor overlaps them at IoU {MATCH_IOU:g}"
        )
    ratios = sorted({round(float(a / b), 3) for a, b in reach["anchors"]})
    return Check(
        "aspect_ratios",
        {"numpy"},
        evaluated=n,
        details={
            "problems": problems,
            "too_elongated_for_anchors": elongated,
            "anchor_ratios": ratios,
            "log2_width_over_height": _histogram(log_ratio, np.linspace(-4, 4, ASPECT_BINS + 1)),
        },
    )


def object_counts(image_code: np.ndarray, max_objects: int) -> Check:
    import numpy as np

    per_image = np.bincount(image_code)
    per_image = per_image[per_image > 0]
    over = int((per_image > POST_NMS).sum())
    problems = []
    if over:
        problems.append(
            f"{over} image(s) hold more than {POST_NMS} objects, the most detections the model returns "
            f"(the largest holds {int(per_image.max())})"
        )
    top = max(int(per_image.max()) if len(per_image) else 1, 1)
    return Check(
        "object_counts",
        {"numpy"},
        evaluated=len(per_image),
        details={
            "problems": problems,
            "mean": round(float(per_image.mean()), 2) if len(per_image) else 0.0,
            "median": float(np.median(per_image)) if len(per_image) else 0.0,
            "max": top,
            "detections_returned": POST_NMS,
            "label_width_allows": max_objects,
            "objects_per_image": _histogram(per_image, np.arange(0.5, top + 1.5)),
        },
    )


def statistics_checks(
    table: pd.DataFrame,
    image_code: np.ndarray,
    classes: dict[int, str],
    base_network: str,
    image_shape: int,
    max_objects: int,
) -> dict[str, Check]:
    reach = anchor_reach(table, base_network, image_shape)
    checks = [
        class_balance(table, image_code, classes),
        box_sizes(table, reach, base_network, image_shape),
        aspect_ratios(reach),
        object_counts(image_code, max_objects),
    ]
    return {c.name: c for c in checks}
