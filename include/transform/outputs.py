"""A transform's output folder, written and read alike on both backends (see :mod:`include.transform`).

Relative paths under the input prefix are kept: ``in/sub/a.jpg`` scores to ``<output>/sub/a.jpg.out``, as
SageMaker names its outputs. Writing an input's answer removes an error record an earlier run left for
it, and the other way round, so the folder always says the latest outcome of every input.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from include import storage
from include.run_layout import TRANSFORM_ERROR_SUFFIX, TRANSFORM_JSON, TRANSFORM_MANIFEST, TRANSFORM_OUTPUT_SUFFIX

log = logging.getLogger(__name__)

#: Error records listed by name in transform.json (all of them are files in the folder).
RECORDED_ERRORS = 1000


def output_uri(output: str, relative_path: str) -> str:
    """Where the answer for the input at ``relative_path`` goes."""
    return storage.join(output, relative_path + TRANSFORM_OUTPUT_SUFFIX)


def error_uri(output: str, relative_path: str) -> str:
    """Where the error record of the input at ``relative_path`` goes."""
    return storage.join(output, relative_path + TRANSFORM_ERROR_SUFFIX)


def write_answer(output: str, relative_path: str, answer: Mapping[str, Any]) -> str:
    """The answer's ``.out`` (atomic); an earlier error record of the same input is removed."""
    uri = storage.write_text(output_uri(output, relative_path), json.dumps(answer))
    _remove_if_there(error_uri(output, relative_path))
    return uri


def write_error(output: str, relative_path: str, input_uri: str, exc: BaseException) -> str:
    """The input's error record ``{"input", "error", "type"}`` (atomic); an earlier ``.out`` of it is removed."""
    record = {"input": input_uri, "error": str(exc) or type(exc).__name__, "type": type(exc).__name__}
    uri = storage.write_text(error_uri(output, relative_path), json.dumps(record))
    _remove_if_there(output_uri(output, relative_path))
    return uri


def _remove_if_there(uri: str) -> None:
    if storage.exists(uri):
        storage.remove(uri)


def remove_stale(output: str, relative_paths: Iterable[str]) -> list[str]:
    """Remove ``.out`` and error records in ``output`` of inputs not in ``relative_paths`` (an earlier transform's
    into the same folder), so the folder and its transform.json agree; their URIs."""
    if not storage.exists(output):
        return []
    keep = set(relative_paths)
    stale = [u for u in storage.walk_files(output) if _relative_input(output, u) not in (None, *keep)]
    for uri in stale:
        storage.remove(uri)
    if stale:
        log.info("removed %d outputs of an earlier transform into %s", len(stale), output)
    return stale


def _relative_input(output: str, uri: str) -> str | None:
    """The input path an output file answers for (None: not an answer or error record)."""
    relative = storage.relative(uri, output)
    for suffix in (TRANSFORM_ERROR_SUFFIX, TRANSFORM_OUTPUT_SUFFIX):
        if relative.endswith(suffix):
            return relative[: -len(suffix)]
    return None


def error_records(output: str) -> list[str]:
    """The input paths with an error record in ``output``, sorted (the answers are not read)."""
    if not storage.exists(output):
        return []
    paths = (storage.relative(u, output) for u in storage.walk_files(output))
    return sorted(p[: -len(TRANSFORM_ERROR_SUFFIX)] for p in paths if p.endswith(TRANSFORM_ERROR_SUFFIX))


def timestamp(moment: datetime) -> str:
    """A record's time: ISO 8601 with the offset, as boto3's datetimes serialize."""
    return moment.isoformat()


def write_record(
    output: str,
    description: Mapping[str, Any],
    counts: Mapping[str, int],
    errors: list[str],
    extra: Mapping[str, Any] | None = None,
) -> str:
    """``transform.json``: the DescribeTransformJob answer (datetimes as ISO text) with ``Counts``, the error
    records' paths (the first :data:`RECORDED_ERRORS`) and ``extra`` (``Backend``, ``Timings``...)."""
    record = json.loads(json.dumps(dict(description), default=str))
    record.pop("ResponseMetadata", None)
    record.update({"Counts": dict(counts), "ErrorRecords": sorted(errors)[:RECORDED_ERRORS], **(extra or {})})
    return storage.write_text(storage.join(output, TRANSFORM_JSON), json.dumps(record, indent=1))


@dataclass(frozen=True)
class TransformOutput:
    """A transform's output folder read back: its record, the answers and the error records by input path."""

    uri: str
    record: dict[str, Any]
    input_prefix: str
    answers: dict[str, list[list[float]]] = field(default_factory=dict)
    errors: dict[str, dict[str, Any]] = field(default_factory=dict)

    def input_uri(self, relative_path: str) -> str:
        return storage.join(self.input_prefix, relative_path)


def read_output(output: str) -> TransformOutput:
    """Read ``output`` (a transform's S3OutputPath); ``ValueError`` naming the file for what is not its layout."""
    from include.evaluation.training_run import read_json_object
    from include.serving.contract import check_prediction_schema

    output = storage.normalize(output)
    record_uri = storage.join(output, TRANSFORM_JSON)
    if not storage.exists(record_uri):
        raise FileNotFoundError(f"{record_uri} does not exist: {output} is not a transform's output folder")
    record = read_json_object(record_uri)
    source = record["TransformInput"]["DataSource"]["S3DataSource"]
    prefix = source["S3Uri"] if source["S3DataType"] == "S3Prefix" else read_manifest(source["S3Uri"])[0]
    answers, errors = {}, {}
    for uri in storage.walk_files(output):
        relative = _relative_input(output, uri)
        if relative is None:
            continue
        body = _json_of(uri)
        if uri.endswith(TRANSFORM_ERROR_SUFFIX):
            errors[relative] = body
            continue
        try:
            check_prediction_schema(body)
        except ValueError as exc:
            raise ValueError(f"{uri}: not the endpoint's answer ({exc})") from None
        answers[relative] = body["prediction"]
    return TransformOutput(output, record, storage.normalize(prefix), answers, errors)


def _json_of(uri: str) -> Any:
    try:
        return json.loads(storage.read_text(uri))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{uri}: not JSON ({exc})") from None


# --- the manifest the sagemaker backend sends ----------------------------------------------------


def write_manifest(output: str, prefix: str, relative_paths: list[str]) -> str:
    """``<output>/transform.manifest``: SageMaker's ManifestFile, ``[{"prefix": ...}, "a.jpg", "sub/b.jpg", ...]``."""
    document = [{"prefix": storage.normalize(prefix).rstrip("/") + "/"}, *relative_paths]
    return storage.write_text(storage.join(output, TRANSFORM_MANIFEST), json.dumps(document, indent=0))


def read_manifest(uri: str) -> tuple[str, list[str]]:
    """A ManifestFile's prefix and its entries; ``ValueError`` naming the file for another shape."""
    document = _json_of(uri)
    if not (isinstance(document, list) and document and isinstance(document[0], dict) and "prefix" in document[0]):
        raise ValueError(f'{uri}: a manifest is a JSON list starting with {{"prefix": "s3://..."}}')
    entries = document[1:]
    bad = next((i for i, e in enumerate(entries, start=1) if not isinstance(e, str) or not e), None)
    if bad is not None:
        raise ValueError(f"{uri}: entry {bad} is {entries[bad - 1]!r}, expected a path under the prefix")
    return str(document[0]["prefix"]), entries
