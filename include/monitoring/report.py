"""``monitoring.html``: one monitoring pass on a self-contained page, in the look of the other reports.

The verdict and its reason first, then every feature's comparison (PSI, the two-sample test, thresholds),
then one chart per feature: the baseline's and the current distribution on the same axes (shares of
images or detections), drifted features first.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np

from include.monitoring.drift import FeatureDrift, category_label
from include.monitoring.model_monitor import feature_values
from include.reports.figures import Picture, new_figure, to_png
from include.reports.page import CSS, escape, figure, key_values, section, table

BASELINE_COLOR, CURRENT_COLOR = "#1f77b4", "#ff7f0e"
VERDICTS = {
    "passed": ("ok", "no drift"),
    "drifted": ("bad", "drift"),
    "insufficient_data": ("bad", "insufficient data"),
}


def _chart(drift: FeatureDrift, baseline: Sequence[Any], current: Sequence[Any]) -> Picture:
    """The two distributions of one feature, as shares (bars for categories, step histograms for numbers)."""
    fig = new_figure((6.0, 3.2))
    ax = fig.add_subplot()
    if drift.method == "chi-square":
        base, cur = Counter(map(category_label, baseline)), Counter(map(category_label, current))
        labels = sorted(set(base) | set(cur), key=lambda k: -(base[k] + cur[k]))[:15]
        x = np.arange(len(labels))
        ax.bar(
            x - 0.2, [base[k] / max(1, sum(base.values())) for k in labels], 0.4, label="baseline", color=BASELINE_COLOR
        )
        ax.bar(x + 0.2, [cur[k] / max(1, sum(cur.values())) for k in labels], 0.4, label="current", color=CURRENT_COLOR)
        ax.set_xticks(x, labels, rotation=30 if len(labels) > 5 else 0, fontsize=8)
    else:
        b, c = np.asarray(baseline, dtype=float), np.asarray(current, dtype=float)
        edges = np.histogram_bin_edges(np.concatenate([b, c]), bins=30)
        for values, name, color in ((b, "baseline", BASELINE_COLOR), (c, "current", CURRENT_COLOR)):
            ax.hist(
                values,
                bins=edges,
                weights=np.full(len(values), 1 / len(values)),
                histtype="stepfilled",
                alpha=0.45,
                label=name,
                color=color,
                edgecolor=color,
            )
    ax.set_ylabel("share")
    ax.set_title(
        f"{drift.name}: PSI {drift.psi:.2f}, p {drift.p_value:.2g}" + (" (drift)" if drift.drifted else ""),
        fontsize=10,
        color="#c5221f" if drift.drifted else "#1d2330",
    )
    ax.legend(fontsize=8)
    return Picture(drift.name, to_png(fig), caption=drift.summary)


def render(
    result: Mapping[str, Any], drifts: Sequence[FeatureDrift], baseline: Mapping[str, Any], current: Mapping[str, Any]
) -> str:
    """The page of one monitoring pass (``result``: :func:`include.monitoring.monitor.monitor`'s summary)."""
    css_class, verdict = VERDICTS[result["status"]]
    cards = "".join(
        f'<div class="card"><div class="v{" " + c if c else ""}">{escape(v)}</div><div class="k">{escape(k)}</div>'
        "</div>"
        for k, v, c in (
            ("verdict", verdict, css_class),
            ("images", result["images"], ""),
            ("features drifted", f"{len(result['drifted'])} of {len(drifts)}", css_class if result["drifted"] else ""),
            ("unreadable images", result["unreadable_images"], "bad" if result["unreadable_images"] else ""),
        )
    )
    ordered = sorted(drifts, key=lambda d: (not d.drifted, -d.psi))
    rows = [
        (
            d.name,
            "drift" if d.drifted else "ok",
            d.method,
            d.baseline_n,
            d.current_n,
            d.psi,
            d.thresholds.psi,
            d.p_value,
            d.thresholds.p_value,
            d.summary,
        )
        for d in ordered
    ]
    charts = "".join(
        figure(_chart(d, feature_values(baseline, d.name) or [], feature_values(current, d.name) or []))
        for d in ordered
    )
    facts = {
        "source": result["source"],
        "source kind": result["source_kind"],
        "baseline": result["baseline_uri"],
        "window start": result["window"]["start"],
        "window end": result["window"]["end"],
        "images with an image read": result["input_images"],
        "images with an answer": result["prediction_images"],
        "transform error records": result["transform_errors"],
        "min images": result["min_images"],
        "score threshold": (current.get("detection") or {}).get("score_threshold"),
    }
    generated = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>Monitoring</title>"
        f"<style>{CSS}</style></head><body><header><h1>Monitoring: what the endpoint sees</h1>"
        f"<p>{escape(result['source'])} against {escape(result['baseline_uri'])} &middot; {generated}</p></header>"
        "<main>"
        + section("Verdict", f'<div class="cards">{cards}</div><p>{escape(result["reason"])}</p>')
        + section(
            "Features",
            table(
                (
                    "feature",
                    "result",
                    "test",
                    "baseline n",
                    "current n",
                    "PSI",
                    "PSI limit",
                    "p",
                    "p limit",
                    "baseline against current",
                ),
                rows,
            ),
        )
        + section("Distributions", f'<div class="grid">{charts}</div>')
        + section("Run", key_values(facts))
        + "</main></body></html>"
    )
