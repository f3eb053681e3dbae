"""Request builders, names and tuning ranges, checked against botocore's SageMaker service model (offline)."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import UTC, datetime

import botocore.session
import pytest

from include.sagemaker import naming
from include.sagemaker.metrics import metric_definitions
from include.sagemaker.naming import RunIdentity, job_name, keep_until, run_token
from include.sagemaker.requests import (
    RUNTIME_ENV,
    RequestError,
    builtin_image,
    deployment_request,
    max_duration_seconds,
    training_job_request,
    tuning_job_request,
    validate_request,
)
from include.sagemaker.tuning_ranges import documented_ranges
from include.sagemaker.validation import RequestValidationError

RUN = RunIdentity("detection_pipeline", "scheduled__2026-01-02T03:04:05.123456+00:00", 1)
MODEL = botocore.session.get_session().get_service_model("sagemaker")


def _name_rule(shape_name: str) -> tuple[re.Pattern[str], int]:
    meta = MODEL.shape_for(shape_name).metadata
    return re.compile(meta["pattern"]), meta["max"]


@pytest.mark.parametrize(
    ("kind", "shape"),
    [
        (naming.TRAINING, "TrainingJobName"),
        (naming.TUNING, "HyperParameterTuningJobName"),
        (naming.MODEL, "ModelName"),
        (naming.ENDPOINT_CONFIG, "EndpointConfigName"),
        (naming.ENDPOINT, "EndpointName"),
    ],
)
@pytest.mark.parametrize(
    ("dag_id", "run_id", "try_number"),
    [
        ("detection_pipeline", "manual__2026-01-02T03:04:05.123456+00:00", 1),
        ("d" * 250, "r" * 250, 123456),
        ("ÿ__--", "::", 0),
    ],
)
def test_job_names_fit_sagemakers_rules(kind: str, shape: str, dag_id: str, run_id: str, try_number: int) -> None:
    pattern, max_length = _name_rule(shape)
    for attempt in (0, 7):
        name = job_name(kind, dag_id, run_id, try_number, attempt=attempt)
        assert pattern.fullmatch(name) and len(name) <= max_length, name
        assert run_token(dag_id, run_id) in name
        assert name.startswith(kind + "-")
        assert name == job_name(kind, dag_id, run_id, try_number, attempt=attempt)  # deterministic


def test_job_names_differ_per_run_try_kind_and_attempt() -> None:
    names = {
        job_name("train", "dag", "run-1", 1),
        job_name("train", "dag", "run-1", 2),
        job_name("train", "dag", "run-2", 1),
        job_name("train", "dag2", "run-1", 1),
        job_name("tune", "dag", "run-1", 1),
        job_name("train", "dag", "run-1", 1, attempt=1),
    }
    assert len(names) == 6
    assert job_name("train", "dag", "manual__2026-01-02", 3).startswith("train-dag-manual-2026-01-02-")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--", "dag", "run", 1), "no letters or digits"),
        (("train", "", "run", 1), "non-empty"),
        (("train", "dag", "run", -1), "try_number"),
        (("train", "dag", "run", True), "try_number"),
    ],
)
def test_job_name_rejects_bad_input(args: tuple, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        job_name(*args)


def test_tags_name_the_run_and_are_valid_tag_values() -> None:
    tags = RunIdentity("dag", "manual__2026-01-02T03:04:05+00:00 #1 (retry)", 2).tags({"keep-until": "x"})
    values = {tag["Key"]: tag["Value"] for tag in tags}
    assert values[naming.DAG_ID_TAG] == "dag"
    assert values[naming.RUN_ID_TAG] == "manual__2026-01-02T03:04:05+00:00 _1 _retry_"
    assert values[naming.TRY_NUMBER_TAG] == "2"
    assert values[naming.RUN_TOKEN_TAG] == run_token("dag", "manual__2026-01-02T03:04:05+00:00 #1 (retry)")
    assert values["keep-until"] == "x"


def test_keep_until_is_utc_iso_time() -> None:
    now = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert keep_until(now, 90) == "2026-01-02T04:34:05+00:00"
    with pytest.raises(ValueError, match="timezone-aware"):
        keep_until(now.replace(tzinfo=None), 1)


def test_training_request_is_valid_and_complete(training_spec, hyperparameters) -> None:
    request = training_job_request(
        training_spec, name=RUN.name("train"), hyperparameters=hyperparameters, tags=RUN.tags()
    )
    validate_request("CreateTrainingJob", request)
    assert request["AlgorithmSpecification"] == {
        "TrainingImage": builtin_image("us-east-1"),
        "TrainingInputMode": "File",
    }
    assert request["AlgorithmSpecification"]["TrainingImage"].endswith("/object-detection:1")
    channels = {c["ChannelName"]: c for c in request["InputDataConfig"]}
    assert set(channels) == {"train", "validation"}
    for channel in channels.values():
        assert channel["ContentType"] == "application/x-recordio"
        assert channel["DataSource"]["S3DataSource"]["S3DataType"] == "S3Prefix"
        assert channel["DataSource"]["S3DataSource"]["S3DataDistributionType"] == "FullyReplicated"
    assert request["ResourceConfig"] == {"InstanceType": "ml.p3.2xlarge", "InstanceCount": 1, "VolumeSizeInGB": 50}
    assert request["StoppingCondition"] == {"MaxRuntimeInSeconds": 4 * 3600}
    assert "EnableManagedSpotTraining" not in request
    assert {t["Key"] for t in request["Tags"]} >= {naming.DAG_ID_TAG, naming.RUN_ID_TAG, naming.TRY_NUMBER_TAG}


def test_pipe_mode_augmented_manifest_spot_and_model_channel(training_spec, hyperparameters) -> None:
    spec = replace(
        training_spec,
        input_mode="Pipe",
        label_attribute="bounding-box",
        train_uri="s3://detection-test-bucket/manifests/train.manifest",
        validation_uri="s3://detection-test-bucket/manifests/validation.manifest",
        model_uri="s3://detection-test-bucket/previous/model.tar.gz",
        managed_spot=True,
        max_wait_seconds=8 * 3600,
    )
    request = training_job_request(spec, name=RUN.name("train"), hyperparameters=hyperparameters, tags=RUN.tags())
    validate_request("CreateTrainingJob", request)
    channels = {c["ChannelName"]: c for c in request["InputDataConfig"]}
    train = channels["train"]
    assert train["RecordWrapperType"] == "RecordIO" and train["ContentType"] == "application/x-recordio"
    assert train["DataSource"]["S3DataSource"]["S3DataType"] == "AugmentedManifestFile"
    assert train["DataSource"]["S3DataSource"]["AttributeNames"] == ["source-ref", "bounding-box"]
    assert channels["model"]["ContentType"] == "application/x-sagemaker-model"
    assert request["AlgorithmSpecification"]["TrainingInputMode"] == "Pipe"
    assert request["EnableManagedSpotTraining"] is True
    assert request["StoppingCondition"] == {"MaxRuntimeInSeconds": 4 * 3600, "MaxWaitTimeInSeconds": 8 * 3600}
    assert request["CheckpointConfig"] == {"S3Uri": "s3://detection-test-bucket/output/checkpoints"}
    assert max_duration_seconds(request) == 8 * 3600


def test_image_json_channels(training_spec, hyperparameters) -> None:
    base = "s3://detection-test-bucket/recordio/image-json"
    spec = replace(
        training_spec,
        content_type="image/jpeg",
        train_uri=f"{base}/train/",
        validation_uri=f"{base}/validation/",
        annotation_uris=(f"{base}/train_annotation/", f"{base}/validation_annotation/"),
    )
    request = training_job_request(spec, name=RUN.name("train"), hyperparameters=hyperparameters, tags=RUN.tags())
    validate_request("CreateTrainingJob", request)
    channels = {c["ChannelName"]: c for c in request["InputDataConfig"]}
    assert list(channels) == ["train", "validation", "train_annotation", "validation_annotation"]
    for name, channel in channels.items():  # all four of the images' content type, as the algorithm wants
        assert channel["ContentType"] == "image/jpeg"
        assert channel["DataSource"]["S3DataSource"] == {
            "S3Uri": f"{base}/{name}/",
            "S3DataType": "S3Prefix",
            "S3DataDistributionType": "FullyReplicated",
        }
    assert request["AlgorithmSpecification"]["TrainingInputMode"] == "File"


def test_inconsistent_specs_are_refused(training_spec, hyperparameters) -> None:
    with pytest.raises(RequestError, match="need input_mode='Pipe'"):
        training_job_request(
            replace(training_spec, label_attribute="x"), name="n", hyperparameters=hyperparameters, tags=[]
        )
    with pytest.raises(RequestError, match="annotation channels go with image channels"):
        training_job_request(
            replace(training_spec, annotation_uris=("s3://b/a/", "s3://b/v/")),
            name="n",
            hyperparameters=hyperparameters,
            tags=[],
        )
    with pytest.raises(RequestError, match="max_wait_seconds"):
        training_job_request(
            replace(training_spec, managed_spot=True, max_wait_seconds=60),
            name="n",
            hyperparameters=hyperparameters,
            tags=[],
        )


def test_metric_definitions_only_for_another_image(training_spec, hyperparameters) -> None:
    custom = replace(training_spec, image="123456789012.dkr.ecr.us-east-1.amazonaws.com/detector:1")
    request = training_job_request(custom, name=RUN.name("train"), hyperparameters=hyperparameters, tags=RUN.tags())
    validate_request("CreateTrainingJob", request)
    assert request["AlgorithmSpecification"]["MetricDefinitions"] == metric_definitions()
    forced = replace(training_spec, metric_definitions=True)
    assert (
        "MetricDefinitions"
        in training_job_request(forced, name="n", hyperparameters={}, tags=[])["AlgorithmSpecification"]
    )


def test_tuning_request_shares_the_training_definition(training_spec, hyperparameters) -> None:
    training = training_job_request(
        training_spec, name=RUN.name("train"), hyperparameters=hyperparameters, tags=RUN.tags()
    )
    tuning = tuning_job_request(
        training_spec,
        name=RUN.name("tune"),
        hyperparameters=hyperparameters,
        ranges=documented_ranges(),
        tags=RUN.tags(),
        strategy="Random",
        max_jobs=6,
        max_parallel_jobs=2,
    )
    validate_request("CreateHyperParameterTuningJob", tuning)
    definition = tuning["TrainingJobDefinition"]
    for key in ("RoleArn", "InputDataConfig", "OutputDataConfig", "ResourceConfig", "StoppingCondition"):
        assert definition[key] == training[key]
    assert definition["AlgorithmSpecification"] == training["AlgorithmSpecification"]
    tuned = set(documented_ranges())
    assert set(definition["StaticHyperParameters"]) == set(hyperparameters) - tuned
    config = tuning["HyperParameterTuningJobConfig"]
    assert config["Strategy"] == "Random"
    assert config["HyperParameterTuningJobObjective"] == {"Type": "Maximize", "MetricName": "validation:mAP"}
    assert config["ResourceLimits"] == {"MaxNumberOfTrainingJobs": 6, "MaxParallelTrainingJobs": 2}
    ranges = config["ParameterRanges"]
    assert {r["Name"]: (r["MinValue"], r["MaxValue"]) for r in ranges["ContinuousParameterRanges"]} == {
        "learning_rate": ("1e-06", "0.5"),
        "momentum": ("0.0", "0.999"),
        "weight_decay": ("0.0", "0.999"),
    }
    assert ranges["IntegerParameterRanges"] == [
        {"Name": "mini_batch_size", "MinValue": "8", "MaxValue": "64", "ScalingType": "Auto"}
    ]
    assert ranges["CategoricalParameterRanges"] == [
        {"Name": "optimizer", "Values": ["sgd", "adam", "rmsprop", "adadelta"]}
    ]
    assert max_duration_seconds(tuning) == 3 * 4 * 3600


def test_tuning_subset_and_scaling(training_spec, hyperparameters) -> None:
    ranges = {"learning_rate": {"type": "continuous", "min": 1e-4, "max": 0.1, "scaling": "Logarithmic"}}
    tuning = tuning_job_request(
        training_spec, name=RUN.name("tune"), hyperparameters=hyperparameters, ranges=ranges, tags=[]
    )
    validate_request("CreateHyperParameterTuningJob", tuning)
    static = tuning["TrainingJobDefinition"]["StaticHyperParameters"]
    assert static["mini_batch_size"] == "16" and "learning_rate" not in static
    assert (
        tuning["HyperParameterTuningJobConfig"]["ParameterRanges"]["ContinuousParameterRanges"][0]["ScalingType"]
        == "Logarithmic"
    )


@pytest.mark.parametrize(
    ("ranges", "message"),
    [
        ({"learning_rate": {"type": "continuous", "min": 0, "max": 0.9}}, r"outside the tunable \[1e-06, 0.5\]"),
        ({"mini_batch_size": {"type": "continuous", "min": 8, "max": 16}}, "must be integer"),
        ({"mini_batch_size": {"type": "integer", "min": 8.5, "max": 16}}, "integer bounds"),
        ({"optimizer": {"type": "categorical", "values": ["sgd", "lamb"]}}, "among sgd, adam"),
        ({"epochs": {"type": "integer", "min": 1, "max": 5}}, "not tunable"),
        ({"momentum": {"type": "continuous", "min": 0.0, "max": 0.5, "scaling": "Logarithmic"}}, "needs min > 0"),
        ({"momentum": {"type": "continuous", "min": 0.5, "max": 0.4}}, "min < max"),
        ({}, "at least one"),
    ],
)
def test_bad_tuning_ranges_are_named(training_spec, hyperparameters, ranges: dict, message: str) -> None:
    with pytest.raises(RequestError, match=message):
        tuning_job_request(training_spec, name="t", hyperparameters=hyperparameters, ranges=ranges, tags=[])


def test_tuning_limits_are_checked(training_spec, hyperparameters) -> None:
    with pytest.raises(RequestError, match="max_parallel_jobs"):
        tuning_job_request(
            training_spec,
            name="t",
            hyperparameters=hyperparameters,
            ranges=documented_ranges(),
            tags=[],
            max_jobs=2,
            max_parallel_jobs=3,
        )
    with pytest.raises(RequestError, match="Bayesian or Random"):
        tuning_job_request(
            training_spec,
            name="t",
            hyperparameters=hyperparameters,
            ranges=documented_ranges(),
            tags=[],
            strategy="Grid",  # type: ignore[arg-type]
        )


def test_deployment_request_is_valid() -> None:
    request = deployment_request(
        RUN,
        model_data_url="s3://b/output/job/output/model.tar.gz",
        role_arn="arn:aws:iam::123456789012:role/R",
        region="us-east-1",
        instance_type="ml.m5.xlarge",
        instance_count=2,
        keep_until=keep_until(datetime(2026, 1, 1, tzinfo=UTC), 30),
    )
    for part, operation in (
        ("Model", "CreateModel"),
        ("EndpointConfig", "CreateEndpointConfig"),
        ("Endpoint", "CreateEndpoint"),
    ):
        validate_request(operation, request[part])
    assert request["Model"]["PrimaryContainer"] == {
        "Image": builtin_image("us-east-1"),
        "ModelDataUrl": "s3://b/output/job/output/model.tar.gz",
    }
    variant = request["EndpointConfig"]["ProductionVariants"][0]
    assert (variant["ModelName"], variant["InstanceType"], variant["InitialInstanceCount"]) == (
        request["Model"]["ModelName"],
        "ml.m5.xlarge",
        2,
    )
    assert request["Endpoint"]["EndpointConfigName"] == request["EndpointConfig"]["EndpointConfigName"]
    assert {"Key": "keep-until", "Value": "2026-01-01T00:30:00+00:00"} in request["Endpoint"]["Tags"]


def test_another_runtime_is_named_in_the_model_containers_environment() -> None:
    request = deployment_request(
        RUN, model_data_url="s3://b/run/export/onnx/model.onnx", role_arn="arn:aws:iam::123456789012:role/R",
        region="us-east-1", instance_type="ml.m5.xlarge", keep_until="2026-01-01T00:30:00+00:00",
        runtime="onnxruntime",
    )  # fmt: skip
    validate_request("CreateModel", request["Model"])
    assert request["Model"]["PrimaryContainer"]["Environment"] == {RUNTIME_ENV: "onnxruntime"}


def test_validation_reports_what_botocore_and_the_service_check(training_spec, hyperparameters) -> None:
    good = training_job_request(training_spec, name=RUN.name("train"), hyperparameters=hyperparameters, tags=RUN.tags())
    bad = {
        **good,
        "TrainingJobName": "x" * 64,
        "ResourceConfig": {**good["ResourceConfig"], "InstanceType": "ml.p3.2xl"},
    }
    del bad["RoleArn"]
    bad["OutputDataConfig"] = {"S3OutputPath": "/tmp/out"}
    bad["StoppingCondition"] = {"MaxRuntimeInSeconds": "3600"}
    with pytest.raises(RequestValidationError) as caught:
        validate_request("CreateTrainingJob", bad)
    report = str(caught.value)
    assert 'Missing required parameter in input: "RoleArn"' in report  # botocore's own report
    assert "Invalid type for parameter StoppingCondition.MaxRuntimeInSeconds" in report
    assert "TrainingJobName: 'xxxx" in report and "at most 63" in report
    assert "ResourceConfig.InstanceType: 'ml.p3.2xl' is not one of" in report
    assert "OutputDataConfig.S3OutputPath: '/tmp/out' does not match" in report
    with pytest.raises(RequestValidationError, match="no operation 'CreateTrainingJobs'"):
        validate_request("CreateTrainingJobs", good)


def test_local_requests_may_use_file_uris(training_spec, hyperparameters) -> None:
    local = replace(
        training_spec,
        train_uri="file:///data/train",
        validation_uri="file:///data/validation",
        output_uri="file:///data/output",
    )
    request = training_job_request(local, name=RUN.name("train"), hyperparameters=hyperparameters, tags=RUN.tags())
    with pytest.raises(RequestValidationError, match="file:///data/train"):
        validate_request("CreateTrainingJob", request)
    validate_request("CreateTrainingJob", request, local_uris=True)
    assert request["InputDataConfig"][0]["DataSource"]["S3DataSource"]["S3Uri"] == "file:///data/train"  # not changed


@pytest.mark.parametrize("region", ["us-east-1", "eu-west-1", "cn-north-1", "us-gov-west-1"])
def test_builtin_image_is_the_sdks_without_its_import(region: str) -> None:
    from sagemaker.core import image_uris

    from include.sagemaker.requests import RequestError, builtin_image

    assert builtin_image(region) == image_uris.retrieve("object-detection", region)
    with pytest.raises(RequestError, match="no image in region 'mars-west-1'"):
        builtin_image("mars-west-1")


@pytest.mark.parametrize(
    ("profile", "expected"),
    [
        (
            {"learning_rate": 0.002, "optimizer": "adam", "mini_batch_size": 8},
            {"learning_rate", "weight_decay", "mini_batch_size"},
        ),
        (
            {"learning_rate": 0.001, "optimizer": "sgd", "mini_batch_size": 16},
            {"learning_rate", "weight_decay", "mini_batch_size", "momentum"},
        ),
    ],
)
def test_default_ranges_surround_the_profile_and_fit_the_documented_ones(profile: dict, expected: set) -> None:
    from include.sagemaker.tuning_ranges import default_ranges, parameter_ranges

    ranges = default_ranges(profile)
    assert set(ranges) == expected  # no optimizer; momentum only where the optimizer uses it
    lr = ranges["learning_rate"]
    assert lr["min"] == pytest.approx(profile["learning_rate"] / 10) and lr["max"] == pytest.approx(
        profile["learning_rate"] * 10
    )
    assert lr["scaling"] == ranges["weight_decay"]["scaling"] == "Logarithmic"
    assert ranges["weight_decay"]["max"] <= 1e-3 and ranges["mini_batch_size"]["min"] >= 8
    parameter_ranges(ranges)  # inside SageMaker's documented bounds
