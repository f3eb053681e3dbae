"""The inference contract's checks and conversions, and the server's header parsing (no server needed)."""

from __future__ import annotations

import pytest

from include.serving import contract
from include.serving.server import HTTPError, media_type, score_threshold, wants_annotation

GOOD = {"prediction": [[2.0, 0.9, 0.1, 0.2, 0.5, 0.6], [0.0, 0.3, 0.0, 0.0, 1.0, 1.0]]}


def test_a_contract_answer_passes():
    contract.check_prediction_schema(GOOD)
    contract.check_prediction_schema(GOOD, num_classes=3)
    contract.check_prediction_schema({"prediction": []})


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ([], "expected a JSON object"),
        ({"predictions": []}, "no 'prediction' key"),
        ({"prediction": {}}, "prediction is a dict, expected a list"),
        ({"prediction": [[0, 0.5, 0, 0, 1]]}, r"prediction\[0\] is .* expected \[class_id"),
        ({"prediction": [[0, 0.5, 0, 0, 1, True]]}, r"prediction\[0\]\[5\] \(ymax\) is True"),
        ({"prediction": [[1.5, 0.5, 0, 0, 1, 1]]}, r"prediction\[0\]\[0\] \(class_id\) is 1.5"),
        ({"prediction": [[-1, 0.5, 0, 0, 1, 1]]}, r"\(class_id\) is -1"),
        ({"prediction": [[0, 1.2, 0, 0, 1, 1]]}, r"prediction\[0\]\[1\] \(score\) is 1.2"),
        ({"prediction": [[0, 0.5, 0, 0, 1, float("nan")]]}, r"\(ymax\) is nan, expected a finite number"),
        ({"prediction": [[0, 0.5, 0, 0, 640, 480]]}, r"\(xmax\) is 640.0, expected a value in \[0.0, 1.0\]"),
        ({"prediction": [GOOD["prediction"][0], [0, 0.5, 0.6, 0, 0.5, 1]]}, r"prediction\[1\] has xmax < xmin"),
    ],
)
def test_off_contract_answers_are_named(body, message):
    with pytest.raises(ValueError, match=message):
        contract.check_prediction_schema(body)


def test_class_ids_beyond_num_classes_are_refused():
    with pytest.raises(ValueError, match=r"prediction\[0\]\[0\] \(class_id\) is 2.0, expected a class id below"):
        contract.check_prediction_schema(GOOD, num_classes=2)


def test_annotations_are_the_same_boxes_in_pixels():
    answer = contract.to_annotations(GOOD["prediction"], width=200, height=100, depth=3)
    assert answer["image_size"] == [{"width": 200, "height": 100, "depth": 3}]
    first = answer["annotations"][0]
    assert first["class_id"] == 2 and isinstance(first["class_id"], int)
    assert first == pytest.approx({"class_id": 2, "score": 0.9, "left": 20, "top": 20, "width": 80, "height": 40})
    contract.check_annotation_schema(answer, num_classes=3)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda a: a.update(image_size=[]), "expected one {width, height, depth}"),
        (lambda a: a["image_size"][0].update(depth=0), r"image_size\[0\].depth is 0"),
        (lambda a: a["annotations"][1].pop("score"), r"annotations\[1\] is .* expected keys"),
        (lambda a: a["annotations"][0].update(left=250.0), r"annotations\[0\].left is 250.0"),
        (lambda a: a["annotations"][0].update(width=190.0), r"annotations\[0\].width is 190.0"),
    ],
)
def test_off_contract_annotations_are_named(mutate, message):
    answer = contract.to_annotations(GOOD["prediction"], width=200, height=100, depth=3)
    mutate(answer)
    with pytest.raises(ValueError, match=message):
        contract.check_annotation_schema(answer)


def test_content_type_from_the_bytes(jpeg_bytes, png_bytes):
    assert contract.content_type_for(jpeg_bytes) == "image/jpeg"
    assert contract.content_type_for(png_bytes) == "image/png"
    assert contract.content_type_for(b"GIF89a") == "application/x-image"


@pytest.mark.parametrize(
    ("accept", "annotation"),
    [
        (None, False),
        ("application/json", False),
        ("*/*", False),
        ("application/json;annotation=1", True),
        ("application/json; annotation=1", True),
        ("text/csv, application/json;annotation=1", True),
        ("application/json;annotation=1;q=0, */*", False),
    ],
)
def test_accept_header(accept, annotation):
    assert wants_annotation(accept) is annotation


def test_unanswerable_accept_header_is_406():
    with pytest.raises(HTTPError) as info:
        wants_annotation("text/csv")
    assert info.value.status == 406


def test_media_type_and_threshold_parsing():
    assert media_type("Image/JPEG; charset=binary") == "image/jpeg"
    assert score_threshold(b"") == 0.0 and score_threshold(b"threshold=0.25") == 0.25
    for bad in (b"threshold=abc", b"threshold=-0.1", b"threshold=1.5"):
        with pytest.raises(HTTPError) as info:
            score_threshold(bad)
        assert info.value.status == 400
