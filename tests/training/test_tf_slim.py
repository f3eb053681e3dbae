"""TF-slim MobileNet v1 frozen graphs converted to GluonCV mobilenet1.0 weights (graphs written here, no TensorFlow)."""

from __future__ import annotations

import json
from pathlib import Path

import mxnet as mx
import numpy as np
import pytest

from include.cli import main
from include.training import tf_slim
from include.training.pretrained import WeightsError, check_file

RNG = np.random.default_rng(11)


def write_graph(tensors: dict[str, np.ndarray], path: Path) -> Path:
    """A frozen GraphDef whose Const nodes hold ``tensors`` (plus an op without weights, as real graphs have)."""
    messages = tf_slim.graph_messages()
    graph = messages["GraphDef"]()
    graph.node.add(name="input", op="Placeholder")
    for name, value in tensors.items():
        node = graph.node.add(name=name, op="Const")
        tensor = node.attr["value"].tensor
        tensor.dtype = 1  # DT_FLOAT
        for size in value.shape:
            tensor.tensor_shape.dim.add(size=size)
        tensor.tensor_content = np.ascontiguousarray(value, "<f4").tobytes()
    path.write_bytes(graph.SerializeToString())
    return path


def slim_tensors(with_logits: bool = True) -> dict[str, np.ndarray]:
    """Random TF-slim MobileNet v1 1.0 tensors of the right names and shapes."""
    widths = [32, 64, 128, 128, 256, 256, 512, 512, 512, 512, 512, 512, 1024, 1024]
    out: dict[str, np.ndarray] = {}

    def norm(layer: str, channels: int) -> None:
        out[f"{layer}/BatchNorm/gamma"] = RNG.uniform(0.5, 1.5, channels)
        out[f"{layer}/BatchNorm/beta"] = RNG.normal(0, 0.1, channels)
        out[f"{layer}/BatchNorm/moving_mean"] = RNG.normal(0, 0.1, channels)
        out[f"{layer}/BatchNorm/moving_variance"] = RNG.uniform(0.5, 2.0, channels)

    out["MobilenetV1/Conv2d_0/weights"] = RNG.normal(0, 0.1, (3, 3, 3, 32))
    norm("MobilenetV1/Conv2d_0", 32)
    for i in range(1, 14):
        cin, cout = widths[i - 1], widths[i]
        out[f"MobilenetV1/Conv2d_{i}_depthwise/depthwise_weights"] = RNG.normal(0, 0.1, (3, 3, cin, 1))
        norm(f"MobilenetV1/Conv2d_{i}_depthwise", cin)
        out[f"MobilenetV1/Conv2d_{i}_pointwise/weights"] = RNG.normal(0, 0.1, (1, 1, cin, cout))
        norm(f"MobilenetV1/Conv2d_{i}_pointwise", cout)
    if with_logits:
        out["MobilenetV1/Logits/Conv2d_1c_1x1/weights"] = RNG.normal(0, 0.1, (1, 1, 1024, 1001))
        out["MobilenetV1/Logits/Conv2d_1c_1x1/biases"] = RNG.normal(0, 0.1, 1001)
    return {k: v.astype(np.float32) for k, v in out.items()}


def test_the_graph_is_read_and_mapped_onto_gluoncvs_layers(tmp_path: Path) -> None:
    tensors = slim_tensors()
    read = tf_slim.read_frozen_graph(write_graph(tensors, tmp_path / "mobilenet_v1_1.0_224_frozen.pb"))
    assert set(read) == set(tensors) and all(np.array_equal(read[k], tensors[k]) for k in tensors)
    gluon = tf_slim.to_gluon_mobilenet(read)
    assert len(gluon) == 137
    depthwise = tensors["MobilenetV1/Conv2d_1_depthwise/depthwise_weights"]
    assert np.array_equal(gluon["features.3.weight"][5, 0], depthwise[:, :, 5, 0])  # conv 1 is block 1's depthwise
    pointwise = tensors["MobilenetV1/Conv2d_13_pointwise/weights"]
    assert np.array_equal(gluon["features.78.weight"][7, 9], pointwise[:, :, 9, 7])  # conv 26: (O, I, H, W)
    variance = tensors["MobilenetV1/Conv2d_5_depthwise/BatchNorm/moving_variance"]
    np.testing.assert_allclose(gluon["features.28.running_var"], variance + 1e-3 - 1e-5, rtol=1e-6)
    logits = tensors["MobilenetV1/Logits/Conv2d_1c_1x1/weights"][0, 0]
    assert gluon["output.weight"].shape == (1000, 1024) and np.array_equal(gluon["output.weight"][3], logits[:, 4])
    assert "output.weight" not in tf_slim.to_gluon_mobilenet(slim_tensors(with_logits=False))


def test_the_first_layer_takes_gluoncvs_input_as_tf_slim_took_its_own() -> None:
    """Conv 0 + BatchNorm on GluonCV's mean/std input equal TF-slim's on x/127.5 - 1 (inside the image)."""
    tensors = slim_tensors()
    gluon = tf_slim.to_gluon_mobilenet(tensors)
    image = RNG.uniform(0, 255, (1, 3, 16, 16)).astype(np.float32)
    mean, std = tf_slim.GLUON_MEAN[None, :, None, None], tf_slim.GLUON_STD[None, :, None, None]

    def conv_bn(x: np.ndarray, kernel: np.ndarray, bn: dict[str, np.ndarray], eps: float) -> np.ndarray:
        y = mx.nd.Convolution(mx.nd.array(x), mx.nd.array(kernel), kernel=(3, 3), num_filter=32, no_bias=True)
        shape = (1, -1, 1, 1)
        return ((y.asnumpy() - bn["mean"].reshape(shape)) / np.sqrt(bn["var"].reshape(shape) + eps)
                * bn["gamma"].reshape(shape) + bn["beta"].reshape(shape))

    layer = "MobilenetV1/Conv2d_0"
    theirs = conv_bn(image / 127.5 - 1, tensors[f"{layer}/weights"].transpose(3, 2, 0, 1),
                     {k: tensors[f"{layer}/BatchNorm/{n}"] for k, n in
                      (("mean", "moving_mean"), ("var", "moving_variance"), ("gamma", "gamma"), ("beta", "beta"))},
                     tf_slim.TF_EPSILON)
    ours = conv_bn((image / 255 - mean) / std, gluon["features.0.weight"],
                   {k: gluon[f"features.1.{n}"] for k, n in
                    (("mean", "running_mean"), ("var", "running_var"), ("gamma", "gamma"), ("beta", "beta"))},
                   tf_slim.GLUON_EPSILON)
    np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-4)


def test_weights_import_from_tf_slim_converts_checks_and_records_the_graph(tmp_path: Path, capsys) -> None:
    graph = write_graph(slim_tensors(), tmp_path / "mobilenet_v1_1.0_224_frozen.pb")
    cache = tmp_path / "cache"
    assert main(["--json", "weights", "import", str(graph), "--from", "tf-slim", "--cache", str(cache)]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["source"] == "import" and record["file"] == str(cache / "mobilenet1.0-efbb2ca3.params")
    sidecar = json.loads((cache / "mobilenet1.0-efbb2ca3.params.json").read_text())
    assert sidecar["source_file"] == str(graph) and sidecar["converted"] == "TF-slim MobileNet v1 frozen graph"
    assert check_file(Path(record["file"]), "mobilenet-1.0") == 137


def test_what_is_not_a_tf_slim_mobilenet_graph_is_refused_by_name(tmp_path: Path) -> None:
    not_a_graph = tmp_path / "notes.pb"
    not_a_graph.write_bytes(b"\xff\xff\xff\xff not protobuf")
    with pytest.raises(WeightsError, match="notes.pb is not a frozen TensorFlow graph"):
        tf_slim.read_frozen_graph(not_a_graph)
    tensors = slim_tensors()
    del tensors["MobilenetV1/Conv2d_7_pointwise/BatchNorm/moving_mean"]
    graph = write_graph(tensors, tmp_path / "partial.pb")
    with pytest.raises(WeightsError, match="partial.pb has no TF-slim MobileNet v1 tensor "
                                           "MobilenetV1/Conv2d_7_pointwise/BatchNorm/moving_mean"):
        tf_slim.convert_frozen_graph(graph, tmp_path / "out.params")
