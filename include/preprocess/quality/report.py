"""``quality.html``: the quality gate's report as a self-contained page a person can open.

Pictures (charts, sample images, thumbnails of offending boxes) are the files the gate wrote
under ``figures/``, embedded as ``data:`` URIs: the page needs nothing beside it.
"""

from __future__ import annotations

from html import escape
from typing import Any

from include.preprocess.quality.checks import IMAGE_CHECKS
from include.reports.figures import Picture

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
figure{margin:.4rem 0 1rem} figure img{max-width:100%;border:1px solid #d0d7de;border-radius:4px}
figcaption{font-size:.8rem;color:#5b6670}
.samples{display:grid;grid-template-columns:repeat(auto-fill,minmax(250px,1fr));gap:.8rem}
.samples figure{margin:0} td.pic{padding:.2rem} td.pic img{display:block;max-width:none}
.key{display:inline-block;border:3px solid;padding:0 .4rem;margin-right:.4rem;font-size:.85rem}
"""


def _badge(check: dict[str, Any]) -> str:
    """A check's result; under its policy drop, an error check's offending rows were dropped, not blocking."""
    if check.get("skipped"):
        return '<span class="badge skip">skipped</span>'
    if check["success"]:
        return '<span class="badge pass">pass</span>'
    dropped = check.get("policy") == "drop" and check["severity"] == "error"
    if dropped and check.get("rows") and not check.get("problems"):
        return '<span class="badge warn">dropped</span>'
    return f'<span class="badge {"warn" if check["severity"] == "warning" else "fail"}">{check["severity"]}</span>'


def _cell(value: Any, numeric: bool = False) -> str:
    text = "" if value is None else escape(str(value))
    return f'<td class="num">{text}</td>' if numeric else f"<td>{text}</td>"


def _summary_table(checks: list[dict[str, Any]]) -> str:
    head = (
        "<tr><th>check</th><th>rule</th><th>engine</th><th>policy</th><th>evaluated</th><th>failed</th>"
        "<th>result</th></tr>"
    )
    body = "".join(
        f'<tr><td><a href="#{escape(c["name"])}">{escape(c["name"])}</a></td>{_cell(c["description"])}'
        f"{_cell(c['engine'])}{_cell(c.get('policy'))}{_cell(c['evaluated'], True)}{_cell(c['failed'], True)}"
        f"<td>{_badge(c)}</td></tr>"
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


def _findings_table(check: dict[str, Any], pictures: dict[str, bytes]) -> str:
    rows = check["rows"]
    shown = rows[:ROWS_PER_CHECK]
    drawn = any(r.get("thumbnail") in pictures for r in shown)
    head = (
        "<tr><th>file:line</th><th>image</th><th>class</th><th>box (xmin, ymin, xmax, ymax)</th><th>reason</th>"
        + ("<th>picture</th>" if drawn else "")
        + "</tr>"
    )
    body = "".join(
        f"<tr><td><code>{escape(str(r['file']))}:{r['line']}</code></td>{_cell(r.get('image'))}"
        f"{_cell(r.get('class_name'))}{_cell(_box(r.get('box')))}"
        f"{_cell(r['reason'])}{_thumbnail_cell(r, pictures) if drawn else ''}</tr>"
        for r in shown
    )
    more = f"<p>{len(rows) - len(shown)} more rows in quality.json.</p>" if len(rows) > len(shown) else ""
    return f"<table>{head}{body}</table>{more}"


def _image_findings_table(check: dict[str, Any], pictures: dict[str, bytes]) -> str:
    """A check about whole images: one row per image (its boxes' lines, the reason, the picture), not per box."""
    images: dict[str, list[dict[str, Any]]] = {}
    for row in check["rows"]:
        images.setdefault(row["image"], []).append(row)
    shown = list(images.items())[:ROWS_PER_CHECK]
    head = "<tr><th>image</th><th>boxes: file:line</th><th>reason</th><th>picture</th></tr>"
    body = "".join(
        f"<tr>{_cell(image)}<td><code>{escape(_lines(rows))}</code></td>{_cell(rows[0]['reason'])}"
        f"{_thumbnail_cell(rows[0], pictures)}</tr>"
        for image, rows in shown
    )
    more = f"<p>{len(images) - len(shown)} more images in quality.json.</p>" if len(images) > len(shown) else ""
    return f"<table>{head}{body}</table>{more}"


def _lines(rows: list[dict[str, Any]], shown: int = 4) -> str:
    """``n: file:line, line, ...`` of an image's boxes (the first few lines)."""
    files = dict.fromkeys(r["file"] for r in rows)
    lines = ", ".join(str(r["line"]) for r in rows[:shown]) + (", ..." if len(rows) > shown else "")
    return f"{len(rows)}: {', '.join(files)}:{lines}"


def _thumbnail_cell(finding: dict[str, Any], pictures: dict[str, bytes]) -> str:
    """The offending box drawn on its image (beside the image it relates to, for duplicates)."""
    path = finding.get("thumbnail")
    if path not in pictures:
        return "<td></td>"
    alt = f"{finding['file']}:{finding['line']} {finding.get('image')}"
    return f'<td class="pic"><img src="{Picture(alt, pictures[path]).data_uri()}" alt="{escape(alt)}"></td>'


def _figure(title: str, data: bytes, caption: str = "") -> str:
    note = f"<figcaption>{escape(caption)}</figcaption>" if caption else ""
    return f'<figure><img src="{Picture(title, data).data_uri()}" alt="{escape(title)}">{note}</figure>'


def _charts_section(report: dict[str, Any], pictures: dict[str, bytes]) -> str:
    """The charts drawn from the checks' figures (the numbers are in quality.json)."""
    shown = [f for f in report.get("figures", []) if f["file"] in pictures]
    if not shown:
        return ""
    return "<h2>The data at a glance</h2>" + "".join(
        _figure(f["title"], pictures[f["file"]], f"{f['file']}; the numbers: quality.json {f['data']}") for f in shown
    )


def _samples_section(report: dict[str, Any], pictures: dict[str, bytes]) -> str:
    """A grid of sample images with their boxes drawn (one colour per class)."""
    shown = [s for s in report.get("samples", []) if s["file"] in pictures]
    if not shown:
        return ""
    cells = "".join(
        _figure(f"sample {s['image']}", pictures[s["file"]], f"{s['image']} ({s['split']}, {s['boxes']} boxes)")
        for s in shown
    )
    legend = " ".join(
        f'<span class="key" style="border-color:{escape(color)}">{escape(name)}</span>'
        for name, color in report.get("class_colors", {}).items()
    )
    return f'<h2>Sample images</h2><p>{legend}</p><div class="samples">{cells}</div>'


def _details_lines(check: dict[str, Any]) -> str:
    """The figures behind a check that the findings do not show (bands, similar names, pairs found)."""
    lines = []
    if "coco_bands" in check:
        bands = ", ".join(f"{k} {v}" for k, v in check["coco_bands"].items())
        lines.append(f"COCO size bands (original pixels): {bands}. Boxes no anchor reaches at image_shape "
                     f"{check['image_shape']}: {check['too_small_for_anchors']} too small.")
    if "too_elongated_for_anchors" in check:
        lines.append(f"Boxes too elongated for every anchor: {check['too_elongated_for_anchors']} "
                     f"(anchor width/height ratios {', '.join(f'{r:g}' for r in check['anchor_ratios'])}).")
    if "objects_per_image" in check:
        lines.append(f"Objects per image: mean {check['mean']}, median {check['median']:g}, max {check['max']}.")
    if "pairs_found" in check:
        lines.append(f"{check['pairs_found']} pair(s) within {check['distance']} bits; "
                     f"{check['images_flagged']} image(s) flagged.")
    lines += [
        f"Similar but not flagged: {p['name']!r} ({p['boxes']} boxes) and {p['like']!r} ({p['like_boxes']} boxes)."
        for p in check.get("similar_names", [])
    ]
    if "classes" in check:
        lines.append("Boxes per class: " + ", ".join(f"{k} {v['boxes']}" for k, v in check["classes"].items()) + ".")
    return "".join(f"<p>{escape(line)}</p>" for line in lines)


def _check_section(check: dict[str, Any], pictures: dict[str, bytes]) -> str:
    parts = [f'<h3 id="{escape(check["name"])}">{escape(check["name"])} {_badge(check)}</h3>']
    parts.append(f"<p>{escape(check['description'])}. Engine: {escape(check['engine'])}")
    if check["expectations"]:
        parts.append(" (" + ", ".join(f"<code>{escape(e)}</code>" for e in check["expectations"]) + ")")
    parts.append(".</p>")
    if check.get("skipped"):
        parts.append(f"<p>Skipped: {escape(check['skipped'])}.</p>")
    parts += [f"<p>{escape(p)}</p>" for p in check.get("problems", [])]
    parts.append(_details_lines(check))
    if check.get("boxes"):
        parts.append(_coverage_table(check["boxes"]))
    if check["rows"]:
        table = _image_findings_table if check["name"] in IMAGE_CHECKS else _findings_table
        parts.append(table(check, pictures))
    return "".join(parts)


def _verdict(report: dict[str, Any]) -> tuple[str, str]:
    """The title badge's words and class: passed, passed after dropping N boxes (a warning colour), failed."""
    dropped = (report.get("dropped") or {}).get("boxes")
    if not report["success"]:
        return "failed", "fail"
    if dropped:
        return f"passed after dropping {dropped} boxes", "warn"
    return "passed", "pass"


def render_html(report: dict[str, Any], pictures: dict[str, bytes] | None = None) -> str:
    """The report dict :func:`include.preprocess.quality.validate` writes as ``quality.json``, as HTML.

    ``pictures``: the bytes of the files the report names (``figures/...``), embedded in the page.
    """
    pictures = pictures or {}
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
    sections = "".join(_check_section(c, pictures) for c in report["checks"])
    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>Data quality report</title>"
        f"<style>{STYLE}</style></head><body><h1>Bounding-box quality gate {badge}</h1>"
        f"<p class='sub'><code>{escape(report['input'])}</code></p>{facts}"
        f"<h2>Checks</h2>{_summary_table(report['checks'])}"
        f"{_charts_section(report, pictures)}{_samples_section(report, pictures)}"
        f"<h2>Details</h2>{sections}</body></html>"
    )
