"""Google's TF-slim MobileNet v1 (a frozen TensorFlow graph) converted to GluonCV's ``mobilenet1.0`` weights.

Google publishes its ImageNet MobileNet v1 as TF-slim checkpoints and frozen graphs
(``mobilenet_v1_1.0_224_frozen.pb``). ``detection-pipeline weights import FILE --from tf-slim``
reads such a graph's constants and writes them under GluonCV's layer names, then imports the
result like any other file (:func:`include.training.pretrained.import_weights` checks it).

Reading: a frozen graph is a ``GraphDef`` protobuf whose ``Const`` nodes carry the weights. The
four messages needed (``GraphDef``, ``NodeDef``, ``AttrValue``, ``TensorProto`` with its shape)
are declared here to the protobuf library (field numbers as in TensorFlow's ``.proto`` files), so
neither TensorFlow nor its generated code is a dependency; fields not declared are skipped.

Mapping (TF-slim ``MobilenetV1/...`` -> GluonCV ``features.N``): ``Conv2d_0`` is conv 0, block i's
depthwise and pointwise convolutions are convs 2i-1 and 2i; conv k is ``features.{3k}`` and its
BatchNorm ``features.{3k+1}``. Kernels go from TF's HWIO to MXNet's OIHW (depthwise (3,3,C,1) to
(C,1,3,3)); BatchNorm's epsilon 1e-3 is folded into ``running_var`` for Gluon's 1e-5; TF's input
scaling ``x/127.5 - 1`` is folded into conv 0 and its BatchNorm, so the network takes GluonCV's
mean/std input; the 1001-way logits (background first) become the 1000-way dense output.
Two differences remain and fine-tuning absorbs them: ReLU6 in TF-slim against ReLU in GluonCV, and
TF's bottom/right padding of stride-2 convolutions against Gluon's symmetric padding.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from include.training.pretrained import WeightsError

SCOPE = "MobilenetV1"
BLOCKS = 13
TF_EPSILON, GLUON_EPSILON = 1e-3, 1e-5
GLUON_MEAN, GLUON_STD = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
_DT_FLOAT = 1


@cache
def graph_messages() -> dict[str, Any]:
    """Message classes for ``GraphDef`` and the parts of it that hold constants (TensorFlow's field numbers)."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    f = descriptor_pb2.FieldDescriptorProto
    proto = descriptor_pb2.FileDescriptorProto(name="detection_tf_graph.proto", package="detection_tf",
                                               syntax="proto3")

    def message(name: str, fields: list[tuple[str, int, int, int, str]]) -> descriptor_pb2.DescriptorProto:
        msg = proto.message_type.add(name=name)
        for field_name, number, kind, label, type_name in fields:
            message_type = {"type_name": type_name} if type_name else {}
            msg.field.add(name=field_name, number=number, type=kind, label=label, **message_type)
        return msg

    one, many = f.LABEL_OPTIONAL, f.LABEL_REPEATED
    message("Dim", [("size", 1, f.TYPE_INT64, one, "")])
    message("TensorShapeProto", [("dim", 2, f.TYPE_MESSAGE, many, ".detection_tf.Dim")])
    tensor = message("TensorProto", [
        ("dtype", 1, f.TYPE_INT32, one, ""),
        ("tensor_shape", 2, f.TYPE_MESSAGE, one, ".detection_tf.TensorShapeProto"),
        ("tensor_content", 4, f.TYPE_BYTES, one, ""),
        ("float_val", 5, f.TYPE_FLOAT, many, ""),
    ])
    tensor.field[-1].options.packed = True
    message("AttrValue", [("tensor", 8, f.TYPE_MESSAGE, one, ".detection_tf.TensorProto")])
    node = message("NodeDef", [("name", 1, f.TYPE_STRING, one, ""), ("op", 2, f.TYPE_STRING, one, ""),
                               ("attr", 5, f.TYPE_MESSAGE, many, ".detection_tf.NodeDef.AttrEntry")])
    entry = node.nested_type.add(name="AttrEntry")
    entry.options.map_entry = True
    entry.field.add(name="key", number=1, type=f.TYPE_STRING, label=one)
    entry.field.add(name="value", number=2, type=f.TYPE_MESSAGE, label=one, type_name=".detection_tf.AttrValue")
    message("GraphDef", [("node", 1, f.TYPE_MESSAGE, many, ".detection_tf.NodeDef")])
    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto)
    return {name: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"detection_tf.{name}"))
            for name in ("GraphDef", "NodeDef", "TensorProto")}


def read_frozen_graph(path: Path) -> dict[str, np.ndarray]:
    """Every float ``Const`` of the frozen graph at ``path``, by node name."""
    from google.protobuf.message import DecodeError

    graph = graph_messages()["GraphDef"]()
    try:
        graph.ParseFromString(Path(path).read_bytes())
    except DecodeError as exc:
        raise WeightsError(f"{path} is not a frozen TensorFlow graph (GraphDef): {exc}") from None
    out = {}
    for node in graph.node:
        if node.op != "Const" or "value" not in node.attr:
            continue
        tensor = node.attr["value"].tensor
        if tensor.dtype != _DT_FLOAT:
            continue
        shape = tuple(d.size for d in tensor.tensor_shape.dim)
        values = (np.frombuffer(tensor.tensor_content, "<f4") if tensor.tensor_content
                  else np.array(tensor.float_val, np.float32))
        if values.size == 1 and int(np.prod(shape)) > 1:  # TF stores a filled constant as one value
            values = np.full(shape, values[0], np.float32)
        out[node.name] = values.reshape(shape).astype(np.float32)
    return out


def _tf_layer(k: int) -> str:
    if k == 0:
        return f"{SCOPE}/Conv2d_0"
    block = (k + 1) // 2
    return f"{SCOPE}/Conv2d_{block}_{'depthwise' if k % 2 else 'pointwise'}"


def _take(tf: Mapping[str, np.ndarray], name: str, source: str) -> np.ndarray:
    if name not in tf:
        raise WeightsError(f"{source} has no TF-slim MobileNet v1 tensor {name} (is it MobileNet v1 1.0?)")
    return tf[name]


def to_gluon_mobilenet(tf: Mapping[str, np.ndarray], source: str = "the graph") -> dict[str, np.ndarray]:
    """GluonCV ``mobilenet1.0`` arrays from TF-slim MobileNet v1 tensors (see the module doc)."""
    out: dict[str, np.ndarray] = {}
    for k in range(2 * BLOCKS + 1):
        layer = _tf_layer(k)
        if k % 2:  # depthwise (3, 3, C, 1) -> (C, 1, 3, 3)
            kernel = _take(tf, f"{layer}/depthwise_weights", source).transpose(2, 3, 0, 1)
        else:  # (H, W, I, O) -> (O, I, H, W)
            kernel = _take(tf, f"{layer}/weights", source).transpose(3, 2, 0, 1)
        beta = _take(tf, f"{layer}/BatchNorm/beta", source)
        mean = _take(tf, f"{layer}/BatchNorm/moving_mean", source)
        gamma = tf.get(f"{layer}/BatchNorm/gamma", np.ones_like(beta))
        var = _take(tf, f"{layer}/BatchNorm/moving_variance", source) + (TF_EPSILON - GLUON_EPSILON)
        if k == 0:  # x_tf = a * x_gluon + b per input channel
            scale, shift = 2 * GLUON_STD, 2 * GLUON_MEAN - 1
            mean = mean - np.einsum("oihw,i->o", kernel, shift)
            kernel = kernel * scale[None, :, None, None]
        out[f"features.{3 * k}.weight"] = kernel
        out.update({f"features.{3 * k + 1}.{name}": value
                    for name, value in (("gamma", gamma), ("beta", beta), ("running_mean", mean),
                                        ("running_var", var))})
    logits = f"{SCOPE}/Logits/Conv2d_1c_1x1"
    if f"{logits}/weights" in tf:  # the ImageNet classifier (a retrained graph has its own head instead)
        weights = tf[f"{logits}/weights"]
        out["output.weight"] = weights.reshape(weights.shape[-2:])[:, 1:].T
        out["output.bias"] = _take(tf, f"{logits}/biases", source)[1:]
    return {name: np.ascontiguousarray(value, np.float32) for name, value in out.items()}


def convert_frozen_graph(graph: Path, target: Path) -> Path:
    """Write GluonCV ``mobilenet1.0`` weights converted from the TF-slim frozen graph ``graph`` to ``target``."""
    import mxnet as mx

    arrays = to_gluon_mobilenet(read_frozen_graph(graph), str(graph))
    mx.nd.save(str(target), {name: mx.nd.array(value) for name, value in arrays.items()})
    return target
