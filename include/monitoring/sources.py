"""What monitoring reads: an endpoint's captured invocations, or a batch transform's output.

Capture records come through :mod:`include.endpoints.capture` (the one home of SageMaker's format), kept
when their ``inferenceTime`` falls in the window. A batch transform's output is read by
:mod:`include.transform.outputs` (``<output>/<relative input path>.out`` per image, error records, and
``transform.json`` naming the input prefix or, on SageMaker, the manifest that holds it); the image of
``a/b.jpg.out`` is ``<input>/a/b.jpg``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from include import storage
from include.run_layout import TRANSFORM_JSON, TRANSFORM_OUTPUT_SUFFIX

log = logging.getLogger(__name__)

CAPTURE, TRANSFORM = "capture", "transform"


@dataclass(frozen=True)
class Sample:
    """One scored image: its bytes (None when not captured) and the answer's rows (None when not captured)."""

    name: str
    image: bytes | None
    prediction: list[list[float]] | None


def source_kind(uri: str) -> str:
    """``transform`` when ``uri`` holds a transform's record or ``.out`` files, else ``capture``."""
    if storage.exists(storage.join(uri, TRANSFORM_JSON)):
        return TRANSFORM
    if storage.exists(uri) and storage.isdir(uri):
        for path in storage.walk_files(uri):
            if path.endswith(TRANSFORM_OUTPUT_SUFFIX):
                return TRANSFORM
            if path.endswith(".jsonl"):
                return CAPTURE
    return CAPTURE


def _prediction(body: bytes, where: str) -> list[list[float]]:
    """The rows of a captured answer, checked by the serving contract (the one definition of the answer)."""
    from include.serving.contract import check_prediction_schema

    try:
        answer = json.loads(body)
        check_prediction_schema(answer)
    except ValueError as exc:  # JSONDecodeError is a ValueError
        raise ValueError(f"{where}: not the endpoint's answer ({exc})") from None
    return answer["prediction"]


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


def transform_samples(output_uri: str, input_uri: str | None = None) -> tuple[list[Sample], int]:
    """Every answer of a transform's output (read by :mod:`include.transform.outputs`, the one reader of that
    layout) with its input image from ``input_uri``, else the input prefix its ``transform.json`` names; and how
    many images the transform could not score (its error records)."""
    from include.transform.outputs import read_output

    output = read_output(output_uri)
    prefix = input_uri or output.input_prefix
    samples = []
    for relative, prediction in sorted(output.answers.items()):
        image_uri = storage.join(prefix, relative)
        image = None
        if storage.exists(image_uri):
            image = storage.read_bytes(image_uri)
        else:
            log.warning("%s: its input %s is gone; its prediction is kept", output.uri, image_uri)
        samples.append(Sample(relative, image, prediction))
    return samples, len(output.errors)
