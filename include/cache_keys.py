"""What the cache keys of the expensive steps are made of (:mod:`include.cache`): content, never run ids or paths.

* **RecordIO build**: the planned records (each ``.lst`` line with its image's content hash), the
  class map, the build options, the format's and the image stack's versions
  (:meth:`include.preprocess.recordio.Plan.content`), plus the training channel format.
* **Training / tuning**: the request without its names, tags, role, output and checkpoint paths and
  spot settings, each channel's URI replaced by the checksums of its files; plus the algorithm: the
  request's training image on SageMaker (a tag such as ``object-detection:1`` may move behind the
  same name; the key cannot see that), the local trainer's source and library versions locally.
* **Evaluation**: the model archive's SHA-256, the RecordIO channels' checksums, the evaluation
  options and the evaluator's source.

Code versions are hashes of the source files, comments included: an edit makes every entry of
that step a miss, which is the safe side (a hand-bumped constant risks serving stale models).
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
from collections.abc import Iterable, Mapping
from typing import Any

from include import storage
from include.project import PROJECT_ROOT
from include.run_layout import MODEL_ARCHIVE, RECORDIO_SUMMARY

#: Sources whose edits change what the local trainer produces, and the libraries it runs on.
TRAINER_SOURCES = ("include/training/*.py", "include/recordio_codec.py", "include/model_artifact.py")
TRAINER_LIBRARIES = ("mxnet", "gluoncv", "numpy")
#: Sources whose edits change what evaluation writes.
EVALUATOR_SOURCES = (
    "include/evaluation/*.py",
    "include/serving/inference.py",
    "include/ssd_numpy.py",
    "include/recordio_codec.py",
    "include/model_artifact.py",
)
#: Request fields that name, tag, place or pay for a job without changing the model it trains.
UNKEYED_FIELDS = ("TrainingJobName", "HyperParameterTuningJobName", "Tags", "RoleArn", "CheckpointConfig",
                  "EnableManagedSpotTraining", "DefinitionName")  # fmt: skip
HASH_CHUNK = 8 << 20


def _library_versions(names: Iterable[str]) -> dict[str, str | None]:
    from importlib.metadata import PackageNotFoundError, version

    out: dict[str, str | None] = {}
    for name in names:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


@functools.cache
def source_version(patterns: tuple[str, ...]) -> str:
    """SHA-256 over the project's source files matching ``patterns`` (their paths and bytes)."""
    digest = hashlib.sha256()
    for path in sorted({p for pattern in patterns for p in PROJECT_ROOT.glob(pattern)}):
        digest.update(path.relative_to(PROJECT_ROOT).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def file_sha256(uri: str) -> str:
    """SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with storage.open_read(uri) as fh:
        while data := fh.read(HASH_CHUNK):
            digest.update(data)
    return digest.hexdigest()


def recorded_checksums(recordio_uri: str) -> dict[str, str]:
    """URI -> SHA-256 of every channel file a RecordIO build recorded in its ``recordio.json`` (none: {})."""
    summary_uri = storage.join(recordio_uri, RECORDIO_SUMMARY)
    if not storage.exists(summary_uri):
        return {}
    summary = json.loads(storage.read_text(summary_uri))
    return {
        storage.join(recordio_uri, split, name): file["sha256"]
        for split, channel in summary["channels"].items()
        for name, file in channel["files"].items()
    }


def content_digest(uri: str, known: Mapping[str, str]) -> str:
    """SHA-256 over the files at ``uri`` (a file, or every file under a folder): relative names and contents.

    A file listed in ``known`` (URI -> SHA-256, as a RecordIO build recorded it) is not read again.
    """
    uri = storage.normalize(uri)
    files = [uri] if not storage.isdir(uri) else storage.walk_files(uri)
    if not files:
        raise FileNotFoundError(f"no files at {uri} to compute a cache key from")
    digest = hashlib.sha256()
    for file in files:
        name = file.rsplit("/", 1)[-1] if file == uri else storage.relative(file, uri)
        digest.update(f"{name}\0{known.get(file) or file_sha256(file)}\n".encode())
    return digest.hexdigest()


def _strip_definition(definition: dict[str, Any], known: Mapping[str, str]) -> None:
    """Drop a training definition's unkeyed fields and put its channels' checksums in place of their URIs."""
    for name in UNKEYED_FIELDS:
        definition.pop(name, None)
    (definition.get("OutputDataConfig") or {}).pop("S3OutputPath", None)
    (definition.get("StoppingCondition") or {}).pop("MaxWaitTimeInSeconds", None)
    for channel in definition.get("InputDataConfig") or []:
        source = (channel.get("DataSource") or {}).get("S3DataSource")
        if source and "S3Uri" in source:
            source["S3Uri"] = content_digest(source.pop("S3Uri"), known)


def training_key_parts(request: Mapping[str, Any], backend: str, recordio_uri: str) -> dict[str, Any]:
    """The key parts of a CreateTrainingJob or CreateHyperParameterTuningJob request (see the module docstring)."""
    keyed = copy.deepcopy(dict(request))
    known = recorded_checksums(recordio_uri)
    for name in UNKEYED_FIELDS:
        keyed.pop(name, None)
    definitions = [keyed] if "AlgorithmSpecification" in keyed else []
    definitions += [d for d in [keyed.get("TrainingJobDefinition"), *(keyed.get("TrainingJobDefinitions") or [])] if d]
    for definition in definitions:
        _strip_definition(definition, known)
    parts: dict[str, Any] = {"request": keyed, "backend": backend}
    if backend == "local":
        parts["trainer"] = {"sources": source_version(TRAINER_SOURCES), **_library_versions(TRAINER_LIBRARIES)}
    return parts


def evaluation_key_parts(model_uri: str, recordio_uri: str, options: Mapping[str, Any]) -> dict[str, Any]:
    """The key parts of an evaluation: the model's bytes, the data's checksums, the options, the evaluator."""
    model = model_uri if model_uri.endswith(".tar.gz") else storage.join(model_uri, MODEL_ARCHIVE)
    known = recorded_checksums(recordio_uri)
    return {
        "model": file_sha256(model),
        "data": {storage.relative(uri, recordio_uri): sha for uri, sha in sorted(known.items())},
        "options": dict(options),
        "evaluator": {
            "sources": source_version(EVALUATOR_SOURCES),
            **_library_versions(("mxnet", "numpy", "cleanlab")),
        },
    }
