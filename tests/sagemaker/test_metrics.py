"""Metric log lines (one definition for writer, parser and MetricDefinitions) and reading them from CloudWatch."""

from __future__ import annotations

import re
import time

import boto3
import pytest

from include.sagemaker import metrics
from include.sagemaker.requests import training_job_request
from include.sagemaker.training_metrics import LOG_GROUP, log_streams, training_job_metrics

#: The lines as the built-in algorithm writes them (shared/reference/sagemaker-object-detection.md).
ALGORITHM_LINES = {
    metrics.TRAIN_CROSS_ENTROPY: (
        "#quality_metric: host=algo-1, epoch=0, batch=10 train cross_entropy <loss>=(2.1504)",
        2.1504,
    ),
    metrics.TRAIN_SMOOTH_L1: (
        "#quality_metric: host=algo-1, epoch=0, batch=10 train smooth_l1 <loss>=(0.6919)",
        0.6919,
    ),
    metrics.VALIDATION_MAP: ("#quality_metric: host=algo-1, epoch=0, validation mAP <score>=(1.2387e-05)", 1.2387e-05),
    metrics.TRAIN_PROGRESS: ("#progress_metric: host=algo-1, completed 3 % of epochs", 3.0),
    metrics.TRAIN_THROUGHPUT: ("#throughput_metric: host=algo-1, train throughput=41.2 records/second", 41.2),
}


def test_metric_definitions_capture_the_algorithms_values() -> None:
    definitions = {d["Name"]: d["Regex"] for d in metrics.metric_definitions()}
    assert (
        definitions[metrics.VALIDATION_MAP] == r"#quality_metric: host=\S+, epoch=\S+, validation mAP <score>=\((\S+)\)"
    )
    for name, (line, value) in ALGORITHM_LINES.items():
        match = re.search(definitions[name], "[2026-01-01 00:00:00 INFO 1] " + line)
        assert match is not None and float(match.group(1)) == value
        assert re.compile(definitions[name]).groups == 1
        others = [n for n, regex in definitions.items() if n != name and re.search(regex, line)]
        assert others == []


def test_written_lines_are_the_algorithms_and_parse_back() -> None:
    assert (
        metrics.format_line(metrics.VALIDATION_MAP, 1.2387e-05, epoch=0) == ALGORITHM_LINES[metrics.VALIDATION_MAP][0]
    )
    assert (
        metrics.format_line(metrics.TRAIN_SMOOTH_L1, 0.6919, epoch=0, batch=10)
        == ALGORITHM_LINES[metrics.TRAIN_SMOOTH_L1][0]
    )
    for name, (line, value) in ALGORITHM_LINES.items():
        record = metrics.parse_line(line)
        assert record is not None and (record.name, record.value, record.host) == (name, value, "algo-1")
    assert metrics.parse_line("#quality_metric: host=algo-1, epoch=x, validation mAP <score>=(0.5)") is None
    assert metrics.parse_line("Epoch[0] Batch [10] Speed: 41.2 samples/sec") is None
    with pytest.raises(ValueError, match="needs a batch"):
        metrics.format_line(metrics.TRAIN_CROSS_ENTROPY, 1.0, epoch=1)
    with pytest.raises(ValueError, match="unknown metric"):
        metrics.format_line("validation:accuracy", 1.0)


def _epoch_lines(epochs: int, batches: int, host: str = "algo-1", offset: float = 0.0) -> list[str]:
    lines = []
    for epoch in range(epochs):
        for batch in range(batches):
            loss = 3.0 - 0.05 * epoch - 0.001 * batch + offset
            lines.append(metrics.format_line(metrics.TRAIN_CROSS_ENTROPY, loss, host=host, epoch=epoch, batch=batch))
            lines.append(metrics.format_line(metrics.TRAIN_SMOOTH_L1, loss / 3, host=host, epoch=epoch, batch=batch))
            lines.append(f"[12/01/2026 10:00:00 INFO 140] Epoch[{epoch}] Batch [{batch}] noise line")
        lines.append(metrics.format_line(metrics.VALIDATION_MAP, 0.02 * epoch + offset, host=host, epoch=epoch))
        lines.append(metrics.format_line(metrics.TRAIN_PROGRESS, 100 * (epoch + 1) / epochs, host=host))
    return lines


def test_epoch_table_takes_each_epochs_last_loss_from_the_first_host() -> None:
    records = metrics.parse_lines(_epoch_lines(3, 4, host="algo-2", offset=9.0) + _epoch_lines(3, 4))
    table = metrics.epoch_table(records)
    assert [row["epoch"] for row in table] == [0, 1, 2]
    assert table[2][metrics.VALIDATION_MAP] == pytest.approx(0.04)
    assert table[1][metrics.TRAIN_CROSS_ENTROPY] == pytest.approx(3.0 - 0.05 - 0.003)
    assert metrics.epoch_table(records, host="algo-2")[0][metrics.VALIDATION_MAP] == pytest.approx(9.0)
    final = metrics.final_values(records)
    assert final[metrics.TRAIN_PROGRESS] == 100.0 and final[metrics.VALIDATION_MAP] == pytest.approx(0.04)


def test_training_job_metrics_read_every_page_of_every_stream(aws, training_spec, hyperparameters) -> None:
    sagemaker = boto3.client("sagemaker")
    logs = boto3.client("logs")
    name = "train-detection-0123456789-t1"
    sagemaker.create_training_job(
        **training_job_request(training_spec, name=name, hyperparameters=hyperparameters, tags=[])
    )
    logs.create_log_group(logGroupName=LOG_GROUP)
    streams = {
        f"{name}/algo-1-1767225600": _epoch_lines(30, 10),
        f"{name}/algo-2-1767225600": _epoch_lines(30, 10, "algo-2", 5.0),
        f"{name}-2/algo-1-1767225600": _epoch_lines(2, 1, offset=7.0),
    }  # another job sharing the prefix
    start = int(time.time() * 1000) - 3_600_000  # CloudWatch takes events of the last 14 days only
    for stream, lines in streams.items():
        logs.create_log_stream(logGroupName=LOG_GROUP, logStreamName=stream)
        events = [{"timestamp": start + i, "message": line} for i, line in enumerate(lines)]
        logs.put_log_events(logGroupName=LOG_GROUP, logStreamName=stream, logEvents=events)
    calls: list[str] = []
    logs.meta.events.register("after-call.cloudwatch-logs.GetLogEvents", lambda **kw: calls.append("page"))

    result = training_job_metrics(name, sagemaker_client=sagemaker, logs_client=logs, page_size=100)

    lines_per_stream = len(_epoch_lines(30, 10))
    assert lines_per_stream == 960
    assert len(calls) == 2 * (lines_per_stream // 100 + 2)  # full pages, the last partial one, the repeat token
    assert [row["epoch"] for row in result["epochs"]] == list(range(30))
    assert result["epochs"][29][metrics.VALIDATION_MAP] == pytest.approx(0.58)
    assert result["epochs"][0][metrics.TRAIN_SMOOTH_L1] == pytest.approx((3.0 - 0.009) / 3)
    assert result["log_final_metrics"][metrics.TRAIN_PROGRESS] == 100.0
    assert result["status"] == "Completed"
    assert result["final_metrics"] == {"train:progress": 100.0}  # what moto reports for any job


def test_no_log_group_means_no_streams(aws) -> None:
    assert log_streams(boto3.client("logs"), "train-never-logged") == []
