"""The quality gate's engine: GX Core evaluates the catalogue's rules over all-numeric frames of the table.

GX (``great_expectations`` 1.x, an ephemeral context created per call, a pandas data source
with one dataframe batch for the boxes and one for the per-image frame) evaluates every
row-wise rule with ``result_format="COMPLETE"``, whose ``unexpected_index_list`` gives the
offending rows. Plain pandas/numpy does what GX cannot express or does slowly: the derived
columns the expectations read, integer codes for the strings (GX copies its frame for many
metrics) and keeping the first of each duplicate group (GX flags every member).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from include.preprocess.issues import INGEST_CHECKS
from include.preprocess.quality.checks import BOX, ORDER, Check, Rule, rules

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd


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
        # what the annotation files count pixels from (VOC: 1), for messages that quote the file's values
        "origin": table["coordinate_origin"].to_numpy(dtype="float64") if "coordinate_origin" in table else 0.0,
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
    catalogue = rules(classes, tolerance, min_box_side, max_objects, sizes)
    frames = _frames(table, image_code, classes, tolerance)
    checks = {name: Check(name, engines={"ingest"} if name in INGEST_CHECKS else set()) for name in ORDER}
    members: dict[int, Any] = {}  # image code -> table positions, built when an image-level rule fails
    for rule, index in zip(catalogue, _gx_unexpected(frames, catalogue), strict=True):
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
