"""The evaluation report: one self-contained HTML page per run.

Everything the page shows is inside it: charts and sample images as base64 ``data:`` URIs,
CSS inline, no scripts and no external fetches, so it opens the same from S3, a laptop or an
Airflow log link.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from include.evaluation.metrics import EvaluationMetrics
from include.reports.figures import Picture
from include.reports.page import CSS
from include.reports.page import escape as _e
from include.reports.page import figure as _figure
from include.reports.page import key_values as _key_values
from include.reports.page import section as _section
from include.reports.page import table as _table

TRAINING_LABELS = {
    "job_name": "training job",
    "best_epoch": "best epoch",
    "best_validation_map": "best validation mAP",
    "epochs_logged": "epochs logged",
    "stop_reason": "stop reason",
    "final_validation_map": "final validation mAP",
}


@dataclass
class ReportContent:
    """What one run's report shows."""

    title: str
    metrics: EvaluationMetrics
    training: dict[str, Any] = field(default_factory=dict)
    hyperparameters: Mapping[str, Any] = field(default_factory=dict)
    data_counts: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    quality: Mapping[str, Any] | None = None
    charts: list[Picture] = field(default_factory=list)
    samples: list[Picture] = field(default_factory=list)
    trials: Sequence[Mapping[str, Any]] = ()
    start_weights: Mapping[str, Any] = field(default_factory=dict)  # training_run.start_weights
    timings: Mapping[str, Any] = field(default_factory=dict)
    artifacts: Mapping[str, str] = field(default_factory=dict)
    notes: Sequence[str] = ()
    #: the split the metrics come from: ``test`` (held out) or ``validation`` (selection data)
    split: str = "test"
    #: the promotion gate's threshold, for the verdict the metrics would get
    promotion_threshold: float | None = None
    #: ground truth (rows) against predictions (columns) at the score threshold, as evaluation.json holds it
    confusion: Mapping[str, Any] | None = None
    label_issues: str = ""  # the label issues section's HTML (include.evaluation.label_issues.report_section)


SPLIT_ROLES = {"test": "held out", "validation": "selection data: optimistic"}


def _split_label(split: str) -> str:
    return f"{split} split ({SPLIT_ROLES.get(split, split)})"


def _cards(content: ReportContent) -> str:
    m = content.metrics
    cards = [
        (f"{m.map:.3f}", f"mAP @ IoU {m.iou:g} ({m.interpolation}) on the {_split_label(content.split)}"),
        (f"{m.coco_map:.3f}", f"COCO mAP @ [.50:.95] on {content.split}"),
    ]
    best = content.training.get("best_validation_map")
    if best is not None:
        epoch = content.training.get("best_epoch")
        cards.append((f"{best:.3f}", f"validation mAP that selected the model (epoch {epoch}, in training)"))
    cards += [(str(m.images), f"{content.split} images"), (str(m.gt_objects), "ground-truth objects"),
              (str(m.detections), "detections scored")]
    return '<div class="cards">' + "".join(
        f'<div class="card"><div class="v">{_e(v)}</div><div class="k">{_e(k)}</div></div>' for v, k in cards
    ) + "</div>"


def _metrics_table(m: EvaluationMetrics) -> str:
    headers = ("class", "id", "GT objects", "detections", f"TP @ {m.iou:g}", f"AP @ {m.iou:g}", "COCO AP",
               f"detections ≥ {m.score_threshold:g}", f"precision ≥ {m.score_threshold:g}",
               f"recall ≥ {m.score_threshold:g}")
    rows = []
    for c in m.classes:
        shown = c.detections_above_threshold
        precision = c.true_positives_above_threshold / shown if shown else None
        recall = c.true_positives_above_threshold / c.gt_objects if c.gt_objects else None
        rows.append((c.name, c.class_id, c.gt_objects, c.detections, c.true_positives, c.ap, c.coco_ap, shown,
                     precision, recall))
    rows.append(("all classes (mean)", "", m.gt_objects, m.detections, sum(c.true_positives for c in m.classes),
                 m.map, m.coco_map, sum(c.detections_above_threshold for c in m.classes), None, None))
    note = (f'<p class="muted">VOC AP at IoU {m.iou:g} with {m.interpolation} interpolation (the metric of '
            "validation:mAP); COCO AP averages IoU 0.50..0.95 with 101-point interpolation. Classes without "
            "ground truth have no AP and are left out of the means.</p>")
    return _table(headers, rows) + note


def quality_verdict(quality: Mapping[str, Any]) -> str:
    """``passed``, ``passed after dropping N boxes (M images)`` or ``failed``: the gate's outcome in words."""
    if not quality.get("success"):
        return "failed"
    dropped = quality.get("dropped") or {}
    if dropped.get("boxes"):
        return f"passed after dropping {dropped['boxes']} boxes ({dropped.get('images', 0)} images left with none)"
    return "passed"


def _promotion(content: ReportContent) -> str:
    """What the promotion gate's threshold makes of these metrics (the champion is compared at the gate)."""
    threshold, m = content.promotion_threshold, content.metrics
    if threshold is None:
        return '<p class="muted">No promotion threshold was given.</p>'
    passes = m.map >= threshold
    verdict = "meets" if passes else "is below"
    then = ("the gate then compares it with the champion" if passes
            else "the gate will not deploy it (train longer, more data, or a lower evaluation.promotion_threshold)")
    return (f'<p class="{"ok" if passes else "bad"}">{content.split} mAP {m.map:.4f} {verdict} the promotion '
            f"threshold {threshold:g}: {_e(then)}.</p>")


def _quality(quality: Mapping[str, Any]) -> str:
    """The quality gate's verdict, counts and checks (``quality.json`` of the quality stage)."""
    success = quality.get("success")
    verdict = quality_verdict(quality)
    parts = [f'<p class="{"ok" if success else "bad"}">{verdict} (policy {_e(quality.get("policy", "?"))})</p>']
    counts = {f"{k} checked": v for k, v in (quality.get("table") or {}).items()}
    counts.update({f"{k} kept": v for k, v in (quality.get("output_table") or {}).items()})
    counts.update({f"{k} dropped": v for k, v in (quality.get("dropped") or {}).items()})
    if counts:
        parts.append(_key_values(counts))
    columns = ("name", "severity", "success", "evaluated", "failed", "description")
    checks = quality.get("checks") or []
    if checks:
        parts.append(_table(columns, ([c.get(k) for k in columns] for c in checks)))
    return "".join(parts)


def _data(counts: Mapping[str, Mapping[str, Any]]) -> str:
    keys = ("images", "flipped", "records", "objects")
    return _table(("channel", *keys), ((split, *(c.get(k) for k in keys)) for split, c in counts.items()))


def _trials(trials: Sequence[Mapping[str, Any]]) -> str:
    names = sorted({k for t in trials for k in (t.get("hyperparameters") or {})})
    rows = ((t.get("name"), t.get("objective"), *((t.get("hyperparameters") or {}).get(n) for n in names))
            for t in trials)
    return _table(("trial", "objective", *names), rows)


def render_report(content: ReportContent) -> str:
    """The report page as one HTML string."""
    generated = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    sections = [_section("Summary", _cards(content))]
    if content.notes:
        sections.append(_section("Notes", "<ul>" + "".join(f"<li>{_e(n)}</li>" for n in content.notes) + "</ul>"))
    if content.data_counts or content.quality:
        body = _data(content.data_counts) if content.data_counts else ""
        if content.quality:
            body += "<h3>Quality gate</h3>" + _quality(content.quality)
        sections.append(_section("Data", body))
    if content.training or content.hyperparameters:
        facts = {TRAINING_LABELS.get(k, k): v for k, v in content.training.items() if not isinstance(v, (dict, list))}
        sections.append(_section("Training", _key_values(facts) + "<h3>Hyperparameters</h3>"
                                 + _key_values(content.hyperparameters)))
    if content.start_weights:
        sections.append(_section("Start weights", _table(("name", "value"), content.start_weights.items())))
    if content.charts:
        sections.append(_section("Charts", "".join(_figure(c) for c in content.charts)))
    if content.trials:
        sections.append(_section("Tuning trials", _trials(content.trials)))
    sections.append(_section("Promotion", _promotion(content)))
    sections.append(_section(f"Metrics on the {_split_label(content.split)}", _metrics_table(content.metrics)))
    if content.samples:
        sections.append(_section("Sample detections",
                                 '<div class="grid">' + "".join(_figure(s) for s in content.samples) + "</div>"))
    if content.label_issues:
        sections.append(_section("Label issues found by the model", content.label_issues))
    if content.timings:
        sections.append(_section("Timings", _key_values(content.timings)))
    if content.artifacts:
        rows = "".join(f"<tr><td>{_e(k)}</td><td><code>{_e(v)}</code></td></tr>" for k, v in content.artifacts.items())
        sections.append(_section("Artifacts", f"<table><tbody>{rows}</tbody></table>"))
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>{_e(content.title)}</title><style>{CSS}</style></head><body>"
        f"<header><h1>{_e(content.title)}</h1><p>Evaluation report, generated {generated}</p></header>"
        f"<main>{''.join(sections)}</main></body></html>\n"
    )


#: The id of the section the export stage adds to a finished report.
EXPORT_SECTION_ID = "export"


def export_section(export: Mapping[str, Any]) -> str:
    """The "Export" section: the ONNX file and its parity with the MXNet endpoint, Neo's compiled model.

    ``export`` is the export stage's record (``export.json``).
    """
    parts = []
    onnx = export.get("onnx")
    if onnx:
        parity = onnx.get("parity") or {}
        if parity:
            ok = parity["passed"]
            verdict = "same detections as" if ok else "different detections from"
            parts.append(f'<p class="{"ok" if ok else "bad"}">ONNX Runtime gives {verdict} MXNet on '
                         f'{_e(parity["images"])} held-out images</p>')
            counts = parity["detections"]
            parts.append(_key_values({
                "images compared": parity["images"],
                "detections (MXNet / ONNX Runtime)": f"{counts['mxnet']} / {counts['onnxruntime']}",
                "matched one to one": parity["matched"],
                "unmatched": parity["unmatched"],
                "images with the same order": parity["images_in_same_order"],
                "max score difference": parity["max_score_diff"],
                "max box difference (normalized)": parity["max_box_diff"],
                "tolerances (score, box)": f"{parity['tolerances']['score']:g}, {parity['tolerances']['box']:g}",
                "ms per image (MXNet / ONNX Runtime)":
                    f"{parity['ms_per_image']['mxnet']} / {parity['ms_per_image']['onnxruntime']}",
            }))
            if parity.get("unmatched_rows"):
                rows = ((u["image"], u["model"], *u["row"]) for u in parity["unmatched_rows"])
                parts.append(_table(("image", "only in", "class", "score", "xmin", "ymin", "xmax", "ymax"), rows))
        parts.append(_key_values({"ONNX file": onnx["uri"], "sha256": onnx["sha256"], "bytes": onnx["bytes"],
                                  "opset": onnx["opset"], "post-processing": onnx["postprocess_module"]}))
    neo = export.get("neo")
    if neo:
        parts.append("<h3>SageMaker Neo</h3>" + _key_values({
            "compilation job": neo.get("job_name"), "status": neo.get("status"), "target": neo.get("target"),
            "compiled model": neo.get("compiled_artifact_uri"), "input graph": neo.get("input_uri"),
        }))
    if export.get("error"):
        parts.append(f'<p class="bad">{_e(export["error"])}</p>')
    return _section("Export", "".join(parts), EXPORT_SECTION_ID)


COST_SECTION_ID = "cost"


def cost_section(cost: Mapping[str, Any]) -> str:
    """What the run cost (``cost.json``): totals, each step's CPU and wall seconds, the jobs, the endpoints,
    the estimate."""
    parts = [_key_values({"US dollars": cost["usd"], "billable seconds": cost["billable_seconds"],
                          "endpoint instance-hours": cost.get("endpoint_hours", 0.0),
                          "CPU seconds (this machine)": cost["cpu_seconds"], "backend": cost["backend"]})]  # fmt: skip
    parts.append("<h3>Steps</h3>" + _table(
        ("step", "CPU s", "wall s"), [(s["step"], s["cpu_seconds"], s["wall_seconds"]) for s in cost["steps"]]
    ))  # fmt: skip
    if cost["jobs"]:
        parts.append("<h3>Training jobs</h3>" + _table(
            ("job", "instance", "billable s", "USD", "reused from the cache"),
            [(j["job_name"], f"{j['instance_type']} x{j['instance_count']}", j["billable_seconds"], j["usd"],
              j["reused"]) for j in cost["jobs"]],
        ))  # fmt: skip
    if cost.get("endpoints"):
        parts.append("<h3>Endpoints</h3>" + _table(
            ("endpoint", "instance", "created", "removed", "hours", "USD"),
            [(e["endpoint_name"], f"{e['instance_type']} x{e['instance_count']}", e["created"],
              "still running" if e["still_running"] else e["ended"], e["hours"], e["usd"]) for e in cost["endpoints"]],
        ))  # fmt: skip
    if cost["estimate"]:
        parts.append("<h3>Estimate before the run (upper bounds)</h3>" + _table(
            ("part", "instance", "count", "hours", "USD"),
            [(p["what"], p["instance_type"], p["count"], round(p["hours"], 2), p["usd"]) for p in cost["estimate"]],
        ))  # fmt: skip
    return _section("Cost", "".join(parts), COST_SECTION_ID)


def with_section(page: str, section: str, section_id: str) -> str:
    """``page`` with ``section`` in place of its section ``section_id`` (a rerun), else added at the end."""
    start = page.find(f'<section id="{section_id}">')
    if start >= 0:
        end = page.index("</section>", start) + len("</section>")
        return page[:start] + section + page[end:]
    if "</main>" not in page:
        raise ValueError("not a report page of this pipeline: it has no <main> element")
    return page.replace("</main>", section + "</main>", 1)
