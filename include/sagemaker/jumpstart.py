"""The CreateTrainingJob request that fine-tunes a SageMaker JumpStart model (``training.algorithm: jumpstart``).

It is the request the SageMaker SDK's ``JumpStartEstimator(model_id=...).fit({"training": uri})``
sends, built from JumpStart's own metadata for the model id, version and region, read with the
SDK's JumpStart functions (``sagemaker.core.image_uris``, ``script_uris``, ``model_uris``,
``hyperparameters``, ``metric_definitions``): the training image, the training script tarball
(``sagemaker_submit_directory``, entry point ``transfer_learning.py``), the pretrained model
artifact (the ``model`` channel), the default hyperparameters (overridden by
``training.jumpstart.hyperparameters``), the metric definitions and network isolation where the
model's specs ask for them, and the SDK's model id/version tags. The metadata lives in
JumpStart's S3 bucket (``jumpstart-cache-prod-<region>``; ``AWS_JUMPSTART_CONTENT_BUCKET_OVERRIDE``
points the SDK elsewhere), read with the pipeline's credentials (:func:`client.jumpstart_session`).

Not ``sagemaker.train.ModelTrainer.from_jumpstart_config``: it reads the same metadata through
SageMaker's ``DescribeHubContent``, an extra service dependency for the same facts.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from typing import Any

from include.sagemaker.requests import MODEL_CONTENT_TYPE, TrainingSpec, _job_pieces

Tags = list[dict[str, str]]

MODEL_ID_TAG = "sagemaker-sdk:jumpstart-model-id"
MODEL_VERSION_TAG = "sagemaker-sdk:jumpstart-model-version"
TRAINING_CHANNEL = "training"
#: Where the container finds the script tarball when network isolation gives it a ``code`` channel.
ISOLATED_SOURCE_DIR = "/opt/ml/input/data/code/sourcedir.tar.gz"
PROGRAM = "transfer_learning.py"
LOG_LEVEL = 20


def _s3_channel(name: str, uri: str, content_type: str | None = None) -> dict[str, Any]:
    channel: dict[str, Any] = {
        "ChannelName": name,
        "InputMode": "File",
        "DataSource": {
            "S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": uri, "S3DataDistributionType": "FullyReplicated"}
        },
    }
    if content_type:
        channel["ContentType"] = content_type
    return channel


def model_metadata(model_id: str, model_version: str, region: str, instance_type: str) -> dict[str, Any]:
    """What JumpStart's metadata says about training ``model_id``: image, script, model, hyperparameters..."""
    from sagemaker.core import hyperparameters, image_uris, metric_definitions, model_uris, script_uris
    from sagemaker.core.jumpstart.enums import JumpStartScriptScope
    from sagemaker.core.jumpstart.utils import verify_model_region_and_return_specs

    from include.sagemaker.client import jumpstart_session

    ids = {"model_id": model_id, "model_version": model_version, "region": region,
           "sagemaker_session": jumpstart_session(region)}
    specs = verify_model_region_and_return_specs(model_id, model_version, JumpStartScriptScope.TRAINING.value,
                                                  region=region, sagemaker_session=ids["sagemaker_session"])
    return {
        "image": image_uris.retrieve(framework=None, image_scope="training", instance_type=instance_type, **ids),
        "script": script_uris.retrieve(script_scope="training", **ids),
        "model": model_uris.retrieve(model_scope="training", instance_type=instance_type, **ids),
        "hyperparameters": hyperparameters.retrieve_default(instance_type=instance_type, **ids),
        "metric_definitions": metric_definitions.retrieve_default(instance_type=instance_type, **ids) or [],
        "network_isolation": bool(specs.training_enable_network_isolation),
    }


def jumpstart_training_request(
    spec: TrainingSpec,
    *,
    name: str,
    model_id: str,
    model_version: str,
    hyperparameters: Mapping[str, Any],
    tags: Tags,
) -> dict[str, Any]:
    """The CreateTrainingJob request fine-tuning JumpStart's ``model_id`` on ``spec.train_uri`` (``training`` channel).

    ``hyperparameters`` override the model's defaults (unknown names are refused). ``spec`` gives
    the role, output, instance, limits and spot settings, as for the built-in algorithm.
    """
    meta = model_metadata(model_id, model_version, spec.region, spec.instance_type)
    unknown = sorted(set(hyperparameters) - set(meta["hyperparameters"]))
    if unknown:
        raise ValueError(f"JumpStart model {model_id} {model_version} has no hyperparameter(s) {', '.join(unknown)}; "
                         f"it takes {', '.join(sorted(meta['hyperparameters']))}")
    isolated = meta["network_isolation"]
    container = {  # the SDK sends these JSON-encoded
        "sagemaker_program": PROGRAM,
        "sagemaker_submit_directory": ISOLATED_SOURCE_DIR if isolated else meta["script"],
        "sagemaker_container_log_level": LOG_LEVEL,
        "sagemaker_region": spec.region,
        "sagemaker_job_name": name,
    }
    algorithm: dict[str, Any] = {"TrainingImage": meta["image"], "TrainingInputMode": "File"}
    if meta["metric_definitions"]:
        algorithm["MetricDefinitions"] = meta["metric_definitions"]
    channels = [_s3_channel(TRAINING_CHANNEL, spec.train_uri),
                _s3_channel("model", meta["model"], MODEL_CONTENT_TYPE)]
    if isolated:
        channels.append(_s3_channel("code", meta["script"]))
    request: dict[str, Any] = {
        "TrainingJobName": name,
        "HyperParameters": {
            **{k: str(v) for k, v in {**meta["hyperparameters"], **hyperparameters}.items()},
            **{k: json.dumps(v) for k, v in container.items()},
        },
        **_job_pieces(dataclasses.replace(spec, image=meta["image"], metric_definitions=False)),
        "AlgorithmSpecification": algorithm,
        "InputDataConfig": channels,
        "Tags": [*tags, {"Key": MODEL_ID_TAG, "Value": model_id}, {"Key": MODEL_VERSION_TAG, "Value": model_version}],
    }
    if isolated:
        request["EnableNetworkIsolation"] = True
    return request
