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


TUNER = """
import json, sys
from include.training.local_tuner import run_tuning_job
run_tuning_job(json.loads(open(sys.argv[1]).read()), cores=1)
"""


@pytest.mark.slow
def test_a_retried_tuning_task_polls_a_live_job_then_replaces_a_lost_one_and_takes_a_completed_one(
    tiny_data: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import subprocess
    import sys
    import threading
    import time

    import psutil

    # try 1: a tuning task (its own process) whose single trial would train for 200 epochs
    long = tuning_request(tiny_data, tmp_path, "tt", max_jobs=1, parallel=1)
    long["TrainingJobDefinition"]["StaticHyperParameters"]["epochs"] = "200"
    (tmp_path / "request.json").write_text(json.dumps(long))
    root = Path(__file__).resolve().parents[2]
    first = subprocess.Popen([sys.executable, "-c", TUNER, str(tmp_path / "request.json")], cwd=root)
    record = tmp_path / "tt" / "tuning.json"
    try:
        deadline = time.monotonic() + 120
        while not (record.exists() and list(tmp_path.glob("tt-001-*/output/training.json"))):
            assert first.poll() is None and time.monotonic() < deadline, "tuning did not start"
            time.sleep(0.2)
        assert json.loads(record.read_text())["TunerPid"] == first.pid

        # try 2 (the same run, one-epoch trials): try 1's process lives, so it re-attaches and waits for it
        outcome: dict[str, Any] = {}
        retry = threading.Thread(
            target=lambda: outcome.update(
                run_tuning_job(tuning_request(tiny_data, tmp_path, "tt", max_jobs=1, parallel=1), cores=1)
            )
        )
        with caplog.at_level("INFO", logger="include.training.local_tuner"):
            retry.start()
            time.sleep(3)
            assert retry.is_alive() and "tuning job tt of this run is still running: re-attaching" in caplog.text
            assert not (tmp_path / "tt-t2").exists()
            trainer = psutil.Process(first.pid).children(recursive=True)
            first.kill()  # try 1's worker dies: the job is lost with it
            first.wait(15)
            psutil.wait_procs(trainer, timeout=10)
            retry.join(300)
    finally:
        if first.poll() is None:
            first.kill()
    assert not retry.is_alive()
    lost = json.loads(record.read_text())
    assert lost["HyperParameterTuningJobStatus"] == "Failed" and "tuning process was lost" in lost["FailureReason"]
    assert outcome["HyperParameterTuningJobName"] == "tt-t2" and outcome["HyperParameterTuningJobStatus"] == "Completed"
    (trial,) = outcome["TrainingJobSummaries"]
    assert trial["TrainingJobName"].startswith("tt-t2-001-") and trial["TrainingJobStatus"] == "Completed"

    # try 3: the run's newest tuning job has completed: taken, nothing trains
    started = time.monotonic()
    again = run_tuning_job(tuning_request(tiny_data, tmp_path, "tt", max_jobs=1, parallel=1), cores=1)
    assert again == outcome and time.monotonic() - started < 2
    killed = [p.name for p in tmp_path.glob("tt-001-*")]  # try 1's trial, never finished
    assert len(killed) == 1 and not (tmp_path / killed[0] / "output" / "model.tar.gz").exists()
    assert {p.name for p in tmp_path.iterdir() if p.name.startswith("tt")} == {
        "tt",
        "tt-t2",
        *killed,
        trial["TrainingJobName"],
    }
