"""``model.tar.gz`` to ONNX: the SSD's inference graph up to class probabilities and decoded boxes, with mxnet.onnx.

Written into the export folder (``<run>/export/onnx/``)::

    model.onnx      input ``data`` [batch, 3, S, S] float32; outputs ``class_probs`` [batch, N, C+1] and
                    ``boxes`` [batch, N, 4] (corners in input pixels); metadata: classes, input size,
                    normalisation, the decoder's and NMS's settings (:class:`include.ssd_numpy.Settings`)
    ssd_numpy.py    the preprocessing, the per-class decoding + NMS and a runner, NumPy only
    classes.json    the class map, as beside every other artifact of the pipeline

Why the graph stops before NMS: see :mod:`include.ssd_numpy`. The exporter is MXNet's own
(``mxnet.onnx``, the maintained path for a symbol and its params; GluonCV has none); two things make it
work with the pinned onnx 1.23: the ``onnx.mapping`` module it imports, removed in onnx 1.16, is rebuilt
from ``onnx.helper``, and the opset it declares is pinned to 13, the newest its translation tables know
(unpinned it declares onnx's latest, 28, over nodes translated for 13). Every weight also comes out as a
graph input; those inputs are removed, so ONNX Runtime sees constants it can fold (a 512 px MobileNet SSD
ran in 218 ms instead of 526 ms).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import sys
import tempfile
import time
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from include import model_artifact, ssd_numpy, storage
from include.export.graph import GLUONCV, GraphError, SsdTail, SymbolGraph, gluoncv_tail
from include.run_layout import CLASSES_FILE

log = logging.getLogger(__name__)

ONNX_FILE = "model.onnx"
POSTPROCESS_FILE = "ssd_numpy.py"
#: The newest opset mxnet 1.9.1's translation tables cover.
OPSET = 13
BATCH = "batch"


def _mapping_module() -> types.ModuleType:
    """``onnx.mapping`` as onnx < 1.16 had it: the two dtype tables mxnet.onnx reads."""
    import numpy as np
    from onnx import TensorProto, helper

    to_numpy = {}
    for _, value in TensorProto.DataType.items():
        if value == TensorProto.UNDEFINED:
            continue
        with contextlib.suppress(KeyError, ValueError, TypeError):
            to_numpy[value] = np.dtype(helper.tensor_dtype_to_np_dtype(value))
    from_numpy: dict[Any, int] = {}
    for tensor_type, dtype in to_numpy.items():
        from_numpy.setdefault(dtype, tensor_type)
    preferred = {
        "float32": TensorProto.FLOAT, "float16": TensorProto.FLOAT16, "int64": TensorProto.INT64,
        "int32": TensorProto.INT32, "bool": TensorProto.BOOL, "uint8": TensorProto.UINT8,
    }  # fmt: skip
    from_numpy.update({np.dtype(name): tensor_type for name, tensor_type in preferred.items()})
    module = types.ModuleType("onnx.mapping")
    module.TENSOR_TYPE_TO_NP_TYPE = to_numpy  # type: ignore[attr-defined]
    module.NP_TYPE_TO_TENSOR_TYPE = from_numpy  # type: ignore[attr-defined]
    return module


@contextlib.contextmanager
def mxnet_exporter() -> Iterator[Any]:
    """``mxnet.onnx`` made to work with onnx 1.23 for the duration (see the module docstring); yields it."""
    import mxnet as mx
    import onnx
    import onnx.defs

    added = not hasattr(onnx, "mapping")
    if added:
        onnx.mapping = sys.modules["onnx.mapping"] = _mapping_module()  # type: ignore[attr-defined]
    latest = onnx.defs.onnx_opset_version
    onnx.defs.onnx_opset_version = lambda: OPSET  # the exporter reads it at call time
    try:
        yield mx.onnx
    finally:
        onnx.defs.onnx_opset_version = latest
        if added:
            del onnx.mapping  # type: ignore[attr-defined]
            sys.modules.pop("onnx.mapping", None)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _head(folder: Path, graph: SymbolGraph, tail: SsdTail, size: int) -> tuple[Any, dict[str, Any], list[tuple]]:
    """The symbol cut after the softmax and the box decoder, the parameters it uses, its output shapes.

    Scales MXNet ignores (:meth:`SymbolGraph.fixed_gammas`) are given as the ones MXNet computes with.
    """
    import mxnet as mx

    internals = mx.sym.load(str(folder / model_artifact.SYMBOL_FILE)).get_internals()
    head = mx.sym.Group([graph.output_symbol(internals, tail.softmax), graph.output_symbol(internals, tail.box_decode)])
    needed = set(head.list_arguments()) | set(head.list_auxiliary_states())
    saved = mx.nd.load(str(folder / model_artifact.PARAMS_FILE))
    params = {key.split(":", 1)[-1]: value for key, value in saved.items() if key.split(":", 1)[-1] in needed}
    for name in graph.fixed_gammas() & set(params):
        params[name] = mx.nd.ones_like(params[name])
    _, output_shapes, _ = head.infer_shape(data=(1, 3, size, size))
    return head, params, output_shapes


def _finish(model: Any, settings: ssd_numpy.Settings, output_shapes: list[tuple]) -> None:
    """Weights out of the inputs, stable output names and shapes (a symbolic batch), the settings as metadata."""
    import onnx

    graph = model.graph
    weights = {init.name for init in graph.initializer}
    inputs = [i for i in graph.input if i.name not in weights]
    del graph.input[:]
    graph.input.extend(inputs)
    renamed = dict(zip((o.name for o in graph.output), (ssd_numpy.CLASS_PROBS, ssd_numpy.BOXES), strict=True))
    for node in graph.node:
        node.output[:] = [renamed.get(name, name) for name in node.output]
        node.input[:] = [renamed.get(name, name) for name in node.input]
    for output, shape in zip(graph.output, output_shapes, strict=True):
        for dim, size in zip(output.type.tensor_type.shape.dim[1:], shape[1:], strict=True):
            dim.dim_value = size  # the exporter leaves them unknown (0) with a dynamic input
    for value in [*graph.input, *graph.output]:
        value.name = renamed.get(value.name, value.name)
        dims = value.type.tensor_type.shape.dim
        dims[0].ClearField("dim_value")
        dims[0].dim_param = BATCH
    if [i.name for i in graph.input] != [ssd_numpy.INPUT]:
        raise GraphError(f"the exported graph's inputs are {[i.name for i in graph.input]}, expected ['data']")
    onnx.helper.set_model_props(model, settings.metadata())
    model.producer_name = "detection-pipeline (mxnet.onnx)"
    model.doc_string = (
        "GluonCV SSD up to class probabilities and decoded boxes; decode and per-class NMS in ssd_numpy.py"
    )


def _settings(folder: Path, tail: SsdTail, notes: dict[str, str]) -> ssd_numpy.Settings:
    hyper = json.loads((folder / model_artifact.HYPERPARAMS_FILE).read_text())
    classes = json.loads((folder / CLASSES_FILE).read_text())
    return ssd_numpy.Settings(
        image_shape=int(hyper.get("image_shape", 300)),
        classes={int(k): v for k, v in classes.items()},
        score_threshold=tail.score_threshold,
        nms_threshold=tail.nms_threshold,
        nms_topk=tail.nms_topk,
        post_nms=tail.post_nms,
        force_suppress=tail.force_suppress,
        notes=notes,
    )


def export_onnx(artifact_uri: str, output_uri: str) -> dict[str, Any]:
    """Export ``model.tar.gz`` (or its folder) to ``output_uri`` (see the module docstring); the export's record.

    The model is checked with ``onnx.checker`` (full check, shapes inferred) before anything is
    written; every file is written atomically. Raises :class:`GraphError` for a graph it cannot
    export (the built-in algorithm's training graph: its MultiBoxPrior / MultiBoxDetection have
    no ONNX translation in mxnet.onnx).
    """
    import numpy as np
    import onnx

    started = time.perf_counter()
    artifact_uri = storage.normalize(artifact_uri)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        model_artifact.unpack(artifact_uri, folder / "model", (model_artifact.SYMBOL_FILE,))
        graph = SymbolGraph(folder / "model" / model_artifact.SYMBOL_FILE)
        if graph.kind != GLUONCV:
            raise GraphError(
                f"{artifact_uri} holds the SageMaker built-in algorithm's training graph: mxnet.onnx cannot translate "
                "its MultiBoxPrior and MultiBoxDetection operators. Export models trained on the local backend, "
                "or compile this one for a device with Neo (--format neo, sagemaker backend)"
            )
        model_artifact.unpack(artifact_uri, folder / "model")
        tail = gluoncv_tail(graph)
        notes = {
            "input": "data: RGB, resized to image_shape x image_shape (bilinear, OpenCV INTER_LINEAR, aspect ratio "
            "not kept), (pixel - 255 mean) / (255 std), NCHW float32",
            "outputs": "class_probs [batch, anchors, classes + 1] softmax, background first; boxes [batch, anchors, 4] "
            "corners in input pixels",
            "postprocess_module": f"{POSTPROCESS_FILE} beside this file: OnnxSsd('model.onnx').predict(rgb_image)",
            "source_model": artifact_uri,
            "source_symbol_sha256": sha256_file(graph.path),
        }
        settings = _settings(folder / "model", tail, notes)
        size = settings.image_shape
        head, params, output_shapes = _head(folder / "model", graph, tail, size)
        raw = folder / "raw.onnx"
        with mxnet_exporter() as exporter:
            exporter.export_model(
                head, params, in_shapes=[(1, 3, size, size)], in_types=[np.float32], onnx_file_path=str(raw),
                dynamic=True, dynamic_input_shapes=[(None, 3, size, size)],
            )  # fmt: skip
        model = onnx.load(str(raw))
        _finish(model, settings, output_shapes)
        onnx.checker.check_model(model, full_check=True)
        final = folder / ONNX_FILE
        onnx.save(model, str(final))
        onnx_uri = storage.join(output_uri, ONNX_FILE)
        storage.upload_file(final, onnx_uri)
        module_uri = storage.upload_file(Path(ssd_numpy.__file__), storage.join(output_uri, POSTPROCESS_FILE))
        classes_uri = storage.upload_file(folder / "model" / CLASSES_FILE, storage.join(output_uri, CLASSES_FILE))
        record = {
            "format": "onnx",
            "uri": storage.normalize(onnx_uri),
            "sha256": sha256_file(final),
            "bytes": final.stat().st_size,
            "opset": OPSET,
            "checker": "onnx.checker.check_model(full_check=True) passed",
            "input": {"name": ssd_numpy.INPUT, "shape": [BATCH, 3, size, size], "type": "float32"},
            "outputs": {name: [BATCH, *shape[1:]]
                        for name, shape in zip((ssd_numpy.CLASS_PROBS, ssd_numpy.BOXES), output_shapes, strict=True)},
            "metadata": settings.metadata(),
            "postprocess_module": module_uri,
            "classes_uri": classes_uri,
            "source_model": artifact_uri,
            "seconds": round(time.perf_counter() - started, 2),
        }  # fmt: skip
    log.info(
        "ONNX export %s (%d bytes, sha256 %s) in %.1f s",
        record["uri"],
        record["bytes"],
        record["sha256"][:12],
        record["seconds"],
    )
    return record
