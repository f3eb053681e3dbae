"""The SSD networks: anchors fitted to image_shape, ImageNet base weights with frozen statistics, freezing."""

from __future__ import annotations

import re
from pathlib import Path

import mxnet as mx
import numpy as np
import pytest

from include.training.hyperparameters import validate_hyperparameters
from include.training.ssd_network import base_parameters, build_ssd, freeze, layout
from include.training.ssd_trainer import EarlyStopping, learning_rate_at, make_trainer

CLASSES = ["a", "b"]


def _anchor_centres(net: mx.gluon.HybridBlock, size: int) -> np.ndarray:
    with mx.autograd.train_mode():
        _, _, anchors = net(mx.nd.zeros((1, 3, size, size)))
    return anchors.asnumpy()[0, :, :2]


@pytest.mark.parametrize("size", [128, 256])
def test_anchors_cover_the_input(size: int) -> None:
    net = build_ssd("mobilenet-1.0", size, CLASSES)
    centres = _anchor_centres(net, size)
    assert centres.min() > 0 and centres.max() < size  # every anchor centre lies inside the image
    smallest = min(layout("mobilenet-1.0", size).sizes) * size / 512
    with mx.autograd.train_mode():
        _, _, anchors = net(mx.nd.zeros((1, 3, size, size)))
    assert anchors.asnumpy()[0, :, 2:].min() == pytest.approx(smallest / np.sqrt(2), rel=1e-3)  # ratio 2 box side


def test_parameter_names_do_not_depend_on_what_the_process_built_before() -> None:
    """A model channel is loaded by name: the job that reads it must name the layers as the job that saved it."""
    from include.training.pretrained import expected_shapes

    first = list(build_ssd("mobilenet-1.0", 128, CLASSES).collect_params())
    expected_shapes("mobilenet-1.0")  # the weights check builds a classifier of its own
    assert list(build_ssd("mobilenet-1.0", 128, CLASSES).collect_params()) == first
    assert first[0] == "mobilenet0_conv0_weight" and any(name.startswith("ssd0_") for name in first)


def test_vgg_layout_switches_at_512() -> None:
    assert layout("vgg-16", 300).vgg_extractor == "vgg16_atrous_300"
    assert layout("vgg-16", 512).vgg_extractor == "vgg16_atrous_512"
    with pytest.raises(ValueError, match="unknown base_network"):
        layout("alexnet", 300)


def _base_norms(net: mx.gluon.HybridBlock) -> list[dict]:
    """The attributes of the BatchNorm operators in the SSD's (training) graph that belong to the base network."""
    import json

    graph = json.loads(net(mx.sym.var("data"))[0].tojson())
    norms = [n for n in graph["nodes"] if n["op"] == "BatchNorm" and re.match(r"mobilenet\d+_", n["name"])]
    return [n.get("attrs", {}) for n in norms]


def test_imagenet_weights_are_loaded_into_the_base_with_its_statistics_frozen(tmp_path: Path) -> None:
    from tests.support.pretrained_weights import random_weights

    weights = random_weights("mobilenet-1.0", tmp_path / "mobilenet.params", value=0.125)
    net = build_ssd("mobilenet-1.0", 128, CLASSES, weights)
    base = {p.name for p in base_parameters(net, "mobilenet-1.0")}
    assert len(base) == 135 and all(re.match(r"mobilenet\d+_", name) for name in base)
    net(mx.nd.zeros((1, 3, 128, 128)))  # the new layers' shapes are known after a first pass
    for name, param in net.collect_params().items():  # (the initializer gives BatchNorm its own values)
        if name.endswith("weight"):  # exactly the base's came from the file; the new layers are initialized
            assert np.all(param.data().asnumpy() == 0.125) == (name in base), name
    assert _base_norms(net) and all(a.get("use_global_stats") == "True" for a in _base_norms(net))
    scratch = build_ssd("mobilenet-1.0", 128, CLASSES)
    assert all(a.get("use_global_stats", "False") == "False" for a in _base_norms(scratch))


@pytest.mark.slow
@pytest.mark.parametrize(("network", "size", "base_layers"), [("resnet-50", 300, 297), ("vgg-16", 300, 30)])
def test_resnet_and_vgg_load_imagenet_weights_from_the_same_cache(
    network: str, size: int, base_layers: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from include.training.pretrained import file_name, resolve
    from tests.support.pretrained_weights import random_weights

    monkeypatch.setenv("DETECTION_PRETRAINED_DIR", str(tmp_path))
    random_weights(network, tmp_path / file_name(network), value=0.25)
    weights = resolve(network)
    net = build_ssd(network, size, CLASSES, weights.path)
    base = base_parameters(net, network)
    net(mx.nd.zeros((1, 3, size, size)))
    assert len(base) == base_layers
    assert all(np.all(p.data().asnumpy() == 0.25) for p in base if p.name.endswith("weight"))
    others = [p for p in net.collect_params().values() if p not in base and p.name.endswith("weight")]
    assert others and not any(np.all(p.data().asnumpy() == 0.25) for p in others)


@pytest.mark.slow
@pytest.mark.parametrize("network", ["resnet-50", "vgg-16"])
def test_resnet_and_vgg_still_train_from_scratch(network: str) -> None:
    """Without a weights file every layer starts random and a training step moves the base network too."""
    from include.training.ssd_trainer import TrainingStep, train_epoch

    size = 300
    net = build_ssd(network, size, CLASSES)
    net(mx.nd.zeros((1, 3, size, size)))  # deferred shapes known
    hp = validate_hyperparameters({"num_classes": "2", "num_training_samples": "2", "base_network": network,
                                   "image_shape": str(size), "mini_batch_size": "2", "optimizer": "adam"})
    step = TrainingStep.create(net, hp)
    images = np.random.default_rng(0).normal(size=(2, 3, size, size)).astype(np.float32)
    boxes = np.array([[[30, 40, 150, 200]], [[100, 60, 280, 170]]], np.float32)
    ids = np.array([[[0]], [[1]]], np.float32)
    before = {p.name: p.data().asnumpy().copy() for p in base_parameters(net, network) if p.name.endswith("weight")}
    stats = train_epoch(step, [(images, boxes, ids)], 0, hp["learning_rate"], lambda _: None)
    assert stats is not None and stats.batches == 1 and np.isfinite(stats.cross_entropy) and stats.cross_entropy > 0
    after = net.collect_params()
    assert before and all(not np.array_equal(value, after[name].data().asnumpy()) for name, value in before.items())


def test_freeze_layer_pattern_stops_gradients() -> None:
    net = build_ssd("mobilenet-1.0", 128, CLASSES)
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
