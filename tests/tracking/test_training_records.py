"""Training and tuning jobs as MLflow runs: the request's hyperparameters, one history point per epoch and metric
(not two after a retry), the model the registry will take, a tuning job's trials nested under it."""

from __future__ import annotations

import json
from pathlib import Path

from include import storage
from include.tracking.training import record_training
from tests.support.evaluation_helpers import make_training_dir, tuning_record

#: What TRAINING_LOG holds per epoch: the last losses logged in it, and its validation mAP.
EPOCHS = [(0, 2.2, 0.9, 0.05), (1, 1.6, 0.7, 0.21), (2, 1.2, 0.55, 0.34), (3, 1.0, 0.5, 0.31)]


def _model(tmp_path: Path) -> str:
    path = tmp_path / "source-model.tar.gz"
    path.write_bytes(b"not really a model: nothing here loads it")
    return storage.normalize(path)


def test_a_training_job_is_one_run_with_its_history_logged_once(tracking_ref, tmp_path, mlflow_client) -> None:
    output = make_training_dir(tmp_path / "training" / "job-1" / "output", _model(tmp_path), None, job="job-1")
    record = json.loads((output / "training.json").read_text())
    weights = {"file": "mobilenet1.0.params", "sha256": "ab" * 32, "source": "shared/models"}  # started from these
    (output / "training.json").write_text(json.dumps({**record, "PretrainedWeights": weights}))
    result = {
        "job_name": "job-1",
        "artifact_uri": storage.normalize(output / "model.tar.gz"),
        "hyperparameters": record["HyperParameters"],
        "final_metrics": {},
    }
    first = record_training(tracking_ref, result, "local", storage.normalize(tmp_path / "training"), None)
    again = record_training(tracking_ref, result, "local", storage.normalize(tmp_path / "training"), None)  # a retry
    assert again["run_id"] == first["run_id"]

    run = mlflow_client.get_run(first["run_id"])
    assert run.data.params == {
        **record["HyperParameters"],
        **{f"pretrained_weights.{k}": v for k, v in weights.items()},
    }
    assert run.data.tags["detection.job_name"] == "job-1" and run.data.metrics["training_seconds"] == 14
    for metric, column in (("validation:mAP", 3), ("train:cross_entropy", 1), ("train:smooth_l1", 2)):
        points = mlflow_client.get_metric_history(first["run_id"], metric)
        assert [(m.step, m.value) for m in points] == [(e[0], e[column]) for e in EPOCHS], metric
    # the model is among the run's artifacts (the registry's source), the same bytes as the job's
    assert first["model_source"] == f"{run.info.artifact_uri}/model/model.tar.gz"
    assert storage.read_bytes(first["model_source"]) == (output / "model.tar.gz").read_bytes()
    assert {a.path for a in mlflow_client.list_artifacts(first["run_id"])} == {"model", "training.json", "training.log"}


def test_a_tuning_job_nests_its_trials_and_records_the_best_as_a_training_run(
    tracking_ref, tmp_path, mlflow_client
) -> None:
    training = tmp_path / "training"
    best = make_training_dir(training / "tune-002-b" / "output", _model(tmp_path), None, job="tune-002-b")
    tuning = tuning_record(storage.normalize(best))
    for summary in tuning["TrainingJobSummaries"]:
        summary["TrainingJobStatus"] = "Failed" if summary["ObjectiveStatus"] == "Failed" else "Completed"
        if summary["TrainingJobName"] == "tune-002-b":
            summary["output_uri"] = storage.normalize(best)
    (training / "tune").mkdir()
    (training / "tune" / "tuning.json").write_text(json.dumps(tuning))
    result = {
        "job_name": "tune-002-b",
        "artifact_uri": storage.normalize(best / "model.tar.gz"),
        "tuning_job_name": "tune",
        "hyperparameters": {
            "base_network": "mobilenet-1.0",
            "epochs": "4",
            "learning_rate": "0.002",
            "mini_batch_size": "8",
        },
        "tuned_hyperparameters": {"learning_rate": "0.002", "mini_batch_size": "8"},
        "final_metrics": {"validation:mAP": 0.34},
    }
    tracked = record_training(tracking_ref, result, "local", storage.normalize(training), None)

    experiment = [tracking_ref.experiment_id]
    (tune,) = mlflow_client.search_runs(experiment, "tags.`detection.step` = 'tune'")
    assert tune.data.params == {"base_network": "mobilenet-1.0", "epochs": "4"}
    assert tune.data.metrics["best.validation:mAP"] == 0.34 and tune.data.tags["detection.trials"] == "3"
    trials = {
        r.info.run_name: r
        for r in mlflow_client.search_runs(experiment, f"tags.`mlflow.parentRunId` = '{tune.info.run_id}'")
    }
    assert set(trials) == {"tune-001-a", "tune-002-b", "tune-003-c"}
    assert trials["tune-001-a"].data.params["learning_rate"] == "0.01"
    assert trials["tune-001-a"].data.metrics["objective.validation:mAP"] == 0.21
    assert trials["tune-001-a"].data.tags["detection.job_status"] == "Completed"
    failed = trials["tune-003-c"]
    assert failed.info.status == "FAILED" and "objective.validation:mAP" not in failed.data.metrics
    # the best trial is the model's training run: history and model, like a training job's
    assert tracked["run_id"] == trials["tune-002-b"].info.run_id
    history = mlflow_client.get_metric_history(tracked["run_id"], "validation:mAP")
    assert [m.value for m in history] == [e[3] for e in EPOCHS]
    assert tracked["model_source"].endswith(f"{tracked['run_id']}/artifacts/model/model.tar.gz")
