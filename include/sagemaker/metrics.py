"""The object-detection algorithm's metric log lines: one definition for writers, parsers and SageMaker.

The built-in algorithm logs lines such as::

    #quality_metric: host=algo-1, epoch=0, batch=10 train cross_entropy <loss>=(2.1504)
    #quality_metric: host=algo-1, epoch=0, validation mAP <score>=(1.2387e-05)

Each metric has one line template here. From it come the line the local trainer writes
(:func:`format_line`), the regex SageMaker's ``MetricDefinitions`` take (:func:`metric_definitions`,
one capture group: the value) and the parser that rebuilds per-epoch curves from a log
(:func:`parse_line`, :func:`epoch_table`, :func:`final_values`), so the two backends cannot drift apart.
"""

from __future__ import annotations

import math
import re
import string
from collections.abc import Iterable
from dataclasses import dataclass

VALIDATION_MAP = "validation:mAP"
TRAIN_CROSS_ENTROPY = "train:cross_entropy"
TRAIN_SMOOTH_L1 = "train:smooth_l1"
TRAIN_PROGRESS = "train:progress"
TRAIN_THROUGHPUT = "train:throughput"

#: Line templates; ``{value}`` is the metric, the other fields locate it (host, epoch, batch).
LINE_TEMPLATES: dict[str, str] = {
    VALIDATION_MAP: "#quality_metric: host={host}, epoch={epoch}, validation mAP <score>=({value})",
    TRAIN_CROSS_ENTROPY: (
        "#quality_metric: host={host}, epoch={epoch}, batch={batch} train cross_entropy <loss>=({value})"
    ),
    TRAIN_SMOOTH_L1: "#quality_metric: host={host}, epoch={epoch}, batch={batch} train smooth_l1 <loss>=({value})",
    TRAIN_PROGRESS: "#progress_metric: host={host}, completed {value} % of epochs",
    TRAIN_THROUGHPUT: "#throughput_metric: host={host}, train throughput={value} records/second",
}

#: Metrics that have one value per epoch, in the column order of :func:`epoch_table`.
EPOCH_METRICS = (VALIDATION_MAP, TRAIN_CROSS_ENTROPY, TRAIN_SMOOTH_L1)

_SPECIAL = re.compile(r"([\\()\[\]{}.*+?^$|])")


def _regex(template: str, named: bool) -> str:
    """Regex for a line template: literal text escaped, fields as ``\\S+`` (value captured)."""
    out = []
    for literal, field, _, _ in string.Formatter().parse(template):
        out.append(_SPECIAL.sub(r"\\\1", literal))
        if field is None:
            continue
        if named:
            out.append(rf"(?P<{field}>\S+)")
        else:
            out.append(r"(\S+)" if field == "value" else r"\S+")
    return "".join(out)


#: The regexes SageMaker's ``MetricDefinitions`` take (single capture group: the value).
METRIC_REGEXES: dict[str, str] = {name: _regex(t, named=False) for name, t in LINE_TEMPLATES.items()}
_PARSERS: dict[str, re.Pattern[str]] = {name: re.compile(_regex(t, named=True)) for name, t in LINE_TEMPLATES.items()}


def metric_definitions() -> list[dict[str, str]]:
    """``AlgorithmSpecification.MetricDefinitions`` for every metric the algorithm logs."""
    return [{"Name": name, "Regex": regex} for name, regex in METRIC_REGEXES.items()]


def format_line(
    metric: str, value: float, *, host: str = "algo-1", epoch: int | None = None, batch: int | None = None
) -> str:
    """The log line for ``metric`` exactly as the built-in algorithm writes it."""
    if metric not in LINE_TEMPLATES:
        raise ValueError(f"unknown metric {metric!r}; known: {', '.join(LINE_TEMPLATES)}")
    fields = {f for _, f, _, _ in string.Formatter().parse(LINE_TEMPLATES[metric]) if f}
    if "epoch" in fields and epoch is None:
        raise ValueError(f"metric {metric} needs an epoch")
    if "batch" in fields and batch is None:
        raise ValueError(f"metric {metric} needs a batch")
    text = f"{value:.4f}" if metric in (TRAIN_PROGRESS, TRAIN_THROUGHPUT) else f"{value:.6g}"
    return LINE_TEMPLATES[metric].format(host=host, epoch=epoch, batch=batch, value=text)


@dataclass(frozen=True)
class MetricRecord:
    """One metric value found in a log line."""

    name: str
    value: float
    host: str
    epoch: int | None = None
    batch: int | None = None


def parse_line(line: str) -> MetricRecord | None:
    """The metric a log line holds, or ``None`` when it holds none (or an unreadable number)."""
    if "_metric: host=" not in line:
        return None
    for name, pattern in _PARSERS.items():
        match = pattern.search(line)
        if match is None:
            continue
        groups = match.groupdict()
        try:
            value = float(groups["value"])
            epoch = int(groups["epoch"]) if "epoch" in groups else None
            batch = int(groups["batch"]) if "batch" in groups else None
        except ValueError:
            return None
        return MetricRecord(name=name, value=value, host=groups["host"], epoch=epoch, batch=batch)
    return None


def parse_lines(lines: Iterable[str]) -> list[MetricRecord]:
    """Every metric record in ``lines``, in order."""
    return [record for record in map(parse_line, lines) if record is not None]


def _primary_host(records: list[MetricRecord], host: str | None) -> str | None:
    if host is not None:
        return host
    hosts = sorted({r.host for r in records})
    return hosts[0] if hosts else None


def epoch_series(records: Iterable[MetricRecord], host: str | None = None) -> dict[str, list[tuple[int, float]]]:
    """Per metric, one ``(epoch, value)`` per epoch in epoch order: the last value logged in that epoch.

    A training loss is logged as a running value, so its last one is the epoch's; lines without
    an epoch field (throughput) belong to the epoch of the line before them (0 before any). With
    several hosts (distributed training) one host's lines are used: ``host``, or the first host
    name in sorted order (``algo-1``). Progress lines are left out.
    """
    records = list(records)
    host = _primary_host(records, host)
    last: dict[str, dict[int, float]] = {}
    epoch = 0
    for record in records:
        if record.host != host or record.name == TRAIN_PROGRESS:
            continue
        if record.epoch is not None:
            epoch = record.epoch
        last.setdefault(record.name, {})[epoch] = record.value
    return {name: sorted(values.items()) for name, values in last.items()}


def epoch_table(records: Iterable[MetricRecord], host: str | None = None) -> list[dict[str, float | int | None]]:
    """Per-epoch rows ``{"epoch", "validation:mAP", "train:cross_entropy", "train:smooth_l1"}`` of
    :func:`epoch_series`; a metric an epoch did not log is ``None``."""
    series = epoch_series(records, host)
    epochs = sorted({epoch for name in EPOCH_METRICS for epoch, _ in series.get(name, [])})
    values = {name: dict(series.get(name, [])) for name in EPOCH_METRICS}
    return [{"epoch": epoch, **{name: values[name].get(epoch) for name in EPOCH_METRICS}} for epoch in epochs]


def final_values(records: Iterable[MetricRecord], host: str | None = None) -> dict[str, float]:
    """The last finite value of each metric (what SageMaker reports as ``FinalMetricDataList``)."""
    records = list(records)
    host = _primary_host(records, host)
    return {r.name: r.value for r in records if r.host == host and math.isfinite(r.value)}
