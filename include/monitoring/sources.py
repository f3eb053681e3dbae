"""What monitoring reads: an endpoint's captured invocations, or a batch transform's output.

Capture records come through :mod:`include.endpoints.capture` (the one home of SageMaker's format), kept
when their ``inferenceTime`` falls in the window. A batch transform's output is ``<output>/<relative input
path>.out`` per image holding the endpoint's JSON answer, per-file error records for images it could not
score, and ``transform.json`` (DescribeTransformJob's shape, whose ``TransformInput`` names the input
prefix); the image of ``a/b.jpg.out`` is ``<input>/a/b.jpg``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from include import storage

log = logging.getLogger(__name__)

#: A batch transform's files (issue 19's transform writes them; SageMaker names outputs ``<input>.out``).
OUT_SUFFIX = ".out"
TRANSFORM_RECORD = "transform.json"
ERROR_SUFFIX = ".error.json"
CAPTURE, TRANSFORM = "capture", "transform"


@dataclass(frozen=True)
class Sample:
    """One scored image: its bytes (None when not captured) and the answer's rows (None when not captured)."""

    name: str
    image: bytes | None
    prediction: list[list[float]] | None


def source_kind(uri: str) -> str:
    """``transform`` when ``uri`` holds a transform's record or ``.out`` files, else ``capture``."""
    if storage.exists(storage.join(uri, TRANSFORM_RECORD)):
        return TRANSFORM
    if storage.exists(uri) and storage.isdir(uri):
        for path in storage.walk_files(uri):
            if path.endswith(OUT_SUFFIX):
                return TRANSFORM
            if path.endswith(".jsonl"):
                return CAPTURE
    return CAPTURE


def _prediction(body: bytes, where: str) -> list[list[float]]:
    try:
        answer = json.loads(body)
        rows = answer["prediction"]
        if not isinstance(rows, list) or any(not isinstance(r, list) or len(r) != 6 for r in rows):
            raise TypeError("rows are not [class, score, xmin, ymin, xmax, ymax] lists")
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(
            f'{where}: not the endpoint\'s answer {{"prediction": [[class, score, xmin, ymin, xmax, '
            f"ymax], ...]}} ({type(exc).__name__}: {exc})"
        ) from None
    return rows


def _record_time(record: dict[str, Any]) -> datetime:
    from datetime import UTC

    return datetime.strptime(record["eventMetadata"]["inferenceTime"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


def capture_samples(prefix: str, start: datetime | None = None, end: datetime | None = None) -> Iterator[Sample]:
    """The invocations captured under ``prefix`` with ``start <= inferenceTime < end`` (either bound optional)."""
    from include.endpoints.capture import payload_bytes, read_records

    for record in read_records(prefix):
        when = _record_time(record)
        if (start is not None and when < start) or (end is not None and when >= end):
            continue
        data, name = record["captureData"], record["eventMetadata"]["eventId"]
        request, response = data.get("endpointInput"), data.get("endpointOutput")
        image = (
            payload_bytes(request)
            if request and request["observedContentType"].startswith(("image/", "application/x-image"))
            else None
        )
        prediction = None
        if response is not None and response["observedContentType"].startswith("application/json"):
            prediction = _prediction(payload_bytes(response), f"{prefix}: event {name}")
        yield Sample(name, image, prediction)


def transform_input(output_uri: str) -> str | None:
    """The input prefix ``transform.json`` records (DescribeTransformJob's ``TransformInput``), if any."""
    record_uri = storage.join(output_uri, TRANSFORM_RECORD)
    if not storage.exists(record_uri):
        return None
    record = json.loads(storage.read_text(record_uri))
    source = ((record.get("TransformInput") or {}).get("DataSource") or {}).get("S3DataSource") or {}
    return source.get("S3Uri")


def transform_samples(output_uri: str, input_uri: str | None = None) -> Iterator[Sample]:
    """Every ``.out`` of a transform's output with its input image (from ``input_uri``, else the one
    ``transform.json`` names; without either, predictions only)."""
    output_uri = storage.normalize(output_uri)
    input_uri = input_uri or transform_input(output_uri)
    root = output_uri.rstrip("/") + "/"
    for uri in sorted(storage.walk_files(output_uri)):
        if not uri.endswith(OUT_SUFFIX):
            continue
        relative = uri[len(root) : -len(OUT_SUFFIX)]
        prediction = _prediction(storage.read_bytes(uri), uri)
        image = None
        if input_uri:
            image_uri = storage.join(input_uri, relative)
            if storage.exists(image_uri):
                image = storage.read_bytes(image_uri)
            else:
                log.warning("%s: its input %s is gone; its prediction is kept", uri, image_uri)
        yield Sample(relative, image, prediction)


def transform_errors(output_uri: str) -> int:
    """How many images the transform could not score (its error records)."""
    return sum(1 for uri in storage.walk_files(output_uri) if uri.endswith(ERROR_SUFFIX))
