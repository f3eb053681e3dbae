"""Fixtures of the export tests: an artifact shaped like the SageMaker built-in algorithm's.

There is no built-in algorithm artifact to test with offline, so :func:`builtin_symbols` builds its
training graph from the operators of MXNet's ``example/ssd`` ``symbol_builder.py`` (which the built-in
algorithm's ``model_algo_1-symbol.json`` is): a small base network, MultiBoxPrior anchors, MultiBoxTarget,
a SoftmaxOutput loss with a label, smooth_l1 + MakeLoss, and MultiBoxDetection wrapped in MakeLoss. It
also builds what ``example/ssd/deploy.py`` makes of it, the reference for the graph surgery.
"""

from __future__ import annotations

import json
import tarfile
from pathlib import Path
from typing import Any

import pytest

BUILTIN_CLASSES = 2
BUILTIN_IMAGE_SHAPE = 64
DETECTION_ATTRS = {"nms_threshold": 0.45, "force_suppress": False, "variances": (0.1, 0.1, 0.2, 0.2), "nms_topk": 400}


def builtin_symbols() -> tuple[Any, Any]:
    """``(training graph, deploy graph)`` of a tiny ``example/ssd`` SSD."""
    import mxnet as mx

    sym = mx.sym
    classes = BUILTIN_CLASSES
    body = sym.Activation(
        sym.Convolution(sym.var("data"), num_filter=8, kernel=(3, 3), stride=(2, 2), pad=(1, 1), name="conv1"),
        act_type="relu",
        name="relu1",
    )
    feature = sym.Activation(
        sym.Convolution(body, num_filter=16, kernel=(3, 3), stride=(2, 2), pad=(1, 1), name="conv2"),
        act_type="relu",
        name="relu2",
    )
    sizes, ratios = (0.2, 0.4), (1, 2, 0.5)
    per_cell = len(sizes) + len(ratios) - 1
    anchors = sym.Reshape(
        sym.contrib.MultiBoxPrior(feature, sizes=sizes, ratios=ratios, name="anchors"),
        shape=(0, -1, 4),
        name="multibox_anchors",
    )
    cls = sym.Convolution(feature, num_filter=per_cell * (classes + 1), kernel=(3, 3), pad=(1, 1), name="cls_conv")
    cls_preds = sym.transpose(
        sym.Reshape(sym.Flatten(sym.transpose(cls, axes=(0, 2, 3, 1))), shape=(0, -1, classes + 1)),
        axes=(0, 2, 1),
        name="multibox_cls_pred",
    )
    loc = sym.Convolution(feature, num_filter=per_cell * 4, kernel=(3, 3), pad=(1, 1), name="loc_conv")
    loc_preds = sym.Flatten(sym.transpose(loc, axes=(0, 2, 3, 1)), name="multibox_loc_pred")
    target = sym.contrib.MultiBoxTarget(
        anchors,
        sym.var("label"),
        cls_preds,
        overlap_threshold=0.5,
        ignore_label=-1,
        negative_mining_ratio=3,
        negative_mining_thresh=0.5,
        variances=(0.1, 0.1, 0.2, 0.2),
        name="multibox_target",
    )
    loc_target, loc_mask, cls_target = target[0], target[1], target[2]
    cls_prob = sym.SoftmaxOutput(
        cls_preds,
        label=cls_target,
        ignore_label=-1,
        use_ignore=True,
        multi_output=True,
        normalization="valid",
        name="cls_prob",
    )
    loc_loss = sym.MakeLoss(
        sym.smooth_l1(loc_mask * (loc_preds - loc_target), scalar=1.0), normalization="valid", name="loc_loss"
    )
    cls_label = sym.MakeLoss(cls_target, grad_scale=0, name="cls_label")
    detection = sym.contrib.MultiBoxDetection(cls_prob, loc_preds, anchors, name="detection", **DETECTION_ATTRS)
    training = sym.Group([cls_prob, loc_loss, cls_label, sym.MakeLoss(detection, grad_scale=0, name="det_out")])
    deploy = sym.contrib.MultiBoxDetection(
        sym.softmax(cls_preds, axis=1), loc_preds, anchors, name="detection", **DETECTION_ATTRS
    )
    return training, deploy


def builtin_params(training: Any) -> dict[str, Any]:
    """Random weights for the training graph, saved the way MXNet's Module saves them (``arg:`` keys)."""
    import mxnet as mx

    size = BUILTIN_IMAGE_SHAPE
    shapes, _, _ = training.infer_shape(data=(1, 3, size, size), label=(1, 4, 5))
    rng = mx.random
    mx.random.seed(3)
    return {
        f"arg:{name}": rng.normal(0, 0.3, shape)
        for name, shape in zip(training.list_arguments(), shapes, strict=True)
        if name not in ("data", "label")
    }


@pytest.fixture(scope="session")
def builtin_artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``model.tar.gz`` as the built-in algorithm writes it: training symbol, params, hyperparams.json, no class map."""
    import mxnet as mx

    from include.model_artifact import HYPERPARAMS_FILE, PARAMS_FILE, SYMBOL_FILE

    folder = tmp_path_factory.mktemp("builtin")
    training, _ = builtin_symbols()
    training.save(str(folder / SYMBOL_FILE))
    mx.nd.save(str(folder / PARAMS_FILE), builtin_params(training))
    hyper = {"base_network": "resnet-50", "num_classes": str(BUILTIN_CLASSES), "image_shape": str(BUILTIN_IMAGE_SHAPE)}
    (folder / HYPERPARAMS_FILE).write_text(json.dumps(hyper))
    archive = folder / "model.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for name in (SYMBOL_FILE, PARAMS_FILE, HYPERPARAMS_FILE):
            tar.add(folder / name, arcname=name)
    return archive
