"""The algorithm's metric log lines: exact text, SageMaker regexes, parsing back."""

from __future__ import annotations

import re

from include.training import metric_log


def test_lines_are_the_algorithms() -> None:
    assert (metric_log.train_loss_line(0, 10, "cross_entropy", 2.1504)
            == "#quality_metric: host=algo-1, epoch=0, batch=10 train cross_entropy <loss>=(2.1504)")
    assert (metric_log.train_loss_line(0, 10, "smooth_l1", 0.6919)
            == "#quality_metric: host=algo-1, epoch=0, batch=10 train smooth_l1 <loss>=(0.6919)")
    assert (metric_log.validation_line(0, 1.2387e-05)
            == "#quality_metric: host=algo-1, epoch=0, validation mAP <score>=(1.2387e-05)")
    assert metric_log.progress_line(3) == "#progress_metric: host=algo-1, completed 3 % of epochs"
    assert (metric_log.throughput_line(41.2)
            == "#throughput_metric: host=algo-1, train throughput=41.2 records/second")


def test_metric_definitions_capture_each_value() -> None:
    lines = {
        "validation:mAP": metric_log.validation_line(4, 0.5),
        "train:cross_entropy": metric_log.train_loss_line(4, 20, "cross_entropy", 1.25),
        "train:smooth_l1": metric_log.train_loss_line(4, 20, "smooth_l1", 0.75),
        "train:progress": metric_log.progress_line(50),
        "train:throughput": metric_log.throughput_line(12.5),
    }
    definitions = {d["Name"]: d["Regex"] for d in metric_log.METRIC_DEFINITIONS}
    assert set(definitions) == set(lines)
    for name, line in lines.items():
        matches = [other for other, regex in definitions.items() if re.search(regex, line)]
        assert matches == [name]
        assert float(re.search(definitions[name], line).group(1)) in (0.5, 1.25, 0.75, 50.0, 12.5)


def test_parse_metrics_assigns_epochs_in_log_order() -> None:
    value = 0.123456789012345678
    log = "\n".join(
        [
            "Staging channels train, validation",
            metric_log.train_loss_line(0, 10, "cross_entropy", 3.0),
            metric_log.throughput_line(9.5),
            metric_log.validation_line(0, value),
            metric_log.progress_line(50),
            metric_log.train_loss_line(1, 10, "cross_entropy", 2.0),
            metric_log.validation_line(1, 0.25),
            "#quality_metric: host=algo-1, epoch=1, validation mAP <score>=(not-a-number)",
        ]
    )
    parsed = metric_log.parse_metrics(log)
    assert parsed["validation:mAP"] == [(0, value), (1, 0.25)]  # full precision survives the log
    assert parsed["train:cross_entropy"] == [(0, 3.0), (1, 2.0)]
    assert parsed["train:throughput"] == [(0, 9.5)] and parsed["train:progress"] == [(0, 50.0)]
    assert parsed["train:smooth_l1"] == []
