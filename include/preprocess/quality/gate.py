"""The gate itself: evaluate every check on the ingested table, apply the policy, write the outputs.

``quality.json`` lists every check with its counts and every offending row with its source
file and line/record and the reason; ``quality.html`` is the same for people, with charts,
sample images and each offending box drawn on a thumbnail (``figures/``). Each check has a
policy (:func:`.checks.policies`): ``fail`` raises :class:`QualityGateError` after writing
the reports; ``drop`` removes the boxes it names, lists them in ``quarantine.json`` (and
``quarantine.parquet``, the rows themselves, which ``export`` hands back to a labelling tool)
and writes the cleaned table; ``warn`` only reports. The coverage check (pandas: counts per
split and class) cannot be fixed by dropping rows: it is evaluated on the table that would be
written and stops the gate under every policy.
"""

from __future__ import annotations

import io
import json
import logging
import time
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
from include.preprocess.quality.checks import ORDER, SUMMARY_CHECKS, Check, policies
from include.preprocess.quality.duplicates import DEFAULT_DISTANCE
from include.preprocess.quality.expectations import table_checks
from include.run_layout import CLASSES_FILE, QUALITY_JSON, QUARANTINE_TABLE
from include.training.hyperparameters import DEFAULT_LABEL_WIDTH

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

POLICIES = ("fail", "drop")
QUALITY_HTML = "quality.html"
QUARANTINE_JSON = "quarantine.json"
THUMBNAILS = 200


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
    checks: dict[str, str] | None = None,
    near_duplicate_distance: int = DEFAULT_DISTANCE,
    base_network: str = "resnet-50",
    image_shape: int = 300,
    thumbnails: int = THUMBNAILS,
) -> dict[str, Any]:
    """Run the gate on the table under ``input_uri``; write the reports and the next stage's table to ``output_uri``.

    ``policy`` (fail or drop) is the policy of every check that ``checks`` (``{check: fail|drop|warn}``)
    and the catalogue's defaults leave open. ``base_network`` and ``image_shape`` are the training's,
    which the box statistics are judged against. ``thumbnails`` caps the images drawn in quality.html
    (0: none is read). Raises :class:`QualityGateError` (after writing
    ``quality.json`` and ``quality.html``) when a check whose policy is fail finds something.
    """
    import numpy as np
    import pandas as pd

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
    policy_of = policies(policy, checks)
    table = read_table(input_uri).reset_index(drop=True)
    classes = read_classes(input_uri)
    issues = read_issues(input_uri)
    if "content_hash" not in table:
        table["content_hash"] = _hash_images(table["image_uri"])
    if "phash" not in table:
        table["phash"], table["phash_mirror"] = _perceptual_hashes(table["image_uri"])
    image_code = pd.factorize(table["image"])[0]

    found, seconds = _run_checks(table, image_code, classes, issues, label_width, min_box_side, tolerance,
                                 near_duplicate_distance, base_network, image_shape)
    for name, check in found.items():
        check.policy = policy_of[name]
    dropped = sorted({row for c in found.values() if c.policy == "drop" for row in c.rows})
    keep = np.ones(len(table), dtype=bool)
    keep[dropped] = False
    output = table[keep] if dropped else table
    found["split_coverage"] = coverage(output, classes)
    ordered = [found[name] for name in ORDER]
    blocking = [c for c in ordered if c.failed and c.policy == "fail"]
    success = not blocking
    counts_in = {"images": len(np.unique(image_code)), "boxes": len(table), "classes": len(classes)}
    counts_out = {"images": len(np.unique(image_code[keep])), "boxes": len(output), "classes": len(classes)}
    quarantining = "drop" in policy_of.values()

    uris = {
        "quality_json": storage.join(output_uri, QUALITY_JSON),
        "quality_html": storage.join(output_uri, QUALITY_HTML),
    }
    bad_rows = sorted({row for c in blocking for row in c.rows})
    droppable = policy == "fail" and not any(c.name in SUMMARY_CHECKS for c in blocking)
    drop_would_pass = droppable and bool(bad_rows) and coverage(table.drop(index=bad_rows), classes).failed == 0
    report = {
        "success": success,
        "policy": policy,
        "input": storage.normalize(input_uri),
        "parameters": {
            "label_width": label_width,
            "max_objects_per_image": (label_width - 2) // 5,
            "min_box_side": min_box_side,
            "tolerance": tolerance,
            "near_duplicate_distance": near_duplicate_distance,
            "base_network": base_network,
            "image_shape": image_shape,
        },
        "policies": {c.name: c.policy for c in ordered},
        "table": counts_in,
        "checks_failed": [c.name for c in ordered if c.failed and c.severity == "error"],
        "checks_blocking": [c.name for c in blocking],
        "checks": [c.as_dict() for c in ordered],
    }
    if drop_would_pass:
        report["drop_hint"] = (
            f"policy drop would quarantine these {len(bad_rows)} boxes and pass: detection-pipeline validate "
            f"--input {input_uri} --output {output_uri} --policy drop (or quality.policy, or the DAG param "
            "quality_policy)"
        )
    if quarantining:
        uris["quarantine"] = storage.join(output_uri, QUARANTINE_JSON)
        uris["quarantine_table"] = storage.join(output_uri, QUARANTINE_TABLE)
        images_dropped = counts_in["images"] - counts_out["images"]
        report["dropped"] = {"boxes": len(dropped), "images": images_dropped, "excluded_at_ingest": len(issues)}
        report["output_table"] = counts_out
        quarantine = _quarantine(ordered, dropped, issues)
        storage.write_text(uris["quarantine"], json.dumps(quarantine, indent=1))
        _write_quarantine_table(table, quarantine["dropped_boxes"], uris["quarantine_table"])
    started = time.perf_counter()
    pictures = _figures(report, table, output, output_uri, thumbnails)
    seconds["figures"] = time.perf_counter() - started
    report["seconds"] = {k: round(v, 3) for k, v in seconds.items()}
    storage.write_text(uris["quality_json"], json.dumps(report, indent=1, default=_json_default))
    storage.write_text(uris["quality_html"], _render(report, pictures))
    if not success:
        _remove_stale_outputs(output_uri, quarantining)
        hint = f"; {report['drop_hint']}" if drop_would_pass else ""
        raise QualityGateError(
            f"quality gate failed (policy {policy}): {_first_problems(blocking)}; report: {uris['quality_json']}{hint}"
        )
    uris.update(write_table(output, classes, output_uri))
    log.info("quality gate passed (policy %s): %s boxes kept, %s dropped", policy, len(output), len(dropped))
    return {
        "success": success,
        "policy": policy,
        "checks_failed": report["checks_failed"],
        "warnings": [c.name for c in ordered if c.failed and c.severity == "warning"],
        "rows_dropped": len(dropped),
        "images_dropped": counts_in["images"] - counts_out["images"],
        **counts_out,
        "uris": uris,
    }


def _run_checks(
    table: pd.DataFrame,
    image_code: Any,
    classes: dict[int, str],
    issues: list[Issue],
    label_width: int,
    min_box_side: float,
    tolerance: float,
    distance: int,
    base_network: str,
    image_shape: int,
) -> tuple[dict[str, Check], dict[str, float]]:
    """Every check but coverage, and the seconds each family took."""
    from include.preprocess.quality.class_names import typo_check
    from include.preprocess.quality.duplicates import duplicate_checks
    from include.preprocess.quality.statistics import statistics_checks

    seconds: dict[str, float] = {}
    started = time.perf_counter()
    found = table_checks(table, image_code, classes, label_width, min_box_side, tolerance)
    _ingest_findings(found, issues)
    seconds["great_expectations"] = time.perf_counter() - started
    started = time.perf_counter()
    members = {int(k): v for k, v in _positions_by_image(image_code).items()}
    found.update(duplicate_checks(table, image_code, members, distance))
    seconds["near_duplicates"] = time.perf_counter() - started
    started = time.perf_counter()
    found["class_name_typos"] = typo_check(table, classes)
    found.update(statistics_checks(table, image_code, classes, base_network, image_shape, (label_width - 2) // 5))
    seconds["statistics"] = time.perf_counter() - started
    return found, seconds


def _positions_by_image(image_code: Any) -> dict[int, Any]:
    import numpy as np

    order = np.argsort(image_code, kind="stable")
    codes, starts = np.unique(image_code[order], return_index=True)
    return dict(zip(codes.tolist(), np.split(order, starts[1:]), strict=True))


def _figures(
    report: dict[str, Any], table: pd.DataFrame, output: pd.DataFrame, output_uri: str, limit: int
) -> dict[str, bytes]:
    """Draw the charts, samples and thumbnails; write them under ``figures/`` and name them in ``report``.

    The folder is emptied first, so a retried task leaves exactly its own files.
    """
    from include.preprocess.quality import figures
    from include.reports.figures import class_color

    storage.remove(storage.join(output_uri, figures.FIGURES), recursive=True)
    details = {c["name"]: c for c in report["checks"]}
    pictures: dict[str, bytes] = {}
    report["figures"] = []
    for name, title, png, data in figures.charts(details):
        path = f"{figures.FIGURES}/{name}.png"
        pictures[path] = png
        report["figures"].append({"name": name, "title": title, "file": path, "data": data})
    names = output.drop_duplicates("class_id").sort_values("class_id")
    pairs = zip(names["class_id"], names["class_name"], strict=True)
    report["class_colors"] = {name: class_color(int(k)) for k, name in pairs}
    report["samples"] = []
    for sample in figures.samples(output, count=min(figures.SAMPLES, limit)):
        pictures[sample["file"]] = sample.pop("jpeg")
        report["samples"].append(sample)
    pictures.update(figures.thumbnails(table, report["checks"], limit))
    for path, data in pictures.items():
        storage.write_bytes(storage.join(output_uri, path), data)
    return pictures


def _render(report: dict[str, Any], pictures: dict[str, bytes]) -> str:
    from include.preprocess.quality.report import render_html

    return render_html(report, pictures)


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


def _remove_stale_outputs(output_uri: str, quarantining: bool) -> None:
    """Remove what an earlier, passing run left in ``output_uri``: it must not offer a table the gate refused."""
    stale = [ANNOTATIONS_FILE, CLASSES_FILE] + ([] if quarantining else [QUARANTINE_JSON, QUARANTINE_TABLE])
    for name in stale:
        uri = storage.join(output_uri, name)
        if storage.exists(uri):
            storage.remove(uri)
            log.warning("removed %s, left by an earlier run that passed the gate", uri)


def _quarantine(checks: list[Check], dropped: list[int], issues: list[Issue]) -> dict[str, Any]:
    """Dropped rows (each once, with every reason) and the entries ingest had already excluded."""
    rows: dict[int, dict[str, Any]] = {}
    for check in checks:
        if check.policy != "drop":
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


def _write_quarantine_table(table: pd.DataFrame, dropped: list[dict[str, Any]], uri: str) -> None:
    """The dropped rows with every column and their reasons (``quality_issue``), as parquet."""
    rows = table.iloc[[d["row"] for d in dropped]].copy()
    rows["quality_issue"] = ["; ".join(d["reasons"]) for d in dropped]
    buf = io.BytesIO()
    rows.to_parquet(buf, index=False)
    storage.write_bytes(uri, buf.getvalue())


def _perceptual_hashes(uris: pd.Series) -> tuple[list[str], list[str]]:
    """Perceptual hashes for a table written without them (ingest adds them)."""
    from concurrent.futures import ThreadPoolExecutor

    from include.preprocess.images import perceptual_hashes
    from include.reports.thumbnails import load

    def one(uri: str) -> tuple[str, str]:
        from PIL import Image

        try:
            pixels, _, _ = load(uri, side=64)
        except (OSError, ValueError):
            return "", ""  # unreadable now: image_files reported it at ingest; it matches nothing
        return perceptual_hashes(Image.fromarray(pixels))

    unique = sorted(set(uris))
    with ThreadPoolExecutor(4) as pool:
        hashes = dict(zip(unique, pool.map(one, unique), strict=True))
    return [hashes[u][0] for u in uris], [hashes[u][1] for u in uris]


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
