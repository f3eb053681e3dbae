"""Image and prediction features: JPEG quality from the quantization tables, brightness and contrast."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from include.monitoring.features import image_features, jpeg_quality, prediction_features
from tests.support.shared_data import BCCD_IMAGES


@pytest.fixture(scope="module")
def photograph() -> np.ndarray:
    path = BCCD_IMAGES / "BloodImage_00000.jpg"
    if not path.exists():
        pytest.skip(f"the BCCD data set is not at {BCCD_IMAGES}")
    return cv2.imread(str(path))


@pytest.mark.parametrize("quality", [10, 35, 50, 75, 90, 95, 100])
def test_jpeg_quality_comes_back_from_the_tables(photograph: np.ndarray, quality: int) -> None:
    data = cv2.imencode(".jpg", photograph, [cv2.IMWRITE_JPEG_QUALITY, quality])[1].tobytes()
    assert image_features(data)["input.jpeg_quality"] == quality


def test_a_custom_table_is_fitted_with_its_distance() -> None:
    quality, distance = jpeg_quality([2] * 64)
    assert quality > 90 and distance > 0


def test_brightness_and_contrast_from_the_draft_decode_match_a_full_decode(photograph: np.ndarray) -> None:
    data = (BCCD_IMAGES / "BloodImage_00000.jpg").read_bytes()
    features = image_features(data)
    gray = cv2.cvtColor(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2GRAY)
    assert features["input.brightness"] == pytest.approx(gray.mean(), abs=1.0)
    assert features["input.contrast"] == pytest.approx(gray.std(), abs=1.5)
    assert (features["input.width"], features["input.height"], features["input.format"]) == (640, 480, "jpeg")


def test_a_png_has_no_jpeg_quality_and_garbage_is_refused(photograph: np.ndarray) -> None:
    png = image_features(cv2.imencode(".png", photograph)[1].tobytes())
    assert png["input.format"] == "png" and png["input.jpeg_quality"] is None
    with pytest.raises(ValueError, match="not a readable image"):
        image_features(b"GIF89a-truncated")


def test_prediction_features_at_the_score_threshold() -> None:
    rows = [[0, 0.9, 0.1, 0.1, 0.5, 0.3], [2, 0.6, 0.0, 0.0, 1.0, 1.0], [1, 0.2, 0.2, 0.2, 0.4, 0.4]]
    features = prediction_features(rows, {0: "RBC", 1: "WBC"}, 0.5)
    assert features["prediction.boxes_per_image"] == 2 and features["prediction.no_detection"] == "false"
    assert features["prediction.class"] == ["RBC", "2"] and features["prediction.max_score"] == 0.9
    assert features["prediction.box_area"] == pytest.approx([0.08, 1.0])
    assert prediction_features([], {}, 0.5)["prediction.no_detection"] == "true"
