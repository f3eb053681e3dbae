"""``quality.html``: the quality gate's report as a self-contained page a person can open."""

from __future__ import annotations

from html import escape
from typing import Any

ROWS_PER_CHECK = 500  # the HTML shows this many offending rows per check; quality.json has them all

STYLE = """
body{font-family:system-ui,sans-serif;margin:2rem;color:#1d232a;max-width:1200px}
h1{margin-bottom:.2rem} .sub{color:#5b6670;margin-top:0}
.badge{display:inline-block;padding:.2rem .7rem;border-radius:1rem;color:#fff;font-weight:600}
.pass{background:#1f883d} .fail{background:#cf222e} .warn{background:#9a6700} .skip{background:#6e7781}
table{border-collapse:collapse;margin:.6rem 0 1.4rem;font-size:.9rem}
th,td{border:1px solid #d0d7de;padding:.3rem .6rem;text-align:left;vertical-align:top}
th{background:#f6f8fa} td.num{text-align:right;font-variant-numeric:tabular-nums}
code{font-size:.85rem} .zero{color:#cf222e;font-weight:600}
"""


def _badge(check: dict[str, Any], dropping: bool = False) -> str:
    """A check's result; under policy drop, an error check's offending rows were dropped, not blocking."""
    if check.get("skipped"):
        return '<span class="badge skip">skipped</span>'
    if check["success"]:
        return '<span class="badge pass">pass</span>'
    if dropping and check["severity"] == "error" and check.get("rows") and not check.get("problems"):
        return '<span class="badge warn">dropped</span>'
    return f'<span class="badge {"warn" if check["severity"] == "warning" else "fail"}">{check["severity"]}</span>'


def _cell(value: Any, numeric: bool = False) -> str:
    text = "" if value is None else escape(str(value))
    return f'<td class="num">{text}</td>' if numeric else f"<td>{text}</td>"


def _summary_table(checks: list[dict[str, Any]], dropping: bool = False) -> str:
    head = "<tr><th>check</th><th>rule</th><th>engine</th><th>evaluated</th><th>failed</th><th>result</th></tr>"
    body = "".join(
        f'<tr><td><a href="#{escape(c["name"])}">{escape(c["name"])}</a></td>{_cell(c["description"])}'
        f"{_cell(c['engine'])}{_cell(c['evaluated'], True)}{_cell(c['failed'], True)}"
        f"<td>{_badge(c, dropping)}</td></tr>"
        for c in checks
    )
    return f"<table>{head}{body}</table>"


def _coverage_table(boxes: dict[str, dict[str, int]]) -> str:
    splits = list(boxes)
    names = list(next(iter(boxes.values()), {}))
    head = "<tr><th>class</th>" + "".join(f"<th>{escape(s)}</th>" for s in splits) + "</tr>"
    body = "".join(
        f"<tr>{_cell(name)}"
        + "".join(f'<td class="num{" zero" if not boxes[s][name] else ""}">{boxes[s][name]}</td>' for s in splits)
        + "</tr>"
        for name in names
    )
    return f"<table>{head}{body}</table>"


def _box(box: list[float | None] | None) -> str:
    return ", ".join("nan" if v is None else f"{v:g}" for v in box) if box else ""


def _findings_table(check: dict[str, Any]) -> str:
    rows = check["rows"]
    shown = rows[:ROWS_PER_CHECK]
    head = "<tr><th>file:line</th><th>image</th><th>class</th><th>box (xmin, ymin, xmax, ymax)</th><th>reason</th></tr>"
    body = "".join(
        f"<tr><td><code>{escape(str(r['file']))}:{r['line']}</code></td>{_cell(r.get('image'))}"
        f"{_cell(r.get('class_name'))}{_cell(_box(r.get('box')))}"
        f"{_cell(r['reason'])}</tr>"
        for r in shown
    )
    more = f"<p>{len(rows) - len(shown)} more rows in quality.json.</p>" if len(rows) > len(shown) else ""
    return f"<table>{head}{body}</table>{more}"


def _check_section(check: dict[str, Any], dropping: bool = False) -> str:
    parts = [f'<h3 id="{escape(check["name"])}">{escape(check["name"])} {_badge(check, dropping)}</h3>']
    parts.append(f"<p>{escape(check['description'])}. Engine: {escape(check['engine'])}")
    if check["expectations"]:
        parts.append(" (" + ", ".join(f"<code>{escape(e)}</code>" for e in check["expectations"]) + ")")
    parts.append(".</p>")
    if check.get("skipped"):
        parts.append(f"<p>Skipped: {escape(check['skipped'])}.</p>")
    parts += [f"<p>{escape(p)}</p>" for p in check.get("problems", [])]
    if check.get("boxes"):
        parts.append(_coverage_table(check["boxes"]))
    if check["rows"]:
        parts.append(_findings_table(check))
    return "".join(parts)


def _verdict(report: dict[str, Any]) -> tuple[str, str]:
    """The title badge's words and class: passed, passed after dropping N boxes (a warning colour), failed."""
    dropped = (report.get("dropped") or {}).get("boxes")
    if not report["success"]:
        return "failed", "fail"
    if dropped:
        return f"passed after dropping {dropped} boxes", "warn"
    return "passed", "pass"


def render_html(report: dict[str, Any]) -> str:
    """The report dict :func:`include.preprocess.quality.validate` writes as ``quality.json``, as HTML."""
    verdict, badge_class = _verdict(report)
    badge = f'<span class="badge {badge_class}">{escape(verdict)}</span>'
    table, params = report["table"], report["parameters"]
    facts = (
        f"<p>{table['images']} images, {table['boxes']} boxes, {table['classes']} classes. "
        f"Policy <b>{escape(report['policy'])}</b>; label_width {params['label_width']} "
        f"(at most {params['max_objects_per_image']} objects per image), "
        f"minimum box side {params['min_box_side']:g} px, tolerance {params['tolerance']:g} px.</p>"
    )
    dropped = report.get("dropped")
    if dropped:
        out = report["output_table"]
        facts += (
            f"<p>Dropped {dropped['boxes']} boxes ({dropped['images']} images left with none); "
            f"{dropped['excluded_at_ingest']} entries were already excluded at ingest (see quarantine.json). "
            f"Output: {out['images']} images, {out['boxes']} boxes.</p>"
        )
    if report.get("drop_hint"):
        facts += f"<p><b>Fix:</b> {escape(report['drop_hint'])}</p>"
    dropping = report["policy"] == "drop"
    sections = "".join(_check_section(c, dropping) for c in report["checks"])
    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>Data quality report</title>"
        f"<style>{STYLE}</style></head><body><h1>Bounding-box quality gate {badge}</h1>"
        f"<p class='sub'><code>{escape(report['input'])}</code></p>{facts}"
        f"<h2>Checks</h2>{_summary_table(report['checks'], dropping)}<h2>Details</h2>{sections}</body></html>"
    )
