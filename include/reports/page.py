"""The HTML reports' common page: the stylesheet and the small builders of tables, sections and figures.

``report.html`` (evaluation) and ``monitoring.html`` share them, so the reports look alike: self-contained
pages, CSS inline, pictures as ``data:`` URIs, no scripts.
"""

from __future__ import annotations

import html
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from include.reports.figures import Picture

CSS = """
body{font-family:-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;margin:0;background:#f4f5f7;color:#1d2330}
header{background:#232f3e;color:#fff;padding:18px 32px}
header h1{margin:0 0 4px;font-size:22px} header p{margin:0;color:#c9d1dc;font-size:13px}
main{max-width:1180px;margin:0 auto;padding:16px 32px 48px}
section{background:#fff;border-radius:8px;padding:16px 22px;margin:16px 0;box-shadow:0 1px 3px rgba(0,0,0,.08)}
h2{font-size:17px;margin:0 0 12px;border-bottom:1px solid #e3e6ea;padding-bottom:6px}
.cards{display:flex;flex-wrap:wrap;gap:12px}
.card{flex:1 1 120px;background:#f8f9fb;border:1px solid #e3e6ea;border-radius:6px;padding:10px 14px}
.card .v{font-size:24px;font-weight:600} .card .k{font-size:12px;color:#5b6575}
table{border-collapse:collapse;font-size:13px;margin:4px 0 8px}
th,td{border-bottom:1px solid #e3e6ea;padding:5px 12px;text-align:left;vertical-align:top}
th{background:#f8f9fb;font-weight:600} td.n{text-align:right;font-variant-numeric:tabular-nums}
.ok{color:#137333;font-weight:600} .bad{color:#c5221f;font-weight:600}
figure{margin:8px 0 16px} figure img{max-width:100%;border:1px solid #e3e6ea;border-radius:4px}
figcaption{font-size:12px;color:#5b6575;margin-top:4px}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(460px,1fr));gap:14px}
.muted{color:#5b6575;font-size:12px} code{font-size:12px;word-break:break-all}
"""


def escape(value: Any) -> str:
    return html.escape(str(value), quote=True)


def fmt(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        size = abs(value)
        if size >= 1000:
            return f"{value:,.0f}"
        return f"{value:.2f}" if size > 1 else f"{value:.4f}" if size >= 0.001 or size == 0 else f"{value:.3g}"
    if isinstance(value, (dict, list)):
        return json.dumps(value, default=str)
    return str(value)


def cell(value: Any) -> str:
    numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
    return f'<td class="n">{escape(fmt(value))}</td>' if numeric else f"<td>{escape(fmt(value))}</td>"


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(cell(v) for v in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def key_values(items: Mapping[str, Any]) -> str:
    return table(("name", "value"), sorted(items.items()))


def section(title: str, body: str, section_id: str | None = None) -> str:
    anchor = f' id="{escape(section_id)}"' if section_id else ""
    return f"<section{anchor}><h2>{escape(title)}</h2>{body}</section>"


def figure(picture: Picture) -> str:
    caption = f"<figcaption>{escape(picture.caption)}</figcaption>" if picture.caption else ""
    return f'<figure><img src="{picture.data_uri()}" alt="{escape(picture.title)}">{caption}</figure>'
