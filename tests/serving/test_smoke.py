"""The smoke test: its contract checks, its HTTP invoker against a stub container, and a real local endpoint."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from include.endpoints.errors import InvocationError
from include.endpoints.invocation import http_invoker
from include.serving import contract
from include.serving.smoke import SmokeTestError, parse_prediction, smoke_test
from tests.support.shared_data import BCCD_IMAGES

IMAGE = sorted(BCCD_IMAGES.glob("*.jpg"))[0]
NUM_CLASSES = 3


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"\xff\xd8 not json", "the answer is not JSON"),
        (b'{"predictions": []}', r"the response has no 'prediction' key \(keys: \['predictions'\]\)"),
        (b"[[0, 0.5, 0, 0, 1, 1]]", "the response is a list, expected a JSON object"),
        (b'{"prediction": [[0, 0.5, 0, 0, 1]]}', r"prediction\[0\] is \[0, 0.5, 0, 0, 1\], expected \[class_id, "),
        (b'{"prediction": [[0, 0.5, 0, 0, 1, "1"]]}', r"\[0\]\[5\] \(ymax\) is '1', expected a finite number"),
        (b'{"prediction": [[0, 0.5, 0, 0, 1, NaN]]}', r"\[0\]\[5\] \(ymax\) is nan, expected a finite number"),
        (b'{"prediction": [[1.5, 0.5, 0, 0, 1, 1]]}', r"\(class_id\) is 1.5, expected a non-negative whole number"),
        (b'{"prediction": [[3, 0.5, 0, 0, 1, 1]]}', r"\(class_id\) is 3, expected a class id below num_classes=3"),
        (b'{"prediction": [[0, 1.5, 0, 0, 1, 1]]}', r"prediction\[0\]\[1\] \(score\) is 1.5, expected a value in"),
        (b'{"prediction": [[0, 0.5, 0.6, 0, 0.5, 1]]}', r"prediction\[0\] has xmax < xmin or ymax < ymin"),
        (b'{"prediction": [[0, 0.5, 0, 0, 1, 340]]}', r"\(ymax\) is 340.0, expected a value in \[0.0, 1.0\]"),
    ],
)
def test_answers_off_contract_are_named(body: bytes, message: str) -> None:
    with pytest.raises(SmokeTestError, match=message) as caught:
        parse_prediction(body, "img_7.jpg", num_classes=NUM_CLASSES)
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

    seen: list[tuple[str, str, str, int]] = []

    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        body = self.rfile.read(int(self.headers["Content-Length"]))
        _Container.seen.append((self.path, self.headers["Content-Type"], self.headers["Accept"], len(body)))
        ok = self.path == "/invocations" and body[:2] == b"\xff\xd8"
        detections = [[1.0, 0.8, 0.25, 0.25, 0.75, 0.75]] if ok else []
        if self.headers["Accept"] == contract.ANNOTATION_ACCEPT:  # the right box count, a wrong image size
            answer = contract.to_annotations(detections, width=10, height=10, depth=3)
        else:
            answer = contract.to_prediction(detections)
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
    summary = smoke_test(http_invoker(container), [str(IMAGE)], num_classes=NUM_CLASSES)
    assert summary == {"images": 1, "detections": 1, "per_image": {str(IMAGE): 1}, "best_score": 0.8}
    assert _Container.seen == [("/invocations", "image/jpeg", contract.JSON_ACCEPT, IMAGE.stat().st_size)]

    _Container.seen.clear()
    annotations = http_invoker(container, accept=contract.ANNOTATION_ACCEPT)
    with pytest.raises(SmokeTestError, match=rf"{IMAGE} \(annotation=1\): image_size is 10x10, the image is 640x480"):
        smoke_test(http_invoker(container), [str(IMAGE)], annotation_invoke=annotations)
    assert [accept for _, _, accept, _ in _Container.seen] == [contract.JSON_ACCEPT, contract.ANNOTATION_ACCEPT]


@pytest.fixture
def image_files(jpeg_bytes: bytes, png_bytes: bytes, tmp_path: Path) -> list[str]:
    (tmp_path / "a.jpg").write_bytes(jpeg_bytes)
    (tmp_path / "b.png").write_bytes(png_bytes)
    return [str(tmp_path / "a.jpg"), str(tmp_path / "b.png")]


def test_smoke_test_passes_on_a_healthy_endpoint(endpoint, image_files: list[str]) -> None:
    report = smoke_test(
        http_invoker(endpoint["url"]),
        image_files,
        num_classes=NUM_CLASSES,
        annotation_invoke=http_invoker(endpoint["url"], accept=contract.ANNOTATION_ACCEPT),
    )
    assert report["images"] == 2 and set(report["per_image"]) == set(image_files)
    assert all(n > 0 for n in report["per_image"].values())
    assert report["detections"] == sum(report["per_image"].values()) and 0 < report["best_score"] <= 1


def test_smoke_test_fails_on_too_few_detections_and_on_a_refused_image(endpoint, image_files, tmp_path) -> None:
    with pytest.raises(SmokeTestError, match=r"\d+ detections in 2 images, at least 10000 expected"):
        smoke_test(http_invoker(endpoint["url"]), image_files, min_detections=10_000)
    (tmp_path / "broken.jpg").write_bytes(b"not an image")
    with pytest.raises(InvocationError, match="answered 400: the request body is not a decodable JPEG or PNG image"):
        smoke_test(http_invoker(endpoint["url"]), [str(tmp_path / "broken.jpg")])
