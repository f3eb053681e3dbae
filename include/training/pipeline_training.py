"""The pipeline's training and tuning requests from a RecordIO build (the DAG's, and ``detection-pipeline train|tune``).

Both take the RecordIO build's output folder (``train/``, ``validation/``, ``recordio.json``) and
build the CreateTrainingJob / CreateHyperParameterTuningJob request SageMaker takes
(:mod:`include.sagemaker.requests`), with the configuration's hyperparameters (the ``local``
profile unless another configuration is given) completed from the data: ``num_classes`` from the
class map, ``num_training_samples`` from the train channel's records, ``label_width`` raised to
what the most crowded image needs. :func:`run_training` then hands it to the one
execution path (:func:`include.execution.execute_request`) on the configuration's backend.

ImageNet weights on the local backend: a request with ``use_pretrained_model=1`` fails when the
weights are neither in the cache nor downloadable. Where that value comes from the configuration
(not from an explicit override) and ``local.pretrained_fallback`` is ``scratch``, the request is
built instead with ``training.scratch_hyperparameters`` and ``use_pretrained_model=0``, logged as a
warning and tagged ``pretrained-fallback`` with the reason, which ``training.json`` records: the
request itself says what ran and why.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from include import storage
from include.run_layout import RECORDIO_SUMMARY
from include.sagemaker.naming import PRETRAINED_FALLBACK_TAG, tag_value
from include.sagemaker.requests import LOCAL_ROLE_ARN
from include.training.hyperparameters import DEFAULTS, to_strings, validate_hyperparameters
from include.training.training_request import TrainingRequestError, find_class_map

if TYPE_CHECKING:
    from include.configs import PipelineConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RecordIODataset:
    """What training needs to know about a RecordIO build output."""

    uri: str
    train_uri: str
    validation_uri: str
    num_training_samples: int
    label_width_required: int | None
    classes: dict[int, str] | None


def describe_dataset(input_uri: str) -> RecordIODataset:
    """Channels, training record count, label width and class map of a RecordIO build output folder."""
    uri = storage.normalize(input_uri)
    train_uri, validation_uri = storage.join(uri, "train"), storage.join(uri, "validation")
    for channel in (train_uri, validation_uri):
        if not storage.isdir(channel):
            raise TrainingRequestError(f"{uri} is not a RecordIO build output: {channel} is missing")
    summary_uri = storage.join(uri, RECORDIO_SUMMARY)
    summary = json.loads(storage.read_text(summary_uri)) if storage.exists(summary_uri) else {}
    records = (summary.get("channels") or {}).get("train", {}).get("records")
    if records is None:
        index_files = [f for f in storage.walk_files(train_uri) if f.endswith(".idx")]
        if not index_files:
            raise TrainingRequestError(f"{train_uri}: no recordio.json and no .idx files to count the records")
        records = sum(len(storage.read_text(f).splitlines()) for f in index_files)
    classes, classes_uri = find_class_map(train_uri, 0)
    return RecordIODataset(
        uri,
        train_uri,
        validation_uri,
        int(records),
        summary.get("label_width_required"),
        classes if classes_uri else None,
    )


def local_hyperparameters(
    settings: Mapping[str, Any], overrides: Mapping[str, Any] | None, data: RecordIODataset
) -> dict[str, str]:
    """The request's HyperParameters: ``settings`` then ``overrides``, completed from the data, checked."""
    hp = to_strings({**settings, **(overrides or {})})
    if "num_classes" not in hp:
        if data.classes is None:
            raise TrainingRequestError(
                f"{data.uri}: no classes.json found for the data set; set the num_classes hyperparameter"
            )
        hp["num_classes"] = str(len(data.classes))
    hp.setdefault("num_training_samples", str(data.num_training_samples))
    if data.label_width_required:
        width = int(hp.get("label_width", DEFAULTS["label_width"]))
        hp["label_width"] = str(max(width, int(data.label_width_required)))
    validate_hyperparameters(
        hp,
        num_classes=len(data.classes) if data.classes else None,
        num_training_samples=data.num_training_samples,
    )
    return hp


def training_settings(
    cfg: PipelineConfig, overrides: Mapping[str, Any] | None
) -> tuple[dict[str, Any], str | None]:
    """The configuration's hyperparameters, or its scratch ones and the reason (see the module doc)."""
    settings = dict(cfg.training.hyperparameters)
    explicit = overrides or {}
    merged = {**DEFAULTS, **to_strings({**settings, **explicit})}
    if cfg.backend != "local" or cfg.local.pretrained_fallback != "scratch" or merged["use_pretrained_model"] != "1":
        return settings, None
    if "use_pretrained_model" in explicit:
        return settings, None  # asked for explicitly: the job fails without the weights
    from include.training.pretrained import WeightsUnavailable, resolve

    try:
        resolve(merged["base_network"])
    except WeightsUnavailable as exc:
        log.warning("%s; training from scratch with training.scratch_hyperparameters "
                    "(local.pretrained_fallback: scratch)", exc)
        return {**settings, **cfg.training.scratch_hyperparameters, "use_pretrained_model": "0"}, exc.summary
    return settings, None


def _job_name(prefix: str) -> str:
    return f"{prefix}-{dt.datetime.now(dt.UTC):%y%m%d-%H%M%S}"


def channel_format(cfg: PipelineConfig) -> str:
    """The training channels' format: ``jumpstart`` for that algorithm, else ``recordio.channel_format``."""
    return "jumpstart" if cfg.training.algorithm == "jumpstart" else cfg.recordio.channel_format


def _channel_fields(cfg: PipelineConfig, data: RecordIODataset, rec_file_channels: bool) -> dict[str, Any]:
    """The TrainingSpec fields of the channels :func:`channel_format` names (built beside the RecordIO)."""
    fmt = channel_format(cfg)
    if fmt == "recordio":
        train_uri, validation_uri = data.train_uri, data.validation_uri
        if rec_file_channels:
            train_uri = storage.join(train_uri, "train.rec")
            validation_uri = storage.join(validation_uri, "validation.rec")
        return {"train_uri": train_uri, "validation_uri": validation_uri}
    from include.preprocess.channels import read_training_channels

    described = read_training_channels(data.uri, fmt)
    channels = described["channels"]
    if fmt == "jumpstart":  # one channel; validation_uri is not sent
        return {"train_uri": channels["training"]["uri"], "validation_uri": channels["training"]["uri"]}
    fields = {
        "train_uri": channels["train"]["uri"],
        "validation_uri": channels["validation"]["uri"],
        "content_type": channels["train"]["content_type"],
        "input_mode": described["input_mode"],
    }
    if fmt == "augmented-manifest":
        return {**fields, "label_attribute": described["label_attribute"]}
    return {
        **fields,
        "annotation_uris": (channels["train_annotation"]["uri"], channels["validation_annotation"]["uri"]),
    }


def _spec(
    cfg: PipelineConfig,
    data: RecordIODataset,
    output_uri: str,
    max_runtime_s: int | None,
    rec_file_channels: bool = False,
) -> Any:
    from include.sagemaker.requests import TrainingSpec

    sm = cfg.sagemaker
    return TrainingSpec(
        **_channel_fields(cfg, data, rec_file_channels),
        role_arn=sm.role_arn or LOCAL_ROLE_ARN,
        region=sm.region,
        output_uri=storage.normalize(output_uri),
        instance_type=sm.training_instance_type,
        instance_count=sm.training_instance_count,
        volume_size_gb=sm.volume_size_gb,
        max_runtime_seconds=max_runtime_s or sm.max_runtime_seconds,
        managed_spot=sm.managed_spot,
        max_wait_seconds=sm.max_wait_seconds if sm.managed_spot else None,
        checkpoint_uri=storage.join(output_uri, "checkpoints") if sm.managed_spot else None,
    )


def build_request(
    cfg: PipelineConfig,
    input_uri: str,
    output_uri: str,
    *,
    name: str,
    tags: list[dict[str, str]],
    tune: bool = False,
    hyperparameters: Mapping[str, Any] | None = None,
    max_runtime_s: int | None = None,
    rec_file_channels: bool = False,
) -> dict[str, Any]:
    """The CreateTrainingJob (or, with ``tune``, CreateHyperParameterTuningJob) request for a RecordIO build.

    Hyperparameters are the configuration's, then ``hyperparameters``, completed from the data.
    ``rec_file_channels`` points the channels at the ``.rec`` objects instead of their folders.
    """
    from include.sagemaker.requests import training_job_request, tuning_job_request

    data = describe_dataset(input_uri)
    if cfg.training.algorithm == "jumpstart":
        return _jumpstart_request(cfg, data, output_uri, name=name, tags=tags, tune=tune,
                                  hyperparameters=hyperparameters, max_runtime_s=max_runtime_s)
    settings, fallback = training_settings(cfg, hyperparameters)
    hp = local_hyperparameters(settings, hyperparameters, data)
    if fallback:
        tags = [*tags, {"Key": PRETRAINED_FALLBACK_TAG, "Value": tag_value(fallback)}]
    spec = _spec(cfg, data, output_uri, max_runtime_s, rec_file_channels)
    if not tune:
        return training_job_request(spec, name=name, hyperparameters=hp, tags=tags)
    from include.sagemaker.tuning_ranges import default_ranges

    tuning = cfg.training.tuning
    ranges = {k: v.model_dump(exclude_none=True) for k, v in tuning.ranges.items()} or default_ranges(hp)
    return tuning_job_request(
        spec,
        name=name,
        hyperparameters=hp,
        ranges=ranges,
        tags=tags,
        strategy=tuning.strategy,
        max_jobs=tuning.max_jobs,
        max_parallel_jobs=tuning.max_parallel_jobs,
    )


def _jumpstart_request(
    cfg: PipelineConfig,
    data: RecordIODataset,
    output_uri: str,
    *,
    name: str,
    tags: list[dict[str, str]],
    tune: bool,
    hyperparameters: Mapping[str, Any] | None,
    max_runtime_s: int | None,
) -> dict[str, Any]:
    """JumpStart's fine-tuning request for ``training.jumpstart``'s model (its hyperparameters, then ours)."""
    from include.sagemaker.jumpstart import jumpstart_training_request

    if tune:
        raise TrainingRequestError("training.algorithm jumpstart: tuning a JumpStart model is not supported here; "
                                   "set training.tune false or training.algorithm builtin")
    js = cfg.training.jumpstart
    return jumpstart_training_request(
        _spec(cfg, data, output_uri, max_runtime_s),
        name=name,
        model_id=js.model_id,
        model_version=js.model_version,
        hyperparameters={**js.hyperparameters, **(hyperparameters or {})},
        tags=tags,
    )


def _config(config: PipelineConfig | None) -> PipelineConfig:
    if config is not None:
        return config
    from include.configs import load_config

    return load_config(overrides={"backend": "local"})


def run_training(
    input_uri: str,
    output_uri: str,
    hyperparameters: Mapping[str, Any] | None = None,
    *,
    tune: bool = False,
    config: PipelineConfig | None = None,
    job_name: str | None = None,
    max_runtime_s: int | None = None,
    timeout_s: float | None = None,
    workdir: str | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Train (or, with ``tune``, tune) on the RecordIO build at ``input_uri`` on the configuration's backend.

    ``hyperparameters`` override the configuration's (the ``local`` profile when ``config`` is
    None); the job is named ``<backend>-training-<time>`` / ``<backend>-tuning-<time>`` unless
    ``job_name`` is given, and ``max_runtime_s`` bounds it (each trial of a tuning job). A training
    job writes under ``<output_uri>/<job>/output/`` and returns its training.json record
    (``ModelArtifacts.S3ModelArtifacts`` is the model, ``output_uri`` the folder holding
    model.tar.gz, training.log and training.json); a tuning job writes tuning.json and the best
    model.tar.gz under ``<output_uri>/<tuning job>/``, every trial under ``<output_uri>/<trial>/output/``,
    and returns the tuning.json record. ``workdir``, ``timeout_s`` and ``seed`` (the tuner's) apply to a
    local job.
    """
    from include.execution import TRAINING, TUNING, execute_request

    cfg = _config(config)
    default_name = _job_name(f"{cfg.backend}-{'tuning' if tune else 'training'}")
    request = build_request(
        cfg,
        input_uri,
        output_uri,
        name=job_name or default_name,
        tags=[{"Key": "backend", "Value": cfg.backend}],
        tune=tune,
        hyperparameters=hyperparameters,
        max_runtime_s=max_runtime_s,
        rec_file_channels=cfg.backend == "sagemaker",
    )
    options: dict[str, Any] = {"workdir": workdir, "timeout_s": timeout_s}
    if tune:
        options["seed"] = seed
    else:
        options["extra_record"] = {"data_uri": storage.normalize(input_uri)}
    answer = execute_request(
        TUNING if tune else TRAINING, request, backend=cfg.backend, region=cfg.sagemaker.region, local_options=options
    )
    return dict(answer)
