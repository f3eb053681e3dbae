"""Tiny local training jobs for the tests: hyperparameters a 2-core CPU trains in seconds, and their requests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

#: Small enough for a 2-core CPU: 128 px mobilenet SSD, two short epochs.
TINY_HP = {
    "base_network": "mobilenet-1.0",
    "use_pretrained_model": "0",
    "image_shape": "128",
    "epochs": "2",
    "mini_batch_size": "8",
    "optimizer": "adam",
    "learning_rate": "0.001",
}


def make_request(data: Path, output: Path, name: str, **hyperparameters: str) -> dict[str, Any]:
    """A CreateTrainingJob request over ``data`` (the tiny set's counts), as the SageMaker API takes it."""
    hp = {"num_classes": "3", "num_training_samples": "24", **TINY_HP, **hyperparameters}
    channel = [
        {
            "ChannelName": name_,
            "ContentType": "application/x-recordio",
            "DataSource": {
                "S3DataSource": {
                    "S3DataType": "S3Prefix",
                    "S3Uri": (data / name_).as_uri(),
                    "S3DataDistributionType": "FullyReplicated",
                }
            },
        }
        for name_ in ("train", "validation")
    ]
    return {
        "TrainingJobName": name,
        "AlgorithmSpecification": {"TrainingImage": "object-detection:local", "TrainingInputMode": "File"},
        "RoleArn": "arn:aws:iam::000000000000:role/test",
        "InputDataConfig": channel,
        "OutputDataConfig": {"S3OutputPath": output.as_uri()},
        "ResourceConfig": {"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 1},
        "StoppingCondition": {"MaxRuntimeInSeconds": 3600},
        "HyperParameters": hp,
    }


