"""Request builders: the exact requests SageMaker's API takes for training, tuning, deployment and processing.

Both backends run these dicts: backend ``sagemaker`` sends them through the Amazon provider's
operators, backend ``local`` executes them on this machine. The tuning job's training definition
is built from the same pieces as the training job (:func:`_job_pieces`), so the two cannot
disagree. Every builder's output passes :func:`validate_request` (botocore's SageMaker model).
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from include.sagemaker.metrics import VALIDATION_MAP, metric_definitions
from include.sagemaker.naming import (
    ENDPOINT,
    ENDPOINT_CONFIG,
    KEEP_UNTIL_TAG,
    MODEL,
    TRANSFORM,
    RunIdentity,
    job_name,
    tag_value,
)
from include.sagemaker.tuning_ranges import parameter_ranges
from include.sagemaker.validation import RequestValidationError, validate_request
from include.serving.runtime_api import DEFAULT_VARIANT as VARIANT
from include.training.hyperparameters import HyperparameterError

__all__ = [
    "DeploymentNames",
    "RequestError",
    "RequestValidationError",
    "TrainingSpec",
    "builtin_image",
    "alarm_requests",
    "compilation_job_request",
    "data_capture_config",
    "deployment_config",
    "deployment_request",
    "endpoint_config_request",
    "endpoint_request",
    "job_name",
    "max_duration_seconds",
    "model_request",
    "shard_processing_request",
    "training_job_request",
    "transform_duration_seconds",
    "transform_request",
    "tuning_job_request",
    "validate_request",
]

ALGORITHM = "object-detection"
RECORDIO = "application/x-recordio"
MODEL_CONTENT_TYPE = "application/x-sagemaker-model"
CHECKPOINT_FOLDER = "checkpoints"
#: The role a request names on the local backend when the configuration has none (nothing assumes it locally).
LOCAL_ROLE_ARN = "arn:aws:iam::000000000000:role/local-training"
#: The model container's environment variable naming the runtime a local endpoint serves it with
#: (``onnxruntime`` for the ONNX export); absent means MXNet, what the built-in algorithm's container runs.
RUNTIME_ENV = "DETECTION_RUNTIME"
#: SageMaker Neo's name and version for MXNet models (its table aliases every MXNet 1.x to 1.8).
NEO_FRAMEWORK = "MXNET"
NEO_FRAMEWORK_VERSION = "1.8"

Tags = list[dict[str, str]]


class RequestError(ValueError):
    """The pieces given cannot make a valid request (the message says which and why)."""


@functools.cache
def builtin_image(region: str) -> str:
    """The built-in object-detection algorithm's image for ``region``, offline.

    Read from the SageMaker SDK's own table (``sagemaker/core/image_uri_config/object-detection.json``,
    what ``sagemaker.core.image_uris.retrieve`` reads) with the partition's DNS suffix from
    botocore, rather than through ``retrieve``: importing ``sagemaker.core`` takes 3.5-4.7 s here
    and ``retrieve`` logs two INFO lines per call, on every local job too. A test compares the two.
    """
    import importlib.util
    import json
    from pathlib import Path

    from botocore.loaders import Loader
    from botocore.regions import EndpointResolver

    core = importlib.util.find_spec("sagemaker.core")  # imports the light parent package only
    if core is None or not core.submodule_search_locations:
        raise RequestError("the sagemaker SDK is not installed: it holds the built-in algorithms' image table")
    table = Path(core.submodule_search_locations[0]) / "image_uri_config" / f"{ALGORITHM}.json"
    version = json.loads(table.read_text())["versions"]["1"]
    account = version["registries"].get(region)
    if account is None:
        raise RequestError(f"SageMaker's {ALGORITHM} algorithm has no image in region {region!r} ({table})")
    resolver = EndpointResolver(Loader().load_data("endpoints"))
    suffix = resolver.get_partition_dns_suffix(resolver.get_partition_for_region(region))
    return f"{account}.dkr.ecr.{region}.{suffix}/{version['repository']}:1"


@dataclass(frozen=True)
class TrainingSpec:
    """Everything a training job (or each job of a tuning job) needs besides its name, tags and hyperparameters.

    ``label_attribute`` set means the channels are Ground Truth augmented manifests (Pipe mode
    only); ``annotation_uris`` (train, validation) adds the ``train_annotation`` and
    ``validation_annotation`` channels of the image + JSON format, every channel then of the
    images' ``content_type``; otherwise they are RecordIO files. ``model_uri`` adds the ``model`` channel
    for incremental training. ``managed_spot`` runs on spot capacity, waiting at most
    ``max_wait_seconds`` and checkpointing to ``checkpoint_uri`` (default ``<output>/checkpoints``).
    ``image`` defaults to the built-in algorithm; ``metric_definitions`` defaults to sending
    ``MetricDefinitions`` only with an image of your own (``image`` set): SageMaker defines them
    for its built-in algorithms and does not take overrides.
    """

    role_arn: str
    region: str
    train_uri: str
    validation_uri: str
    output_uri: str
    instance_type: str = "ml.p3.2xlarge"
    instance_count: int = 1
    volume_size_gb: int = 50
    max_runtime_seconds: int = 86400
    input_mode: Literal["File", "Pipe"] = "File"
    label_attribute: str | None = None
    annotation_uris: tuple[str, str] | None = None
    content_type: str = RECORDIO
    model_uri: str | None = None
    managed_spot: bool = False
    max_wait_seconds: int | None = None
    checkpoint_uri: str | None = None
    image: str | None = None
    metric_definitions: bool | None = None

    @property
    def training_image(self) -> str:
        return self.image or builtin_image(self.region)

    @property
    def sends_metric_definitions(self) -> bool:
        return self.image is not None if self.metric_definitions is None else self.metric_definitions


def _channel(name: str, uri: str, spec: TrainingSpec) -> dict[str, Any]:
    source: dict[str, Any] = {"S3Uri": uri, "S3DataDistributionType": "FullyReplicated"}
    channel: dict[str, Any] = {"ChannelName": name, "ContentType": spec.content_type, "CompressionType": "None"}
    if spec.label_attribute:
        source.update(S3DataType="AugmentedManifestFile", AttributeNames=["source-ref", spec.label_attribute])
        channel["RecordWrapperType"] = "RecordIO"
    else:
        source["S3DataType"] = "S3Prefix"
    channel["DataSource"] = {"S3DataSource": source}
    return channel


def _input_channels(spec: TrainingSpec) -> list[dict[str, Any]]:
    if spec.label_attribute and spec.input_mode != "Pipe":
        raise RequestError("augmented manifest channels (label_attribute set) need input_mode='Pipe'")
    if spec.label_attribute and spec.content_type != RECORDIO:
        raise RequestError(f"augmented manifest channels are {RECORDIO}, not {spec.content_type}")
    channels = [_channel("train", spec.train_uri, spec), _channel("validation", spec.validation_uri, spec)]
    if spec.annotation_uris:
        if spec.label_attribute or spec.content_type == RECORDIO:
            raise RequestError(
                "annotation channels go with image channels (image/jpeg, image/png or application/x-image)"
            )
        channels += [
            _channel(f"{split}_annotation", uri, spec)
            for split, uri in zip(("train", "validation"), spec.annotation_uris, strict=True)
        ]
    if spec.model_uri:
        channels.append(
            {
                "ChannelName": "model",
                "ContentType": MODEL_CONTENT_TYPE,
                "InputMode": "File",
                "DataSource": {
                    "S3DataSource": {
                        "S3DataType": "S3Prefix",
                        "S3Uri": spec.model_uri,
                        "S3DataDistributionType": "FullyReplicated",
                    }
                },
            }
        )
    return channels


def _stopping_condition(spec: TrainingSpec) -> dict[str, int]:
    condition = {"MaxRuntimeInSeconds": spec.max_runtime_seconds}
    if spec.managed_spot:
        wait = spec.max_wait_seconds or spec.max_runtime_seconds
        if wait < spec.max_runtime_seconds:
            raise RequestError(
                f"max_wait_seconds ({wait}) must be at least max_runtime_seconds ({spec.max_runtime_seconds})"
            )
        condition["MaxWaitTimeInSeconds"] = wait
    return condition


def _job_pieces(spec: TrainingSpec) -> dict[str, Any]:
    """The members CreateTrainingJob and a tuning job's TrainingJobDefinition share."""
    algorithm: dict[str, Any] = {"TrainingImage": spec.training_image, "TrainingInputMode": spec.input_mode}
    if spec.sends_metric_definitions:
        algorithm["MetricDefinitions"] = metric_definitions()
    pieces: dict[str, Any] = {
        "AlgorithmSpecification": algorithm,
        "RoleArn": spec.role_arn,
        "InputDataConfig": _input_channels(spec),
        "OutputDataConfig": {"S3OutputPath": spec.output_uri},
        "ResourceConfig": {
            "InstanceType": spec.instance_type,
            "InstanceCount": spec.instance_count,
            "VolumeSizeInGB": spec.volume_size_gb,
        },
        "StoppingCondition": _stopping_condition(spec),
    }
    if spec.managed_spot:
        checkpoint = spec.checkpoint_uri or f"{spec.output_uri.rstrip('/')}/{CHECKPOINT_FOLDER}"
        pieces.update(EnableManagedSpotTraining=True, CheckpointConfig={"S3Uri": checkpoint})
    return pieces


def training_job_request(
    spec: TrainingSpec, *, name: str, hyperparameters: Mapping[str, str], tags: Tags
) -> dict[str, Any]:
    """A ``CreateTrainingJob`` request (``hyperparameters`` as ``local_hyperparameters`` completes them)."""
    return {"TrainingJobName": name, "HyperParameters": dict(hyperparameters), **_job_pieces(spec), "Tags": tags}


def tuning_job_request(
    spec: TrainingSpec,
    *,
    name: str,
    hyperparameters: Mapping[str, str],
    ranges: Mapping[str, Mapping[str, Any]],
    tags: Tags,
    strategy: Literal["Bayesian", "Random"] = "Bayesian",
    max_jobs: int = 8,
    max_parallel_jobs: int = 2,
    early_stopping: Literal["Off", "Auto"] = "Off",
) -> dict[str, Any]:
    """A ``CreateHyperParameterTuningJob`` request maximizing ``validation:mAP``.

    ``hyperparameters`` are the training job's; those in ``ranges`` are tuned, the rest are static.
    """
    if strategy not in ("Bayesian", "Random"):
        raise RequestError(f"tuning strategy must be Bayesian or Random (got {strategy!r})")
    if not 1 <= max_parallel_jobs <= max_jobs:
        raise RequestError(f"need 1 <= max_parallel_jobs ({max_parallel_jobs}) <= max_jobs ({max_jobs})")
    try:
        parameter_ranges_ = parameter_ranges(ranges)
    except HyperparameterError as err:
        raise RequestError(str(err)) from None
    pieces = _job_pieces(spec)
    algorithm = pieces.pop("AlgorithmSpecification")
    static = {key: value for key, value in hyperparameters.items() if key not in ranges}
    return {
        "HyperParameterTuningJobName": name,
        "HyperParameterTuningJobConfig": {
            "Strategy": strategy,
            "HyperParameterTuningJobObjective": {"Type": "Maximize", "MetricName": VALIDATION_MAP},
            "ResourceLimits": {"MaxNumberOfTrainingJobs": max_jobs, "MaxParallelTrainingJobs": max_parallel_jobs},
            "ParameterRanges": parameter_ranges_,
            "TrainingJobEarlyStoppingType": early_stopping,
        },
        "TrainingJobDefinition": {"StaticHyperParameters": static, "AlgorithmSpecification": algorithm, **pieces},
        "Tags": tags,
    }


def model_request(
    *,
    name: str,
    model_data_url: str,
    role_arn: str,
    image: str,
    tags: Tags,
    runtime: str = "mxnet",
    model_package_arn: str | None = None,
) -> dict[str, Any]:
    """A ``CreateModel`` request serving ``model.tar.gz`` at ``model_data_url`` with ``image``, or the
    approved model package ``model_package_arn`` (which names both).

    Another ``runtime`` than MXNet (the local endpoint's ONNX Runtime) is named in the container's
    environment (:data:`RUNTIME_ENV`).
    """
    container: dict[str, Any] = {"Image": image, "ModelDataUrl": model_data_url}
    if model_package_arn:
        container = {"ModelPackageName": model_package_arn}
    if runtime != "mxnet":
        container["Environment"] = {RUNTIME_ENV: runtime}
    return {"ModelName": name, "PrimaryContainer": container, "ExecutionRoleArn": role_arn, "Tags": tags}


def endpoint_config_request(
    *,
    name: str,
    model_name: str,
    instance_type: str,
    instance_count: int,
    tags: Tags,
    data_capture: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A ``CreateEndpointConfig`` request: one variant taking all traffic (capturing as ``data_capture`` says)."""
    variant = {
        "VariantName": VARIANT,
        "ModelName": model_name,
        "InstanceType": instance_type,
        "InitialInstanceCount": instance_count,
        "InitialVariantWeight": 1.0,
    }
    request = {"EndpointConfigName": name, "ProductionVariants": [variant], "Tags": tags}
    if data_capture:
        request["DataCaptureConfig"] = data_capture
    return request


def data_capture_config(destination: str, percent: float, json_content_types: list[str]) -> dict[str, Any]:
    """``DataCaptureConfig``: inputs and outputs of ``percent`` % of invocations to ``destination`` (an S3 URI),
    the listed content types as JSON text, everything else (images) base64."""
    return {
        "EnableCapture": True,
        "InitialSamplingPercentage": int(round(percent)),
        "DestinationS3Uri": destination,
        "CaptureOptions": [{"CaptureMode": "Input"}, {"CaptureMode": "Output"}],
        "CaptureContentTypeHeader": {"JsonContentTypes": list(json_content_types)},
    }


def deployment_config(
    *,
    traffic: str,
    step_percent: int,
    baking_seconds: int,
    termination_wait_seconds: int,
    max_execution_seconds: int,
    alarms: list[str],
    instance_count: int,
) -> dict[str, Any]:
    """``UpdateEndpoint``'s blue/green ``DeploymentConfig`` with automatic rollback on ``alarms``.

    ``ALL_AT_ONCE`` shifts all traffic to the new fleet, then bakes ``baking_seconds`` while the alarms
    are watched; ``CANARY`` / ``LINEAR`` shift ``step_percent`` % of capacity first / per step and wait
    ``baking_seconds`` between steps. With one instance a canary is the whole fleet: ALL_AT_ONCE then.
    """
    routing: dict[str, Any] = {"Type": "ALL_AT_ONCE" if instance_count == 1 else traffic,
                               "WaitIntervalInSeconds": baking_seconds}  # fmt: skip
    step = {"Type": "CAPACITY_PERCENT", "Value": step_percent}
    if routing["Type"] == "CANARY":
        routing["CanarySize"] = step
    elif routing["Type"] == "LINEAR":
        routing["LinearStepSize"] = step
    return {
        "BlueGreenUpdatePolicy": {
            "TrafficRoutingConfiguration": routing,
            "TerminationWaitInSeconds": termination_wait_seconds,
            "MaximumExecutionTimeoutInSeconds": max_execution_seconds,
        },
        "AutoRollbackConfiguration": {"Alarms": [{"AlarmName": name} for name in alarms]},
    }


def alarm_requests(endpoint: str, *, errors_5xx: int, latency_ms: float, tags: Tags) -> list[dict[str, Any]]:
    """CloudWatch ``PutMetricAlarm`` requests an update of ``endpoint`` rolls back on: invocation 5xx errors and
    model latency (``ModelLatency`` is in microseconds), per minute, over the endpoint's variant (both fleets
    during a blue/green update). Missing data is not breaching: an idle endpoint does not roll back."""
    common = {
        "Namespace": "AWS/SageMaker",
        "Dimensions": [{"Name": "EndpointName", "Value": endpoint}, {"Name": "VariantName", "Value": VARIANT}],
        "Period": 60,
        "EvaluationPeriods": 1,
        "ComparisonOperator": "GreaterThanOrEqualToThreshold",
        "TreatMissingData": "notBreaching",
        "ActionsEnabled": False,
        "Tags": tags,
    }
    return [
        {"AlarmName": f"{endpoint}-invocation-5xx", "AlarmDescription": f"{endpoint}: invocations answered 5xx",
         "MetricName": "Invocation5XXErrors", "Statistic": "Sum", "Threshold": float(errors_5xx), **common},
        {"AlarmName": f"{endpoint}-model-latency", "AlarmDescription": f"{endpoint}: average model latency",
         "MetricName": "ModelLatency", "Statistic": "Average", "Threshold": latency_ms * 1000.0, **common},
    ]  # fmt: skip


def endpoint_request(*, name: str, config_name: str, tags: Tags) -> dict[str, Any]:
    """A ``CreateEndpoint`` request."""
    return {"EndpointName": name, "EndpointConfigName": config_name, "Tags": tags}


@dataclass(frozen=True)
class DeploymentNames:
    """The model, endpoint config and endpoint names of one run and try."""

    model: str
    endpoint_config: str
    endpoint: str

    @classmethod
    def of(cls, run: RunIdentity) -> DeploymentNames:
        return cls(model=run.name(MODEL), endpoint_config=run.name(ENDPOINT_CONFIG), endpoint=run.name(ENDPOINT))


def deployment_request(
    run: RunIdentity,
    *,
    model_data_url: str,
    role_arn: str,
    region: str,
    instance_type: str,
    instance_count: int = 1,
    keep_until: str | None,
    image: str | None = None,
    runtime: str = "mxnet",
    model_package_arn: str | None = None,
) -> dict[str, dict[str, Any]]:
    """``{"Model", "EndpointConfig", "Endpoint"}`` for ``SageMakerEndpointOperator``'s combined config.

    The endpoint carries the ``keep-until`` tag (:func:`naming.keep_until`) the sweeper reads; without
    one (``keep_until=None``) the sweeper leaves it alone. ``runtime`` goes to :func:`model_request`;
    with ``model_package_arn`` the model is created from that (approved) package instead.
    """
    names = DeploymentNames.of(run)
    tags = run.tags()
    return {
        "Model": model_request(
            name=names.model,
            model_data_url=model_data_url,
            role_arn=role_arn,
            image=image or builtin_image(region),
            tags=tags,
            runtime=runtime,
            model_package_arn=model_package_arn,
        ),
        "EndpointConfig": endpoint_config_request(
            name=names.endpoint_config,
            model_name=names.model,
            instance_type=instance_type,
            instance_count=instance_count,
            tags=tags,
        ),
        "Endpoint": endpoint_request(
            name=names.endpoint,
            config_name=names.endpoint_config,
            tags=run.tags({} if keep_until is None else {KEEP_UNTIL_TAG: tag_value(keep_until)}),
        ),
    }


def compilation_job_request(
    *,
    name: str,
    role_arn: str,
    input_uri: str,
    image_shape: int,
    output_uri: str,
    target_device: str | None,
    target_platform: Mapping[str, str] | None = None,
    compiler_options: str | None = None,
    max_runtime_seconds: int = 900,
    tags: Tags,
) -> dict[str, Any]:
    """A ``CreateCompilationJob`` request: SageMaker Neo compiles the MXNet graph in ``input_uri`` for a device.

    ``input_uri`` is one ``.tar.gz`` holding ``*-symbol.json`` and ``*.params`` of an inference graph
    whose input is ``data`` (1 x 3 x ``image_shape`` x ``image_shape``). The target is a device
    (``ml_c5``, ``jetson_nano``, ...) or, instead, a platform (``{"Os", "Arch", "Accelerator"}``).
    """
    if (target_device is None) == (target_platform is None):
        raise RequestError("a compilation job needs a target device or a target platform, not both or neither")
    output: dict[str, Any] = {"S3OutputLocation": output_uri}
    if target_device is not None:
        output["TargetDevice"] = target_device
    else:
        output["TargetPlatform"] = dict(target_platform or {})
    if compiler_options:
        output["CompilerOptions"] = compiler_options
    return {
        "CompilationJobName": name,
        "RoleArn": role_arn,
        "InputConfig": {
            "S3Uri": input_uri,
            "DataInputConfig": json.dumps({"data": [1, 3, image_shape, image_shape]}),
            "Framework": NEO_FRAMEWORK,
            "FrameworkVersion": NEO_FRAMEWORK_VERSION,
        },
        "OutputConfig": output,
        "StoppingCondition": {"MaxRuntimeInSeconds": max_runtime_seconds},
        "Tags": tags,
    }


def shard_processing_request(
    spec: Mapping[str, Any],
    *,
    name: str,
    role_arn: str,
    image_uri: str,
    shard_uri: str,
    tags: Tags,
    instance_type: str = "ml.m5.xlarge",
    volume_size_gb: int = 30,
    max_runtime_seconds: int = 3600,
) -> dict[str, Any]:
    """A ``CreateProcessingJob`` request that builds one RecordIO shard on the project's image.

    ``spec``: the shard's spec from ``plan_shards``; its ``work.json`` is the job's one input and
    ``shard_uri`` (the shard's folder) receives the job's output folder when it ends, as the shard
    task would have written it (:mod:`include.preprocess.shard_job`).
    """
    from include.preprocess import shard_job

    try:
        arguments = shard_job.arguments(spec, shard_uri)
    except ValueError as err:
        raise RequestError(str(err)) from None
    return {
        "ProcessingJobName": name,
        "RoleArn": role_arn,
        "AppSpecification": {
            "ImageUri": image_uri,
            "ContainerEntrypoint": list(shard_job.ENTRY_POINT),
            "ContainerArguments": arguments,
        },
        "ProcessingInputs": [
            {
                "InputName": "work",
                "S3Input": {
                    "S3Uri": spec["work_uri"],
                    "LocalPath": shard_job.WORK_FOLDER,
                    "S3DataType": "S3Prefix",
                    "S3InputMode": "File",
                    "S3DataDistributionType": "FullyReplicated",
                },
            }
        ],
        "ProcessingOutputConfig": {
            "Outputs": [
                {
                    "OutputName": "shard",
                    "S3Output": {"S3Uri": shard_uri, "LocalPath": shard_job.OUTPUT_FOLDER, "S3UploadMode": "EndOfJob"},
                }
            ]
        },
        "ProcessingResources": {
            "ClusterConfig": {"InstanceCount": 1, "InstanceType": instance_type, "VolumeSizeInGB": volume_size_gb}
        },
        "StoppingCondition": {"MaxRuntimeInSeconds": max_runtime_seconds},
        "Tags": tags,
    }


# --- batch transform ---------------------------------------------------------------------------

#: What the built-in algorithm takes for inference (JPEG and PNG both; ``image/jpeg`` names only one of them).
TRANSFORM_CONTENT_TYPE = "application/x-image"
#: S3DataType of a transform's input: every object under a prefix, or a manifest listing them.
S3_PREFIX = "S3Prefix"
MANIFEST_FILE = "ManifestFile"


@dataclass(frozen=True)
class TransformSettings:
    """The knobs of a CreateTransformJob request (``transform:`` in the configuration)."""

    instance_type: str = "ml.m5.xlarge"
    instance_count: int = 1
    max_concurrent_transforms: int = 4
    max_payload_mb: int = 6
    invocation_timeout_seconds: int = 60
    invocation_max_retries: int = 1


def transform_request(
    run: RunIdentity,
    *,
    model_data_url: str,
    role_arn: str,
    region: str,
    input_uri: str,
    output_uri: str,
    settings: TransformSettings,
    input_type: Literal["S3Prefix", "ManifestFile"] = "S3Prefix",
    image: str | None = None,
    runtime: str = "mxnet",
) -> dict[str, dict[str, Any]]:
    """``{"Model", "Transform"}``, the combined config ``SageMakerTransformOperator`` takes: CreateModel of the
    run's model (:func:`model_request`) and CreateTransformJob scoring every image under ``input_uri`` with it.

    One image per object, so ``SplitType`` None and ``BatchStrategy`` SingleRecord; each answer goes to
    ``<output_uri>/<path under the input>.out`` (``AssembleWith`` None), the endpoint's JSON.
    """
    model_name = run.name(MODEL)
    transform = {
        "TransformJobName": run.name(TRANSFORM),
        "ModelName": model_name,
        "MaxConcurrentTransforms": settings.max_concurrent_transforms,
        "MaxPayloadInMB": settings.max_payload_mb,
        "BatchStrategy": "SingleRecord",
        "ModelClientConfig": {
            "InvocationsTimeoutInSeconds": settings.invocation_timeout_seconds,
            "InvocationsMaxRetries": settings.invocation_max_retries,
        },
        "TransformInput": {
            "DataSource": {"S3DataSource": {"S3DataType": input_type, "S3Uri": input_uri}},
            "ContentType": TRANSFORM_CONTENT_TYPE,
            "CompressionType": "None",
            "SplitType": "None",
        },
        "TransformOutput": {"S3OutputPath": output_uri, "Accept": "application/json", "AssembleWith": "None"},
        "TransformResources": {"InstanceType": settings.instance_type, "InstanceCount": settings.instance_count},
        "Tags": run.tags(),
    }
    model = model_request(
        name=model_name,
        model_data_url=model_data_url,
        role_arn=role_arn,
        image=image or builtin_image(region),
        tags=run.tags(),
        runtime=runtime,
    )
    return {"Model": model, "Transform": transform}


def transform_duration_seconds(transform: Mapping[str, Any], images: int) -> int:
    """The longest a transform of ``images`` images can take: every invocation timing out on every try, the
    instances' concurrent invocations working through them in waves (provisioning excluded)."""
    client = transform.get("ModelClientConfig", {})
    per_image = int(client.get("InvocationsTimeoutInSeconds", 600)) * (1 + int(client.get("InvocationsMaxRetries", 3)))
    lanes = max(1, int(transform.get("MaxConcurrentTransforms") or 1)) * int(
        transform["TransformResources"]["InstanceCount"]
    )
    return per_image * max(1, math.ceil(images / lanes))


def max_duration_seconds(request: Mapping[str, Any]) -> int:
    """The longest a training, tuning or processing request can run before SageMaker stops it (queueing excluded).

    A training or processing job: its ``MaxWaitTimeInSeconds`` (spot) or ``MaxRuntimeInSeconds``. A tuning job:
    its own ``MaxRuntimeInSeconds`` limit when set, else its training jobs run in sequential
    waves of ``MaxParallelTrainingJobs``, each as long as one job may take.
    """
    if "HyperParameterTuningJobConfig" in request:
        limits = request["HyperParameterTuningJobConfig"]["ResourceLimits"]
        if "MaxRuntimeInSeconds" in limits:
            return int(limits["MaxRuntimeInSeconds"])
        waves = math.ceil(int(limits["MaxNumberOfTrainingJobs"]) / int(limits["MaxParallelTrainingJobs"]))
        return waves * max_duration_seconds(request["TrainingJobDefinition"])
    condition = request["StoppingCondition"]
    return int(condition.get("MaxWaitTimeInSeconds") or condition["MaxRuntimeInSeconds"])
