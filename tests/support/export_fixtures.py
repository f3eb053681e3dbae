"""Fixtures of the export tests: an SSD whose scores are spread like a trained one's, its ONNX export, test images.

The model is the trainer's own network (:func:`include.training.ssd_network.build_ssd`, MobileNet at
128 px) on the ImageNet base weights of ``../shared/models`` with freshly initialized heads: its class
probabilities range from 0.2 to 0.99 on BCCD photographs, so the comparison between the runtimes is not
decided by near-ties, as it would be with an untrained base (probabilities within 1e-4 of each other).
The box predictor's weights are scaled down so decoded boxes stay near their anchors, as a trained
model's do, instead of growing past the image by orders of magnitude. The extra feature layers' BatchNorm
scales, which MXNet ignores (``fix_gamma``), are moved away from 1 as training with weight decay moves them:
an export must compute with 1 as MXNet does.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.support.pretrained_weights import SHARED_MOBILENET
from tests.support.shared_data import BCCD_IMAGES

CLASSES = {0: "RBC", 1: "WBC", 2: "Platelets"}
IMAGE_SHAPE = 128


def build_spread_ssd(path: Path, image_shape: int = IMAGE_SHAPE, nms_threshold: float = 0.45) -> str:
    """``model.tar.gz`` of the trainer's MobileNet SSD with ImageNet base weights and fresh heads (see above)."""
    import mxnet as mx
    import numpy as np

    from include import model_artifact
    from include.training.ssd_network import build_ssd

    if not SHARED_MOBILENET.is_file():
        pytest.skip(f"the ImageNet weights are not at {SHARED_MOBILENET}")
    mx.random.seed(0)
    net = build_ssd("mobilenet-1.0", image_shape, list(CLASSES.values()), SHARED_MOBILENET)
    net(mx.nd.zeros((1, 3, image_shape, image_shape)))  # shapes the deferred parameters
    for predictor in net.box_predictors:
        for param in predictor.collect_params().values():
            if param.name.endswith("weight"):
                param.set_data(param.data() * 0.1)
    for name, param in net.collect_params().items():
        if name.startswith("expand_") and name.endswith("gamma"):
            param.set_data(mx.nd.random.uniform(0.5, 1.5, param.shape))
    net.set_nms(nms_thresh=nms_threshold, nms_topk=400, post_nms=100)
    net.hybridize()
    net(model_artifact.preprocess([np.zeros((image_shape, image_shape, 3), dtype=np.uint8)], image_shape))
    hyper = {"image_shape": str(image_shape), "num_classes": str(len(CLASSES)), "nms_threshold": str(nms_threshold)}
    return model_artifact.export_model(net, hyper, CLASSES, str(path))


@pytest.fixture(scope="session")
def spread_artifact(tmp_path_factory: pytest.TempPathFactory) -> str:
    """``model.tar.gz`` of :func:`build_spread_ssd` (shared: do not modify)."""
    return build_spread_ssd(tmp_path_factory.mktemp("spread-model") / "model.tar.gz")


@pytest.fixture(scope="session")
def onnx_export(spread_artifact: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The ONNX export of :func:`spread_artifact` (its record; shared: do not modify)."""
    from include.export.onnx_export import export_onnx

    return export_onnx(spread_artifact, str(tmp_path_factory.mktemp("onnx-export")))


@pytest.fixture(scope="session")
def bccd_images() -> list[tuple[str, Any]]:
    """The first 12 BCCD photographs, decoded (RGB): images no test model was trained on."""
    from include.model_artifact import decode_image

    paths = sorted(BCCD_IMAGES.glob("*.jpg"))[:12]
    if not paths:
        pytest.skip(f"the BCCD data set is not at {BCCD_IMAGES}")
    return [(p.name, decode_image(p.read_bytes())) for p in paths]
