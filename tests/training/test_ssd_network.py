"""The SSD networks: anchors fitted to image_shape, pretrained base weights from a local file only, freezing."""

from __future__ import annotations

import re
from pathlib import Path

import mxnet as mx
import numpy as np
import pytest

from include.training.hyperparameters import validate_hyperparameters
from include.training.ssd_network import build_ssd, freeze, layout, pretrained_file
from include.training.ssd_trainer import EarlyStopping, learning_rate_at, make_trainer

CLASSES = ["a", "b"]


def _anchor_centres(net: mx.gluon.HybridBlock, size: int) -> np.ndarray:
    with mx.autograd.train_mode():
        _, _, anchors = net(mx.nd.zeros((1, 3, size, size)))
    return anchors.asnumpy()[0, :, :2]


@pytest.mark.parametrize("size", [128, 256])
def test_anchors_cover_the_input(size: int) -> None:
    net = build_ssd("mobilenet-1.0", size, CLASSES, False, print)
    centres = _anchor_centres(net, size)
    assert centres.min() > 0 and centres.max() < size  # every anchor centre lies inside the image
    smallest = min(layout("mobilenet-1.0", size).sizes) * size / 512
    with mx.autograd.train_mode():
        _, _, anchors = net(mx.nd.zeros((1, 3, size, size)))
    assert anchors.asnumpy()[0, :, 2:].min() == pytest.approx(smallest / np.sqrt(2), rel=1e-3)  # ratio 2 box side


def test_vgg_layout_switches_at_512() -> None:
    assert layout("vgg-16", 300).vgg_extractor == "vgg16_atrous_300"
    assert layout("vgg-16", 512).vgg_extractor == "vgg16_atrous_512"
    with pytest.raises(ValueError, match="unknown base_network"):
        layout("alexnet", 300)


def test_pretrained_base_comes_from_the_local_model_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from gluoncv.model_zoo import get_model

    monkeypatch.setenv("DETECTION_PRETRAINED_DIR", str(tmp_path))
    messages: list[str] = []
    build_ssd("mobilenet-1.0", 128, CLASSES, True, messages.append)
    assert "training the base network from scratch" in messages[-1] and str(tmp_path) in messages[-1]

    base = get_model("mobilenet1.0", pretrained=False)
    base.initialize(mx.init.Constant(0.125))
    base(mx.nd.zeros((1, 3, 64, 64)))
    base.save_parameters(str(pretrained_file("mobilenet1.0")))
    messages.clear()
    net = build_ssd("mobilenet-1.0", 128, CLASSES, True, messages.append)
    assert messages == [f"Loading pretrained mobilenet1.0 base weights from {pretrained_file('mobilenet1.0')}"]
    first_conv = next(p for name, p in net.collect_params().items() if re.fullmatch(r"mobilenet\d+_conv0_weight", name))
    assert np.all(first_conv.data().asnumpy() == 0.125)


def test_freeze_layer_pattern_stops_gradients() -> None:
    net = build_ssd("mobilenet-1.0", 128, CLASSES, False, print)
    frozen = freeze(net, r"^mobilenet\d+_conv0_")
    assert frozen and all("conv0_" in name for name in frozen)
    hp = validate_hyperparameters({"num_classes": "2", "num_training_samples": "1", "optimizer": "sgd"})
    trainer = make_trainer(net, hp)
    assert not set(frozen) & {p.name for p in trainer._params}
    assert trainer._optimizer.momentum == 0.9 and trainer.learning_rate == 0.001
    assert freeze(net, "") == []


def test_learning_rate_steps_down_at_the_listed_epochs() -> None:
    hp = validate_hyperparameters({"num_classes": "2", "num_training_samples": "1", "learning_rate": "0.1",
                                   "lr_scheduler_step": "2,4", "lr_scheduler_factor": "0.5"})
    assert [learning_rate_at(e, hp) for e in range(6)] == [0.1, 0.1, 0.05, 0.05, 0.025, 0.025]


def test_early_stopping_follows_sagemakers_rule() -> None:
    rule = EarlyStopping(min_epochs=3, patience=2, tolerance=0.1)
    # relative gains: -, 100 %, 5 % (< 10 %: no improvement), 0 %: stale for 2 epochs at epoch 3 -> stop
    assert [rule.should_stop(e, v) for e, v in enumerate([0.2, 0.4, 0.42, 0.42])] == [False, False, False, True]
    late = EarlyStopping(min_epochs=10, patience=1, tolerance=0.0)
    assert not any(late.should_stop(e, 0.5) for e in range(9)) and late.should_stop(9, 0.5)
