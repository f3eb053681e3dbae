"""The batch_inference DAG (dag.test) on both backends over a folder of BCCD photographs with one corrupt file.

Local: the registry's champion scores the folder on this machine; sagemaker: against moto's HTTP server, the
photographs in its S3, the images checked first and a manifest of the good ones sent with CreateTransformJob
through the provider's operator (moto runs no container: ``TransformContainer`` writes the ``.out`` files the
algorithm would). Both end with the same transform.json counts and pre-labels.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from include import storage
from include.run_layout import TRANSFORM_JSON
from tests.support.aws_stand_ins import REGION, ROLE_ARN
from tests.support.dag_runs import finished_run, parsed_dag
from tests.support.sagemaker_stand_ins import RequestLog, TransformContainer, registered
from tests.transform.conftest import CORRUPT, GOOD, make_photo_folder

pytestmark = pytest.mark.slow

TASKS = {"resolve": [("success", 1)], "transform": [("success", 1)], "prelabels": [("success", 1)]}
COUNTS = {"inputs": len(GOOD) + 1, "outputs": len(GOOD), "errors": 1}


def _register_champion(ref: Any, artifact: str) -> None:
    from include.tracking import artifacts, runs
    from include.tracking.registry import Registry

    run = runs.step_run(ref, "trial", trial="champion")
    source = artifacts.log_file(ref, run, artifact.removeprefix("file://"), "model")
    registry = Registry(ref.uri, ref.registered_model)
    registry.set_champion(registry.register(source, run.run_id, {"map": 0.5}).version, action="approve", by="test",
                          reason="test")  # fmt: skip


def test_local_run_scores_the_folder_with_the_champion(
    tracking_uri: str, tracking_ref: Any, spread_artifact: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DETECTION__STORAGE__BASE_URI", str(tmp_path / "runs"))
    monkeypatch.setenv("DETECTION__TRANSFORM__WORKERS", "1")  # MXNet is loaded in this process already
    _register_champion(tracking_ref, spread_artifact)
    photos = make_photo_folder(tmp_path / "unlabelled")

    tries, xcom = finished_run(parsed_dag("batch_inference").test(run_conf={"input_uri": str(photos)}))
    assert tries == TASKS, tries
    plan, transform, prelabels = xcom["resolve"], xcom["transform"], xcom["prelabels"]
    assert plan["model_source"] == "champion" and plan["model_uri"].endswith("model.tar.gz")
    assert transform["status"] == "Completed" and transform["counts"] == COUNTS
    assert transform["error_records"] == [CORRUPT] and transform["backend"] == "local"
    output = storage.local_path(plan["output_uri"])
    assert output.parent.parent.parent == tmp_path / "runs" and output.name == "transform"
    assert sorted(str(p.relative_to(output)) for p in output.rglob("*.out")) == sorted(f"{n}.out" for n in GOOD)
    assert prelabels["images"] == len(GOOD) and prelabels["left_out_with_errors"] == 1
    assert set(prelabels["files"]) == {"coco", "coco_results", "labelstudio", "labelstudio_config", "groundtruth"}


def test_sagemaker_run_checks_images_first_and_sends_a_manifest(
    moto_endpoint: str, spread_artifact: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import boto3

    bucket = "batch-inference"
    for key, value in {"STORAGE__BASE_URI": f"s3://{bucket}/runs", "SAGEMAKER__ROLE_ARN": ROLE_ARN,
                       "SAGEMAKER__BUCKET": bucket, "SAGEMAKER__REGION": REGION}.items():  # fmt: skip
        monkeypatch.setenv(f"DETECTION__{key}", value)
    s3 = boto3.client("s3", region_name=REGION)
    s3.create_bucket(Bucket=bucket)
    photos = make_photo_folder(tmp_path / "unlabelled")
    for path in sorted(p for p in photos.rglob("*") if p.is_file()):
        s3.upload_file(str(path), bucket, f"unlabelled/{path.relative_to(photos).as_posix()}")
    s3.upload_file(spread_artifact.removeprefix("file://"), bucket, "models/model.tar.gz")

    container, requests = TransformContainer(REGION), RequestLog()
    conf = {
        "backend": "sagemaker",
        "input_uri": f"s3://{bucket}/unlabelled",
        "model": f"s3://{bucket}/models/model.tar.gz",
    }
    with registered([("after-call.sagemaker.CreateTransformJob", container), ("before-send", requests)]):
        tries, xcom = finished_run(parsed_dag("batch_inference").test(run_conf=conf))
    assert tries == TASKS, tries
    transform, output = xcom["transform"], xcom["resolve"]["output_uri"]
    assert transform["backend"] == "sagemaker" and transform["counts"] == COUNTS
    assert transform["input_type"] == "ManifestFile" and container.jobs == [transform["job_name"]]
    assert requests.operations("sagemaker").count("CreateTransformJob") == 1
    assert requests.operations("sagemaker").count("CreateModel") == 1

    job = boto3.client("sagemaker", region_name=REGION).describe_transform_job(TransformJobName=transform["job_name"])
    assert (
        job["TransformInput"]["ContentType"] == "application/x-image" and job["TransformInput"]["SplitType"] == "None"
    )
    manifest = json.loads(storage.read_text(job["TransformInput"]["DataSource"]["S3DataSource"]["S3Uri"]))
    assert manifest == [{"prefix": f"s3://{bucket}/unlabelled/"}, *sorted(GOOD)]
    error = json.loads(storage.read_text(storage.join(output, f"{CORRUPT}.error.json")))
    assert error["input"] == f"s3://{bucket}/unlabelled/{CORRUPT}"
    record = json.loads(storage.read_text(storage.join(output, TRANSFORM_JSON)))
    assert (
        record["Backend"] == "sagemaker" and record["Counts"] == COUNTS and record["TransformJobStatus"] == "Completed"
    )
    prelabels = xcom["prelabels"]
    assert prelabels["images"] == len(GOOD) and prelabels["output"].startswith(f"s3://{bucket}/runs/batch_inference/")
    tasks = json.loads(storage.read_text(prelabels["files"]["labelstudio"]))
    assert {t["data"]["image"] for t in tasks} == {f"s3://{bucket}/unlabelled/{n}" for n in GOOD}


def test_new_unlabelled_images_trigger_a_run_that_takes_the_events_input() -> None:
    """Scheduled on the ``unlabelled_images`` asset; an event's ``extra`` overrides the run's params (only those)."""
    from types import SimpleNamespace

    from detection_airflow.context import run_params

    dag = parsed_dag("batch_inference")
    assert dag.timetable.asset_condition.name == "unlabelled_images"
    event = SimpleNamespace(extra={"input_uri": "s3://b/new/2026-12-04/", "score_threshold": 0.6, "owner": "x"})
    context = {"params": {"input_uri": "", "score_threshold": None, "backend": "local"},
               "triggering_asset_events": {"unlabelled_images": [event]}}  # fmt: skip
    assert run_params(context, dag.params) == {"input_uri": "s3://b/new/2026-12-04/", "score_threshold": 0.6,
                                               "backend": "local"}  # fmt: skip
