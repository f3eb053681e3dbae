"""The parity check: what counts as the same detections, and that a real difference between models fails it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from include import model_artifact
from include.export.parity import (
    Tolerances,
    channel_images,
    compare_models,
    folder_images,
    match_detections,
    summary_line,
)
from include.ssd_numpy import OnnxSsd

REFERENCE = np.array(
    [
        [0, 0.90, 0.10, 0.10, 0.30, 0.30],
        [1, 0.80, 0.50, 0.50, 0.70, 0.70],
        [1, 0.7000001, 0.20, 0.60, 0.40, 0.90],
        [1, 0.7, 0.60, 0.10, 0.90, 0.30],
    ]
)


def test_float_drift_and_swapped_near_ties_are_the_same_detections() -> None:
    candidate = REFERENCE[[0, 1, 3, 2]].copy()  # the tie at 0.7 comes out the other way round
    candidate[:, 1:] += 4e-7
    result = match_detections("img", REFERENCE, candidate, Tolerances())
    assert result.passed and result.matched == 4 and not result.same_order
    assert result.max_score_diff == pytest.approx(4e-7, abs=1e-9)
    assert match_detections("img", REFERENCE, REFERENCE.copy(), Tolerances()).same_order


@pytest.mark.parametrize(
    ("change", "left_over"),
    [
        (lambda c: c[:3], ([0.7], [])),  # a detection missing
        (lambda c: np.concatenate([c, [[0, 0.5, 0, 0, 0.1, 0.1]]]), ([], [0.5])),  # one too many
        (lambda c: np.where(np.arange(4)[:, None] == 1, [[0, 0.8, 0.5, 0.5, 0.7, 0.7]], c), ([0.8], [0.8])),  # class
        (lambda c: c + np.array([0, 0, 0, 0, 0.0011, 0]), ([0.9, 0.8, 0.7000001, 0.7], [0.9, 0.8, 0.7000001, 0.7])),
        (
            lambda c: c + np.array([0, 0.0011, 0, 0, 0, 0]),
            ([0.9, 0.8, 0.7000001, 0.7], [0.9011, 0.8011, 0.7011001, 0.7011]),
        ),
    ],
    ids=["missing", "extra", "other class", "box moved", "score moved"],
)
def test_a_missing_extra_reclassified_or_moved_detection_fails(change: Any, left_over: tuple) -> None:
    result = match_detections("img", REFERENCE, change(REFERENCE.copy()), Tolerances(1e-3, 1e-3))
    assert not result.passed
    only_reference, only_candidate = left_over
    assert [round(r[1], 7) for r in result.unmatched_reference] == only_reference
    assert [round(r[1], 7) for r in result.unmatched_candidate] == only_candidate


def test_other_nms_settings_in_the_export_fail_parity(
    spread_artifact: str, onnx_export: dict[str, Any], bccd_images: list, tmp_path: Path
) -> None:
    """A real difference (the exported model's NMS at IoU 0.3 instead of 0.45) is caught and reported."""
    import onnx

    model = onnx.load(onnx_export["uri"].removeprefix("file://"))
    props = {p.key: p for p in model.metadata_props}
    post = json.loads(props["postprocess"].value)
    props["postprocess"].value = json.dumps({**post, "nms_threshold": 0.3})
    changed = tmp_path / "model.onnx"
    onnx.save(model, str(changed))
    parity = compare_models(model_artifact.load_detector(spread_artifact), OnnxSsd(changed), bccd_images[:3])
    assert not parity["passed"] and parity["images_failed"] and parity["unmatched"] > 0
    assert len(parity["unmatched_rows"]) == min(parity["unmatched"], 20)  # every one counted, the first listed
    assert {u["model"] for u in parity["unmatched_rows"]} <= {"mxnet", "onnxruntime"}
    assert "DIFFERENT" in summary_line(parity)


def test_parity_reads_held_out_images_from_a_build_or_a_folder(tmp_path: Path, bccd_images: list) -> None:
    import cv2

    from tests.support.evaluation_helpers import write_rec

    payloads = [cv2.imencode(".jpg", image[:, :, ::-1])[1].tobytes() for _, image in bccd_images[:3]]
    write_rec(tmp_path / "build" / "validation" / "validation.rec", [(p, np.zeros((0, 5))) for p in payloads])
    names = [name for name, _ in channel_images(str(tmp_path / "build"), 2)]
    assert names == ["validation.rec record 0", "validation.rec record 1"]
    write_rec(tmp_path / "build" / "test" / "test.rec", [(p, np.zeros((0, 5))) for p in payloads[:1]])
    assert [name for name, _ in channel_images(str(tmp_path / "build"), 5)] == ["test.rec record 0"]
    with pytest.raises(FileNotFoundError, match="no test or validation channel"):
        list(channel_images(str(tmp_path), 5))

    (tmp_path / "photos").mkdir()
    for i, payload in enumerate(payloads):
        (tmp_path / "photos" / f"{i}.jpg").write_bytes(payload)
    (tmp_path / "photos" / "notes.txt").write_text("not an image")
    found = list(folder_images(str(tmp_path / "photos"), 10))
    assert [name for name, _ in found] == ["0.jpg", "1.jpg", "2.jpg"] and found[0][1].shape == bccd_images[0][1].shape
    (tmp_path / "photos" / "3.png").write_bytes(b"broken")
    with pytest.raises(ValueError, match=r"3.png: the request body is not a decodable JPEG or PNG image"):
        list(folder_images(str(tmp_path / "photos"), 10))
