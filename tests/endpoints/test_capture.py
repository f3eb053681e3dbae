"""Data capture records: SageMaker's format, exact bytes back, hourly files, sampling, a full or slow disk."""

from __future__ import annotations

import base64
import json
import re
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest

from include.endpoints import capture

WHEN = datetime(2026, 12, 4, 10, 6, 41, 820000, tzinfo=UTC)
ANSWER = b'{"prediction": [[0.0, 0.93, 0.1, 0.2, 0.3, 0.4]]}'


def test_a_record_has_sagemakers_shape_and_gives_back_the_exact_bytes(jpeg_bytes):
    record = capture.capture_record(
        jpeg_bytes, "image/jpeg", ANSWER, "application/json", inference_time=WHEN, inference_id="req-7"
    )
    line = json.loads(json.dumps(record))  # what a reader of the file gets
    assert capture.check_record(line) == line
    data = line["captureData"]
    assert data["endpointInput"] == {
        "observedContentType": "image/jpeg", "mode": "INPUT", "encoding": "BASE64",
        "data": base64.b64encode(jpeg_bytes).decode(),
    }  # fmt: skip
    assert data["endpointOutput"] == {
        "observedContentType": "application/json",
        "mode": "OUTPUT",
        "encoding": "JSON",
        "data": ANSWER.decode(),
    }
    assert capture.payload_bytes(data["endpointInput"]) == jpeg_bytes
    assert capture.payload_bytes(data["endpointOutput"]) == ANSWER
    meta = line["eventMetadata"]
    assert meta["inferenceId"] == "req-7" and meta["inferenceTime"] == "2026-12-04T10:06:41Z"
    assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", meta["eventId"])
    assert line["eventVersion"] == "0"


@pytest.mark.parametrize(
    ("content_type", "expected"),
    [
        ("application/json", "JSON"),
        ("text/csv", "CSV"),
        ("application/json;annotation=1", "BASE64"),  # listed types have no parameters, as on SageMaker
        ("image/png", "BASE64"),
    ],
)
def test_encoding_follows_the_listed_content_types(content_type, expected):
    assert capture.encoding_for(content_type, ["application/json"], ["text/csv"]) == expected


def test_a_json_answer_that_is_not_utf8_is_kept_as_base64():
    record = capture.capture_record(b"x", "image/jpeg", b"\xff\xfe", "application/json", inference_time=WHEN)
    output = record["captureData"]["endpointOutput"]
    assert output["encoding"] == "BASE64" and capture.payload_bytes(output) == b"\xff\xfe"


def test_files_follow_sagemakers_hourly_layout():
    key = capture.file_key(WHEN)
    assert re.fullmatch(r"2026/12/04/10/06-41-820-[0-9a-f-]{36}\.jsonl", key), key
    assert capture.capture_prefix("/data/capture", "prod").endswith("/data/capture/prod/AllTraffic")


def test_the_writer_writes_every_record_in_order_and_a_reader_reads_them_back(tmp_path, jpeg_bytes):
    writer = capture.CaptureWriter(capture.CaptureSettings(str(tmp_path), "prod"))
    bodies = [jpeg_bytes + bytes([i]) for i in range(20)]
    for i, body in enumerate(bodies):
        assert writer.offer(body, "image/jpeg", ANSWER, "application/json", f"id-{i}")
    writer.close()
    records = list(capture.read_records(str(tmp_path)))
    assert [capture.payload_bytes(r["captureData"]["endpointInput"]) for r in records] == bodies
    assert [r["eventMetadata"]["inferenceId"] for r in records] == [f"id-{i}" for i in range(20)]
    files = capture.capture_files(str(tmp_path))
    assert len(files) == 1 and "/prod/AllTraffic/" in files[0]
    assert writer.stats.written == 20 and writer.stats.errors == writer.stats.dropped == 0


def test_a_new_file_each_hour(tmp_path):
    writer = capture.CaptureWriter(capture.CaptureSettings(str(tmp_path), "prod"))
    for hour in (10, 10, 11):
        writer._write(b"a", "image/jpeg", ANSWER, "application/json", None, WHEN.replace(hour=hour))
    writer.close()
    hours = [Path(f).parent.name for f in capture.capture_files(str(tmp_path))]
    assert hours == ["10", "11"]
    assert len(list(capture.read_records(str(tmp_path)))) == 3


@pytest.mark.parametrize(("percent", "low", "high"), [(0, 0, 0), (25, 150, 350), (100, 1000, 1000)])
def test_sampling_takes_the_configured_share(tmp_path, percent, low, high):
    writer = capture.CaptureWriter(capture.CaptureSettings(str(tmp_path), "prod", percent=percent))
    taken = sum(writer.offer(b"a", "image/jpeg", b"{}", "application/json") for _ in range(1000))
    writer.close()
    assert low <= taken <= high
    assert writer.stats.written == taken and writer.stats.sampled_out == 1000 - taken


def test_a_full_disk_loses_records_but_never_raises(tmp_path, monkeypatch):
    """Every write fails as on a full disk (/dev/full answers ENOSPC): counted, nothing raised."""
    writer = capture.CaptureWriter(capture.CaptureSettings(str(tmp_path), "prod"))
    monkeypatch.setattr(capture.storage, "local_path", lambda uri: Path("/dev/full"))
    for _ in range(5):
        assert writer.offer(b"a" * 100_000, "image/jpeg", ANSWER, "application/json")
    writer.flush()
    assert writer.stats.errors == 5 and writer.stats.written == 0
    assert "No space left" in writer.stats.last_error
    writer.close()


def test_a_slow_disk_drops_records_instead_of_waiting(tmp_path, monkeypatch):
    """The writer is stuck (a hung disk): offers still return at once, and what does not fit is dropped, counted."""
    release = threading.Event()
    writer = capture.CaptureWriter(capture.CaptureSettings(str(tmp_path), "prod"), queue_size=3)
    monkeypatch.setattr(writer, "_write", lambda *args: release.wait(30))
    outcomes = [writer.offer(b"a", "image/jpeg", b"{}", "application/json") for _ in range(10)]
    assert sum(outcomes) <= 4 and writer.stats.dropped >= 6  # one in the writer's hands, three queued
    release.set()
    writer.close()


def test_a_broken_capture_file_is_named_with_its_line(tmp_path):
    good = capture.capture_record(b"a", "image/jpeg", b"{}", "application/json", inference_time=WHEN)
    folder = tmp_path / "prod" / "AllTraffic" / "2026" / "12" / "04" / "10"
    folder.mkdir(parents=True)
    (folder / "06-41-820-x.jsonl").write_text(json.dumps(good) + "\n" + '{"captureData": {}}\n')
    with pytest.raises(capture.CaptureFormatError, match=r"06-41-820-x.jsonl: line 2: not a capture record"):
        list(capture.read_records(str(tmp_path)))


def test_an_s3_destination_gets_whole_files_uploaded_from_a_local_spool(moto_endpoint, jpeg_bytes):
    import boto3

    boto3.client("s3", region_name="us-east-1").create_bucket(Bucket="capture")
    writer = capture.CaptureWriter(capture.CaptureSettings("s3://capture/data-capture", "prod", percent=100))
    for i in range(3):
        writer.offer(jpeg_bytes, "image/jpeg", ANSWER, "application/json", f"id-{i}")
    writer.close()  # the hour's file is finished: uploaded, and gone from the spool
    (uri,) = capture.capture_files("s3://capture/data-capture")
    assert uri.startswith("s3://capture/data-capture/prod/AllTraffic/") and writer.stats.errors == 0
    records = list(capture.read_records("s3://capture/data-capture/prod"))
    assert [capture.payload_bytes(r["captureData"]["endpointInput"]) for r in records] == [jpeg_bytes] * 3
    assert not writer._spool.exists()
