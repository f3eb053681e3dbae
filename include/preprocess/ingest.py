"""Ingest: any supported data set layout -> the canonical annotation table.

Steps: read the layout (:mod:`include.preprocess.readers`), keep the selected classes and
renumber them 0..n-1 in the order of their original ids, take the data set's own split or
draw a seeded one stratified per class, verify every image in parallel
(:mod:`include.preprocess.images`), take each image's real size, and write
``annotations.parquet``, ``classes.json`` and ``ingest_issues.json`` under the output URI.
Entries that cannot become clean rows are listed in ``ingest_issues.json`` for the quality
gate, never dropped silently.

Extra columns after the canonical ones: ``annotated_width``/``annotated_height`` (as the
annotation wrote them, NaN when missing or zero; the real size wins), ``image_format`` and
``image_mode`` (detected from the file's content), ``converted`` (re-encoded as an RGB JPEG),
``source_image_uri`` (the file the annotations name) and ``content_hash`` (SHA-256 of it).
"""

from __future__ import annotations

import logging
import re
from dataclasses import fields
from typing import TYPE_CHECKING, Any

from include import storage
from include.preprocess.annotations import COLUMNS, SPLITS, add_normalized, conform, write_table
from include.preprocess.images import ImageCheck, verify_images
from include.preprocess.issues import Issue, write_issues
from include.preprocess.readers import SourceData, read_source

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

#: Extra columns kept after the canonical ones, with their dtypes.
EXTRA_COLUMNS: dict[str, str] = {
    "annotated_width": "float64",
    "annotated_height": "float64",
    "image_format": "string",
    "image_mode": "string",
    "converted": "bool",
    "source_image_uri": "string",
    "content_hash": "string",
    "coordinate_origin": "float64",  # what the source files count pixels from (VOC 1), for messages
}
CUB_PREFIX = re.compile(r"^\d+\.")


def resolve_classes(declared: dict[int, str], requested: list[str] | None) -> list[int]:
    """The original ids of the requested classes (all when ``requested`` is empty), sorted.

    A request matches an original id (``"17"``), a full name (``"017.Cardinal"``) or a name
    without its CUB number (``"Cardinal"``, case-insensitive). Unknown requests raise
    ``ValueError`` listing the data set's classes.
    """
    if not requested:
        return sorted(declared)
    by_name: dict[str, int] = {}
    for key, name in declared.items():
        by_name.setdefault(name.lower(), key)
        by_name.setdefault(CUB_PREFIX.sub("", name).lower(), key)
    keys = set()
    for token in requested:
        text = str(token).strip()
        key = int(text) if text.isdigit() and int(text) in declared else by_name.get(text.lower())
        if key is None:
            known = ", ".join(f"{k}:{v}" for k, v in sorted(declared.items())[:20])
            raise ValueError(
                f"class {text!r} is not in the data set (classes: {known}{' ...' if len(declared) > 20 else ''})"
            )
        keys.add(key)
    return sorted(keys)


def select_classes(source: SourceData, requested: list[str] | None) -> tuple[pd.DataFrame, dict[int, str], list[Issue]]:
    """Keep the requested classes' boxes with consecutive ids; returns (boxes, {id: name}, issues).

    Images with no box of a selected class leave the data set (that is what subsetting
    means), and so do the reader's issues about entries of other classes. A box of another
    class inside an image that stays would be an unlabelled object in a training image, so
    it is reported as a ``class_ids_known`` issue.
    """
    boxes, declared = source.boxes, source.classes
    keys = resolve_classes(declared, requested)
    new_id = {key: i for i, key in enumerate(keys)}
    names = {declared[k] for k in keys}
    keep = boxes["class_key"].isin(keys)
    kept_images = set(boxes.loc[keep, "image"])
    stray = boxes[~keep & boxes["image"].isin(kept_images)]
    issues = [i for i in source.issues if i.class_name is None or i.class_name in names]
    issues += [
        Issue(
            r.source_file,
            int(r.source_line),
            r.image,
            "class_ids_known",
            f"class {r.class_name!r} is outside the class selection but its image is kept",
            r.class_name,
        )
        for r in stray.itertuples()
    ]
    out = boxes[keep].copy()
    out["class_id"] = out["class_key"].map(new_id).astype("int64")
    return out, {new_id[k]: declared[k] for k in keys}, issues


def check_fractions(validation_fraction: float, test_fraction: float = 0.0) -> None:
    """The fractions of images drawn for validation and test: each in range, and train left over."""
    if not 0 < validation_fraction < 1:
        raise ValueError(f"validation_fraction must be in (0, 1), got {validation_fraction}")
    if not 0 <= test_fraction < 1:
        raise ValueError(f"test_fraction must be in [0, 1), got {test_fraction}")
    if validation_fraction + test_fraction >= 1:
        raise ValueError(
            f"validation_fraction {validation_fraction} + test_fraction {test_fraction} leave no training images"
        )


def _key_classes(boxes: pd.DataFrame) -> pd.Series:
    """Each image's majority class (the first box's class on ties), indexed by image."""
    import numpy as np

    order = boxes.assign(_pos=np.arange(len(boxes)))
    counts = order.groupby(["image", "class_id"], sort=False).agg(n=("_pos", "size"), first=("_pos", "min"))
    counts = counts.reset_index().sort_values(["image", "n", "first"], ascending=[True, False, True])
    return counts.drop_duplicates("image").set_index("image")["class_id"]


def assign_split(
    boxes: pd.DataFrame, validation_fraction: float, seed: int, test_fraction: float = 0.0
) -> tuple[pd.DataFrame, dict[str, str]]:
    """Draw the splits the data set does not bring, seeded and stratified by each image's majority class.

    Images without a split count as train. When the data set has no validation images,
    ``round(n * validation_fraction)`` of each class's n images move from train to validation; then,
    when it has no test images and ``test_fraction`` > 0, ``round(n * test_fraction)`` move from train
    to test (each at least one, and never the last train image; validation first, as training needs
    it and test is optional). Per class (in id order), its train images sorted by name are permuted
    with one ``numpy.random.default_rng(seed)``. Returns the table and where each split came from.
    """
    import numpy as np

    check_fractions(validation_fraction, test_fraction)
    own = boxes["split"] if "split" in boxes else boxes["image"].map(lambda _: None)
    given = set(own.dropna())
    key_class = _key_classes(boxes)
    image_split = dict(zip(boxes["image"], own.fillna("train").astype(object), strict=True))
    rng = np.random.default_rng(seed)
    sources = {s: "data set" for s in given}
    for target, fraction in (("validation", validation_fraction), ("test", test_fraction)):
        if target in given or fraction == 0:
            continue
        moved: set[str] = set()
        for _, images in sorted(key_class.groupby(key_class).groups.items()):
            pool = sorted(i for i in images if image_split[i] == "train")
            n_draw = min(max(round(len(images) * fraction), 1), len(pool) - 1) if len(pool) > 1 else 0
            moved.update(pool[i] for i in rng.permutation(len(pool))[:n_draw])
        for image in moved:
            image_split[image] = target
        sources[target] = f"seeded from train ({target}_fraction {fraction:g}, seed {seed})"
    sources.setdefault("train", "data set" if given else "seeded")
    out = boxes.assign(split=boxes["image"].map(image_split)).astype({"split": "string"})
    return out, {s: sources[s] for s in SPLITS if s in sources}


def apply_image_checks(boxes: pd.DataFrame, checks: dict[str, ImageCheck]) -> tuple[pd.DataFrame, list[Issue]]:
    """Rows of accepted images with their real sizes and file facts; issues for rows of rejected ones."""
    import pandas as pd

    columns = [f.name for f in fields(ImageCheck)]
    facts = pd.DataFrame([vars(c) for c in checks.values()], columns=columns).rename(
        columns={"source_uri": "source_image_uri", "format": "image_format", "mode": "image_mode"}
    )
    merged = boxes.drop(columns=["image"]).rename(columns={"image_uri": "source_image_uri"})
    merged = merged.merge(facts, on="source_image_uri", how="left", validate="many_to_one")
    bad = merged["error"].notna()
    issues = [
        Issue(r.source_file, int(r.source_line), r.image, "image_files", r.error, r.class_name)
        for r in merged[bad].itertuples()
    ]
    return merged[~bad].drop(columns=["error", "annotated_depth", "class_key"]), issues


def size_mismatches(table: pd.DataFrame) -> int:
    """Images whose annotated width or height (where given) differs from the real one."""
    differs = ((table["annotated_width"] != table["width"]) & table["annotated_width"].notna()) | (
        (table["annotated_height"] != table["height"]) & table["annotated_height"].notna()
    )
    return int(table.loc[differs, "image"].nunique())


def ingest(
    fmt: str,
    source_uri: str,
    output_uri: str,
    classes: list[str] | None = None,
    label_attribute: str | None = None,
    validation_fraction: float = 0.2,
    seed: int = 42,
    image_policy: str = "convert",
    workers: int | None = None,
    test_fraction: float = 0.15,
) -> dict[str, Any]:
    """Read a data set (``fmt``: cub, voc, groundtruth or imagejson) into the canonical table under ``output_uri``.

    Writes ``annotations.parquet``, ``classes.json`` and ``ingest_issues.json`` (plus converted
    images under ``images/``) and returns a small JSON-able summary.
    """
    check_fractions(validation_fraction, test_fraction)  # also where the data set brings its own split
    output_uri = storage.normalize(output_uri)
    source = read_source(fmt, source_uri, label_attribute=label_attribute, workers=workers or 8)
    boxes, class_map, issues = select_classes(source, classes)
    boxes, split_sources = assign_split(boxes, validation_fraction, seed, test_fraction)
    images = dict(zip(boxes["image_uri"], boxes["image"], strict=True))
    checks = verify_images(images, output_uri, policy=image_policy, workers=workers)
    table, image_issues = apply_image_checks(boxes, checks)
    table["coordinate_origin"] = source.coordinate_origin
    issues += image_issues
    table = conform(add_normalized(table)[[*COLUMNS, *EXTRA_COLUMNS]].astype(EXTRA_COLUMNS))
    uris = write_table(table, class_map, output_uri)
    uris["issues"] = write_issues(issues, output_uri)
    summary = _summary(fmt, source.root, table, class_map, issues, split_sources, source.notes, uris)
    log.info(
        "ingested %s images, %s boxes, %s classes from %s; %s issues",
        summary["images"],
        summary["boxes"],
        summary["classes"],
        source.root,
        len(issues),
    )
    return summary


def _summary(
    fmt: str,
    root: str,
    table: pd.DataFrame,
    class_map: dict[int, str],
    issues: list[Issue],
    split_sources: dict[str, str],
    notes: dict[str, int],
    uris: dict[str, str],
) -> dict[str, Any]:
    by_check: dict[str, int] = {}
    for issue in issues:
        by_check[issue.check] = by_check.get(issue.check, 0) + 1
    per_image = table.drop_duplicates("image")
    return {
        "format": fmt,
        "source": root,
        "images": int(len(per_image)),
        "boxes": int(len(table)),
        "classes": len(class_map),
        "splits": {
            split: {"images": int((per_image["split"] == split).sum()), "boxes": int((table["split"] == split).sum())}
            for split in SPLITS
        },
        "split_source": split_sources,
        "converted_images": int(per_image["converted"].sum()),
        "size_mismatches": size_mismatches(per_image),
        "issues": len(issues),
        "issues_by_check": by_check,
        **({"notes": notes} if notes else {}),
        "uris": uris,
    }
