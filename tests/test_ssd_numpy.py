"""The SSD's NumPy side: post-processing identical to MXNet's own, NMS rules, preprocessing, the shipped module."""

from __future__ import annotations

import ast
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from include import ssd_numpy
from include.ssd_numpy import Settings, box_nms, decode_candidates, postprocess, preprocess, resize_bilinear


def _rows(*rows: list[float]) -> np.ndarray:
    return np.array([rows], dtype=np.float32)


def test_postprocess_gives_mxnets_own_detections_bit_for_bit(spread_artifact: str, bccd_images: list) -> None:
    """The MXNet graph's probabilities and decoded boxes through NumPy equal the graph's own NMS output exactly."""
    import mxnet as mx

    from include import model_artifact
    from include.export.graph import SymbolGraph, gluoncv_tail

    with tempfile.TemporaryDirectory() as tmp:
        folder = model_artifact.unpack(spread_artifact, Path(tmp))
        graph = SymbolGraph(folder / model_artifact.SYMBOL_FILE)
        tail = gluoncv_tail(graph)
        symbol = mx.sym.load(str(graph.path))
        internals = symbol.get_internals()
        heads = [graph.output_symbol(internals, n) for n in (tail.softmax, tail.box_decode)]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # MXNet's "cannot decide type" note on the input
            net = mx.gluon.SymbolBlock(mx.sym.Group([symbol, *heads]), mx.sym.var("data"))
        net.collect_params().load(str(folder / model_artifact.PARAMS_FILE), ignore_extra=True)
    size = 128
    batch = mx.nd.array(model_artifact.preprocess_array([image for _, image in bccd_images], size))
    ids, scores, boxes, probs, decoded = (out.asnumpy() for out in net(batch))
    settings = Settings(
        size,
        {0: "a", 1: "b", 2: "c"},
        score_threshold=tail.score_threshold,
        nms_threshold=tail.nms_threshold,
        nms_topk=tail.nms_topk,
        post_nms=tail.post_nms,
    )
    ours = postprocess(probs, decoded, settings)
    for i, found in enumerate(ours):
        keep = ids[i, :, 0] >= 0
        theirs = np.concatenate([ids[i, keep], scores[i, keep], np.clip(boxes[i, keep] / size, 0, 1)], axis=1)
        assert len(theirs) > 50  # the comparison covers many detections and real suppression
        np.testing.assert_array_equal(found, theirs.astype(np.float64))


def test_nms_suppresses_overlapping_boxes_of_the_same_class_only() -> None:
    rows = _rows(
        [0, 0.9, 0, 0, 10, 10],
        [0, 0.8, 1, 1, 11, 11],  # IoU 0.68 with the first, same class: suppressed
        [1, 0.7, 1, 1, 11, 11],  # same box, other class: kept
        [0, 0.6, 20, 20, 30, 30],  # same class, no overlap: kept
    )
    kept = box_nms(rows, 0.45)[0]
    np.testing.assert_allclose(kept[:, :2], [[0, 0.9], [1, 0.7], [0, 0.6], [-1, -1]], rtol=1e-6)
    forced = box_nms(rows, 0.45, force_suppress=True)[0]
    assert forced[:2, 1].tolist() == pytest.approx([0.9, 0.6]) and (forced[2:] == -1).all()


def test_nms_takes_the_top_k_valid_rows_in_stable_score_order() -> None:
    rows = _rows(
        [0, 0.5, 0, 0, 1, 1],
        [1, 0.005, 5, 5, 6, 6],  # not above the valid threshold
        [2, 0.5, 10, 10, 11, 11],  # ties with the first: stays behind it
        [-1, 0.9, 20, 20, 21, 21],  # no class
        [0, 0.7, 30, 30, 31, 31],
    )
    out = box_nms(rows, 0.45, valid_threshold=0.01, topk=2)[0]
    assert out[:, 2].tolist() == [30, 0, -1, -1, -1]
    assert box_nms(rows, 0.45, valid_threshold=0.01)[0][:3, 2].tolist() == [30, 0, 10]


def test_decoding_makes_one_candidate_per_anchor_and_foreground_class() -> None:
    probs = np.array([[[0.5, 0.3, 0.2], [0.985, 0.005, 0.01]]], dtype=np.float32)  # 2 anchors, 2 classes
    boxes = np.array([[[0, 0, 1, 1], [2, 2, 3, 3]]], dtype=np.float32)
    rows = decode_candidates(probs, boxes, 0.01)
    assert rows.shape == (1, 4, 6)  # class-major: class 0 for both anchors, then class 1
    np.testing.assert_allclose(rows[0, :, :2], [[0, 0.3], [-1, 0], [1, 0.2], [-1, 0]], rtol=1e-6)


def test_detections_are_normalized_clipped_and_best_first() -> None:
    probs = np.array([[[0.1, 0.2, 0.7], [0.1, 0.8, 0.1]]], dtype=np.float32)
    boxes = np.array([[[-8, 0, 64, 32], [10, 10, 200, 40]]], dtype=np.float32)
    (found,) = postprocess(probs, boxes, Settings(128, {0: "a", 1: "b"}))
    assert found.dtype == np.float64
    np.testing.assert_allclose(found[:, :2], [[0, 0.8], [1, 0.7], [0, 0.2], [1, 0.1]], rtol=1e-6)
    assert found[0, 2:].tolist() == pytest.approx([10 / 128, 10 / 128, 1.0, 40 / 128])
    assert found[1, 2:].tolist() == pytest.approx([0.0, 0.0, 0.5, 0.25])


def test_settings_round_trip_through_metadata_and_name_what_is_missing() -> None:
    settings = Settings(
        320,
        {0: "RBC", 2: "Platelets"},
        nms_threshold=0.3,
        nms_topk=200,
        post_nms=50,
        force_suppress=True,
        notes={"source_model": "s3://b/model.tar.gz"},
    )
    metadata = settings.metadata()
    assert all(isinstance(v, str) for v in metadata.values()) and metadata["source_model"] == "s3://b/model.tar.gz"
    assert Settings.from_metadata(metadata) == settings
    with pytest.raises(ValueError, match="no 'postprocess'"):
        Settings.from_metadata({k: v for k, v in metadata.items() if k != "postprocess"})
    with pytest.raises(ValueError, match="not readable"):
        Settings.from_metadata({**metadata, "image_shape": "large"})


def test_the_numpy_resize_is_within_one_level_of_opencv(bccd_images: list) -> None:
    import cv2

    image = bccd_images[0][1]
    for size in (128, 256, 320, 480, 700):  # downscaling, exactly 2x, and upscaling
        ours = resize_bilinear(image, size).astype(int)
        theirs = cv2.resize(image, (size, size), interpolation=cv2.INTER_LINEAR).astype(int)
        assert np.abs(ours - theirs).max() <= 1, size


def test_preprocessing_without_opencv_stays_within_one_level(
    bccd_images: list, monkeypatch: pytest.MonkeyPatch
) -> None:
    images = [image for _, image in bccd_images[:2]]
    with_cv2 = preprocess(images, 128)
    monkeypatch.setitem(sys.modules, "cv2", None)  # import cv2 now raises ImportError
    without = preprocess(images, 128)
    assert without.shape == with_cv2.shape == (2, 3, 128, 128) and without.dtype == np.float32
    step = 1 / (255 * min(ssd_numpy.STD))
    assert np.abs(without - with_cv2).max() <= step + 1e-5
    with pytest.raises(ValueError, match=r"image 0: expected an H x W x 3 RGB array"):
        preprocess([np.zeros((8, 8), np.uint8)], 16)


def test_the_shipped_module_needs_nothing_but_numpy_and_the_standard_library() -> None:
    tree = ast.parse(Path(ssd_numpy.__file__).read_text())
    top_level = {
        (alias.name if isinstance(node, ast.Import) else node.module or "").split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    }
    optional = {"onnxruntime", "cv2"}  # imported where used: a model needs onnxruntime, OpenCV only speeds resizing
    assert top_level - optional - {"numpy", "__future__"} <= set(sys.stdlib_module_names)


def test_onnx_runner_reads_its_settings_from_the_model(onnx_export: dict[str, Any]) -> None:
    model = ssd_numpy.OnnxSsd(Path(onnx_export["uri"].removeprefix("file://")))
    assert model.image_shape == 128 and model.classes == {0: "RBC", 1: "WBC", 2: "Platelets"}
    assert (model.settings.nms_threshold, model.settings.nms_topk, model.settings.post_nms) == (0.45, 400, 100)
    assert model.predict_batch([]) == []
