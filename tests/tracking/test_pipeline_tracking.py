"""Two runs of the pipeline on a data set that is not in the repository (a slice of BCCD), then MLflow's own client
against the tracking server: the run tree, the training history against ``training.json``, the request's
hyperparameters, the champion alias, and a deliberately weaker run that registers a version but takes nothing.
The CLI's ``models``, ``promote`` and ``rollback`` work on what the runs left.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from include.cli import main
from tests.support.shared_data import BCCD

pytestmark = pytest.mark.slow

N_IMAGES = 24
#: Small inputs for 2 CPUs; 3 epochs reach a validation mAP above the 1-epoch run's on this slice.
SETTINGS = {
    "TRAINING__HYPERPARAMETERS__IMAGE_SHAPE": "160",
    "RECORDIO__RESIZE": "160",
    "EVALUATION__SAMPLES": "2",
    "EVALUATION__PROMOTION_THRESHOLD": "0",
    "TRACKING__EXPERIMENT": "bccd_tracking_test",
    "TRACKING__REGISTERED_MODEL": "bccd_tracking_test",
}


@pytest.fixture(scope="module")
def bccd_slice(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The first ``N_IMAGES`` BCCD images and annotations, copied (VOC layout, no split lists: ingest splits)."""
    if not (BCCD / "Annotations").is_dir():
        pytest.skip(f"the BCCD data set is not at {BCCD}")
    root = tmp_path_factory.mktemp("bccd-slice")
    for xml in sorted((BCCD / "Annotations").glob("*.xml"))[:N_IMAGES]:
        for source, folder in ((xml, "Annotations"), (BCCD / "JPEGImages" / f"{xml.stem}.jpg", "JPEGImages")):
            (root / folder).mkdir(exist_ok=True)
            shutil.copyfile(source, root / folder / source.name)
    return root


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> dict:
    assert main(["--json", *argv]) == 0, capsys.readouterr().err
    return json.loads(capsys.readouterr().out)


@pytest.fixture(scope="module")
def runs_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("bccd-runs")
    return {"STORAGE__BASE_URI": str(root / "runs"), "LOCAL__ENDPOINT_STATE_DIR": str(root / "endpoints"), **SETTINGS}


def _run(capsys, monkeypatch, runs_env, bccd_slice: Path, run_id: str, epochs: int) -> dict:
    for key, value in runs_env.items():
        monkeypatch.setenv(f"DETECTION__{key}", value)
    flags = ["--dataset-source", str(bccd_slice), "--dataset-format", "voc", "--quality-policy", "drop"]
    return _cli(capsys, "run", *flags, "--epochs", str(epochs), "--no-deploy", "--run-id", run_id)


def test_runs_are_tracked_and_a_weaker_run_registers_without_taking_the_champion_alias(
    bccd_slice, runs_env, tracking_uri, mlflow_client, monkeypatch, capsys
) -> None:
    strong = _run(capsys, monkeypatch, runs_env, bccd_slice, "bccd-3-epochs", 3)
    weak = _run(capsys, monkeypatch, runs_env, bccd_slice, "bccd-1-epoch", 1)

    experiment = mlflow_client.get_experiment_by_name("bccd_tracking_test")
    pipeline = mlflow_client.search_runs(
        [experiment.experiment_id],
        "tags.`detection.airflow_run_id` = 'bccd-3-epochs' and tags.`detection.step` = 'pipeline'",
    )
    (parent,) = pipeline
    assert parent.info.status == "FINISHED" and parent.info.run_name == "bccd-3-epochs"
    assert parent.data.tags["detection.dag_id"] == "object_detection_pipeline"
    assert parent.data.tags["detection.backend"] == "local"
    assert parent.data.params["epochs"] == "3" and parent.data.params["dataset_format"] == "voc"
    assert parent.data.metrics["map"] == pytest.approx(strong["evaluation"]["map"])
    # what the run cost, and the step cache: the second run reused the first one's RecordIO build (same data)
    assert parent.data.metrics["cost.cpu_seconds"] > 0 and parent.data.metrics["cost.usd"] == 0
    (weak_parent,) = mlflow_client.search_runs(
        [experiment.experiment_id],
        "tags.`detection.airflow_run_id` = 'bccd-1-epoch' and tags.`detection.step` = 'pipeline'",
    )
    assert parent.data.tags["detection.cache.recordio"] == "miss"
    assert weak_parent.data.tags["detection.cache.recordio"] == "hit"
    assert weak_parent.data.tags["detection.cache.recordio.source_run"] == "bccd-3-epochs"
    assert weak_parent.data.tags["detection.cache.training"] == "miss"  # another epoch count

    # the data set: the gated table, its digest and counts per class and split
    (dataset_input,) = mlflow_client.get_run(parent.info.run_id).inputs.dataset_inputs
    dataset = dataset_input.dataset
    assert json.loads(dataset.source)["uri"] == strong["validate"]["uris"]["annotations"]
    assert dataset.digest == strong["validate"]["data_digest"] and len(dataset.digest) == 32
    profile = json.loads(dataset.profile)
    assert profile["boxes"] == strong["validate"]["boxes"]
    assert set(profile["per_split"]) == {"train", "validation", "test"}  # ingest drew validation and test
    assert {"RBC", "WBC", "Platelets"} <= set(profile["boxes_per_class"]["train"])

    children = {
        r.info.run_name: r
        for r in mlflow_client.search_runs(
            [experiment.experiment_id], f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'"
        )
    }
    assert set(children) == {"validate", "train", "evaluate"}
    assert all(r.info.status == "FINISHED" for r in children.values())

    # the quality gate: every check's counts, its report files
    validate = children["validate"]
    assert validate.data.metrics["checks.box_inside_image.failed"] == 0
    assert validate.data.metrics["table.boxes"] == strong["validate"]["boxes"]
    assert validate.data.params["policy"] == "drop"
    assert {a.path for a in mlflow_client.list_artifacts(validate.info.run_id, "quality")} >= {
        "quality/quality.json",
        "quality/quality.html",
    }

    # the training job: the request's hyperparameters, one history point per epoch equal to training.json's
    train = children["train"]
    output = Path(strong["training"]["artifact_uri"].removeprefix("file://")).parent
    record = json.loads((output / "training.json").read_text())
    assert train.data.params == record["HyperParameters"]
    history = mlflow_client.get_metric_history(train.info.run_id, "validation:mAP")
    assert [(m.step, m.value) for m in history] == [(e["epoch"], e["validation_map"]) for e in record["Epochs"]]
    assert len(history) == 3
    for metric, field in (("train:cross_entropy", "cross_entropy"), ("train:smooth_l1", "smooth_l1")):
        points = mlflow_client.get_metric_history(train.info.run_id, metric)
        assert [(m.step, m.value) for m in points] == [(e["epoch"], e[field]) for e in record["Epochs"]]
    assert [m.step for m in mlflow_client.get_metric_history(train.info.run_id, "train:throughput")] == [0, 1, 2]
    assert train.data.tags["detection.job_name"] == record["TrainingJobName"]
    assert train.data.metrics["training_seconds"] == record["TrainingTimeInSeconds"]
    assert [a.path for a in mlflow_client.list_artifacts(train.info.run_id, "model")] == ["model/model.tar.gz"]

    # evaluation: mAP, per-class AP, COCO mAP, the report and its pictures
    evaluate = children["evaluate"]
    document = json.loads(Path(strong["evaluation"]["evaluation_uri"].removeprefix("file://")).read_text())
    assert evaluate.data.metrics["map"] == document["map"] and evaluate.data.metrics["coco_map"] == document["coco_map"]
    for cls in document["classes"]:
        assert evaluate.data.metrics[f"classes.{cls['name']}.ap"] == cls["ap"]
    files = {a.path for a in mlflow_client.list_artifacts(evaluate.info.run_id)}
    assert {"report.html", "evaluation.json", "charts", "samples"} <= files

    # the registry: the first model is champion; the weaker one is a version that took nothing
    assert weak["evaluation"]["map"] < strong["evaluation"]["map"]
    model = mlflow_client.get_registered_model("bccd_tracking_test")
    assert model.aliases == {"champion": "1"}
    first, second = (mlflow_client.get_model_version("bccd_tracking_test", v) for v in ("1", "2"))
    assert first.run_id == train.info.run_id and first.source.endswith("/artifacts/model/model.tar.gz")
    assert float(first.tags["map"]) == strong["evaluation"]["map"] and first.tags["map_split"] == "test"
    assert first.tags["detection.data_digest"] == strong["validate"]["data_digest"]
    assert (
        second.tags["detection.gate"] == "hold"
        and "does not beat the champion (version 1)" in (second.tags["detection.gate_reason"])
    )
    assert weak["promotion"]["promote"] is False and "approval" not in weak

    # the CLI on the same registry
    listed = _cli(capsys, "models")
    assert [(v["version"], v["aliases"]) for v in listed["versions"]] == [(2, []), (1, ["champion"])]
    assert main(["rollback"]) == 1
    assert "no 'previous' version to roll back to" in capsys.readouterr().err
    promoted = _cli(capsys, "promote", "--version", "2", "--reason", "test: promote by hand")
    assert promoted["approved"] is True and promoted["replaced"] == 1
    assert mlflow_client.get_registered_model("bccd_tracking_test").aliases == {"champion": "2", "previous": "1"}
    _cli(capsys, "rollback")
    assert mlflow_client.get_registered_model("bccd_tracking_test").aliases == {"champion": "1", "previous": "2"}
    assert main(["models"]) == 0
    table = capsys.readouterr().err
    assert "champion" in table and "previous" in table and "bccd-1-epoch" in table
