"""The smoke test's contract checks, and its HTTP invoker against a server speaking the container contract."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from include.sagemaker.smoke_test import SmokeTestError, http_invoker, parse_prediction, smoke_test

IMAGE = sorted(Path("/work/shared/datasets/bccd/BCCD/JPEGImages").glob("*.jpg"))[0]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"\xff\xd8 not json", "not JSON"),
        (b'{"predictions": []}', "no 'prediction' list"),
        (b"[[0, 0.5, 0, 0, 1, 1]]", "no 'prediction' list"),
        (b'{"prediction": [[0, 0.5, 0, 0, 1]]}', r"prediction\[0\] = \[0, 0.5, 0, 0, 1\]: expected 6 finite numbers"),
        (b'{"prediction": [[0, 0.5, 0, 0, 1, "1"]]}', "expected 6 finite numbers"),
        (b'{"prediction": [[0, 0.5, 0, 0, 1, NaN]]}', "expected 6 finite numbers"),
        (b'{"prediction": [[1.5, 0.5, 0, 0, 1, 1]]}', "class id must be a whole number"),
        (b'{"prediction": [[3, 0.5, 0, 0, 1, 1]]}', r"class id must be a whole number in \[0, 3\)"),
        (b'{"prediction": [[0, 1.5, 0, 0, 1, 1]]}', "score outside"),
        (b'{"prediction": [[0, 0.5, 0.6, 0, 0.5, 1]]}', "box is not normalized"),
        (b'{"prediction": [[0, 0.5, 0, 0, 1, 340]]}', "box is not normalized"),
    ],
)
def test_answers_off_contract_are_named(body: bytes, message: str) -> None:
    with pytest.raises(SmokeTestError, match=message) as caught:
        parse_prediction(body, "img_7.jpg", num_classes=3)
    assert str(caught.value).startswith("img_7.jpg: ")


def test_a_good_answer_parses() -> None:
    rows = parse_prediction(b'{"prediction": [[2.0, 0.9, 0.1, 0.2, 0.3, 0.4], [0, 1, 0, 0, 1, 1]]}', "x.jpg", 3)
    assert rows == [[2.0, 0.9, 0.1, 0.2, 0.3, 0.4], [0, 1, 0, 0, 1, 1]]


def test_images_are_checked_before_sending() -> None:
    with pytest.raises(SmokeTestError, match="at least one image"):
        smoke_test(lambda body, kind: b"", [])
    with pytest.raises(SmokeTestError, match="not a .jpg/.jpeg/.png image"):
        smoke_test(lambda body, kind: b"", ["/data/image.gif"])
    with pytest.raises(SmokeTestError, match="over the 1000-byte request limit"):
        smoke_test(lambda body, kind: b"", [str(IMAGE)], max_body_bytes=1000)


class _Container(BaseHTTPRequestHandler):
    """The SageMaker inference container contract: POST /invocations with an image, JSON detections back."""

    seen: list[tuple[str, str, int]] = []

    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        body = self.rfile.read(int(self.headers["Content-Length"]))
        _Container.seen.append((self.path, self.headers["Content-Type"], len(body)))
        ok = self.path == "/invocations" and body[:2] == b"\xff\xd8"
        answer = {"prediction": [[1.0, 0.8, 0.25, 0.25, 0.75, 0.75]] if ok else []}
        data = json.dumps(answer).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def container() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Container)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_http_invoker_speaks_the_container_contract(container: str) -> None:
    _Container.seen.clear()
    summary = smoke_test(http_invoker(container), [str(IMAGE)], num_classes=3)
    assert summary == {"images": 1, "detections": 1, "per_image": {str(IMAGE): 1}, "best_score": 0.8}
    assert _Container.seen == [("/invocations", "image/jpeg", IMAGE.stat().st_size)]
