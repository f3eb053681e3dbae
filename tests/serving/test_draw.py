"""Invoke + draw (``detection-pipeline invoke --draw``): class names from the artifact, the drawing written."""

from __future__ import annotations

import tarfile

import cv2
import numpy as np
import pytest

from include.endpoints.invocation import invoke
from include.endpoints.local import describe_endpoint
from include.serving import contract
from include.serving.draw import read_classes, save_drawing

EXPECTED_CLASSES = {0: "RBC", 1: "WBC", 2: "Platelets"}


def test_read_classes_from_the_archive_and_from_a_folder(artifact, tmp_path):
    assert read_classes(artifact) == EXPECTED_CLASSES
    with tarfile.open(artifact.removeprefix("file://")) as tar:
        tar.extractall(tmp_path, filter="data")
    assert read_classes(str(tmp_path)) == EXPECTED_CLASSES
    (tmp_path / "classes.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="classes.json: expected a JSON object"):
        read_classes(str(tmp_path))


def _decoded(path) -> np.ndarray:
    image = cv2.imread(str(path))
    assert image is not None, f"{path} does not decode"
    return image


def test_invoke_then_draw_the_detections(endpoint, state_dir, jpeg_bytes, tmp_path):
    state = describe_endpoint("shared", state_dir)
    answer = invoke("shared", jpeg_bytes, contract.content_type_for(jpeg_bytes), state_dir=state_dir)
    assert answer["prediction"]
    classes = read_classes(state["model_uri"])
    out = tmp_path / "drawn" / "out.png"
    result = save_drawing(jpeg_bytes, answer["prediction"], str(out), classes, threshold=0.0)
    assert result == {"path": f"file://{out}", "drawn": len(answer["prediction"])}
    assert out.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    drawn = _decoded(out)
    assert min(drawn.shape[:2]) >= 480  # the 640x480 image, not shrunk

    nothing = save_drawing(jpeg_bytes, answer["prediction"], str(tmp_path / "none.png"), classes, threshold=1.01)
    assert nothing["drawn"] == 0
    plain = _decoded(tmp_path / "none.png")
    assert plain.shape == drawn.shape and not np.array_equal(plain, drawn)  # boxes, labels and legend only in one

    as_jpeg = save_drawing(jpeg_bytes, answer["prediction"], str(tmp_path / "out.jpg"), classes, threshold=0.0)
    assert as_jpeg["drawn"] == result["drawn"]
    assert (tmp_path / "out.jpg").read_bytes().startswith(b"\xff\xd8\xff")
    assert _decoded(tmp_path / "out.jpg").shape == drawn.shape
    with pytest.raises(ValueError, match="written as .png or .jpg"):
        save_drawing(jpeg_bytes, answer["prediction"], str(tmp_path / "out.gif"), classes)
