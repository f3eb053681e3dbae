"""SageMaker Neo: a model artifact's deployable inference graph, packed as Neo takes it, and its compilation job.

Neo compiles an MXNet model given as one ``.tar.gz`` holding a ``*-symbol.json`` and a ``*.params``
whose input is ``data``. It rejects the artifacts as they are, for different reasons:

* **the built-in algorithm's** ``model_algo_1-symbol.json`` (backend ``sagemaker``) is the *training*
  graph of MXNet's ``example/ssd``: target assignment (MultiBoxTarget), losses (SoftmaxOutput with a
  label, smooth_l1, MakeLoss) and a detection output wrapped in MakeLoss. The deployable graph is what
  ``example/ssd/deploy.py`` builds: MultiBoxDetection fed by ``softmax(axis=1)`` of the same class
  scores instead of the SoftmaxOutput loss layer, alone. It is cut out by operator, not by node name.
* **the local trainer's** GluonCV inference graph decodes boxes with ``_contrib_box_decode``, which
  TVM's MXNet frontend (Neo's compiler) does not translate: the tail is rebuilt with GluonCV's own
  ``minimal_opset`` decoder (what GluonCV uses for TVM) and the graph's own decoder and NMS settings;
  the outputs are unchanged (ids equal, scores and boxes to float rounding).

The job itself is an ordinary SageMaker request (:func:`include.sagemaker.requests.compilation_job_request`)
through the one execution path (:func:`include.execution.execute`): validated against botocore's model,
sent with boto3, polled (botocore has no waiter for it), and on a failure or interruption stopped.
"""

from __future__ import annotations

import json
import logging
import tarfile
import tempfile
from pathlib import Path
from typing import Any

from include import model_artifact, storage
from include.export.graph import BUILTIN, GraphError, SymbolGraph, gluoncv_tail

log = logging.getLogger(__name__)

NEO_INPUT = "neo-input.tar.gz"
#: The file names inside ``neo-input.tar.gz``.
NEO_SYMBOL = "model-symbol.json"
NEO_PARAMS = "model-0000.params"


def builtin_deploy_symbol(graph: SymbolGraph, internals: Any) -> Any:
    """The built-in algorithm's detection output with softmax in place of its SoftmaxOutput loss layer."""
    import mxnet as mx

    detection = graph.first("_contrib_MultiBoxDetection")
    scores = graph.input_node(detection, 0)
    if scores.op == "SoftmaxOutput":
        if scores.attrs.get("multi_output", "False") != "True":
            raise GraphError(f"{graph.path}: {scores.name} is a SoftmaxOutput without multi_output; not an SSD")
        class_probs = mx.sym.softmax(graph.output_symbol(internals, graph.input_node(scores, 0)), axis=1)
    elif scores.op in ("softmax", "SoftmaxActivation"):
        class_probs = graph.output_symbol(internals, scores)
    else:
        raise GraphError(f"{graph.path}: MultiBoxDetection takes its scores from a {scores.op}, not a softmax")
    box_preds = graph.output_symbol(internals, graph.input_node(detection, 1))
    anchors = graph.output_symbol(internals, graph.input_node(detection, 2))
    return mx.sym.contrib.MultiBoxDetection(class_probs, box_preds, anchors, name="detection", **detection.attrs)


def gluoncv_deploy_symbol(graph: SymbolGraph, internals: Any, image_shape: int) -> Any:
    """The GluonCV SSD with its tail rebuilt on the minimal operator set (see the module docstring)."""
    import mxnet as mx
    from gluoncv.nn.coder import MultiPerClassDecoder, NormalizedBoxCenterDecoder

    tail = gluoncv_tail(graph)
    decode = tail.box_decode
    stds = tuple(float(decode.attrs.get(f"std{i}", default)) for i, default in enumerate((0.1, 0.1, 0.2, 0.2)))
    clip = float(decode.attrs.get("clip", -1))
    decoder = NormalizedBoxCenterDecoder(stds, clip=None if clip < 0 else clip, minimal_opset=True)
    boxes = decoder(*(graph.output_symbol(internals, graph.input_node(decode, i)) for i in (0, 1)))
    class_scores = graph.output_symbol(internals, graph.input_node(tail.softmax, 0))
    _, shapes, _ = class_scores.infer_shape(data=(1, 3, image_shape, image_shape))
    num_class = int(shapes[0][-1])
    ids, scores = MultiPerClassDecoder(num_class, thresh=tail.score_threshold)(mx.sym.softmax(class_scores, axis=-1))
    per_class = [
        mx.sym.concat(ids.slice_axis(axis=-1, begin=c, end=c + 1), scores.slice_axis(axis=-1, begin=c, end=c + 1),
                      boxes, dim=-1)
        for c in range(num_class - 1)
    ]  # fmt: skip
    result = mx.sym.concat(*per_class, dim=1)
    if 0 < tail.nms_threshold < 1:
        result = mx.sym.contrib.box_nms(
            result, overlap_thresh=tail.nms_threshold, topk=tail.nms_topk, valid_thresh=tail.score_threshold,
            id_index=0, score_index=1, coord_start=2, force_suppress=tail.force_suppress,
        )  # fmt: skip
        if tail.post_nms > 0:
            result = result.slice_axis(axis=1, begin=0, end=tail.post_nms)
    return mx.sym.Group([result.slice_axis(axis=2, begin=b, end=e) for b, e in ((0, 1), (1, 2), (2, 6))])


def _image_shape(folder: Path) -> int:
    """The network's input size from ``hyperparams.json`` (300, SageMaker's default, when it names none)."""
    return int(json.loads((folder / model_artifact.HYPERPARAMS_FILE).read_text()).get("image_shape", 300))


def deployable_graph(folder: Path) -> tuple[Any, dict[str, Any], str, int]:
    """An unpacked artifact's deployable symbol, its parameters (``arg:``/``aux:`` keys), graph kind, input size."""
    import mxnet as mx

    graph = SymbolGraph(folder / model_artifact.SYMBOL_FILE)
    kind = graph.kind
    internals = mx.sym.load(str(graph.path)).get_internals()
    image_shape = _image_shape(folder)
    if kind == BUILTIN:
        symbol = builtin_deploy_symbol(graph, internals)
    else:
        symbol = gluoncv_deploy_symbol(graph, internals, image_shape)
    needed = set(symbol.list_arguments()) | set(symbol.list_auxiliary_states())
    saved = mx.nd.load(str(folder / model_artifact.PARAMS_FILE))
    params = {key: value for key, value in saved.items() if key.split(":", 1)[-1] in needed}
    fixed = graph.fixed_gammas()  # the values MXNet computes with, for compilers that read the stored ones
    params = {key: mx.nd.ones_like(value) if key.split(":", 1)[-1] in fixed else value for key, value in params.items()}
    missing = needed - {key.split(":", 1)[-1] for key in params} - {"data"}
    if missing:
        raise GraphError(f"{folder / model_artifact.PARAMS_FILE} lacks parameters of the graph: {sorted(missing)[:5]}")
    return symbol, params, kind, image_shape


def neo_input_archive(artifact_uri: str, output_uri: str) -> dict[str, Any]:
    """Write ``neo-input.tar.gz`` (the deployable graph: ``model-symbol.json`` + ``model-0000.params``) atomically.

    Returns ``{"uri", "graph", "image_shape", "operators"}``: where it is, which kind of artifact it
    came from (:data:`include.export.graph.BUILTIN` or ``GLUONCV``), the input size, the graph's operators.
    """
    import mxnet as mx

    # Both kinds of archive hold these three; the built-in algorithm's has no classes.json.
    members = (model_artifact.SYMBOL_FILE, model_artifact.PARAMS_FILE, model_artifact.HYPERPARAMS_FILE)
    with tempfile.TemporaryDirectory() as tmp:
        folder = model_artifact.unpack(artifact_uri, Path(tmp) / "model", members)
        symbol, params, kind, image_shape = deployable_graph(folder)
        symbol.save(str(Path(tmp) / NEO_SYMBOL))
        mx.nd.save(str(Path(tmp) / NEO_PARAMS), params)
        with storage.atomic_local_path(output_uri, suffix=".tar.gz") as archive, tarfile.open(archive, "w:gz") as tar:
            for name in (NEO_SYMBOL, NEO_PARAMS):
                tar.add(Path(tmp) / name, arcname=name)
    operators = sorted({n["op"] for n in json.loads(symbol.tojson())["nodes"] if n["op"] != "null"})
    log.info("Neo input %s: %s graph, %d x %d, operators %s", output_uri, kind, image_shape, image_shape, operators)
    return {"uri": storage.normalize(output_uri), "graph": kind, "image_shape": image_shape, "operators": operators}
