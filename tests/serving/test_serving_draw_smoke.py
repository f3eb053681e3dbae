"""Invoke + draw (``detection-pipeline invoke --draw``) and the smoke test of a deployed endpoint."""

from __future__ import annotations

import tarfile

import cv2
import numpy as np
import pytest

from include.model_artifact import decode_image
from include.serving import contract
from include.serving.draw import draw_detections, read_classes, save_drawing
from include.serving.endpoint import describe_endpoint, invoke
from include.serving.smoke import SmokeTestError, smoke_test

EXPECTED_CLASSES = {0: "RBC", 1: "WBC", 2: "Platelets"}


def test_read_classes_from_the_archive_and_from_a_folder(artifact, tmp_path):
    assert read_classes(artifact) == EXPECTED_CLASSES
    with tarfile.open(artifact.removeprefix("file://")) as tar:
        tar.extractall(tmp_path, filter="data")
    assert read_classes(str(tmp_path)) == EXPECTED_CLASSES
    (tmp_path / "classes.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="classes.json: expected a JSON object"):
        read_classes(str(tmp_path))


def test_invoke_then_draw_the_detections(endpoint, state_dir, jpeg_bytes, tmp_path):
    state = describe_endpoint("shared", state_dir)
    answer = invoke("shared", jpeg_bytes, contract.content_type_for(jpeg_bytes), state_dir=state_dir)
    classes = read_classes(state["model_uri"])
    out = tmp_path / "drawn" / "out.png"
    result = save_drawing(jpeg_bytes, answer["prediction"], str(out), classes, threshold=0.0)
    assert result == {"path": f"file://{out}", "drawn": len(answer["prediction"])}
    drawn = cv2.cvtColor(cv2.imread(str(out)), cv2.COLOR_BGR2RGB)
    original = decode_image(jpeg_bytes)
    assert drawn.shape == original.shape and not np.array_equal(drawn, original)

    nothing = save_drawing(jpeg_bytes, answer["prediction"], str(tmp_path / "none.png"), classes, threshold=1.01)
    assert nothing["drawn"] == 0
    assert np.array_equal(cv2.cvtColor(cv2.imread(str(tmp_path / "none.png")), cv2.COLOR_BGR2RGB), original)
    with pytest.raises(ValueError, match="written as .png or .jpg"):
        save_drawing(jpeg_bytes, answer["prediction"], str(tmp_path / "out.gif"), classes)


def test_draw_puts_the_box_where_the_detection_is():
    image = np.zeros((100, 200, 3), dtype=np.uint8)
    drawn, count = draw_detections(image, [[1, 0.9, 0.5, 0.5, 1.0, 1.0], [0, 0.2, 0.0, 0.0, 0.4, 0.4]], {1: "WBC"}, 0.5)
    assert count == 1
    changed = np.argwhere(drawn.any(axis=2))
    assert changed[:, 1].min() >= 99 and changed[:, 0].min() >= 49 - 20  # right half, label may sit above the box
    assert not drawn[:40, :80].any()  # the low-scoring box is not drawn


def test_smoke_test_passes_on_a_healthy_endpoint(endpoint, state_dir, jpeg_bytes, png_bytes):
    report = smoke_test("shared", [jpeg_bytes, png_bytes], state_dir=state_dir, num_classes=len(EXPECTED_CLASSES))
    assert report["endpoint"] == endpoint["url"] and report["images"] == 2
    assert all(n > 0 for n in report["detections"]) and len(report["best_scores"]) == 2
    assert report["latency_ms"]["p50"] > 0


def test_smoke_test_fails_and_names_the_images(endpoint, jpeg_bytes):
    with pytest.raises(SmokeTestError) as info:
        smoke_test(endpoint["url"], [jpeg_bytes, b"not an image"], min_detections=10_000)
    message = str(info.value)
    assert "image 0: " in message and "expected at least 10000" in message
    assert "image 1: " in message and "400" in message
    with pytest.raises(ValueError, match="at least one image"):
        smoke_test(endpoint["url"], [])
