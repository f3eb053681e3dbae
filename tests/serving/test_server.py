"""The HTTP contract of the local endpoint: SageMaker's /ping and /invocations, errors, concurrency, request log."""

from __future__ import annotations

import http.client
import json
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlparse

import cv2
import numpy as np
import pytest

from include.serving import contract


def request(url: str, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
    """One request on a fresh connection; returns (status, headers, decoded JSON body)."""
    parsed = urlparse(url)
    conn = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=60)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), json.loads(response.read() or b"null")
    finally:
        conn.close()


def post_image(url: str, body: bytes, content_type: str = "image/jpeg", accept: str | None = None, query: str = ""):
    headers = {"Content-Type": content_type} | ({"Accept": accept} if accept else {})
    return request(url, "POST", f"/invocations{query}", body, headers)


def test_ping_answers_200_once_the_model_is_loaded(endpoint):
    status, headers, body = request(endpoint["url"], "GET", "/ping")
    assert (status, body) == (200, {"status": "ready", "runtime": "mxnet"})
    assert headers["content-type"] == "application/json"


@pytest.mark.parametrize("content_type", contract.CONTENT_TYPES)
def test_invocations_answer_normalized_predictions(endpoint, jpeg_bytes, png_bytes, content_type):
    body = png_bytes if content_type == "image/png" else jpeg_bytes
    status, _, answer = post_image(endpoint["url"], body, content_type)
    assert status == 200
    contract.check_prediction_schema(answer)
    rows = answer["prediction"]
    assert len(rows) > 0 and all(isinstance(v, float) for row in rows for v in row)
    scores = [row[1] for row in rows]
    assert scores == sorted(scores, reverse=True)


def test_annotation_variant_is_in_pixels_of_the_image(endpoint, jpeg_bytes):
    _, _, plain = post_image(endpoint["url"], jpeg_bytes)
    status, _, answer = post_image(endpoint["url"], jpeg_bytes, accept=contract.ANNOTATION_ACCEPT)
    assert status == 200
    contract.check_annotation_schema(answer)
    assert answer["image_size"] == [{"width": 640, "height": 480, "depth": 3}]
    assert len(answer["annotations"]) == len(plain["prediction"])
    first, row = answer["annotations"][0], plain["prediction"][0]
    assert first["class_id"] == int(row[0]) and first["score"] == pytest.approx(row[1])
    assert first["left"] == pytest.approx(row[2] * 640) and first["top"] == pytest.approx(row[3] * 480)
    assert first["width"] == pytest.approx((row[4] - row[2]) * 640)
    assert first["height"] == pytest.approx((row[5] - row[3]) * 480)


def test_threshold_query_drops_low_scores(endpoint, jpeg_bytes):
    _, _, everything = post_image(endpoint["url"], jpeg_bytes)
    cut = float(np.median([row[1] for row in everything["prediction"]]))
    status, _, answer = post_image(endpoint["url"], jpeg_bytes, query=f"?threshold={cut}")
    assert status == 200
    assert answer["prediction"] == [row for row in everything["prediction"] if row[1] >= cut]
    assert post_image(endpoint["url"], jpeg_bytes, query="?threshold=2")[0] == 400


def test_wrong_content_type_is_415(endpoint, jpeg_bytes):
    status, _, answer = post_image(endpoint["url"], jpeg_bytes, "text/plain")
    assert status == 415 and "text/plain" in answer["error"]
    assert post_image(endpoint["url"], jpeg_bytes, content_type="")[0] == 415


def test_body_over_the_limit_is_413_from_content_length(endpoint):
    limit = endpoint["max_body_bytes"]
    status, _, answer = post_image(endpoint["url"], b"\0" * (limit + 1))
    assert status == 413 and f"{limit + 1} bytes" in answer["error"]


def test_chunked_body_over_the_limit_is_413(endpoint):
    chunks = (b"\0" * 50_000 for _ in range(endpoint["max_body_bytes"] // 50_000 + 2))
    parsed = urlparse(endpoint["url"])
    conn = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=60)
    try:
        conn.request("POST", "/invocations", body=chunks, headers={"Content-Type": "image/jpeg"}, encode_chunked=True)
        response = conn.getresponse()
        assert response.status == 413 and "limit" in json.loads(response.read())["error"]
    finally:
        conn.close()


def test_undecodable_image_is_400_with_a_json_message(endpoint):
    status, headers, answer = post_image(endpoint["url"], b"definitely not a JPEG")
    assert status == 400 and headers["content-type"] == "application/json"
    assert "not a decodable JPEG or PNG" in answer["error"]
    assert post_image(endpoint["url"], b"")[0] == 400


@pytest.mark.parametrize(
    ("method", "path", "headers", "expected"),
    [
        ("GET", "/nowhere", {}, 404),
        ("GET", "/invocations", {}, 405),
        ("POST", "/ping", {}, 405),
        ("POST", "/invocations", {"Content-Type": "image/jpeg", "Accept": "text/csv"}, 406),
    ],
)
def test_other_errors(endpoint, jpeg_bytes, method, path, headers, expected):
    status, _, answer = request(endpoint["url"], method, path, jpeg_bytes if method == "POST" else None, headers)
    assert status == expected and answer["error"]


def test_four_concurrent_clients_are_all_served(endpoint, jpeg_bytes, png_bytes):
    """Keep-alive clients, as SageMaker's runtime uses: every answer is right for its own image."""
    parsed = urlparse(endpoint["url"])
    small = cv2.imencode(".jpg", cv2.resize(cv2.imdecode(np.frombuffer(jpeg_bytes, np.uint8), 1), (200, 150)))[1]
    images = [(jpeg_bytes, 640, 480), (png_bytes, 320, 240), (small.tobytes(), 200, 150), (jpeg_bytes, 640, 480)]

    def client(job: tuple[bytes, int, int]) -> list[tuple[int, int]]:
        body, width, height = job
        conn = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=120)
        seen = []
        try:
            for _ in range(3):
                headers = {"Content-Type": contract.content_type_for(body), "Accept": contract.ANNOTATION_ACCEPT}
                conn.request("POST", "/invocations", body=body, headers=headers)
                response = conn.getresponse()
                answer = json.loads(response.read())
                assert response.status == 200, answer
                contract.check_annotation_schema(answer)
                seen.append((answer["image_size"][0]["width"], answer["image_size"][0]["height"]))
        finally:
            conn.close()
        return [(width, height)] * 3 == seen

    with ThreadPoolExecutor(4) as pool:
        assert all(pool.map(client, images))


def _logged_requests(log_path: str) -> list[dict]:
    with open(log_path) as handle:
        lines = [json.loads(line) for line in handle if line.startswith("{")]
    return [line for line in lines if line["event"] == "request"]


def test_every_request_is_logged_as_a_structured_line(endpoint, jpeg_bytes):
    post_image(endpoint["url"], b"garbage")
    deadline = time.monotonic() + 10  # the server logs a request once its answer is sent: the line may come later
    requests = _logged_requests(endpoint["log_path"])
    while (not requests or requests[-1]["status"] != 400) and time.monotonic() < deadline:
        time.sleep(0.05)
        requests = _logged_requests(endpoint["log_path"])
    assert requests and all({"method", "path", "status", "bytes", "ms"} <= set(line) for line in requests)
    last = requests[-1]
    assert (last["method"], last["path"], last["status"]) == ("POST", "/invocations", 400)
    assert last["bytes"] > 0 and last["ms"] >= 0
