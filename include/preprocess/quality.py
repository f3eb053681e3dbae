"""The bounding-box quality gate: GX Core expectations over the canonical table, plus ingest's issues.

Checks, and what evaluates them:

========================  ==================  ==================================================
check                     engine              rule
========================  ==================  ==================================================
image_files               ingest              image exists inside the root and decodes (policy)
annotation_files          ingest              each listed image has its annotation file
images_have_boxes         ingest              every image has at least one box
class_ids_known           GX + ingest         class_id in 0..n-1 and named as in classes.json;
                                              no box of an unknown / unselected class
box_values_present        GX                  box coordinates are not NaN
box_inside_image          GX                  -tol <= xmin, ymin; xmax <= width + tol; ymax <= height + tol
box_ordered               GX                  xmin < xmax and ymin < ymax
box_min_side              GX                  xmax - xmin and ymax - ymin >= min_box_side
unique_boxes              GX                  no two rows with the same image, class and box
unique_images             GX                  no two images with the same content hash
objects_per_image         GX                  boxes per image <= (label_width - 2) // 5
split_coverage            pandas              both splits non-empty, every class in both
image_sizes_match         GX (warning)        annotated size, where given, equals the real one
========================  ==================  ==================================================

GX (``great_expectations`` 1.x, an ephemeral context created per call, a pandas data
source with one dataframe batch for the boxes and one for the per-image frame) evaluates
every row-wise rule with ``result_format="COMPLETE"``, whose ``unexpected_index_list`` gives
the offending rows. Plain pandas/numpy does what GX cannot express or does slowly: the
derived columns the expectations read (limits with the tolerance, box sides, boxes per
image, the id classes.json gives each class name: GX's pair-in-set expectation walks the
rows in Python), integer codes for the strings (GX copies its frame for many metrics),
keeping the first of each duplicate group (GX flags every member), and the split coverage,
counts per (split, class) that would otherwise need one batch per split. A NaN coordinate
fails ``box_values_present``; the pair rules then also name it (NaN compares false).

``quality.json`` lists every check with its counts and every offending row with its source
file and line/record and the reason; ``quality.html`` is the same for people. Policy
``fail`` raises :class:`QualityGateError` after writing them; ``drop`` removes the offending
boxes, lists them in ``quarantine.json`` and writes the cleaned table. The coverage check
cannot be fixed by dropping rows: it is evaluated on the table that would be written and
stops the gate under both policies.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from include import storage
from include.preprocess.annotations import (
    ANNOTATIONS_FILE,
    CLASSES_FILE,
    SPLITS,
    read_classes,
    read_table,
    write_table,
)
from include.preprocess.issues import INGEST_CHECKS, Issue, read_issues

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

log = logging.getLogger(__name__)

POLICIES = ("fail", "drop")
QUALITY_JSON = "quality.json"
QUALITY_HTML = "quality.html"
QUARANTINE_JSON = "quarantine.json"
BOX = ["xmin", "ymin", "xmax", "ymax"]

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
    "split_coverage": "both splits are non-empty and every class has boxes in both",
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


class QualityGateError(ValueError):
    """The data failed the gate; the message names the first offending rows and the report."""


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


def _rules(classes: dict[int, str], tolerance: float, min_box_side: float, max_objects: int, sizes: bool) -> list[Rule]:
    import great_expectations.expectations as gxe

    n = len(classes)
    tol = f"(tolerance {tolerance:g} px)"
    rules = [
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
            lambda r: f"xmin {r.xmin:g} is left of the image {tol}",
        ),
        Rule(
            "box_inside_image",
            "boxes",
            gxe.ExpectColumnValuesToBeBetween(column="ymin", min_value=-tolerance),
            lambda r: f"ymin {r.ymin:g} is above the image {tol}",
        ),
        Rule(
            "box_inside_image",
            "boxes",
            gxe.ExpectColumnPairValuesAToBeGreaterThanB(
                column_A="x_limit", column_B="xmax", or_equal=True, ignore_row_if="neither"
            ),
            lambda r: f"xmax {r.xmax:g} is beyond the image width {r.width:g} {tol}",
        ),
        Rule(
            "box_inside_image",
            "boxes",
            gxe.ExpectColumnPairValuesAToBeGreaterThanB(
                column_A="y_limit", column_B="ymax", or_equal=True, ignore_row_if="neither"
            ),
            lambda r: f"ymax {r.ymax:g} is beyond the image height {r.height:g} {tol}",
        ),
        Rule(
            "box_ordered",
            "boxes",
            gxe.ExpectColumnPairValuesAToBeGreaterThanB(column_A="xmax", column_B="xmin", ignore_row_if="neither"),
            lambda r: f"xmax {r.xmax:g} is not greater than xmin {r.xmin:g}",
        ),
        Rule(
            "box_ordered",
            "boxes",
            gxe.ExpectColumnPairValuesAToBeGreaterThanB(column_A="ymax", column_B="ymin", ignore_row_if="neither"),
            lambda r: f"ymax {r.ymax:g} is not greater than ymin {r.ymin:g}",
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
        rules += [
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
    return rules


def _frames(
    table: pd.DataFrame, image_code: np.ndarray, classes: dict[int, str], tolerance: float
) -> dict[str, pd.DataFrame]:
    """The all-numeric frames GX validates: boxes with derived columns, and one row per image.

    GX copies its frame for many metrics, so strings become codes: ``image_code`` (the
    image), ``name_id`` (the id classes.json gives the row's class name, -1 if none) and
    ``hash_code`` (the content hash). A missing annotated size counts as the real one.
    Row positions equal the table's.
    """
    import numpy as np
    import pandas as pd

    name_codes, names = pd.factorize(table["class_name"])
    name_ids = {name: k for k, name in classes.items()}
    width, height = table["width"].to_numpy(dtype="float64"), table["height"].to_numpy(dtype="float64")
    columns = {
        "image_code": image_code,
        "class_id": table["class_id"].to_numpy(),
        "name_id": np.array([name_ids.get(n, -1) for n in names], dtype="int64")[name_codes],
        **{c: table[c].to_numpy(dtype="float64") for c in BOX},
        "width": width,
        "height": height,
        "x_limit": width + tolerance,
        "y_limit": height + tolerance,
        "box_width": (table["xmax"] - table["xmin"]).to_numpy(),
        "box_height": (table["ymax"] - table["ymin"]).to_numpy(),
    }
    for column, real in (("annotated_width", width), ("annotated_height", height)):
        if column in table:
            annotated = table[column].to_numpy(dtype="float64")
            columns[column] = np.where(np.isnan(annotated), real, annotated)
    first_row = np.unique(image_code, return_index=True)[1]
    images = pd.DataFrame(
        {
            "first_row": first_row,
            "n_boxes": np.bincount(image_code, minlength=len(first_row)),
            "hash_code": pd.factorize(table["content_hash"].to_numpy()[first_row])[0],
        }
    )
    return {"boxes": pd.DataFrame(columns), "images": images}


def _gx_unexpected(frames: dict[str, pd.DataFrame], rules: list[Rule]) -> list[list[int]]:
    """Run every rule's expectation with GX; returns each rule's unexpected index list (frame positions)."""
    import great_expectations as gx
    from great_expectations.data_context.types.base import (
        DataContextConfig,
        InMemoryStoreBackendDefaults,
        ProgressBarsConfig,
    )

    logging.getLogger("great_expectations").setLevel(logging.WARNING)
    config = DataContextConfig(
        store_backend_defaults=InMemoryStoreBackendDefaults(),
        analytics_enabled=False,
        progress_bars=ProgressBarsConfig(globally=False),
    )
    context = gx.get_context(mode="ephemeral", project_config=config)
    source = context.data_sources.add_pandas("quality_gate")
    unexpected: list[list[int]] = [[] for _ in rules]
    for name, frame in frames.items():
        members = [(i, rule) for i, rule in enumerate(rules) if rule.frame == name]
        if not members:
            continue
        for i, rule in members:
            rule.expectation.meta = {"rule": i}  # results come back in GX's order, not ours
        expectations = [rule.expectation for _, rule in members]
        suite = context.suites.add(gx.ExpectationSuite(name=f"quality_gate_{name}", expectations=expectations))
        batch = source.add_dataframe_asset(name).add_batch_definition_whole_dataframe(name)
        result = batch.get_batch(batch_parameters={"dataframe": frame}).validate(
            suite, result_format={"result_format": "COMPLETE", "return_unexpected_index_query": False}
        )
        for outcome in result.results:
            rule_index = outcome.expectation_config.meta["rule"]
            if outcome.exception_info and outcome.exception_info.get("raised_exception"):
                raise RuntimeError(
                    f"GX expectation {outcome.expectation_config.type} failed to run: "
                    f"{outcome.exception_info.get('exception_message')}"
                )
            unexpected[rule_index] = list(outcome.result.get("unexpected_index_list") or [])
    return unexpected


def _later_duplicates(frame: pd.DataFrame, index: list[int], columns: tuple[str, ...]) -> pd.DataFrame:
    """The flagged rows that are not the first of their duplicate group; ``first`` holds that first row's index."""
    flagged = frame.loc[sorted(index)]
    first = (
        flagged.index.to_series().groupby([flagged[c] for c in columns], sort=False, dropna=False).transform("first")
    )
    return flagged.assign(first=first)[first.to_numpy() != flagged.index.to_numpy()]


def _with_names(table: pd.DataFrame, frame: pd.DataFrame, bad: pd.DataFrame) -> pd.DataFrame:
    """``bad`` rows with the table's names for their reasons: image, class_name, and the first duplicate's."""
    rows = bad["first_row"].to_numpy() if "first_row" in bad else bad.index.to_numpy()
    out = bad.assign(image=table["image"].to_numpy()[rows], class_name=table["class_name"].to_numpy()[rows])
    if "first" in bad:
        first = frame.loc[bad["first"], "first_row"].to_numpy() if "first_row" in frame else bad["first"].to_numpy()
        out = out.assign(
            first_image=table["image"].to_numpy()[first],
            first_file=table["source_file"].to_numpy()[first],
            first_line=table["source_line"].to_numpy()[first],
        )
    return out


def _describe(expectation: Any) -> str:
    """``ExpectX(column=..., min_value=...)`` for the report."""
    kwargs = expectation.configuration.kwargs
    keys = ("column", "column_A", "column_B", "column_list", "min_value", "max_value", "or_equal")
    shown = ", ".join(f"{k}={kwargs[k]}" for k in keys if kwargs.get(k) is not None)
    return f"{type(expectation).__name__}({shown})"


def table_checks(
    table: pd.DataFrame,
    image_code: np.ndarray,
    classes: dict[int, str],
    label_width: int,
    min_box_side: float,
    tolerance: float,
) -> dict[str, Check]:
    """Evaluate the GX rules on ``table`` (positions 0..n-1, ``image_code`` from ``pd.factorize(table.image)``)."""
    max_objects = (label_width - 2) // 5
    sizes = {"annotated_width", "annotated_height"} <= set(table.columns)
    rules = _rules(classes, tolerance, min_box_side, max_objects, sizes)
    frames = _frames(table, image_code, classes, tolerance)
    checks = {name: Check(name, engines={"ingest"} if name in INGEST_CHECKS else set()) for name in ORDER}
    members: dict[int, Any] = {}  # image code -> table positions, built when an image-level rule fails
    for rule, index in zip(rules, _gx_unexpected(frames, rules), strict=True):
        check = checks[rule.check]
        check.engines.add("great_expectations")
        check.expectations.append(_describe(rule.expectation))
        frame = frames[rule.frame]
        check.evaluated = len(frame)
        bad = _later_duplicates(frame, index, rule.duplicate_of) if rule.duplicate_of else frame.loc[index]
        if bad.empty:
            continue
        bad = _with_names(table, frame, bad)
        reasons = [rule.reason(r) for r in bad.itertuples()]
        if rule.frame == "boxes":
            check.add_rows(table, bad.index, reasons)
        else:
            members = members or frames["boxes"].groupby("image_code", sort=False).indices
            for image_code, reason in zip(bad.index, reasons, strict=True):
                check.add_rows(table, members[image_code], [reason] * len(members[image_code]))
    if not sizes:
        checks["image_sizes_match"].skipped = "the table has no annotated_width/annotated_height columns"
    return checks


def coverage(table: pd.DataFrame, classes: dict[int, str]) -> Check:
    """Both splits non-empty and every class present in both (pandas: box counts per split and class)."""
    import numpy as np

    splits, class_ids = table["split"].to_numpy(dtype=object), table["class_id"].to_numpy()
    known = class_ids[(class_ids >= 0) & (class_ids < len(classes))]  # out-of-range ids are class_ids_known's
    counts = {
        s: np.bincount(class_ids[(splits == s)][np.isin(class_ids[(splits == s)], known)], minlength=len(classes))
        for s in SPLITS
    }
    problems = [f"split {s!r} is empty" for s in SPLITS if not (splits == s).any()]
    problems += [
        f"class {k} ({classes[k]}) has no box in {s}{_class_boxes(table, class_ids == k)}"
        for s in SPLITS
        if (splits == s).any()
        for k in sorted(classes)
        if counts[s][k] == 0
    ]
    problems += [f"unknown split {s!r}" for s in sorted(set(splits) - set(SPLITS), key=str)]
    per_split = {s: {classes[k]: int(counts[s][k]) for k in sorted(classes)} for s in SPLITS}
    return Check("split_coverage", {"pandas"}, evaluated=len(table), details={"problems": problems, "boxes": per_split})


def _class_boxes(table: pd.DataFrame, mask: Any, shown: int = 3) -> str:
    """Where a class's boxes are (the first ``shown`` file:line), for a coverage problem: a typo in a name shows."""
    rows = table[mask]
    if rows.empty:
        return " (nor anywhere else)"
    where = [f"{f}:{n}" for f, n in zip(rows["source_file"][:shown], rows["source_line"][:shown], strict=True)]
    more = f" and {len(rows) - shown} more" if len(rows) > shown else ""
    return f"; its {len(rows)} box(es): {', '.join(where)}{more}"


def _ingest_findings(checks: dict[str, Check], issues: list[Issue]) -> None:
    for issue in issues:
        checks[issue.check].entries.append(
            {
                "row": None,
                "file": issue.file,
                "line": issue.line,
                "image": issue.image,
                "class_name": issue.class_name,
                "reason": issue.reason,
            }
        )


def _first_problems(checks: list[Check], limit: int = 5) -> str:
    """The first offending rows (file:line, image, reasons) of the failed checks, for the error message."""
    where: dict[tuple[str, int], list[str]] = {}
    problems = []
    for check in checks:
        for f in check.findings:
            where.setdefault((f["file"], f["line"]), []).append(f"{check.name}: {f['reason']}")
        problems += [f"{check.name}: {p}" for p in check.details.get("problems", [])]
    lines = [f"{file}:{line} {' / '.join(reasons)}" for (file, line), reasons in where.items()] + problems
    more = f" (and {len(lines) - limit} more)" if len(lines) > limit else ""
    return " | ".join(lines[:limit]) + more


def validate(
    input_uri: str,
    output_uri: str,
    policy: str = "fail",
    label_width: int = 350,
    min_box_side: float = 1.0,
    tolerance: float = 2.0,
) -> dict[str, Any]:
    """Run the gate on the table under ``input_uri``; write the reports and the next stage's table to ``output_uri``.

    Raises :class:`QualityGateError` (after writing ``quality.json`` and ``quality.html``)
    when the data fails under ``policy="fail"``, or when dropping cannot fix it.
    """
    import numpy as np
    import pandas as pd

    from include.preprocess.quality_report import render_html

    if policy not in POLICIES:
        raise ValueError(f"unknown quality policy {policy!r}; expected one of {', '.join(POLICIES)}")
    if label_width < 7:
        raise ValueError(f"label_width must be at least 7 (one object), got {label_width}")
    table = read_table(input_uri).reset_index(drop=True)
    classes = read_classes(input_uri)
    issues = read_issues(input_uri)
    if "content_hash" not in table:
        table["content_hash"] = _hash_images(table["image_uri"])
    image_code = pd.factorize(table["image"])[0]

    checks = table_checks(table, image_code, classes, label_width, min_box_side, tolerance)
    _ingest_findings(checks, issues)
    errors = [c for c in checks.values() if c.severity == "error"]
    bad_rows = sorted({row for c in errors for row in c.rows})
    dropped = bad_rows if policy == "drop" else []
    keep = np.ones(len(table), dtype=bool)
    keep[dropped] = False
    output = table[keep] if dropped else table
    checks["split_coverage"] = coverage(output, classes)
    ordered = [checks[name] for name in ORDER]
    failed = [c for c in ordered if c.failed and c.severity == "error"]
    success = not failed if policy == "fail" else checks["split_coverage"].failed == 0
    counts_in = {"images": len(np.unique(image_code)), "boxes": len(table), "classes": len(classes)}
    counts_out = {"images": len(np.unique(image_code[keep])), "boxes": len(output), "classes": len(classes)}

    uris = {
        "quality_json": storage.join(output_uri, QUALITY_JSON),
        "quality_html": storage.join(output_uri, QUALITY_HTML),
    }
    report = {
        "success": success,
        "policy": policy,
        "input": storage.normalize(input_uri),
        "parameters": {
            "label_width": label_width,
            "max_objects_per_image": (label_width - 2) // 5,
            "min_box_side": min_box_side,
            "tolerance": tolerance,
        },
        "table": counts_in,
        "checks_failed": [c.name for c in failed],
        "checks": [c.as_dict() for c in ordered],
    }
    if policy == "drop":
        uris["quarantine"] = storage.join(output_uri, QUARANTINE_JSON)
        images_dropped = counts_in["images"] - counts_out["images"]
        report["dropped"] = {"boxes": len(dropped), "images": images_dropped, "excluded_at_ingest": len(issues)}
        report["output_table"] = counts_out
        storage.write_text(uris["quarantine"], json.dumps(_quarantine(ordered, dropped, issues), indent=1))
    storage.write_text(uris["quality_json"], json.dumps(report, indent=1, default=_json_default))
    storage.write_text(uris["quality_html"], render_html(report))
    if not success:
        _remove_stale_outputs(input_uri, output_uri, policy)
        hint = ""
        if policy == "fail" and bad_rows and coverage(table.drop(index=bad_rows), classes).failed == 0:
            hint = (
                f"; policy drop would quarantine these {len(bad_rows)} boxes and pass (--policy drop, "
                "quality.policy, or the DAG param quality_policy)"
            )
        blocking = failed if policy == "fail" else [checks["split_coverage"]]  # dropped rows do not block
        raise QualityGateError(
            f"quality gate failed (policy {policy}): {_first_problems(blocking)}; report: {uris['quality_json']}{hint}"
        )
    uris.update(write_table(output, classes, output_uri))
    log.info("quality gate passed (policy %s): %s boxes kept, %s dropped", policy, len(output), len(dropped))
    return {
        "success": success,
        "policy": policy,
        "checks_failed": report["checks_failed"],
        "rows_dropped": len(dropped),
        "images_dropped": counts_in["images"] - counts_out["images"],
        **counts_out,
        "uris": uris,
    }


def check_gate_passed(folder_uri: str) -> None:
    """Raise :class:`QualityGateError` when ``folder_uri`` holds a ``quality.json`` whose gate failed."""
    uri = storage.join(folder_uri, QUALITY_JSON)
    if storage.exists(uri) and not json.loads(storage.read_text(uri)).get("success", True):
        raise QualityGateError(
            f"{folder_uri}: the quality gate failed on this data (see {uri}); fix the data or validate it "
            "again with policy drop"
        )


def _remove_stale_outputs(input_uri: str, output_uri: str, policy: str) -> None:
    """Remove what an earlier, passing run left in ``output_uri``: it must not offer a table the gate refused."""
    if storage.normalize(input_uri).rstrip("/") == storage.normalize(output_uri).rstrip("/"):
        return  # validated in place: the files are the input
    stale = [ANNOTATIONS_FILE, CLASSES_FILE] + ([QUARANTINE_JSON] if policy == "fail" else [])
    for name in stale:
        uri = storage.join(output_uri, name)
        if storage.exists(uri):
            storage.remove(uri)
            log.warning("removed %s, left by an earlier run that passed the gate", uri)


def _quarantine(checks: list[Check], dropped: list[int], issues: list[Issue]) -> dict[str, Any]:
    """Dropped rows (each once, with every reason) and the entries ingest had already excluded."""
    rows: dict[int, dict[str, Any]] = {}
    for check in checks:
        if check.severity != "error":
            continue
        for row, finding in check.rows.items():
            entry = rows.setdefault(row, {k: v for k, v in finding.items() if k != "reason"} | {"reasons": []})
            entry["reasons"].append(f"{check.name}: {finding['reason']}")
    return {
        "dropped_boxes": [rows[r] for r in dropped],
        "excluded_at_ingest": [
            {
                "file": i.file,
                "line": i.line,
                "image": i.image,
                "class_name": i.class_name,
                "check": i.check,
                "reason": i.reason,
            }
            for i in issues
        ],
    }


def _hash_images(uris: pd.Series) -> list[str]:
    """Content hashes for a table written without them (ingest adds them)."""
    from concurrent.futures import ThreadPoolExecutor

    from include.preprocess.images import content_hash

    unique = sorted(set(uris))
    with ThreadPoolExecutor(8) as pool:
        hashes = dict(zip(unique, pool.map(lambda u: content_hash(storage.read_bytes(u)), unique), strict=True))
    return [hashes[u] for u in uris]


def _json_default(value: Any) -> Any:
    """numpy scalars and the like in findings -> plain JSON values."""
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")
