"""The gate itself: evaluate every check on the ingested table, apply the policy, write the outputs.

``quality.json`` lists every check with its counts and every offending row with its source
file and line/record and the reason; ``quality.html`` is the same for people. Policy
``fail`` raises :class:`QualityGateError` after writing them; ``drop`` removes the offending
boxes, lists them in ``quarantine.json`` and writes the cleaned table. The coverage check
(pandas: counts per split and class) cannot be fixed by dropping rows: it is evaluated on the
table that would be written and stops the gate under both policies.
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any

from include import storage
from include.preprocess.annotations import (
    ANNOTATIONS_FILE,
    SPLITS,
    TRAINING_SPLITS,
    read_classes,
    read_table,
    write_table,
)
from include.preprocess.issues import Issue, read_issues
from include.preprocess.quality.checks import ORDER, Check
from include.preprocess.quality.expectations import table_checks
from include.run_layout import CLASSES_FILE, QUALITY_JSON
from include.training.hyperparameters import DEFAULT_LABEL_WIDTH

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

POLICIES = ("fail", "drop")
QUALITY_HTML = "quality.html"
QUARANTINE_JSON = "quarantine.json"


class QualityGateError(ValueError):
    """The data failed the gate; the message names the first offending rows and the report."""


def coverage(table: pd.DataFrame, classes: dict[int, str]) -> Check:
    """Train and validation non-empty with every class in both; the held-out test split's gaps as notes.

    (pandas: box counts per split and class.) A class missing from test cannot fail training, so
    it is reported (``details["test_gaps"]``), not blocking; the evaluation report repeats it.
    """
    import numpy as np

    splits, class_ids = table["split"].to_numpy(dtype=object), table["class_id"].to_numpy()
    known = class_ids[(class_ids >= 0) & (class_ids < len(classes))]  # out-of-range ids are class_ids_known's
    counts = {
        s: np.bincount(class_ids[(splits == s)][np.isin(class_ids[(splits == s)], known)], minlength=len(classes))
        for s in SPLITS
    }

    def gaps(split: str) -> list[str]:
        return [
            f"class {k} ({classes[k]}) has no box in {split}{_class_boxes(table, class_ids == k)}"
            for k in sorted(classes)
            if counts[split][k] == 0
        ]

    problems = [f"split {s!r} is empty" for s in TRAINING_SPLITS if not (splits == s).any()]
    problems += [gap for s in TRAINING_SPLITS if (splits == s).any() for gap in gaps(s)]
    problems += [f"unknown split {s!r}" for s in sorted(set(splits) - set(SPLITS), key=str)]
    per_split = {s: {classes[k]: int(counts[s][k]) for k in sorted(classes)} for s in SPLITS}
    test_gaps = gaps("test") if (splits == "test").any() else ["no test split: evaluation scores validation"]
    details = {"problems": problems, "boxes": per_split, "test_gaps": test_gaps}
    return Check("split_coverage", {"pandas"}, evaluated=len(table), details=details)


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
    label_width: int = DEFAULT_LABEL_WIDTH,
    min_box_side: float = 1.0,
    tolerance: float = 2.0,
) -> dict[str, Any]:
    """Run the gate on the table under ``input_uri``; write the reports and the next stage's table to ``output_uri``.

    Raises :class:`QualityGateError` (after writing ``quality.json`` and ``quality.html``)
    when the data fails under ``policy="fail"``, or when dropping cannot fix it.
    """
    import numpy as np
    import pandas as pd

    from include.preprocess.quality.report import render_html

    if policy not in POLICIES:
        raise ValueError(f"unknown quality policy {policy!r}; expected one of {', '.join(POLICIES)}")
    if label_width < 7:
        raise ValueError(f"label_width must be at least 7 (one object), got {label_width}")
    source, target = storage.normalize(input_uri).rstrip("/"), storage.normalize(output_uri).rstrip("/")
    if target == source or target.startswith(source + "/"):
        raise ValueError(
            f"the output {output_uri} is the input folder or inside it: the gate would overwrite the table it "
            "checks; give it a folder of its own (e.g. a sibling named quality)"
        )
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
    drop_would_pass = policy == "fail" and bad_rows and coverage(table.drop(index=bad_rows), classes).failed == 0
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
    if drop_would_pass:
        report["drop_hint"] = (
            f"policy drop would quarantine these {len(bad_rows)} boxes and pass: detection-pipeline validate "
            f"--input {input_uri} --output {output_uri} --policy drop (or quality.policy, or the DAG param "
            "quality_policy)"
        )
    if policy == "drop":
        uris["quarantine"] = storage.join(output_uri, QUARANTINE_JSON)
        images_dropped = counts_in["images"] - counts_out["images"]
        report["dropped"] = {"boxes": len(dropped), "images": images_dropped, "excluded_at_ingest": len(issues)}
        report["output_table"] = counts_out
        storage.write_text(uris["quarantine"], json.dumps(_quarantine(ordered, dropped, issues), indent=1))
    storage.write_text(uris["quality_json"], json.dumps(report, indent=1, default=_json_default))
    storage.write_text(uris["quality_html"], render_html(report))
    if not success:
        _remove_stale_outputs(output_uri, policy)
        hint = f"; {report['drop_hint']}" if drop_would_pass else ""
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


def check_gate_passed(folder_uri: str, required: bool = False) -> bool:
    """Whether the table at ``folder_uri`` (a folder, or its ``annotations.parquet``) passed the quality gate.

    Raises :class:`QualityGateError` when its ``quality.json`` says the gate failed, and, when
    ``required``, when there is no ``quality.json`` at all (an ingest output, say: the gate was
    walked around); otherwise answers False for a table the gate never saw.
    """
    folder = folder_uri.rsplit("/", 1)[0] if folder_uri.endswith(".parquet") else folder_uri
    uri = storage.join(folder, QUALITY_JSON)
    if not storage.exists(uri):
        if required:
            quality = f"{folder.rstrip('/').rsplit('/', 1)[0]}/quality" if "/" in folder.rstrip("/") else "quality"
            raise QualityGateError(
                f"{folder} has not been through the quality gate (no {QUALITY_JSON}): run "
                f"`detection-pipeline validate --input {folder} --output {quality}` and build from its output "
                "(or pass --skip-gate to build from it anyway)"
            )
        return False
    if not json.loads(storage.read_text(uri)).get("success", True):
        raise QualityGateError(
            f"{folder}: the quality gate failed on this data (see {uri}); fix the data or validate it "
            "again with policy drop"
        )
    return True


def _remove_stale_outputs(output_uri: str, policy: str) -> None:
    """Remove what an earlier, passing run left in ``output_uri``: it must not offer a table the gate refused."""
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
