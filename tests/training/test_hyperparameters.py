"""The object-detection hyperparameters: parsing, documented ranges, data checks, local extension."""

from __future__ import annotations

import pytest

from include.training.hyperparameters import (
    DEFAULTS,
    SAGEMAKER_BASE_NETWORKS,
    SPECS,
    HyperparameterError,
    to_strings,
    validate_hyperparameters,
)

REQUIRED = {"num_classes": "3", "num_training_samples": "100"}


def test_defaults_are_the_documented_ones() -> None:
    hp = validate_hyperparameters(REQUIRED)
    assert hp["base_network"] == "vgg-16"
    assert hp["epochs"] == 30 and hp["mini_batch_size"] == 32 and hp["image_shape"] == 300
    assert hp["learning_rate"] == 0.001 and hp["optimizer"] == "sgd" and hp["momentum"] == 0.9
    assert hp["lr_scheduler_step"] == () and hp["lr_scheduler_factor"] == 0.1
    assert hp["early_stopping"] is False and hp["early_stopping_patience"] == 5
    assert hp["label_width"] == 350 and hp["use_pretrained_model"] == 1
    assert set(hp) == set(SPECS)


def test_parses_sagemaker_strings() -> None:
    hp = validate_hyperparameters(
        {**REQUIRED, "lr_scheduler_step": "33, 67", "early_stopping": "true", "epochs": "100",
         "freeze_layer_pattern": "^(conv1_|conv2_).*", "_tuning_objective_metric": "validation:mAP"}
    )
    assert hp["lr_scheduler_step"] == (33, 67)
    assert hp["early_stopping"] is True
    assert hp["freeze_layer_pattern"] == "^(conv1_|conv2_).*"


@pytest.mark.parametrize(
    ("name", "value", "words"),
    [
        ("learning_rate", "1.5", "(0, 1]"),
        ("learning_rate", "0", "(0, 1]"),
        ("weight_decay", "1", "(0, 1)"),
        ("mini_batch_size", "0", "positive integer"),
        ("epochs", "2.5", "positive integer"),
        ("optimizer", "lbfgs", "sgd, adam, rmsprop, adadelta"),
        ("base_network", "resnet-101", "vgg-16, resnet-50, mobilenet-1.0"),
        ("lr_scheduler_step", "20,10", "increasing"),
        ("early_stopping", "yes", "True or False"),
        ("use_pretrained_model", "2", "0 or 1"),
        ("freeze_layer_pattern", "(", "regular expression"),
        ("image_shape", "256", ">= 300 with base_network vgg-16"),
    ],
)
def test_rejects_values_out_of_range_naming_them(name: str, value: str, words: str) -> None:
    with pytest.raises(HyperparameterError) as err:
        validate_hyperparameters({**REQUIRED, name: value})
    assert name in str(err.value) and repr(value) in str(err.value) and words in str(err.value)


def test_rejects_unknown_and_missing_names() -> None:
    with pytest.raises(HyperparameterError, match="unknown hyperparameter.*learningrate"):
        validate_hyperparameters({**REQUIRED, "learningrate": "0.1"})
    with pytest.raises(HyperparameterError, match="num_training_samples is required"):
        validate_hyperparameters({"num_classes": "3"})


def test_checks_against_the_data() -> None:
    with pytest.raises(HyperparameterError, match="num_classes='3' does not match the data: expected 4"):
        validate_hyperparameters(REQUIRED, num_classes=4)
    with pytest.raises(HyperparameterError, match="num_training_samples='100'.*expected 99"):
        validate_hyperparameters(REQUIRED, num_training_samples=99)
    with pytest.raises(HyperparameterError, match=r"label_width='350' is too small: expected at least 352"):
        validate_hyperparameters(REQUIRED, max_objects=70)
    assert validate_hyperparameters(REQUIRED, num_classes=3, num_training_samples=100, max_objects=69)


def test_mobilenet_is_a_local_only_extension() -> None:
    local = {**REQUIRED, "base_network": "mobilenet-1.0", "image_shape": "128"}
    assert validate_hyperparameters(local)["image_shape"] == 128
    assert "mobilenet-1.0" not in SAGEMAKER_BASE_NETWORKS
    with pytest.raises(HyperparameterError, match="base_network='mobilenet-1.0' is a local-only base network"):
        validate_hyperparameters(local, for_sagemaker=True)
    with pytest.raises(HyperparameterError, match="image_shape"):
        validate_hyperparameters({**REQUIRED, "image_shape": "128"}, for_sagemaker=True)


def test_base_lr_factor_is_local_only() -> None:
    assert validate_hyperparameters(REQUIRED)["base_lr_factor"] == 1.0
    assert validate_hyperparameters({**REQUIRED, "base_lr_factor": "0.25"})["base_lr_factor"] == 0.25
    with pytest.raises(HyperparameterError, match=r"base_lr_factor='0' is out of range: expected a float in \(0, 1\]"):
        validate_hyperparameters({**REQUIRED, "base_lr_factor": "0"})
    with pytest.raises(HyperparameterError, match="base_lr_factor='1.0' is local only"):
        validate_hyperparameters({**REQUIRED, "base_lr_factor": "1.0"}, for_sagemaker=True)


def test_to_strings_round_trips() -> None:
    typed = validate_hyperparameters({**REQUIRED, "lr_scheduler_step": "10,20", "early_stopping": "True"})
    strings = to_strings(typed)
    assert strings["lr_scheduler_step"] == "10,20" and strings["early_stopping"] == "True"
    assert validate_hyperparameters(strings) == typed
    assert set(DEFAULTS) <= set(strings)
