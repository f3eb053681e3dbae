"""Metrics of a SageMaker training job: its final metrics and its per-epoch curves from CloudWatch Logs.

SageMaker writes a job's output to the log group ``/aws/sagemaker/TrainingJobs``, one stream per
instance named ``<job name>/algo-<n>-<timestamp>``. The streams are read to the end, page by page
(``get_log_events`` until ``nextForwardToken`` comes back unchanged), and parsed with the same
line templates the local trainer writes (:mod:`include.sagemaker.metrics`).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from include.sagemaker.metrics import MetricRecord, epoch_table, final_values, parse_lines

LOG_GROUP = "/aws/sagemaker/TrainingJobs"


def log_streams(logs_client: Any, job_name: str) -> list[str]:
    """The job's log stream names (every instance), in name order."""
    from botocore.exceptions import ClientError

    names: list[str] = []
    kwargs: dict[str, Any] = {"logGroupName": LOG_GROUP, "logStreamNamePrefix": f"{job_name}/"}
    while True:
        try:
            page = logs_client.describe_log_streams(**kwargs)
        except ClientError as err:
            if err.response.get("Error", {}).get("Code") == "ResourceNotFoundException":
                return []  # no log group yet: nothing was logged in this account and region
            raise
        names.extend(stream["logStreamName"] for stream in page.get("logStreams", []))
        token = page.get("nextToken")
        if not token or token == kwargs.get("nextToken"):
            return sorted(names)
        kwargs["nextToken"] = token


def stream_messages(logs_client: Any, stream: str, *, page_size: int | None = None) -> Iterator[str]:
    """Every message of one log stream, oldest first, following ``nextForwardToken`` until it repeats."""
    kwargs: dict[str, Any] = {"logGroupName": LOG_GROUP, "logStreamName": stream, "startFromHead": True}
    if page_size:
        kwargs["limit"] = page_size
    while True:
        page = logs_client.get_log_events(**kwargs)
        for event in page.get("events", []):
            yield event["message"]
        token = page.get("nextForwardToken")
        if not token or token == kwargs.get("nextToken"):
            return
        kwargs["nextToken"] = token


def job_metric_records(logs_client: Any, job_name: str, *, page_size: int | None = None) -> list[MetricRecord]:
    """Every metric line of a training job's log streams (every instance), parsed."""
    lines = (
        message
        for stream in log_streams(logs_client, job_name)
        for message in stream_messages(logs_client, stream, page_size=page_size)
    )
    return parse_lines(lines)


def final_metrics(description: Mapping[str, Any]) -> dict[str, float]:
    """``{metric name: value}`` from a ``DescribeTrainingJob`` answer's ``FinalMetricDataList``."""
    return {m["MetricName"]: float(m["Value"]) for m in description.get("FinalMetricDataList") or []}


def training_job_metrics(
    job_name: str,
    *,
    sagemaker_client: Any | None = None,
    logs_client: Any | None = None,
    page_size: int | None = None,
) -> dict[str, Any]:
    """``{"job_name", "status", "final_metrics", "log_final_metrics", "epochs"}`` of a SageMaker training job.

    ``epochs`` holds one row per epoch (``epoch``, ``validation:mAP``, ``train:cross_entropy``,
    ``train:smooth_l1``) parsed from the job's log streams; ``log_final_metrics`` are the last
    values in the log, ``final_metrics`` what SageMaker reports.
    """
    import boto3

    sagemaker_client = sagemaker_client or boto3.client("sagemaker")
    logs_client = logs_client or boto3.client("logs")
    description = sagemaker_client.describe_training_job(TrainingJobName=job_name)
    records = job_metric_records(logs_client, job_name, page_size=page_size)
    return {
        "job_name": job_name,
        "status": description["TrainingJobStatus"],
        "final_metrics": final_metrics(description),
        "log_final_metrics": final_values(records),
        "epochs": epoch_table(records),
    }
