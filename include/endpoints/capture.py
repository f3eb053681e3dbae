"""Data capture, the SageMaker way: one home for the record format, its files, the writer and the reader.

A record is what SageMaker's ``DataCaptureConfig`` writes for one invocation (Model Monitor reads the
same; issue 19's monitoring reads these), one JSON object per line::

    {"captureData": {"endpointInput":  {"observedContentType": "image/jpeg", "mode": "INPUT",
                                        "data": "<base64>", "encoding": "BASE64"},
                     "endpointOutput": {"observedContentType": "application/json", "mode": "OUTPUT",
                                        "data": "{\\"prediction\\": ...}", "encoding": "JSON"}},
     "eventMetadata": {"eventId": "<uuid4>", "inferenceId": "<X-Amzn-SageMaker-Inference-Id>",
                       "inferenceTime": "2026-12-04T10:06:41Z"},
     "eventVersion": "0"}

``encoding`` is ``JSON`` for the media types listed as JSON content types (``application/json`` by
default, as the SageMaker SDK sets), ``CSV`` for ``text/csv``, else ``BASE64`` (images always are).
Files are ``<destination>/<endpoint>/<variant>/YYYY/MM/DD/HH/<MM>-<SS>-<mmm>-<uuid4>.jsonl`` (UTC),
SageMaker's layout; a local server starts a new file when the hour changes (SageMaker writes
several per hour: readers take any number).

:class:`CaptureWriter` keeps the request path free of I/O: ``offer`` samples and puts the bytes on a
bounded queue (microseconds); one daemon thread builds the lines and writes them. A full queue
(a slow disk) drops the record and a failed write (a full disk) loses it: both are counted,
neither blocks nor fails a request. No library writes this format outside SageMaker's service
itself (the SageMaker SDK only reads it from S3), hence this module.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import queue
import random
import tempfile
import threading
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from include import storage
from include.serving.runtime_api import DEFAULT_VARIANT

log = logging.getLogger(__name__)

EVENT_VERSION = "0"
BASE64, JSON, CSV = "BASE64", "JSON", "CSV"
DEFAULT_JSON_CONTENT_TYPES = ("application/json",)
DEFAULT_CSV_CONTENT_TYPES = ("text/csv",)
#: Records waiting for the writer thread; past it a record is dropped (and counted), never waited for.
QUEUE_SIZE = 1000


class CaptureFormatError(ValueError):
    """A capture file or record that is not SageMaker's format (the message names the file and line)."""


def _media_type(content_type: str) -> str:
    return content_type.split(";", 1)[0].strip().lower()


def encoding_for(content_type: str, json_types: Sequence[str], csv_types: Sequence[str]) -> str:
    """How SageMaker stores a payload of ``content_type``: ``JSON``, ``CSV`` or ``BASE64``.

    SageMaker compares the observed content type as sent; a listed type never has parameters
    (``JsonContentTypes`` refuses them), so ``application/json;annotation=1`` is stored BASE64 as on AWS.
    """
    observed = content_type.strip().lower()
    if observed in (t.lower() for t in json_types):
        return JSON
    if observed in (t.lower() for t in csv_types):
        return CSV
    return BASE64


def _payload(data: bytes, content_type: str, mode: str, encoding: str) -> dict[str, str]:
    if encoding != BASE64:
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:  # not text after all: keep the exact bytes
            encoding, text = BASE64, ""
    if encoding == BASE64:
        text = base64.b64encode(data).decode("ascii")
    return {"observedContentType": content_type, "mode": mode, "data": text, "encoding": encoding}


def capture_record(
    request: bytes,
    request_type: str,
    response: bytes,
    response_type: str,
    *,
    inference_time: datetime,
    event_id: str | None = None,
    inference_id: str | None = None,
    json_content_types: Sequence[str] = DEFAULT_JSON_CONTENT_TYPES,
    csv_content_types: Sequence[str] = DEFAULT_CSV_CONTENT_TYPES,
) -> dict[str, Any]:
    """The capture record of one invocation (see the module docstring)."""
    metadata = {"eventId": event_id or str(uuid.uuid4())}
    if inference_id:
        metadata["inferenceId"] = inference_id
    metadata["inferenceTime"] = inference_time.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "captureData": {
            "endpointInput": _payload(
                request, request_type, "INPUT", encoding_for(request_type, json_content_types, csv_content_types)
            ),
            "endpointOutput": _payload(
                response, response_type, "OUTPUT", encoding_for(response_type, json_content_types, csv_content_types)
            ),
        },
        "eventMetadata": metadata,
        "eventVersion": EVENT_VERSION,
    }


def payload_bytes(payload: dict[str, Any]) -> bytes:
    """The exact bytes a captured ``endpointInput`` / ``endpointOutput`` holds."""
    if payload["encoding"] == BASE64:
        return base64.b64decode(payload["data"], validate=True)
    return payload["data"].encode("utf-8")


def check_record(record: Any, where: str = "record") -> dict[str, Any]:
    """``record`` when it has SageMaker's capture shape; :class:`CaptureFormatError` naming ``where`` otherwise."""

    def fail(what: str) -> CaptureFormatError:
        return CaptureFormatError(f"{where}: {what}")

    if not isinstance(record, dict) or record.get("eventVersion") != EVENT_VERSION:
        raise fail(f"not a capture record of eventVersion {EVENT_VERSION!r}")
    data = record.get("captureData")
    if not isinstance(data, dict):
        raise fail("no captureData object")
    for key, mode in (("endpointInput", "INPUT"), ("endpointOutput", "OUTPUT")):
        part = data.get(key)
        if part is None:
            continue  # CaptureOptions may capture only one side
        if not isinstance(part, dict) or part.get("mode") != mode or part.get("encoding") not in (BASE64, JSON, CSV):
            raise fail(f"captureData.{key} needs mode {mode} and encoding BASE64, JSON or CSV, got {part!r:.200}")
        if not isinstance(part.get("data"), str) or not isinstance(part.get("observedContentType"), str):
            raise fail(f"captureData.{key} needs the strings data and observedContentType")
        try:
            payload_bytes(part)
        except ValueError as exc:
            raise fail(f"captureData.{key}.data is not valid {part['encoding']} ({exc})") from None
    metadata = record.get("eventMetadata")
    if not isinstance(metadata, dict) or not metadata.get("eventId"):
        raise fail("eventMetadata.eventId is missing")
    try:
        datetime.strptime(metadata.get("inferenceTime", ""), "%Y-%m-%dT%H:%M:%SZ")
    except ValueError:
        when = metadata.get("inferenceTime")
        raise fail(f"eventMetadata.inferenceTime {when!r} is not YYYY-MM-DDTHH:MM:SSZ") from None
    return record


def capture_prefix(destination: str, endpoint: str, variant: str = DEFAULT_VARIANT) -> str:
    """Where an endpoint variant's records go: ``<destination>/<endpoint>/<variant>``."""
    return storage.join(storage.normalize(destination), endpoint, variant)


def file_key(when: datetime) -> str:
    """A capture file's path below the variant's prefix: ``YYYY/MM/DD/HH/<MM>-<SS>-<mmm>-<uuid4>.jsonl`` (UTC)."""
    t = when.astimezone(UTC)
    return f"{t:%Y/%m/%d/%H}/{t:%M-%S}-{t.microsecond // 1000:03d}-{uuid.uuid4()}.jsonl"


def capture_files(prefix: str) -> list[str]:
    """Every ``.jsonl`` capture file under ``prefix`` (a destination, an endpoint or a variant), in time order."""
    if not storage.exists(prefix):
        return []
    return sorted(uri for uri in storage.walk_files(prefix) if uri.endswith(".jsonl"))


def read_records(prefix: str) -> Iterator[dict[str, Any]]:
    """Every record of every capture file under ``prefix``, checked; errors name the file and line."""
    for uri in capture_files(prefix):
        with storage.open_read(uri, "r") as handle:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise CaptureFormatError(f"{uri}: line {number}: not JSON ({exc.msg})") from None
                yield check_record(record, f"{uri}: line {number}")


@dataclass(frozen=True)
class CaptureSettings:
    """What a local endpoint captures and where (the local side of SageMaker's ``DataCaptureConfig``)."""

    destination: str
    endpoint: str
    percent: float = 100.0
    variant: str = DEFAULT_VARIANT
    json_content_types: tuple[str, ...] = DEFAULT_JSON_CONTENT_TYPES
    csv_content_types: tuple[str, ...] = DEFAULT_CSV_CONTENT_TYPES

    def __post_init__(self) -> None:
        if not 0 <= self.percent <= 100:
            raise ValueError(f"capture percent must be within 0..100, got {self.percent}")


@dataclass
class CaptureStats:
    """Counts a server reports on ``/ping``: records offered, sampled out, dropped (queue full), written, lost."""

    offered: int = 0
    sampled_out: int = 0
    dropped: int = 0
    written: int = 0
    errors: int = 0
    last_error: str | None = None
    files: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in vars(self).items() if k != "files"}
        return {**out, "files": len(self.files)}


class CaptureWriter:
    """Samples invocations and writes their records from one background thread (see the module docstring)."""

    def __init__(self, settings: CaptureSettings, queue_size: int = QUEUE_SIZE) -> None:
        self.settings = settings
        self.stats = CaptureStats()
        self.prefix = capture_prefix(settings.destination, settings.endpoint, settings.variant)
        self._queue: queue.Queue[tuple | None] = queue.Queue(queue_size)
        self._random = random.Random()
        self._handle: IO[str] | None = None
        self._file: tuple[str, Path] | None = None  # (its URI, the local file written)
        self._hour: str | None = None
        self._spool = None if storage.is_local(self.prefix) else Path(tempfile.mkdtemp(prefix="detection-capture-"))
        self._thread = threading.Thread(target=self._run, name="data-capture", daemon=True)
        self._thread.start()

    def offer(
        self, request: bytes, request_type: str, response: bytes, response_type: str, inference_id: str | None = None
    ) -> bool:
        """Capture this invocation if sampled; never blocks, never raises. True when queued."""
        self.stats.offered += 1
        percent = self.settings.percent
        if percent < 100 and self._random.uniform(0, 100) >= percent:
            self.stats.sampled_out += 1
            return False
        item = (request, request_type, response, response_type, inference_id, datetime.now(UTC))
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            self.stats.dropped += 1
            return False
        return True

    def flush(self, timeout_s: float = 10.0) -> None:
        """Wait until every queued record is written (or lost), at most ``timeout_s``."""
        done = threading.Event()
        try:
            self._queue.put(("flush", done), timeout=timeout_s)
        except queue.Full:
            return
        done.wait(timeout_s)

    def close(self, timeout_s: float = 10.0) -> None:
        """Write what is queued, close (and upload) the current file, stop the thread."""
        with contextlib.suppress(queue.Full):
            self._queue.put(None, timeout=timeout_s)
        self._thread.join(timeout_s)
        if self._spool is not None:
            with contextlib.suppress(OSError):  # kept (not empty) when an upload failed: nothing is thrown away
                self._spool.rmdir()

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                self._close_file()
                return
            if item[0] == "flush":
                if self._handle is not None:
                    with contextlib.suppress(OSError):
                        self._handle.flush()
                item[1].set()
                continue
            try:
                self._write(*item)
                self.stats.written += 1
            except Exception as exc:  # a full or failing disk loses the record, never the request
                self.stats.errors += 1
                self.stats.last_error = f"{type(exc).__name__}: {exc}"
                if self.stats.errors == 1 or self.stats.errors % 1000 == 0:
                    log.warning("data capture: record lost (%d so far): %s", self.stats.errors, exc)
                self._close_file()

    def _write(
        self, request: bytes, request_type: str, response: bytes, response_type: str, inference_id: str | None,
        when: datetime,
    ) -> None:  # fmt: skip
        s = self.settings
        record = capture_record(
            request, request_type, response, response_type, inference_time=when, inference_id=inference_id,
            json_content_types=s.json_content_types, csv_content_types=s.csv_content_types,
        )  # fmt: skip
        handle = self._open_for(when)
        handle.write(json.dumps(record, separators=(",", ":")) + "\n")
        handle.flush()

    def _open_for(self, when: datetime) -> IO[str]:
        hour = f"{when:%Y%m%d%H}"
        if self._handle is not None and hour == self._hour:
            return self._handle
        self._close_file()
        uri = storage.join(self.prefix, file_key(when))
        path = storage.local_path(uri) if self._spool is None else self._spool / uri.rsplit("/", 1)[-1]
        path.parent.mkdir(parents=True, exist_ok=True)
        self._handle, self._file, self._hour = open(path, "a", encoding="utf-8"), (uri, path), hour
        self.stats.files.append(uri)
        return self._handle

    def _close_file(self) -> None:
        handle, file = self._handle, self._file
        self._handle, self._file, self._hour = None, None, None
        if handle is None or file is None:
            return
        try:
            handle.close()
            if self._spool is not None:  # an S3 destination: the finished file goes up whole, then leaves the spool
                storage.upload_file(file[1], file[0])
                file[1].unlink(missing_ok=True)
        except Exception as exc:
            self.stats.errors += 1
            self.stats.last_error = f"{type(exc).__name__}: {exc}"
            log.warning("data capture: could not finish %s: %s", file[0], exc)
