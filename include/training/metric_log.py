"""The metric log lines of SageMaker's object-detection algorithm, as the local trainer writes them.

The line templates and the regexes SageMaker's ``MetricDefinitions`` take live in
:mod:`include.sagemaker.metrics` (one definition for both backends); this module writes the lines
with the algorithm's number formats (``completed 3 % of epochs``, full-precision scores so a value
read back from the log equals the one recorded in ``training.json``) and reads a whole log back as
per-metric ``(epoch, value)`` series with :func:`parse_metrics`.
"""

from __future__ import annotations

from include.sagemaker.metrics import (
    LINE_TEMPLATES,
    TRAIN_CROSS_ENTROPY,
    TRAIN_PROGRESS,
    TRAIN_SMOOTH_L1,
    TRAIN_THROUGHPUT,
    VALIDATION_MAP,
    metric_definitions,
    parse_lines,
)

HOST = "algo-1"

#: ``Name``/``Regex`` pairs for validation:mAP, train:cross_entropy, train:smooth_l1, train:progress, train:throughput.
METRIC_DEFINITIONS: list[dict[str, str]] = metric_definitions()
METRIC_NAMES: tuple[str, ...] = tuple(d["Name"] for d in METRIC_DEFINITIONS)
LOSS_METRICS = {"cross_entropy": TRAIN_CROSS_ENTROPY, "smooth_l1": TRAIN_SMOOTH_L1}


def train_loss_line(epoch: int, batch: int, loss: str, value: float) -> str:
    """``#quality_metric`` line of a running training loss (``loss``: ``cross_entropy`` or ``smooth_l1``)."""
    return LINE_TEMPLATES[LOSS_METRICS[loss]].format(host=HOST, epoch=epoch, batch=batch, value=repr(float(value)))


def validation_line(epoch: int, value: float) -> str:
    """``#quality_metric`` line of an epoch's validation mAP."""
    return LINE_TEMPLATES[VALIDATION_MAP].format(host=HOST, epoch=epoch, value=repr(float(value)))


def progress_line(percent: int) -> str:
    """``#progress_metric`` line: the whole percentage of the planned epochs done."""
    return LINE_TEMPLATES[TRAIN_PROGRESS].format(host=HOST, value=int(percent))


def throughput_line(records_per_second: float) -> str:
    """``#throughput_metric`` line of an epoch's training speed."""
    return LINE_TEMPLATES[TRAIN_THROUGHPUT].format(host=HOST, value=f"{records_per_second:.4g}")


def parse_metrics(log_text: str) -> dict[str, list[tuple[int, float]]]:
    """Every metric value in a log, per metric name, as ``(epoch, value)`` in log order.

    Lines without an epoch (progress, throughput) take the epoch of the last line before them
    that has one (0 before any). Every metric name is present, with an empty list when unlogged.
    """
    out: dict[str, list[tuple[int, float]]] = {name: [] for name in METRIC_NAMES}
    epoch = 0
    for record in parse_lines(log_text.splitlines()):
        if record.epoch is not None:
            epoch = record.epoch
        out.setdefault(record.name, []).append((epoch, record.value))
    return out

