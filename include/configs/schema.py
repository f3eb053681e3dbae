"""The validated shape of the pipeline configuration (pydantic models, unknown keys forbidden)."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    ValidationInfo,
    field_validator,
    model_validator,
)

ROLE_ARN = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]{1,512}$")
BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
INSTANCE_TYPE = r"^ml\.[a-z0-9]+\.[a-z0-9]+$"

Scalar = str | int | float | bool


class Section(BaseModel):
    """A configuration section: unknown keys are errors, assignments are validated."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class Storage(Section):
    base_uri: str | None = None


#: Data set formats, or auto: detected from the layout (include.preprocess.readers.FORMATS, AUTO).
DatasetFormat = Literal[
    "auto", "cub", "voc", "groundtruth", "imagejson", "coco", "yolo", "labelstudio", "cvat", "jumpstart"
]


class Dataset(Section):
    source: str = "sample"
    format: DatasetFormat = "auto"
    classes: list[str] = Field(default_factory=list)
    label_attribute: str | None = None
    validation_fraction: float = Field(0.2, gt=0, lt=1)
    test_fraction: float = Field(0.15, ge=0, lt=1)
    seed: int = 42
    image_policy: Literal["convert", "reject"] = "convert"
    sample_images: PositiveInt = 300


class Quality(Section):
    policy: Literal["fail", "drop"] = "fail"
    checks: dict[str, Literal["fail", "drop", "warn"]] = Field(default_factory=dict)
    min_box_side: NonNegativeFloat = 1.0
    tolerance: NonNegativeFloat = 2.0
    near_duplicate_distance: int = Field(40, ge=0, le=256)
    thumbnails: NonNegativeInt = 200

    @field_validator("checks")
    @classmethod
    def _known_checks(cls, checks: dict[str, str], info: ValidationInfo) -> dict[str, str]:
        from include.preprocess.quality.checks import policies

        policies(info.data.get("policy", "fail"), checks)  # unknown checks and impossible policies are errors here
        return checks


class RecordIO(Section):
    resize: PositiveInt | None = 256
    quality: int = Field(95, ge=1, le=100)
    flip: Literal["train", "none", "all"] = "train"
    decoder: Literal["fast", "exact"] = "fast"
    shards: PositiveInt = 2
    workers: PositiveInt | None = None
    channel_format: Literal["recordio", "augmented-manifest", "image-json"] = "recordio"
    label_attribute: str = Field("bounding-box", pattern=r"^[A-Za-z0-9][A-Za-z0-9-]*$")
    cache: bool = True


class TuningRange(Section):
    type: Literal["continuous", "integer", "categorical"]
    min: float | None = None
    max: float | None = None
    values: list[str] | None = None
    scaling: Literal["Auto", "Linear", "Logarithmic", "ReverseLogarithmic"] = "Auto"

    @model_validator(mode="after")
    def _bounds(self) -> TuningRange:
        if self.type == "categorical":
            if not self.values:
                raise ValueError("a categorical range needs a non-empty 'values' list")
        elif self.min is None or self.max is None or self.min > self.max:
            raise ValueError(f"a {self.type} range needs min <= max (got min={self.min}, max={self.max})")
        return self


class Tuning(Section):
    strategy: Literal["Bayesian", "Random"] = "Bayesian"
    max_jobs: PositiveInt = 8
    max_parallel_jobs: PositiveInt = 2
    ranges: dict[str, TuningRange] = Field(default_factory=dict)


class JumpStart(Section):
    """The JumpStart model ``training.algorithm: jumpstart`` fine-tunes (its metadata comes from the SDK)."""

    model_id: str = Field("mxnet-od-ssd-512-mobilenet1-0-coco", min_length=1)
    model_version: str = Field("2.0.0", pattern=r"^\d+\.\d+\.\d+$")
    hyperparameters: dict[str, Scalar] = Field(default_factory=dict)  # over the model's defaults


class Training(Section):
    tune: bool = False
    algorithm: Literal["builtin", "jumpstart"] = "builtin"
    hyperparameters: dict[str, Scalar] = Field(default_factory=dict)
    # replace those keys of hyperparameters when the local backend trains from scratch instead
    scratch_hyperparameters: dict[str, Scalar] = Field(default_factory=dict)
    tuning: Tuning = Field(default_factory=Tuning)
    cache: bool = True
    jumpstart: JumpStart = Field(default_factory=JumpStart)


class Evaluation(Section):
    promotion_threshold: float = Field(0.5, ge=0, le=1)
    score_threshold: float = Field(0.5, ge=0, le=1)
    samples: NonNegativeInt = 6
    label_issues: bool = True
    label_issues_shown: NonNegativeInt = 20
    cache: bool = True


class Production(Section):
    """The standing production endpoint: its name, local port and SageMaker's blue/green deployment and alarms."""

    endpoint_name: str = Field("detector-prod", pattern=r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")
    port: int = Field(8080, ge=0, le=65535)
    traffic: Literal["ALL_AT_ONCE", "CANARY", "LINEAR"] = "ALL_AT_ONCE"
    step_percent: int = Field(10, ge=1, le=100)
    baking_seconds: int = Field(300, ge=0, le=3600)
    termination_wait_seconds: int = Field(120, ge=0, le=3600)
    max_execution_seconds: int = Field(1800, ge=600, le=28800)
    alarm_5xx_errors: PositiveInt = 1
    alarm_latency_ms: PositiveFloat = 2000.0


#: SageMaker's pattern for a JsonContentTypes entry: a media type without parameters.
MEDIA_TYPE = r"^[a-zA-Z0-9](-*[a-zA-Z0-9])*\/[a-zA-Z0-9](-*[a-zA-Z0-9.])*$"


class Capture(Section):
    """Data capture of the production endpoint, as SageMaker's DataCaptureConfig takes it."""

    enabled: bool = False
    percent: float = Field(100.0, ge=0, le=100)
    destination: str | None = None
    json_content_types: list[Annotated[str, Field(pattern=MEDIA_TYPE)]] = Field(
        default_factory=lambda: ["application/json"], max_length=10
    )


class Deploy(Section):
    enabled: bool = True
    keep_endpoint_minutes: NonNegativeInt = 0
    smoke_images: PositiveInt = 4
    max_body_mb: float = Field(6.0, gt=0)
    delete_intermediate_files: bool = False
    runtime: Literal["mxnet", "onnxruntime"] = "mxnet"
    production: Production = Field(default_factory=Production)
    capture: Capture = Field(default_factory=Capture)


class Neo(Section):
    """SageMaker Neo's target: a device (``ml_c5``, ``jetson_nano``, ...) or a platform, not both."""

    target_device: str | None = Field("ml_c5", pattern=r"^[a-z0-9_]+$")
    target_platform: dict[Literal["Os", "Arch", "Accelerator"], str] | None = None
    compiler_options: str | None = None
    max_runtime_seconds: PositiveInt = 900

    @model_validator(mode="after")
    def _one_target(self) -> Neo:
        if (self.target_device is None) == (self.target_platform is None):
            raise ValueError("set either target_device or target_platform (and the other to null)")
        return self


class Export(Section):
    enabled: bool = False
    formats: list[Literal["onnx", "neo"]] = Field(default_factory=lambda: ["onnx"], min_length=1)
    parity_images: PositiveInt = 32
    score_tolerance: PositiveFloat = 1e-3
    box_tolerance: PositiveFloat = 1e-3
    neo: Neo = Field(default_factory=Neo)


class Cache(Section):
    """The step cache (:mod:`include.cache`): ``enabled`` false runs every step fresh (and still records it)."""

    enabled: bool = True
    uri: str | None = None  # null: <storage.base_uri>/_cache


class Cost(Section):
    """Prices (USD per instance-hour, on demand) per region and instance type, and a run's budget."""

    max_usd: PositiveFloat | None = None  # resolve_config fails a run whose estimate exceeds it
    endpoint_minutes: NonNegativeInt = 30  # an endpoint's life in the estimate, beyond keep_endpoint_minutes
    prices: dict[str, dict[str, NonNegativeFloat]] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _instance_types(self) -> Cost:
        bad = [f"{region}.{kind}" for region, table in self.prices.items() for kind in table
               if not re.fullmatch(INSTANCE_TYPE, kind)]  # fmt: skip
        if bad:
            raise ValueError(f"cost.prices: not SageMaker instance types (ml.<family>.<size>): {', '.join(bad)}")
        return self


class Tracking(Section):
    """Where every run is tracked (MLflow) and its models registered."""

    uri: str | None = None
    ui_url: str | None = None
    experiment: str | None = None
    registered_model: str | None = None
    timeout_seconds: float = Field(5.0, gt=0, le=120)
    local_dir: str = "data/mlflow"

    @field_validator("uri")
    @classmethod
    def _uri_form(cls, value: str | None) -> str | None:
        from include.tracking.uri import form_problem

        if value is not None and (problem := form_problem(value)):
            raise ValueError(problem)
        return value


class Promotion(Section):
    """Who moves the registry's ``champion`` alias when a challenger wins the gate."""

    approval: Literal["auto", "manual"] = "auto"
    approval_timeout_minutes: PositiveFloat = 1440  # fractions too: 0.1 = 6 s (the scheduler checks every 15 s)


class Local(Section):
    host: str = "127.0.0.1"
    workers: PositiveInt = 2
    endpoint_state_dir: str = "data/endpoints"
    pretrained_fallback: Literal["fail", "scratch"] = "fail"


class ShardProcessing(Section):
    """The RecordIO shards as SageMaker Processing jobs (sagemaker backend), one job per mapped shard.

    ``image_uri``: the project's image in ECR (``make image-push``), required when ``enabled``.
    """

    enabled: bool = False
    image_uri: str | None = Field(None, pattern=r"^\S+$")
    instance_type: str = Field("ml.m5.xlarge", pattern=INSTANCE_TYPE)
    volume_size_gb: PositiveInt = 30
    max_runtime_seconds: PositiveInt = Field(3600, le=777600)

    @model_validator(mode="after")
    def _image_when_enabled(self) -> ShardProcessing:
        if self.enabled and not self.image_uri:
            raise ValueError("shard_processing.enabled needs shard_processing.image_uri (the image `make image-push` "
                             "pushed to ECR)")
        return self


class SageMaker(Section):
    region: str = Field("us-east-1", pattern=r"^[a-z]{2}(-gov)?-[a-z]+-\d$")
    role_arn: str | None = None
    bucket: str | None = None
    prefix: str = "object-detection"
    training_instance_type: str = Field("ml.p3.2xlarge", pattern=INSTANCE_TYPE)
    training_instance_count: PositiveInt = 1
    volume_size_gb: PositiveInt = 50
    max_runtime_seconds: PositiveInt = 86400
    managed_spot: bool = False
    max_wait_seconds: PositiveInt = 172800
    endpoint_instance_type: str = Field("ml.m5.xlarge", pattern=INSTANCE_TYPE)
    endpoint_instance_count: PositiveInt = 1
    shard_processing: ShardProcessing = Field(default_factory=ShardProcessing)


class DriftThreshold(Section):
    """A feature drifts when its PSI is above ``psi`` and its two-sample test's p-value below ``p_value``."""

    psi: NonNegativeFloat | None = None
    p_value: float | None = Field(None, ge=0, le=1)


class Retraining(Section):
    """What a drifted monitoring run asks the training pipeline for (the ``labelled_dataset`` asset event)."""

    enabled: bool = False
    dataset_source: str | None = None
    dataset_format: DatasetFormat | None = None


class Monitoring(Section):
    """Monitoring of what the endpoint sees (the ``detection_monitoring`` DAG, ``detection-pipeline monitor``)."""

    source: str | None = None
    window_hours: PositiveInt = 24
    min_images: PositiveInt = 30
    score_threshold: float = Field(0.5, ge=0, le=1)
    baseline_images: PositiveInt = 2000
    thresholds: dict[str, DriftThreshold] = Field(default_factory=dict)
    retraining: Retraining = Field(default_factory=Retraining)

    def threshold_settings(self) -> dict[str, dict[str, float]]:
        """``{feature or "default": {"psi", "p_value"}}`` with only the values set."""
        return {name: t.model_dump(exclude_none=True) for name, t in self.thresholds.items()}
class Transform(Section):
    """Batch transform (``detection-pipeline transform``, the ``batch_inference`` DAG) and its pre-labels.

    ``workers``: local processes (null: every core). The others are the CreateTransformJob request's
    (sagemaker backend); ``max_payload_mb`` also bounds the images the local executor takes.
    """

    workers: PositiveInt | None = None
    instance_type: str = Field("ml.m5.xlarge", pattern=INSTANCE_TYPE)
    instance_count: PositiveInt = 1
    max_concurrent_transforms: PositiveInt = 4
    max_payload_mb: int = Field(6, ge=1, le=100)
    invocation_timeout_seconds: int = Field(60, ge=1, le=3600)
    invocation_max_retries: int = Field(1, ge=0, le=3)
    prelabel_score_threshold: float = Field(0.3, ge=0, le=1)
    prelabel_formats: list[Literal["coco", "labelstudio", "groundtruth"]] = Field(
        default_factory=lambda: ["coco", "labelstudio", "groundtruth"], min_length=1
    )
    label_attribute: str = Field("bounding-box", min_length=1)  # the Ground Truth manifest's


class PipelineConfig(Section):
    """The whole configuration of one pipeline run."""

    backend: Literal["local", "sagemaker"] = "local"
    storage: Storage = Field(default_factory=Storage)
    dataset: Dataset = Field(default_factory=Dataset)
    quality: Quality = Field(default_factory=Quality)
    recordio: RecordIO = Field(default_factory=RecordIO)
    training: Training = Field(default_factory=Training)
    evaluation: Evaluation = Field(default_factory=Evaluation)
    deploy: Deploy = Field(default_factory=Deploy)
    export: Export = Field(default_factory=Export)
    cache: Cache = Field(default_factory=Cache)
    cost: Cost = Field(default_factory=Cost)
    tracking: Tracking = Field(default_factory=Tracking)
    promotion: Promotion = Field(default_factory=Promotion)
    monitoring: Monitoring = Field(default_factory=Monitoring)
    local: Local = Field(default_factory=Local)
    transform: Transform = Field(default_factory=Transform)
    sagemaker: SageMaker = Field(default_factory=SageMaker)
