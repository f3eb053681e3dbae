"""Configuration: defaults and profiles load; bad values fail naming key, value and what is allowed."""

from __future__ import annotations

import pytest

from include.configs import ConfigError, load_config
from include.project import PROJECT_ROOT

ROLE = "arn:aws:iam::123456789012:role/SageMakerRole"


def test_local_profile_is_the_default() -> None:
    cfg = load_config(environ={})
    assert cfg.backend == "local"
    assert cfg.storage.base_uri == f"file://{PROJECT_ROOT}/data/runs"
    assert cfg.training.hyperparameters["base_network"] == "mobilenet-1.0"


def test_sagemaker_profile_derives_s3_storage() -> None:
    cfg = load_config(
        params={"backend": "sagemaker"},
        environ={"DETECTION__SAGEMAKER__ROLE_ARN": ROLE, "DETECTION__SAGEMAKER__BUCKET": "my-bucket"},
    )
    assert cfg.storage.base_uri == "s3://my-bucket/object-detection"
    assert cfg.sagemaker.role_arn == ROLE
    assert cfg.training.hyperparameters["base_network"] == "resnet-50"


def test_params_override_config() -> None:
    cfg = load_config(params={"epochs": 3, "tune": True, "classes": "a, b", "keep_endpoint_minutes": 15}, environ={})
    assert cfg.training.hyperparameters["epochs"] == 3
    assert cfg.training.tune is True
    assert cfg.dataset.classes == ["a", "b"]
    assert cfg.deploy.keep_endpoint_minutes == 15


def test_none_param_keeps_config_value() -> None:
    assert load_config(params={"epochs": None}, environ={}).training.hyperparameters["epochs"] == 16


def test_the_local_profile_fine_tunes_and_may_fall_back_to_scratch() -> None:
    cfg = load_config(environ={})
    assert cfg.training.hyperparameters["use_pretrained_model"] == "1" and cfg.local.pretrained_fallback == "scratch"
    assert cfg.training.scratch_hyperparameters["use_pretrained_model"] == "0"
    mine = load_config(params={"epochs": 3}, environ={"DETECTION__TRAINING__HYPERPARAMETERS__IMAGE_SHAPE": "128"})
    assert mine.training.scratch_hyperparameters["epochs"] == 3  # what the user sets holds with or without weights
    assert mine.training.scratch_hyperparameters["image_shape"] == mine.training.hyperparameters["image_shape"] == 128
    both = load_config(overrides={"training": {"hyperparameters": {"image_shape": 384},
                                               "scratch_hyperparameters": {"image_shape": 192}}}, environ={})
    assert both.training.hyperparameters["image_shape"] == 384 and both.training.scratch_hyperparameters[
        "image_shape"] == 192
    assert cfg.training.algorithm == "builtin"
    assert cfg.training.jumpstart.model_id == "mxnet-od-ssd-512-mobilenet1-0-coco"
    sagemaker = load_config(overrides={"backend": "sagemaker", "sagemaker": {"role_arn": ROLE, "bucket": "b-1"}},
                            environ={})
    assert sagemaker.local.pretrained_fallback == "fail" and not sagemaker.training.scratch_hyperparameters


def test_scratch_hyperparameters_are_checked_too() -> None:
    with pytest.raises(ConfigError, match=r"training.scratch_hyperparameters: hyperparameter learning_rate='7'"):
        load_config(overrides={"training": {"scratch_hyperparameters": {"learning_rate": 7}}}, environ={})
    with pytest.raises(ConfigError, match=r"local.pretrained_fallback"):
        load_config(overrides={"local": {"pretrained_fallback": "maybe"}}, environ={})


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"overrides": {"dataset": {"colour": "red"}}}, ["dataset.colour", "'red'", "allowed keys here", "format"]),
        ({"params": {"epochs": -2}}, ["epochs", "-2"]),
        ({"overrides": {"quality": {"policy": "ignore"}}}, ["quality.policy", "'ignore'", "'fail' or 'drop'"]),
        (
            {"overrides": {"backend": "sagemaker", "storage": {"base_uri": "file:///tmp/runs"},
                           "sagemaker": {"role_arn": ROLE}}},
            ["storage.base_uri", "file:///tmp/runs", "only s3:// URIs are allowed"],
        ),
        ({"overrides": {"backend": "sagemaker", "sagemaker": {"bucket": "b-1"}}}, ["sagemaker.role_arn", "IAM"]),
        ({"overrides": {"sagemaker": {"role_arn": "admin"}}}, ["sagemaker.role_arn", "'admin'", "not an IAM role ARN"]),
        ({"params": {"backend": "azure"}}, ["backend", "'azure'", "local, sagemaker"]),
        ({"params": {"colour": 1}}, ["unknown parameter 'colour'", "allowed"]),
        ({"params": {"deploy_runtime": "onnxruntime"}}, ["deploy.runtime", "also set export.enabled: true"]),
        (
            {
                "params": {"backend": "sagemaker", "export": True, "deploy_runtime": "onnxruntime"},
                "overrides": {"sagemaker": {"role_arn": ROLE, "bucket": "b-1"}},
            },
            ["deploy.runtime", "only local endpoints serve the ONNX export"],
        ),
        ({"overrides": {"export": {"formats": ["neo"]}}}, ["export.formats", "Neo compiles on SageMaker only"]),
        ({"overrides": {"export": {"formats": ["tflite"]}}}, ["export.formats.0", "'tflite'", "'onnx' or 'neo'"]),
        (
            {"overrides": {"export": {"neo": {"target_platform": {"Os": "LINUX", "Arch": "ARM64"}}}}},
            ["export.neo", "set either target_device or target_platform"],
        ),
    ],
)
def test_bad_values_name_key_value_and_allowed(kwargs: dict, expected: list[str]) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(environ={}, **kwargs)
    for text in expected:
        assert text in str(err.value)


def test_export_and_the_onnx_runtime_endpoint_are_params() -> None:
    cfg = load_config(params={"export": True, "deploy_runtime": "onnxruntime"}, environ={})
    assert (cfg.export.enabled, cfg.export.formats, cfg.deploy.runtime) == (True, ["onnx"], "onnxruntime")
    assert (cfg.export.score_tolerance, cfg.export.box_tolerance, cfg.export.neo.target_device) == (1e-3, 1e-3, "ml_c5")
    aws = load_config(
        params={"backend": "sagemaker", "export": True},
        environ={"DETECTION__SAGEMAKER__ROLE_ARN": ROLE, "DETECTION__SAGEMAKER__BUCKET": "my-bucket"},
    )
    assert aws.export.formats == ["neo"] and aws.deploy.runtime == "mxnet"


def test_config_file_from_environment(tmp_path) -> None:
    path = tmp_path / "site.yaml"
    path.write_text("evaluation:\n  promotion_threshold: 0.7\n")
    cfg = load_config(environ={"DETECTION_CONFIG_FILE": str(path)})
    assert cfg.evaluation.promotion_threshold == 0.7


def test_bad_yaml_names_the_file(tmp_path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("evaluation: [unclosed\n")
    with pytest.raises(ConfigError, match="broken.yaml"):
        load_config(environ={"DETECTION_CONFIG_FILE": str(path)})
