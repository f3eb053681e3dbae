"""Local training jobs that do not complete: rejected requests, data mismatches, MaxRuntimeInSeconds, kills."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from include.training.hyperparameters import HyperparameterError
from include.training.local_executor import TrainingJobError, describe_local_job, run_training_job
from tests.support.tiny_jobs import make_request

pytestmark = pytest.mark.slow


def test_bad_hyperparameters_fail_before_training(tiny_data: Path, tmp_path: Path) -> None:
    request = make_request(tiny_data, tmp_path, "bad-hp", learning_rate="2")
    started = time.monotonic()
    with pytest.raises(HyperparameterError, match="learning_rate='2'"):
        run_training_job(request)
    assert time.monotonic() - started < 5
    record = describe_local_job((tmp_path / "bad-hp" / "output").as_uri())
    assert record["TrainingJobStatus"] == "Failed" and "learning_rate" in record["FailureReason"]
    assert not (tmp_path / "bad-hp" / "output" / "model.tar.gz").exists()


def test_hyperparameters_not_matching_the_data_fail_the_job(tiny_data: Path, tmp_path: Path) -> None:
    request = make_request(tiny_data, tmp_path, "bad-classes", num_classes="5")
    with pytest.raises(TrainingJobError) as err:
        run_training_job(request)
    record = err.value.description
    assert record["TrainingJobStatus"] == "Failed"
    assert record["FailureReason"].startswith("ClientError: hyperparameter num_classes='5' does not match the data")
    assert not (tmp_path / "bad-classes" / "output" / "model.tar.gz").exists()
    assert "num_classes" in (tmp_path / "bad-classes" / "output" / "training.log").read_text()


def test_max_runtime_stops_the_job(tiny_data: Path, tmp_path: Path) -> None:
    request = make_request(tiny_data, tmp_path, "short", epochs="50")
    request["StoppingCondition"]["MaxRuntimeInSeconds"] = 1
    with pytest.raises(TrainingJobError) as err:
        run_training_job(request)
    record = err.value.description
    assert (record["TrainingJobStatus"], record["SecondaryStatus"]) == ("Stopped", "MaxRuntimeExceeded")
    assert "ModelArtifacts" not in record  # no epoch finished within one second: nothing to keep
    assert not (tmp_path / "short" / "output" / "model.tar.gz").exists()


RUNNER = """
import json, sys
from include.training.local_executor import run_training_job
run_training_job(json.loads(open(sys.argv[1]).read()), workdir=sys.argv[2])
"""


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_killing_the_caller_kills_training_and_publishes_no_model(
    tiny_data: Path, tmp_path: Path, sig: signal.Signals
) -> None:
    request = make_request(tiny_data, tmp_path / "out", "killed", epochs="200")
    (tmp_path / "request.json").write_text(json.dumps(request))
    workdir = tmp_path / "work"
    root = Path(__file__).resolve().parents[2]
    parent = subprocess.Popen([sys.executable, "-c", RUNNER, str(tmp_path / "request.json"), str(workdir)], cwd=root)
    try:
        deadline = time.monotonic() + 120
        log = workdir / "training.log"
        while not (log.exists() and "Training mobilenet-1.0 SSD" in log.read_text()):
            assert parent.poll() is None and time.monotonic() < deadline, "training did not start"
            time.sleep(0.2)
        children = psutil.Process(parent.pid).children()
        assert len(children) == 1
        parent.send_signal(sig)
        parent.wait(15)
        _, alive = psutil.wait_procs(children, timeout=5)
        assert not alive, "the trainer outlived its caller"
    finally:
        if parent.poll() is None:
            parent.kill()
    output = tmp_path / "out" / "killed" / "output"
    assert not (output / "model.tar.gz").exists()
    record = json.loads((output / "training.json").read_text())
    assert record["TrainingJobStatus"] == ("Stopped" if sig == signal.SIGTERM else "InProgress")
    if sig == signal.SIGKILL:  # the retry finds the job lost with its worker: recorded failed, a new job runs
        assert record["TrainerPid"] == children[0].pid
        retried = run_training_job(make_request(tiny_data, tmp_path / "out", "killed", epochs="1"))
        assert retried["TrainingJobName"] == "killed-t2" and retried["TrainingJobStatus"] == "Completed"
        lost = json.loads((output / "training.json").read_text())
        assert lost["TrainingJobStatus"] == "Failed" and "process was lost" in lost["FailureReason"]


def test_a_completed_job_is_taken_again_without_training(trained: dict, tiny_data: Path) -> None:
    output = trained["OutputDataConfig"]["S3OutputPath"]
    request = make_request(tiny_data, Path(output.removeprefix("file://")), trained["TrainingJobName"])
    started = time.monotonic()
    again = run_training_job(request)
    assert again == trained and time.monotonic() - started < 2
