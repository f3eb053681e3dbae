"""What stands in for SageMaker's containers when the whole DAG runs against moto's server.

moto keeps SageMaker's control plane (jobs, models, endpoint configs, endpoints and their tags)
but runs nothing: its training jobs are ``Completed`` at once without writing a model or a log
line, and its endpoints serve nothing. Two botocore ``after-call`` handlers do what those
containers would, through the same moto server and the project's own code:

* :class:`ProcessingContainer` (after CreateProcessingJob) does what SageMaker does with the
  project's image: downloads the job's inputs to a folder standing for ``/opt/ml/processing``,
  runs the container's entry point with the job's arguments, uploads its output folder;

* :class:`TrainingContainer` (after CreateTrainingJob) writes the job's ``model.tar.gz`` where the
  job says it is (an untrained SSD for the run's classes, exported as the local trainer exports
  one, ``hyperparams.json`` holding the job's hyperparameters) and the algorithm's metric lines
  in the job's CloudWatch log stream;
* :class:`TransformContainer` (after CreateTransformJob) scores each image of the job's manifest (or prefix) with
  the job's model and writes ``<S3OutputPath>/<path>.out``, as the built-in algorithm's batch transform does;
* :class:`InferenceContainer` (after CreateEndpoint) loads the endpoint's model from its
  CreateModel record (or the model package it names) and queues, in moto's InvokeEndpoint results,
  that model's answers to the images the smoke test will send, in the order it sends them.

:class:`RequestLog` (``before-send``) keeps every request that left a client, to show where it went.
Binary InvokeEndpoint and Stop* are answered by ``tests/sagemaker/aws_stand_ins.py``.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import json
import socket
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from include import storage
from include.preprocess.shard_job import PROCESSING_ROOT
from include.run_layout import RunLayout
from include.sagemaker.naming import DAG_ID_TAG, RUN_ID_TAG

#: The local network the stand-in model is built with: SageMaker's resnet-50 would be a 100 MB artifact.
STAND_IN_NETWORK = "mobilenet-1.0"


@contextlib.contextmanager
def moto_server() -> Iterator[str]:
    """moto's HTTP server on a free port of 127.0.0.1, empty; yields its URL."""
    import requests
    from moto.server import ThreadedMotoServer

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    url = f"http://127.0.0.1:{port}"
    try:
        requests.post(f"{url}/moto-api/reset", timeout=10).raise_for_status()
        yield url
    finally:
        requests.post(f"{url}/moto-api/reset", timeout=10)
        server.stop()


@contextlib.contextmanager
def registered(handlers: list[tuple[str, Any]]) -> Iterator[None]:
    """botocore event handlers on every client created inside the block (boto3, the provider's hooks, s3fs)."""
    import boto3
    from botocore.handlers import BUILTIN_HANDLERS
    from s3fs import S3FileSystem

    def fresh_sessions() -> None:
        boto3.DEFAULT_SESSION = None
        S3FileSystem.clear_instance_cache()  # s3fs keeps its client (endpoint, handlers) per instance

    BUILTIN_HANDLERS.extend(handlers)
    fresh_sessions()
    try:
        yield
    finally:
        for handler in handlers:
            BUILTIN_HANDLERS.remove(handler)
        fresh_sessions()


@dataclass(eq=False)  # botocore keeps handlers in sets: identity hashing
class RequestLog:
    """``before-send`` handler: ``(service, operation, url)`` of every request sent over HTTP."""

    sent: list[tuple[str, str, str]] = field(default_factory=list)

    def __call__(self, request: Any, event_name: str, **_: Any) -> None:
        _, service, operation = event_name.split(".", 2)
        self.sent.append((service, operation, request.url))

    def operations(self, service: str) -> list[str]:
        return [op for svc, op, _ in self.sent if svc == service]


def _run_layout(base_uri: str, sagemaker: Any, arn: str) -> RunLayout:
    """The folders of the DAG run that tagged the resource ``arn``."""
    tags = {t["Key"]: t["Value"] for t in sagemaker.list_tags(ResourceArn=arn)["Tags"]}
    return RunLayout.create(base_uri, tags[DAG_ID_TAG], tags[RUN_ID_TAG])


@dataclass(eq=False)  # botocore keeps handlers in sets: identity hashing
class TrainingContainer:
    """``after-call.sagemaker.CreateTrainingJob``: the job's model and metric log, as the algorithm writes them.

    ``curve`` gives the logged ``(cross_entropy, smooth_l1, validation mAP)`` of an epoch.
    """

    base_uri: str
    region: str
    jobs: list[str] = field(default_factory=list)

    @staticmethod
    def curve(epoch: int) -> tuple[float, float, float]:
        return 1.2 / (epoch + 1), 0.8 / (epoch + 1), 0.05 * (epoch + 1)

    def __call__(self, parsed: dict[str, Any], **_: Any) -> None:
        import boto3

        if "TrainingJobArn" not in parsed:  # the call failed: no job, nothing to write
            return
        sagemaker = boto3.client("sagemaker", region_name=self.region)
        job = sagemaker.describe_training_job(TrainingJobName=parsed["TrainingJobArn"].rsplit("/", 1)[-1])
        layout = _run_layout(self.base_uri, sagemaker, job["TrainingJobArn"])
        self._write_model(job, layout)
        self._write_log(job, boto3.client("logs", region_name=self.region))
        self.jobs.append(job["TrainingJobName"])

    @staticmethod
    def _write_model(job: dict[str, Any], layout: RunLayout) -> None:
        import mxnet as mx
        import numpy as np

        from include.model_artifact import export_model, preprocess
        from include.preprocess.annotations import read_classes
        from include.training.ssd_network import build_ssd

        hyper = job["HyperParameters"]
        classes = read_classes(layout.quality)
        if len(classes) != int(hyper["num_classes"]):
            raise ValueError(f"{job['TrainingJobName']}: num_classes={hyper['num_classes']}, the data has {classes}")
        size = int(hyper["image_shape"])
        mx.random.seed(0)  # the same weights every run
        net = build_ssd(STAND_IN_NETWORK, size, [classes[i] for i in sorted(classes)])
        net.set_nms(nms_thresh=float(hyper["nms_threshold"]))
        net.hybridize()
        net(preprocess([np.zeros((size, size, 3), dtype=np.uint8)], size))
        export_model(net, hyper, classes, job["ModelArtifacts"]["S3ModelArtifacts"])

    def _write_log(self, job: dict[str, Any], logs: Any) -> None:
        from include.sagemaker import metrics
        from include.sagemaker.training_metrics import LOG_GROUP

        with contextlib.suppress(logs.exceptions.ResourceAlreadyExistsException):
            logs.create_log_group(logGroupName=LOG_GROUP)
        stream = f"{job['TrainingJobName']}/algo-1-{int(time.time())}"
        logs.create_log_stream(logGroupName=LOG_GROUP, logStreamName=stream)
        lines = []
        for epoch in range(int(job["HyperParameters"]["epochs"])):
            cross_entropy, smooth_l1, validation_map = self.curve(epoch)
            lines += [
                metrics.format_line(metrics.TRAIN_CROSS_ENTROPY, cross_entropy, epoch=epoch, batch=0),
                metrics.format_line(metrics.TRAIN_SMOOTH_L1, smooth_l1, epoch=epoch, batch=0),
                metrics.format_line(metrics.VALIDATION_MAP, validation_map, epoch=epoch),
            ]
        start = int(time.time() * 1000)
        events = [{"timestamp": start + i, "message": line} for i, line in enumerate(lines)]
        logs.put_log_events(logGroupName=LOG_GROUP, logStreamName=stream, logEvents=events)


@dataclass(eq=False)  # botocore keeps handlers in sets: identity hashing
class InferenceContainer:
    """``after-call.sagemaker.CreateEndpoint``: queue the endpoint model's answers to the smoke-test images.

    The smoke test sends the first ``images`` validation images of the run's gated table (sorted);
    moto's InvokeEndpoint answers new bodies from its results queue in order. With
    ``annotation=True`` the container answers in the ``annotation=1`` layout whatever the request
    asked for (an endpoint that breaks the contract).
    """

    base_uri: str
    region: str
    moto_url: str
    images: int
    annotation: bool = False
    served: list[str] = field(default_factory=list)
    packages: list[str] = field(default_factory=list)
    answers: list[dict[str, Any]] = field(default_factory=list)

    def __call__(self, parsed: dict[str, Any], **_: Any) -> None:
        import boto3
        import requests

        from include.endpoints.invocation import validation_images
        from include.model_artifact import decode_image, load_detector
        from include.serving.contract import to_annotations, to_prediction

        if "EndpointArn" not in parsed:
            return
        sagemaker = boto3.client("sagemaker", region_name=self.region)
        endpoint = sagemaker.describe_endpoint(EndpointName=parsed["EndpointArn"].rsplit("/", 1)[-1])
        config = sagemaker.describe_endpoint_config(EndpointConfigName=endpoint["EndpointConfigName"])
        variant = config["ProductionVariants"][0]
        container = sagemaker.describe_model(ModelName=variant["ModelName"])["PrimaryContainer"]
        model_data = container.get("ModelDataUrl")
        if "ModelPackageName" in container:  # a model made from a model package serves the package's model
            package = sagemaker.describe_model_package(ModelPackageName=container["ModelPackageName"])
            model_data = package["InferenceSpecification"]["Containers"][0]["ModelDataUrl"]
            self.packages.append(container["ModelPackageName"])
        detector = load_detector(model_data)
        self.served.append(model_data)
        layout = _run_layout(self.base_uri, sagemaker, endpoint["EndpointArn"])
        results = []
        for uri in validation_images(layout.quality, self.images):
            image = decode_image(storage.read_bytes(uri))
            detections = detector.predict(image).tolist()
            height, width, depth = image.shape
            answer = to_annotations(detections, width, height, depth) if self.annotation else to_prediction(detections)
            self.answers.append(answer)
            results.append(
                {"Body": json.dumps(answer), "ContentType": "application/json",
                 "InvokedProductionVariant": variant["VariantName"], "CustomAttributes": ""}
            )
        response = requests.post(
            f"{self.moto_url}/moto-api/static/sagemaker/endpoint-results",
            json={"region": self.region, "results": results},
            timeout=30,
        )
        response.raise_for_status()


@dataclass(eq=False)  # botocore keeps handlers in sets: identity hashing
class ProcessingContainer:
    """``after-call.sagemaker.CreateProcessingJob``: the job run as SageMaker runs it, on this machine.

    ``/opt/ml/processing`` is a temporary folder; S3Prefix inputs are downloaded under their
    ``LocalPath`` (each object by its name after the prefix's last ``/``); the entry point (``python -m
    <module>``) runs in this process with the job's arguments; the output folders are uploaded to their
    ``S3Uri`` when it ends (``EndOfJob``).
    """

    region: str
    jobs: list[str] = field(default_factory=list)

    def __call__(self, parsed: dict[str, Any], **_: Any) -> None:
        import boto3

        if "ProcessingJobArn" not in parsed:
            return
        sagemaker = boto3.client("sagemaker", region_name=self.region)
        job = sagemaker.describe_processing_job(ProcessingJobName=parsed["ProcessingJobArn"].rsplit("/", 1)[-1])
        with tempfile.TemporaryDirectory() as root:
            here = functools.partial(_under, root)
            for source in job["ProcessingInputs"]:
                s3_input = source["S3Input"]
                prefix = s3_input["S3Uri"]
                for uri in storage.walk_files(prefix.rsplit("/", 1)[0]):
                    if uri.startswith(prefix):
                        name = uri[len(prefix.rsplit("/", 1)[0]) + 1 :]
                        storage.write_bytes(str(here(f"{s3_input['LocalPath']}/{name}")), storage.read_bytes(uri))
            app = job["AppSpecification"]
            python, flag, module = app["ContainerEntrypoint"]
            assert (python, flag) == ("python", "-m"), app["ContainerEntrypoint"]
            args = [str(here(a)) if a.startswith(PROCESSING_ROOT) else a for a in app["ContainerArguments"]]
            assert importlib.import_module(module).main(args) == 0
            for output in job["ProcessingOutputConfig"]["Outputs"]:
                folder = here(output["S3Output"]["LocalPath"])
                target = output["S3Output"]["S3Uri"]
                for path in sorted(p for p in folder.rglob("*") if p.is_file()):
                    storage.upload_file(path, storage.join(target, *path.relative_to(folder).parts))
        self.jobs.append(job["ProcessingJobName"])


def _under(root: str, container_path: str) -> Path:
    """Where the container's absolute ``container_path`` lies on this machine."""
    return Path(root) / container_path.lstrip("/")


@dataclass(eq=False)  # botocore keeps handlers in sets: identity hashing
class TransformContainer:
    """``after-call.sagemaker.CreateTransformJob``: the job's images scored by its model, one ``.out`` each.

    The inputs are the manifest's entries (or every object under the prefix), each answered with the endpoint's
    JSON at ``<S3OutputPath>/<path under the prefix>.out``; an image that does not decode fails the job, as on
    SageMaker (which then keeps only the outputs written so far).
    """

    region: str
    jobs: list[str] = field(default_factory=list)

    def __call__(self, parsed: dict[str, Any], **_: Any) -> None:
        import boto3

        from include.model_artifact import decode_image, load_detector
        from include.serving.contract import to_prediction

        if "TransformJobArn" not in parsed:
            return
        sagemaker = boto3.client("sagemaker", region_name=self.region)
        job = sagemaker.describe_transform_job(TransformJobName=parsed["TransformJobArn"].rsplit("/", 1)[-1])
        model = sagemaker.describe_model(ModelName=job["ModelName"])["PrimaryContainer"]["ModelDataUrl"]
        detector = load_detector(model)
        source = job["TransformInput"]["DataSource"]["S3DataSource"]
        if source["S3DataType"] == "ManifestFile":
            document = json.loads(storage.read_text(source["S3Uri"]))
            prefix, paths = document[0]["prefix"], document[1:]
        else:
            prefix = source["S3Uri"]
            paths = [storage.relative(u, prefix) for u in storage.walk_files(prefix)]
        output = job["TransformOutput"]["S3OutputPath"]
        for path in paths:
            detections = detector.predict(decode_image(storage.read_bytes(storage.join(prefix, path))))
            storage.write_text(storage.join(output, f"{path}.out"), json.dumps(to_prediction(detections.tolist())))
        self.jobs.append(job["TransformJobName"])
