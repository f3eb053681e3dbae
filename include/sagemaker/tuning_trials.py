"""The trials of a SageMaker tuning job: listed (every page), described, and saved as the run's records.

One home for "what a tuning job's training jobs were": ListTrainingJobsForHyperParameterTuningJob
gives each trial's tuned values, objective and status (what tracking logs as one nested run per
trial); DescribeTrainingJob gives its billable and training seconds, instance type and count (what
the run's cost adds up, every trial, not only the best). :func:`save_trials` writes both where the
local tuner leaves its own: ``<S3OutputPath>/<tuning job>/tuning.json`` (DescribeHyperParameterTuningJob
plus ``TrainingJobSummaries``, each with the ``output_uri`` of its records) and
``<S3OutputPath>/<trial>/output/training.json`` per trial, so tracking and cost read one shape on both
backends and never ask SageMaker twice.
"""

from __future__ import annotations

import json
from typing import Any

from include import storage
from include.run_layout import TRAINING_JSON, TUNING_JSON
from include.sagemaker.client import paged

LIST_TRIALS = "list_training_jobs_for_hyper_parameter_tuning_job"
#: The most trials SageMaker returns per page (its MaxResults limit).
PAGE_SIZE = 100


def list_trials(sm: Any, tuning_job_name: str) -> list[dict[str, Any]]:
    """Every trial of the tuning job as ListTrainingJobsForHyperParameterTuningJob lists it, all pages, in order."""
    pages = paged(sm, LIST_TRIALS, "TrainingJobSummaries", HyperParameterTuningJobName=tuning_job_name,
                  PaginationConfig={"PageSize": PAGE_SIZE})  # fmt: skip
    return list(pages)


def describe_trials(sm: Any, summaries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each listed trial's DescribeTrainingJob answer (billable seconds, instance type and count, spot use)."""
    return [sm.describe_training_job(TrainingJobName=summary["TrainingJobName"]) for summary in summaries]


def trial_output_uri(training_uri: str, trial: str) -> str:
    """Where a trial's records go: its model's folder, ``<S3OutputPath>/<trial>/output`` (SageMaker's layout)."""
    return storage.join(training_uri, trial, "output")


def save_trials(sm: Any, tuning_job_name: str, training_uri: str) -> dict[str, Any]:
    """Describe the tuning job and every trial, write ``tuning.json`` and each trial's ``training.json`` under
    ``training_uri`` (the job's S3OutputPath); returns the tuning record."""
    summaries = list_trials(sm, tuning_job_name)
    for description in describe_trials(sm, summaries):
        description.pop("ResponseMetadata", None)
        output = trial_output_uri(training_uri, description["TrainingJobName"])
        storage.write_text(storage.join(output, TRAINING_JSON), json.dumps(description, default=str, indent=2))
    for summary in summaries:
        summary["output_uri"] = trial_output_uri(training_uri, summary["TrainingJobName"])
    record = sm.describe_hyper_parameter_tuning_job(HyperParameterTuningJobName=tuning_job_name)
    record.pop("ResponseMetadata", None)
    record = {**record, "TrainingJobSummaries": summaries, "Backend": "sagemaker",
              "output_uri": storage.join(training_uri, tuning_job_name)}  # fmt: skip
    storage.write_text(storage.join(training_uri, tuning_job_name, TUNING_JSON),
                       json.dumps(record, default=str, indent=2))  # fmt: skip
    return record
