"""Reading a CreateTrainingJob request for the local backend, and staging its channels like File mode.

Only what the local executor needs is read; the rest of the request (role, image, instance type)
is kept as given. The channels are in one of the algorithm's three input formats:

* RecordIO: ``train`` and ``validation`` (``S3Prefix``, ``application/x-recordio``);
* augmented manifests (Pipe mode): ``train`` and ``validation`` each one Ground Truth manifest
  (``AugmentedManifestFile``, ``AttributeNames: ["source-ref", <label attribute>]``);
* image + JSON: ``train``, ``validation``, ``train_annotation`` and ``validation_annotation``
  folders, all of one image content type;
* JumpStart: one ``training`` folder of ``images/`` + ``annotations.json`` (a JumpStart model's
  fine-tuning request, :mod:`include.training.jumpstart_job`).

A ``file://`` URI (or plain path) is used in place, an ``s3://`` prefix is downloaded into the
job's work folder as SageMaker downloads it to ``/opt/ml/input/data/<channel>``; the other two
formats are turned into RecordIO there first (:mod:`include.training.channel_conversion`).

The class names come from a ``classes.json`` (``{"0": "name", ...}``, as the canonical annotation
table writes it) in the train channel's folder, in its parent (the RecordIO build output), or in
the folder that build read (``input_uri`` of its ``recordio.json``); without one the classes are
named ``class_0``, ``class_1``, ...
"""

from __future__ import annotations

import contextlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from include import storage
from include.preprocess.channels import ANY_IMAGE, RECORDIO_CONTENT_TYPE
from include.preprocess.channels import IMAGE_CONTENT_TYPES as IMAGE_TYPES_BY_SUFFIX
from include.run_layout import CLASSES_FILE, MODEL_ARCHIVE, RECORDIO_SUMMARY

JOB_NAME_PATTERN = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")
REQUIRED_CHANNELS = ("train", "validation")
ANNOTATION_CHANNELS = ("train_annotation", "validation_annotation")
JUMPSTART_CHANNEL = "training"
KNOWN_CHANNELS = (*REQUIRED_CHANNELS, *ANNOTATION_CHANNELS, "model", JUMPSTART_CHANNEL)
RECORDIO_CONTENT_TYPES = (RECORDIO_CONTENT_TYPE, "application/x-sagemaker-model", None)
IMAGE_CONTENT_TYPES = (*sorted(set(IMAGE_TYPES_BY_SUFFIX.values())), ANY_IMAGE)


class TrainingRequestError(ValueError):
    """The request is not a CreateTrainingJob request the local backend can execute."""


@dataclass(frozen=True)
class TrainingRequest:
    """The parts of a CreateTrainingJob request the local backend acts on."""

    job_name: str
    hyperparameters: dict[str, str]
    channels: dict[str, str]  # channel name -> URI
    output_path: str
    channel_format: str  # recordio | augmented-manifest | image-json | jumpstart
    label_attribute: str | None  # the augmented manifests' label attribute
    max_runtime_s: int | None
    raw: dict[str, Any]

    @property
    def output_uri(self) -> str:
        """``<S3OutputPath>/<TrainingJobName>/output``: where model.tar.gz, training.log and training.json go."""
        return storage.join(self.output_path, self.job_name, "output")

    @property
    def model_uri(self) -> str:
        return storage.join(self.output_uri, MODEL_ARCHIVE)


def request_field(
    obj: Any, path: str, error: type[ValueError] = TrainingRequestError, what: str = "training request"
) -> Any:
    """``obj[a][b]...`` for ``path`` ``'a.b'``; raises ``error`` naming ``what`` and the missing field."""
    value = obj
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            raise error(f"{what}: missing field {path}")
        value = value[part]
    return value


def parse_request(request: dict[str, Any]) -> TrainingRequest:
    """Check ``request`` and pull out what the local backend needs; errors name the field."""
    name = request_field(request, "TrainingJobName")
    if not isinstance(name, str) or not JOB_NAME_PATTERN.match(name):
        raise TrainingRequestError(
            f"training request: TrainingJobName {name!r} must be 1-63 letters, digits or hyphens, "
            "starting with a letter or digit"
        )
    hyper = request.get("HyperParameters") or {}
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in hyper.items()):
        raise TrainingRequestError("training request: HyperParameters must map strings to strings")
    channels: dict[str, str] = {}
    formats: set[str] = set()
    label_attributes: set[str] = set()
    for i, channel in enumerate(request_field(request, "InputDataConfig")):
        where = f"InputDataConfig[{i}]"
        cname = request_field(channel, "ChannelName")
        if cname not in KNOWN_CHANNELS:
            raise TrainingRequestError(
                f"training request: {where}.ChannelName {cname!r} is not one of {KNOWN_CHANNELS}"
            )
        source = request_field(channel, "DataSource.S3DataSource")
        fmt, attribute = ("jumpstart", None) if cname == JUMPSTART_CHANNEL else _channel_format(channel, source, where)
        if cname != "model":
            formats.add(fmt)
            label_attributes.update([attribute] if attribute else [])
        channels[cname] = storage.normalize(request_field(source, "S3Uri"))
    channel_format = _one_format(formats, label_attributes, request)
    required = {"image-json": (*REQUIRED_CHANNELS, *ANNOTATION_CHANNELS), "jumpstart": (JUMPSTART_CHANNEL,)}.get(
        channel_format, REQUIRED_CHANNELS)
    missing = [c for c in required if c not in channels]
    if missing:
        raise TrainingRequestError(f"training request: InputDataConfig lacks channel(s) {', '.join(missing)}")
    if channel_format != "image-json" and any(c in channels for c in ANNOTATION_CHANNELS):
        raise TrainingRequestError(f"training request: {'/'.join(ANNOTATION_CHANNELS)} go with image channels only")
    runtime = (request.get("StoppingCondition") or {}).get("MaxRuntimeInSeconds")
    if runtime is not None and (not isinstance(runtime, int) or runtime < 1):
        raise TrainingRequestError(f"training request: StoppingCondition.MaxRuntimeInSeconds {runtime!r} must be >= 1")
    return TrainingRequest(
        job_name=name,
        hyperparameters=dict(hyper),
        channels=channels,
        output_path=storage.normalize(request_field(request, "OutputDataConfig.S3OutputPath")),
        channel_format=channel_format,
        label_attribute=label_attributes.pop() if label_attributes else None,
        max_runtime_s=runtime,
        raw=request,
    )


def _channel_format(channel: dict[str, Any], source: dict[str, Any], where: str) -> tuple[str, str | None]:
    """The input format one channel is in, and its label attribute (augmented manifests)."""
    content_type = channel.get("ContentType")
    data_type = source.get("S3DataType", "S3Prefix")
    if data_type == "AugmentedManifestFile":
        names = source.get("AttributeNames")
        if not (isinstance(names, list) and len(names) == 2 and names[0] == "source-ref" and isinstance(names[1], str)):
            raise TrainingRequestError(
                f"training request: {where}.DataSource.S3DataSource.AttributeNames {names!r}: "
                "an object-detection manifest channel names ['source-ref', <label attribute>]"
            )
        if content_type not in RECORDIO_CONTENT_TYPES:
            raise TrainingRequestError(
                f"training request: {where}.ContentType {content_type!r}: "
                "augmented manifest channels are application/x-recordio"
            )
        return "augmented-manifest", names[1]
    if data_type != "S3Prefix":
        raise TrainingRequestError(
            f"training request: {where}.DataSource.S3DataSource.S3DataType {data_type!r}: "
            "the algorithm reads S3Prefix or AugmentedManifestFile channels"
        )
    if content_type in IMAGE_CONTENT_TYPES:
        return "image-json", None
    if content_type not in RECORDIO_CONTENT_TYPES:
        raise TrainingRequestError(
            f"training request: {where}.ContentType {content_type!r} is not one of "
            f"{', '.join(t for t in (*RECORDIO_CONTENT_TYPES, *IMAGE_CONTENT_TYPES) if t)}"
        )
    return "recordio", None


def _one_format(formats: set[str], label_attributes: set[str], request: dict[str, Any]) -> str:
    """The request's input format: every data channel must be in the same one."""
    if len(formats) > 1:
        raise TrainingRequestError(f"training request: channels mix input formats {sorted(formats)}")
    fmt = formats.pop() if formats else "recordio"
    if len(label_attributes) > 1:
        raise TrainingRequestError(
            f"training request: channels use different label attributes {sorted(label_attributes)}"
        )
    mode = (request.get("AlgorithmSpecification") or {}).get("TrainingInputMode", "File")
    if fmt == "augmented-manifest" and mode != "Pipe":
        raise TrainingRequestError(
            f"training request: AlgorithmSpecification.TrainingInputMode {mode!r}: "
            "augmented manifest channels need Pipe mode"
        )
    return fmt


def stage_channel(uri: str, target: Path) -> Path:
    """A local folder holding the channel's files, as File mode gives the algorithm.

    A local folder is used in place; a single local file (a channel pointing at one ``.rec``) is
    linked into ``target``; remote files under the URI are downloaded into ``target``.
    """
    if storage.is_local(uri):
        path = storage.local_path(uri)
        if path.is_dir():
            return path
        if not path.exists():
            raise TrainingRequestError(f"channel data {uri} does not exist")
        target.mkdir(parents=True, exist_ok=True)
        (target / path.name).symlink_to(path)
        return target
    files = storage.walk_files(uri)
    if not files:
        raise TrainingRequestError(f"channel data {uri} holds no files")
    for file_uri in files:
        local = target / (storage.relative(file_uri, uri) if file_uri != uri else uri.rsplit("/", 1)[-1])
        local.parent.mkdir(parents=True, exist_ok=True)
        local.write_bytes(storage.read_bytes(file_uri))
    return target


def _class_map_candidates(train_uri: str) -> list[str]:
    """classes.json next to the train channel, in its parent, and in the data set recordio.json names."""
    base = train_uri.rstrip("/")
    parent = base.rsplit("/", 1)[0]
    folders = [base, parent] if parent.partition("://")[2].strip("/") else [base]
    summary = storage.join(folders[-1], RECORDIO_SUMMARY)
    if storage.exists(summary):
        with contextlib.suppress(ValueError, AttributeError, TypeError):
            source = json.loads(storage.read_text(summary)).get("input_uri")
            if source:
                folders.append(str(source))
    return [storage.join(folder, CLASSES_FILE) for folder in folders]


def find_class_map(train_uri: str, num_classes: int) -> tuple[dict[int, str], str | None]:
    """Class names from the first classes.json found (see :func:`_class_map_candidates`) and its URI;
    ``class_<id>`` names and None when there is none."""
    for uri in _class_map_candidates(train_uri):
        if storage.exists(uri):
            try:
                classes = {int(k): str(v) for k, v in json.loads(storage.read_text(uri)).items()}
            except (ValueError, AttributeError) as exc:
                raise TrainingRequestError(f"{uri}: not a JSON object of class id -> name") from exc
            if sorted(classes) != list(range(len(classes))):
                raise TrainingRequestError(f"{uri}: class ids must be 0..n-1, got {sorted(classes)}")
            return classes, uri
    return {i: f"class_{i}" for i in range(num_classes)}, None
