"""The pipeline DAG on the SageMaker backend, end to end against moto's HTTP server.

``dag.test`` runs every task of ``object_detection_pipeline`` in this process (the deploy
operator's deferral too: its trigger runs inline) with ``backend=sagemaker``. Every AWS client
(boto3, the Amazon provider's hooks and triggers, s3fs under ``include.storage``) reaches moto
through ``AWS_ENDPOINT_URL``; the run's files live in moto's S3. moto runs no containers, so
``sagemaker_stand_ins`` writes what the training container would and answers for the endpoint
with its model; binary InvokeEndpoint and Stop* are answered client-side by
``tests/sagemaker/aws_stand_ins.py``. The data set, a small slice of the real BCCD data set, is in moto's S3 too.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from include import storage
from include.sagemaker.model_packages import group_name
from tests.support.aws_stand_ins import BUCKET, REGION, ROLE_ARN, STOPS, InvokeStandIn, StopStandIn
from tests.support.dag_runs import finished_run
from tests.support.sagemaker_stand_ins import (
    InferenceContainer,
    ProcessingContainer,
    RequestLog,
    TrainingContainer,
    moto_server,
    registered,
)
from tests.support.shared_data import BCCD

pytestmark = pytest.mark.slow

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MXNET_CPU_WORKER_NTHREADS", "1")

N_IMAGES = 20
SMOKE_IMAGES = 4
EPOCHS = 3
IMAGE_SHAPE = 300  # the algorithm's default and least for resnet-50; the profile's 512 costs 3x the CPU
#: What the SageMaker SDK's tables give for the built-in object-detection algorithm in us-east-1.
BUILTIN_IMAGE = "811284229777.dkr.ecr.us-east-1.amazonaws.com/object-detection:1"
#: The project's image as `make image-push` names it (the RecordIO shards' Processing jobs).
PROJECT_IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/detection-pipeline:latest"
STORAGE_BASE = f"s3://{BUCKET}/object-detection"
DATASET_KEY = "datasets/bccd"
PIPELINE_TASKS = {
    "resolve_config", "ingest", "validate", "plan_recordio", "build_recordio_shard", "merge_recordio",
    "choose_training", "train", "evaluate", "export", "promotion_gate", "approve", "deploy", "smoke_test",
    "teardown", "close_tracking",
}


@pytest.fixture(scope="module")
def bccd_slice() -> list[Path]:
    """The first ``N_IMAGES`` BCCD annotations and their images (VOC layout; no split lists: the ingest splits)."""
    if not (BCCD / "Annotations").is_dir():
        pytest.skip(f"the BCCD data set is not at {BCCD}")
    annotations = sorted((BCCD / "Annotations").glob("*.xml"))[:N_IMAGES]
    return [path for xml in annotations for path in (xml, BCCD / "JPEGImages" / f"{xml.stem}.jpg")]


@dataclass
class Outcome:
    """A finished run and what AWS saw of it."""

    state: str
    tries: dict[str, list[tuple[str, int]]]  # task id -> [(state, try number)] per map index
    xcom: dict[str, Any]
    requests: RequestLog
    run_id: str
    training: TrainingContainer
    inference: InferenceContainer
    processing: ProcessingContainer
    invokes: InvokeStandIn
    stops: StopStandIn
    moto_url: str

    def states(self, task_id: str) -> set[str]:
        return {state for state, _ in self.tries[task_id]}


@pytest.fixture
def run_on_moto(
    pipeline: Any, bccd_slice: list[Path], monkeypatch: pytest.MonkeyPatch, tracking_uri: str
) -> Iterator[Callable[..., Outcome]]:
    """Runs the DAG on the sagemaker backend against a fresh moto server that lives until the test ends."""
    import boto3

    with moto_server() as url:
        monkeypatch.setenv("AWS_ENDPOINT_URL", url)
        monkeypatch.delenv("AWS_PROFILE", raising=False)
        monkeypatch.delenv("DETECTION_CONFIG_FILE", raising=False)
        for key, value in {
            "SAGEMAKER__ROLE_ARN": ROLE_ARN,
            "SAGEMAKER__BUCKET": BUCKET,
            "SAGEMAKER__REGION": REGION,
            "EVALUATION__PROMOTION_THRESHOLD": "0",
            "TRAINING__HYPERPARAMETERS__IMAGE_SHAPE": str(IMAGE_SHAPE),
            "EVALUATION__SAMPLES": "2",
            "DEPLOY__SMOKE_IMAGES": str(SMOKE_IMAGES),
        }.items():
            monkeypatch.setenv(f"DETECTION__{key}", value)
        s3 = boto3.client("s3", region_name=REGION)
        s3.create_bucket(Bucket=BUCKET)
        for path in bccd_slice:
            s3.upload_file(str(path), BUCKET, f"{DATASET_KEY}/{path.relative_to(BCCD).as_posix()}")

        def run(
            *,
            off_contract_answers: bool = False,
            channel_format: str = "recordio",
            export: bool = False,
            processing: bool = False,
        ) -> Outcome:
            monkeypatch.setenv("DETECTION__RECORDIO__CHANNEL_FORMAT", channel_format)
            monkeypatch.setenv("DETECTION__SAGEMAKER__SHARD_PROCESSING__ENABLED", str(processing).lower())
            monkeypatch.setenv("DETECTION__SAGEMAKER__SHARD_PROCESSING__IMAGE_URI", PROJECT_IMAGE)
            processing_container = ProcessingContainer(REGION)
            requests, invokes, stops = RequestLog(), InvokeStandIn(), StopStandIn()
            training = TrainingContainer(STORAGE_BASE, REGION)
            inference = InferenceContainer(STORAGE_BASE, REGION, url, SMOKE_IMAGES, annotation=off_contract_answers)
            handlers = [
                ("before-send", requests),
                ("after-call.sagemaker.CreateTrainingJob", training),
                ("after-call.sagemaker.CreateEndpoint", inference),
                ("after-call.sagemaker.CreateProcessingJob", processing_container),
                ("before-call.sagemaker-runtime.InvokeEndpoint", invokes),
                *((f"before-call.sagemaker.{op}", stops) for op in STOPS),
            ]
            conf = {
                "backend": "sagemaker", "dataset_source": f"s3://{BUCKET}/{DATASET_KEY}", "dataset_format": "voc",
                "epochs": EPOCHS, "tune": False, "deploy": True, "keep_endpoint_minutes": 0, "export": export,
            }
            with registered(handlers):
                dr = pipeline.test(run_conf=conf)
            tries, xcom = finished_run(dr)
            return Outcome(
                str(dr.state), tries, xcom, requests, dr.run_id, training, inference, processing_container, invokes,
                stops, url,
            )  # fmt: skip

        yield run


def _left_on_aws() -> dict[str, list]:
    import boto3

    sagemaker = boto3.client("sagemaker", region_name=REGION)
    return {
        "endpoints": sagemaker.list_endpoints()["Endpoints"],
        "endpoint_configs": sagemaker.list_endpoint_configs()["EndpointConfigs"],
        "models": sagemaker.list_models()["Models"],
    }


def _assert_everything_went_to_moto(outcome: Outcome) -> None:
    assert outcome.requests.sent, "no request was sent"
    elsewhere = [(svc, op, url) for svc, op, url in outcome.requests.sent if not url.startswith(outcome.moto_url + "/")]
    assert elsewhere == []
    deploy_and_teardown = ["CreateModel", "CreateEndpointConfig", "CreateEndpoint",
                           "DeleteEndpoint", "DeleteEndpointConfig", "DeleteModel"]
    sent = outcome.requests.operations("sagemaker")
    assert set(deploy_and_teardown + ["CreateTrainingJob"]) <= set(sent), sent
    assert {"PutObject", "GetObject"} <= set(outcome.requests.operations("s3"))  # the stages' files, through s3fs
    assert "InvokeEndpoint" not in outcome.requests.operations("sagemaker-runtime")  # the binary stand-in answered
    assert outcome.stops.calls == []  # moto's jobs were complete: nothing to stop


def test_pipeline_trains_evaluates_deploys_and_tears_down_on_sagemaker(run_on_moto: Callable[..., Outcome]) -> None:
    import boto3

    outcome = run_on_moto(export=True, processing=True)
    assert outcome.state == "success", outcome.tries
    for task_id in PIPELINE_TASKS:
        assert outcome.states(task_id) == {"success"}, (task_id, outcome.tries[task_id])
    assert outcome.states("tune") == {"skipped"} and outcome.states("watcher") == {"skipped"}
    _assert_everything_went_to_moto(outcome)

    run = outcome.xcom["resolve_config"]
    assert outcome.xcom["ingest"]["source"] == f"s3://{BUCKET}/{DATASET_KEY}"
    assert run["config"]["backend"] == "sagemaker" and run["layout"]["root"].startswith(STORAGE_BASE + "/")
    recordio = run["layout"]["recordio"]

    # the RecordIO shards: one Processing job per mapped shard, on the project's image
    shards = len(outcome.tries["build_recordio_shard"])
    assert shards == run["config"]["recordio"]["shards"] == 2
    assert outcome.requests.operations("sagemaker").count("CreateProcessingJob") == shards
    assert len(outcome.processing.jobs) == shards and all(j.startswith("shard-") for j in outcome.processing.jobs)
    assert {j.split("-", 2)[1] for j in outcome.processing.jobs} == {"0", "1"}
    sagemaker = boto3.client("sagemaker", region_name=REGION)
    for name in outcome.processing.jobs:
        job = sagemaker.describe_processing_job(ProcessingJobName=name)
        assert job["AppSpecification"]["ImageUri"] == PROJECT_IMAGE and job["RoleArn"] == ROLE_ARN
        assert job["ProcessingOutputConfig"]["Outputs"][0]["S3Output"]["S3Uri"].startswith(f"{recordio}/_shards/")
    assert outcome.xcom["merge_recordio"]["records"]["train"] > 0

    # training: the built-in algorithm's request, on the .rec objects this run wrote, Completed
    trained = outcome.xcom["train"]
    assert trained["backend"] == "sagemaker" and trained["status"] == "Completed"
    assert outcome.training.jobs == [trained["job_name"]]
    job = boto3.client("sagemaker", region_name=REGION).describe_training_job(TrainingJobName=trained["job_name"])
    assert job["TrainingJobStatus"] == "Completed"
    assert job["AlgorithmSpecification"]["TrainingImage"] == BUILTIN_IMAGE
    assert job["RoleArn"] == ROLE_ARN and job["HyperParameters"]["epochs"] == str(EPOCHS)
    assert job["HyperParameters"]["image_shape"] == str(IMAGE_SHAPE)
    channels = {c["ChannelName"]: c["DataSource"]["S3DataSource"]["S3Uri"] for c in job["InputDataConfig"]}
    assert channels == {"train": f"{recordio}/train/train.rec", "validation": f"{recordio}/validation/validation.rec"}
    assert all(storage.exists(uri) for uri in channels.values())
    assert trained["artifact_uri"] == job["ModelArtifacts"]["S3ModelArtifacts"]

    # evaluation: the model the job wrote, on the validation channel, with the job's CloudWatch curves
    evaluation = outcome.xcom["evaluate"]
    assert evaluation["model_uri"] == trained["artifact_uri"]
    record = json.loads(storage.read_text(evaluation["evaluation_uri"]))
    facts = record["training"]
    assert facts["epochs_logged"] == EPOCHS
    assert facts["best_validation_map"] == pytest.approx(TrainingContainer.curve(EPOCHS - 1)[2])
    assert "<img" in storage.read_text(evaluation["report_uri"])
    assert json.loads(storage.read_text(f"{run['layout']['training']}/{trained['job_name']}/output/training.json"))[
        "TrainingJobName"
    ] == trained["job_name"]

    # export: the trained model's deployable graph compiled by Neo; the compiled model's URI recorded with it
    exported = outcome.xcom["export"]
    compiled = boto3.client("sagemaker", region_name=REGION).describe_compilation_job(
        CompilationJobName=exported["neo_job_name"]
    )
    assert exported["neo_artifact_uri"] == compiled["ModelArtifacts"]["S3ModelArtifacts"]
    assert exported["export_uri"] == f"{run['layout']['export']}/export.json" and exported["formats"] == ["neo"]
    record = json.loads(storage.read_text(exported["export_uri"]))
    assert record["model_uri"] == trained["artifact_uri"] and record["neo"]["input_graph"] == "gluoncv-inference"
    assert compiled["InputConfig"]["S3Uri"] == record["neo"]["input_uri"] and storage.exists(record["neo"]["input_uri"])
    assert json.loads(compiled["InputConfig"]["DataInputConfig"]) == {"data": [1, 3, IMAGE_SHAPE, IMAGE_SHAPE]}
    assert "Neo" in storage.read_text(evaluation["report_uri"])

    # deployment and smoke test: the endpoint served the trained model's answers to the validation images
    deployed = outcome.xcom["deploy"]
    assert deployed["backend"] == "sagemaker" and deployed["status"] == "InService"
    smoke = outcome.xcom["smoke_test"]
    assert smoke["images"] == SMOKE_IMAGES == len(outcome.invokes.requests)
    assert {name for name, _, _ in outcome.invokes.requests} == {deployed["endpoint_name"]}
    assert outcome.inference.served == [trained["artifact_uri"]]  # the model package's ModelDataUrl
    assert smoke["detections"] == sum(len(a["prediction"]) for a in outcome.inference.answers) > 0

    # the registry: the model is a version whose source is the job's artifact on S3, and the deployed model is
    # the version's SageMaker model package, approved (promotion.approval auto)
    approval = _approval(outcome)
    sagemaker = boto3.client("sagemaker", region_name=REGION)
    assert outcome.inference.packages == [approval["model_package_arn"]]
    package = sagemaker.describe_model_package(ModelPackageName=approval["model_package_arn"])
    registered_model = outcome.xcom["resolve_config"]["tracking"]["registered_model"]
    assert package["ModelApprovalStatus"] == "Approved" and package["ModelPackageGroupName"] == group_name(
        registered_model)
    assert "_" not in package["ModelPackageGroupName"]
    assert package["InferenceSpecification"]["Containers"][0]["ModelDataUrl"] == trained["artifact_uri"]
    assert package["ModelMetrics"]["ModelQuality"]["Statistics"]["S3Uri"] == evaluation["evaluation_uri"]
    _assert_tracked_on_sagemaker(outcome, trained, approval)

    # teardown: nothing of the run is left serving; the training job stays as SageMaker keeps it
    torn_down = outcome.xcom["teardown"]
    assert torn_down["deleted"]["endpoints"] == [deployed["endpoint_name"]]
    assert _left_on_aws() == {"endpoints": [], "endpoint_configs": [], "models": []}


def _approval(outcome: Outcome) -> dict[str, Any]:
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        query = XComModel.get_many(run_id=outcome.run_id, key="approval", task_ids="approve")
        return XComModel.deserialize_value(session.scalars(query).one())


def _assert_tracked_on_sagemaker(outcome: Outcome, trained: dict[str, Any], approval: dict[str, Any]) -> None:
    """The MLflow records of a sagemaker-backend run: history from the job's CloudWatch lines, an S3 source."""
    import logging

    from mlflow import MlflowClient

    logging.getLogger("mlflow.tracking.request_header.registry").setLevel(logging.ERROR)
    tracking = outcome.xcom["resolve_config"]["tracking"]
    client = MlflowClient(tracking["uri"])
    train_run = trained["tracking"]["run_id"]
    history = client.get_metric_history(train_run, "validation:mAP")
    assert [m.step for m in history] == list(range(EPOCHS))  # the job's log lines, as its container wrote them
    assert [m.value for m in history] == pytest.approx([TrainingContainer.curve(e)[2] for e in range(EPOCHS)])
    assert client.get_run(train_run).data.params["image_shape"] == str(IMAGE_SHAPE)
    version = client.get_model_version(tracking["registered_model"], str(approval["version"]))
    assert version.source == trained["artifact_uri"] and version.run_id == train_run
    assert version.tags["detection.model_package_arn"] == approval["model_package_arn"]
    evaluation, exported = outcome.xcom["evaluate"], outcome.xcom["export"]
    assert (float(version.tags["map"]), version.tags["map_split"]) == (evaluation["map"], evaluation["split"])
    # the run's export lives on the version: Neo's compiled model of the champion
    assert version.tags["detection.export.uri"] == exported["export_uri"]
    assert version.tags["detection.export.neo_model_uri"] == exported["neo_artifact_uri"]
    assert client.get_registered_model(tracking["registered_model"]).aliases["champion"] == str(approval["version"])
    assert client.get_run(tracking["run_id"]).info.status == "FINISHED"


def test_failed_smoke_test_fails_the_run_and_still_tears_down(
    run_on_moto: Callable[..., Outcome], pipeline: Any
) -> None:
    import boto3

    # this run also trains from Ground Truth augmented manifests (recordio.channel_format), in Pipe mode
    outcome = run_on_moto(off_contract_answers=True, channel_format="augmented-manifest")
    job = outcome.xcom["train"]
    assert outcome.xcom["merge_recordio"]["training_channels"]["format"] == "augmented-manifest"
    described = boto3.client("sagemaker", region_name=REGION).describe_training_job(TrainingJobName=job["job_name"])
    assert described["AlgorithmSpecification"]["TrainingInputMode"] == "Pipe"
    recordio = outcome.xcom["resolve_config"]["layout"]["recordio"]
    for channel in described["InputDataConfig"]:
        source = channel["DataSource"]["S3DataSource"]
        split = channel["ChannelName"]
        assert source["S3DataType"] == "AugmentedManifestFile" and source["S3Uri"] == (
            f"{recordio}/manifest/{split}/{split}.manifest"
        )
        lines = [json.loads(line) for line in storage.read_text(source["S3Uri"]).splitlines()]
        assert lines and all(line["source-ref"].startswith(f"s3://{BUCKET}/") for line in lines)
        assert all(storage.exists(line["source-ref"]) for line in lines)  # flipped copies written to S3 too

    assert outcome.state == "failed"
    assert outcome.states("deploy") == {"success"} and outcome.states("export") == {"skipped"}
    tries = pipeline.get_task("smoke_test").retries + 1
    assert outcome.tries["smoke_test"] == [("failed", tries)]  # every try got an off-contract answer
    assert len(outcome.invokes.requests) == tries  # each try stopped at its first answer
    assert "smoke_test" not in outcome.xcom
    assert outcome.states("teardown") == {"success"} and outcome.states("watcher") == {"failed"}
    assert outcome.xcom["teardown"]["deleted"]["endpoints"] == [outcome.xcom["deploy"]["endpoint_name"]]
    _assert_everything_went_to_moto(outcome)
    assert _left_on_aws() == {"endpoints": [], "endpoint_configs": [], "models": []}
