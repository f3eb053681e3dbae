"""The quality gate's catalogue: every check, what it means, its GX rules and how a failure is worded.

The checks and their order are the report's; :func:`rules` builds the GX expectations of the
table-wide ones (:mod:`include.preprocess.quality.expectations` evaluates them), the others come
from ingest (:mod:`include.preprocess.issues`) or pandas (split coverage, in :mod:`.gate`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from include.preprocess.issues import INGEST_CHECKS

if TYPE_CHECKING:
    import pandas as pd

BOX = ["xmin", "ymin", "xmax", "ymax"]


def written(row: Any, corner: str) -> str:
    """A corner as the annotation file writes it, beside the 0-based table's value where they differ.

    VOC files count pixels from 1 (``origin`` 1): ``xmax 504 in the file (503 in the 0-based
    table)``, so a person can find the value in the file; other formats count from 0.
    """
    value, origin = getattr(row, corner), getattr(row, "origin", 0.0) or 0.0
    if not origin or math.isnan(value):
        return f"{corner} {value:g}"
    return f"{corner} {value + origin:g} in the file ({value:g} in the 0-based table)"

DESCRIPTIONS: dict[str, str] = {
    **INGEST_CHECKS,
    "class_ids_known": "class ids are in 0..n-1 and named as in classes.json; no box of an unknown or unselected class",
    "box_values_present": "box coordinates are numbers (not NaN)",
    "box_inside_image": "boxes lie inside the image, within the tolerance",
    "box_ordered": "xmin < xmax and ymin < ymax",
    "box_min_side": "both box sides are at least the minimum side",
    "unique_boxes": "no box appears twice (same image, class and coordinates)",
    "unique_images": "no image appears twice under different names (same content hash)",
    "objects_per_image": "objects per image fit the training label_width: (label_width - 2) / 5",
    "split_coverage": "train and validation are non-empty and every class has boxes in both (test: gaps noted)",
    "image_sizes_match": "the annotated image size, where given, equals the real one (the real one is used)",
}
ORDER = [
    "image_files",
    "annotation_files",
    "images_have_boxes",
    "class_ids_known",
    "box_values_present",
    "box_inside_image",
    "box_ordered",
    "box_min_side",
    "unique_boxes",
    "unique_images",
    "objects_per_image",
    "split_coverage",
    "image_sizes_match",
]
WARNINGS = {"image_sizes_match"}


@dataclass
class Check:
    """One check's outcome: its counts and offending entries.

    Table rows (keyed by their position in ``annotations.parquet``) appear once per check,
    every failed rule's reason joined; ingest entries have no table row.
    """

    name: str
    engines: set[str] = field(default_factory=set)
    expectations: list[str] = field(default_factory=list)
    evaluated: int | None = None
    rows: dict[int, dict[str, Any]] = field(default_factory=dict)
    entries: list[dict[str, Any]] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    skipped: str | None = None

    @property
    def failed(self) -> int:
        return len(self.rows) + len(self.entries) + len(self.details.get("problems", []))

    @property
    def severity(self) -> str:
        return "warning" if self.name in WARNINGS else "error"

    @property
    def findings(self) -> list[dict[str, Any]]:
        return [self.rows[k] for k in sorted(self.rows)] + self.entries

    def add_rows(self, table: pd.DataFrame, positions: Any, reasons: list[str]) -> None:
        """Record table rows at ``positions`` as offending, each with its reason."""
        sub = table.iloc[list(positions)]
        columns = [sub[c] for c in ("source_file", "source_line", "image", "class_name", *BOX)]
        for pos, reason, (file, line, image, name, *box) in zip(
            positions, reasons, zip(*columns, strict=True), strict=True
        ):
            known = self.rows.get(int(pos))
            if known:
                known["reason"] += f"; {reason}"
            else:
                self.rows[int(pos)] = {
                    "row": int(pos),
                    "file": file,
                    "line": int(line),
                    "image": image,
                    "class_name": name,
                    "box": [None if math.isnan(v) else float(v) for v in box],
                    "reason": reason,
                }

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": DESCRIPTIONS[self.name],
            "severity": self.severity,
            "engine": " + ".join(sorted(self.engines)),
            "expectations": self.expectations,
            "success": self.failed == 0,
            "evaluated": self.evaluated,
            "failed": self.failed,
            **({"skipped": self.skipped} if self.skipped else {}),
            **self.details,
            "rows": self.findings,
        }


@dataclass(frozen=True)
class Rule:
    """A GX expectation on the ``boxes`` or ``images`` frame, the check it belongs to, and how to word a failure."""

    check: str
    frame: str
    expectation: Any
    reason: Callable[[Any], str]  # offending row (itertuples) -> reason
    duplicate_of: tuple[str, ...] = ()  # GX flags every member of a duplicate group; keep the first


def rules(classes: dict[int, str], tolerance: float, min_box_side: float, max_objects: int, sizes: bool) -> list[Rule]:
    import great_expectations.expectations as gxe

    n = len(classes)
    tol = f"(tolerance {tolerance:g} px)"
    out = [
        Rule(
            "class_ids_known",
            "boxes",
            gxe.ExpectColumnValuesToBeBetween(column="class_id", min_value=0, max_value=n - 1),
            lambda r: f"class_id {r.class_id} is not in 0..{n - 1}",
        ),
        Rule(
            "class_ids_known",
            "boxes",
            gxe.ExpectColumnPairValuesToBeEqual(column_A="class_id", column_B="name_id", ignore_row_if="neither"),
            lambda r: f"class {r.class_id} is named {r.class_name!r}; classes.json says {classes.get(r.class_id)!r}",
        ),
        *(
            Rule(
                "box_values_present",
                "boxes",
                gxe.ExpectColumnValuesToNotBeNull(column=c),
                lambda r, c=c: f"{c} is missing",
            )
            for c in BOX
        ),
        Rule(
            "box_inside_image",
            "boxes",
            gxe.ExpectColumnValuesToBeBetween(column="xmin", min_value=-tolerance),
            lambda r: f"{written(r, 'xmin')} is left of the image {tol}",
        ),
        Rule(
            "box_inside_image",
            "boxes",
            gxe.ExpectColumnValuesToBeBetween(column="ymin", min_value=-tolerance),
            lambda r: f"{written(r, 'ymin')} is above the image {tol}",
        ),
        Rule(
            "box_inside_image",
            "boxes",
            gxe.ExpectColumnPairValuesAToBeGreaterThanB(
                column_A="x_limit", column_B="xmax", or_equal=True, ignore_row_if="neither"
            ),
            lambda r: f"{written(r, 'xmax')} is beyond the image width {r.width:g} {tol}",
        ),
        Rule(
            "box_inside_image",
            "boxes",
            gxe.ExpectColumnPairValuesAToBeGreaterThanB(
                column_A="y_limit", column_B="ymax", or_equal=True, ignore_row_if="neither"
            ),
            lambda r: f"{written(r, 'ymax')} is beyond the image height {r.height:g} {tol}",
        ),
        Rule(
            "box_ordered",
            "boxes",
            gxe.ExpectColumnPairValuesAToBeGreaterThanB(column_A="xmax", column_B="xmin", ignore_row_if="neither"),
            lambda r: f"{written(r, 'xmax')} is not greater than {written(r, 'xmin')}",
        ),
        Rule(
            "box_ordered",
            "boxes",
            gxe.ExpectColumnPairValuesAToBeGreaterThanB(column_A="ymax", column_B="ymin", ignore_row_if="neither"),
            lambda r: f"{written(r, 'ymax')} is not greater than {written(r, 'ymin')}",
        ),
        Rule(
            "box_min_side",
            "boxes",
            gxe.ExpectColumnValuesToBeBetween(column="box_width", min_value=min_box_side),
            lambda r: f"box width {r.box_width:g} px is below the minimum side {min_box_side:g} px",
        ),
        Rule(
            "box_min_side",
            "boxes",
            gxe.ExpectColumnValuesToBeBetween(column="box_height", min_value=min_box_side),
            lambda r: f"box height {r.box_height:g} px is below the minimum side {min_box_side:g} px",
        ),
        Rule(
            "unique_boxes",
            "boxes",
            gxe.ExpectCompoundColumnsToBeUnique(column_list=["image_code", "class_id", *BOX], ignore_row_if="never"),
            lambda r: f"same image, class and box as {r.first_file}:{r.first_line}",
            duplicate_of=("image_code", "class_id", *BOX),
        ),
        Rule(
            "unique_images",
            "images",
            gxe.ExpectColumnValuesToBeUnique(column="hash_code"),
            lambda r: f"same content as {r.first_image}",
            duplicate_of=("hash_code",),
        ),
        Rule(
            "objects_per_image",
            "images",
            gxe.ExpectColumnValuesToBeBetween(column="n_boxes", max_value=max_objects),
            lambda r: f"image has {r.n_boxes} boxes; label_width allows at most {max_objects}",
        ),
    ]
    if sizes:
        out += [
            Rule(
                "image_sizes_match",
                "boxes",
                gxe.ExpectColumnPairValuesToBeEqual(
                    column_A="annotated_width", column_B="width", ignore_row_if="neither"
                ),
                lambda r: f"annotated width {r.annotated_width:g} differs from the image's {r.width:g}",
            ),
            Rule(
                "image_sizes_match",
                "boxes",
                gxe.ExpectColumnPairValuesToBeEqual(
                    column_A="annotated_height", column_B="height", ignore_row_if="neither"
                ),
                lambda r: f"annotated height {r.annotated_height:g} differs from the image's {r.height:g}",
            ),
        ]
    return out
