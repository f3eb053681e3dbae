"""Local hyperparameter tuning: request checks, ranges, and a real two-trial tuning job."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from include.training.local_tuner import (
    ParameterRange,
    TuningRequestError,
    _Tuning,
    parse_ranges,
    run_tuning_job,
    trial_job_name,
)
from tests.support.tiny_jobs import make_request


def tuning_request(data: Path, output: Path, name: str, *, max_jobs: int = 2, parallel: int = 2,
                   strategy: str = "Random", ranges: dict[str, Any] | None = None) -> dict[str, Any]:
    """A CreateHyperParameterTuningJob request over the tiny data set (one-epoch trials)."""
    training = make_request(data, output, "unused", epochs="1")
    static = {k: v for k, v in training.pop("HyperParameters").items() if k not in ("learning_rate", "optimizer")}
    training.pop("TrainingJobName")
    return {
        "HyperParameterTuningJobName": name,
        "HyperParameterTuningJobConfig": {
            "Strategy": strategy,
            "HyperParameterTuningJobObjective": {"Type": "Maximize", "MetricName": "validation:mAP"},
            "ResourceLimits": {"MaxNumberOfTrainingJobs": max_jobs, "MaxParallelTrainingJobs": parallel},
            "ParameterRanges": ranges or {
                "ContinuousParameterRanges": [
                    {"Name": "learning_rate", "MinValue": "0.0001", "MaxValue": "0.01", "ScalingType": "Logarithmic"}
                ],
                "CategoricalParameterRanges": [{"Name": "optimizer", "Values": ["adam", "rmsprop"]}],
            },
            "TrainingJobEarlyStoppingType": "Off",
        },
        "TrainingJobDefinition": {"StaticHyperParameters": static, **training},
    }


class _Trial:
    """Stands in for an Optuna trial: returns the middle (or first) of what it is offered."""

    def suggest_float(self, name: str, low: float, high: float, log: bool = False) -> float:
        return (low * high) ** 0.5 if log else (low + high) / 2

    def suggest_int(self, name: str, low: int, high: int, log: bool = False) -> int:
        return (low + high) // 2

    def suggest_categorical(self, name: str, values: list[str]) -> str:
        return values[0]


def test_ranges_respect_scaling_types() -> None:
    ranges = parse_ranges(
        {
            "ContinuousParameterRanges": [
                {"Name": "learning_rate", "MinValue": "1e-6", "MaxValue": "0.5", "ScalingType": "Auto"},
                {"Name": "momentum", "MinValue": "0", "MaxValue": "0.99", "ScalingType": "ReverseLogarithmic"},
                {"Name": "weight_decay", "MinValue": "0.1", "MaxValue": "0.3", "ScalingType": "Auto"},
            ],
            "IntegerParameterRanges": [{"Name": "mini_batch_size", "MinValue": "8", "MaxValue": "64"}],
            "CategoricalParameterRanges": [{"Name": "optimizer", "Values": ["sgd", "adam"]}],
        }
    )
    values = {r.name: r.suggest(_Trial()) for r in ranges}
    assert float(values["learning_rate"]) == pytest.approx((1e-6 * 0.5) ** 0.5)  # Auto: wide positive -> log
    assert float(values["momentum"]) == pytest.approx(1 - (0.01 * 1.0) ** 0.5)  # 1 - x on a log scale
    assert float(values["weight_decay"]) == pytest.approx(0.2)  # Auto: narrow -> linear
    assert values["mini_batch_size"] == "36" and values["optimizer"] == "sgd"
    assert ParameterRange("x", "integer", 8, 64, "Logarithmic").suggest(_Trial()) == "36"


@pytest.mark.parametrize(
    ("ranges", "words"),
    [
        ({"ContinuousParameterRanges": [{"Name": "lr", "MinValue": "0", "MaxValue": "1"}]}, "'lr' is not an"),
        ({"ContinuousParameterRanges": [{"Name": "momentum", "MinValue": "0.9", "MaxValue": "0.1"}]}, "MinValue <="),
        ({"ContinuousParameterRanges": [{"Name": "momentum", "MinValue": "0", "MaxValue": "1",
                                         "ScalingType": "Logarithmic"}]}, "cannot use Logarithmic"),
        ({"CategoricalParameterRanges": [{"Name": "optimizer", "Values": []}]}, "Values is empty"),
        ({"GridRanges": []}, "unknown key"),
    ],
)
def test_bad_ranges_are_named(ranges: dict[str, Any], words: str) -> None:
    with pytest.raises(TuningRequestError, match=words):
        parse_ranges(ranges)


def test_bad_requests_fail_before_any_trial(tiny_data: Path, tmp_path: Path) -> None:
    request = tuning_request(tiny_data, tmp_path, "bad-strategy", strategy="Hyperband")
    with pytest.raises(TuningRequestError, match="Strategy 'Hyperband'"):
        run_tuning_job(request)
    request = tuning_request(tiny_data, tmp_path, "static-clash")
    request["TrainingJobDefinition"]["StaticHyperParameters"]["optimizer"] = "sgd"
    with pytest.raises(TuningRequestError, match="optimizer both static and tuned"):
        run_tuning_job(request)
    assert not list(tmp_path.iterdir())


def test_trial_names_follow_sagemaker() -> None:
    name = trial_job_name("local-tuning-1", 2)
    assert name.startswith("local-tuning-1-002-") and len(name.rsplit("-", 1)[1]) == 8
    assert name == trial_job_name("local-tuning-1", 2)


def test_of_equal_objectives_the_first_trial_is_best(tmp_path: Path) -> None:
    tuning = _Tuning(tuning_request(tmp_path, tmp_path, "ties", max_jobs=3))
    for number, value in ((3, 0.25), (2, 0.5), (1, 0.5)):  # finished last to first
        description = {"TrainingJobStatus": "Completed",
                       "FinalMetricDataList": [{"MetricName": "validation:mAP", "Value": value}]}
        tuning.trials[number] = tuning.summary(trial_job_name("ties", number), {}, description, None)
    assert tuning.best()["TrainingJobName"] == trial_job_name("ties", 1)
    tuning.direction = "minimize"
    assert tuning.best()["TrainingJobName"] == trial_job_name("ties", 3)


@pytest.mark.slow
def test_two_trials_are_recorded_and_the_best_model_handed_on(tiny_data: Path, tmp_path: Path) -> None:
    record = run_tuning_job(tuning_request(tiny_data, tmp_path, "tiny-tune"), seed=1)
    assert record["HyperParameterTuningJobStatus"] == "Completed"
    trials = record["TrainingJobSummaries"]
    assert len(trials) == 2 and record["TrainingJobStatusCounters"]["Completed"] == 2
    for trial in trials:
        assert trial["TrainingJobName"].startswith("tiny-tune-00")
        assert set(trial["TunedHyperParameters"]) == {"learning_rate", "optimizer"}
        assert 1e-4 <= float(trial["TunedHyperParameters"]["learning_rate"]) <= 1e-2
        assert trial["ObjectiveStatus"] == "Succeeded"
        described = json.loads((tmp_path / trial["TrainingJobName"] / "output" / "training.json").read_text())
        assert described["HyperParameters"]["_tuning_objective_metric"] == "validation:mAP"
        assert described["HyperParameters"]["learning_rate"] == trial["TunedHyperParameters"]["learning_rate"]
        objective = trial["FinalHyperParameterTuningJobObjectiveMetric"]
        assert objective["MetricName"] == "validation:mAP"
        assert objective["Value"] == next(m["Value"] for m in described["FinalMetricDataList"]
                                          if m["MetricName"] == "validation:mAP")
    best = max(trials, key=lambda t: t["FinalHyperParameterTuningJobObjectiveMetric"]["Value"])
    assert record["BestTrainingJob"]["TrainingJobName"] == best["TrainingJobName"]
    copied = tmp_path / "tiny-tune" / "model.tar.gz"
    assert copied.read_bytes() == (tmp_path / best["TrainingJobName"] / "output" / "model.tar.gz").read_bytes()
    assert json.loads((tmp_path / "tiny-tune" / "tuning.json").read_text()) == record
