"""What a model artifact's MXNet symbol is, read from its JSON: the graph kind and the SSD tail's settings.

Both exports start here: ONNX cuts the local trainer's inference graph before its decoder and NMS,
Neo needs a deployable inference graph of either kind of artifact. Nodes are found by operator, not
by name, so a graph exported by another GluonCV version (other name prefixes) reads the same.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: Operators that only a training graph holds: the SageMaker built-in algorithm's ``model_algo_1-symbol.json``
#: is the training symbol of MXNet's ``example/ssd`` (targets, losses and a detection output wrapped in MakeLoss).
TRAINING_OPERATORS = frozenset({"_contrib_MultiBoxTarget", "SoftmaxOutput", "MakeLoss", "smooth_l1"})

GLUONCV = "gluoncv-inference"
BUILTIN = "builtin-training"


class GraphError(ValueError):
    """A symbol that is not a graph this pipeline knows how to export."""


@dataclass(frozen=True)
class Node:
    """One node of a symbol's JSON: its index, operator, name, attributes and input entries."""

    index: int
    op: str
    name: str
    attrs: dict[str, str]
    inputs: list[list[int]]


class SymbolGraph:
    """The nodes of an MXNet ``*-symbol.json`` and lookups by operator."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            document = json.loads(path.read_text())
            self.nodes = [
                Node(i, n["op"], n["name"], dict(n.get("attrs") or {}), [list(e) for e in n.get("inputs", [])])
                for i, n in enumerate(document["nodes"])
            ]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise GraphError(f"{path}: not an MXNet symbol file ({exc})") from None

    @property
    def operators(self) -> set[str]:
        return {n.op for n in self.nodes if n.op != "null"}

    @property
    def kind(self) -> str:
        """:data:`GLUONCV` (the local trainer's inference graph) or :data:`BUILTIN` (the built-in algorithm's)."""
        ops = self.operators
        if ops & TRAINING_OPERATORS and "_contrib_MultiBoxDetection" in ops:
            return BUILTIN
        if {"softmax", "_contrib_box_decode"} <= ops:
            return GLUONCV
        raise GraphError(
            f"{self.path}: neither a GluonCV SSD inference graph (softmax + box_decode) nor the built-in "
            f"algorithm's training graph (MultiBoxDetection + losses); operators: {', '.join(sorted(ops))}"
        )

    def first(self, op: str, after: int = -1) -> Node:
        """The first node of operator ``op`` (after index ``after``); ``GraphError`` when there is none."""
        for node in self.nodes[after + 1 :]:
            if node.op == op:
                return node
        raise GraphError(f"{self.path}: no {op} node" + (f" after {self.nodes[after].name}" if after >= 0 else ""))

    def consumers(self, node: Node) -> list[Node]:
        return [n for n in self.nodes if any(entry[0] == node.index for entry in n.inputs)]

    def input_node(self, node: Node, position: int) -> Node:
        return self.nodes[node.inputs[position][0]]

    def fixed_gammas(self) -> set[str]:
        """The BatchNorm scale parameters MXNet ignores: ``fix_gamma`` true, the operator's default.

        GluonCV's symbol-built layers (the SSD's extra feature layers) leave the attribute out, so
        MXNet computes them with a scale of 1 whatever the stored value, which training with weight
        decay moves away from 1. mxnet.onnx reads the stored value (0.5 % off on a trained model's
        scores, 0.6 px on its boxes), so exports are given ones for these.
        """
        return {
            self.input_node(n, 1).name
            for n in self.nodes
            if n.op == "BatchNorm" and n.attrs.get("fix_gamma", "True") == "True"
        }

    def output_symbol(self, internals: Any, node: Node) -> Any:
        """``node``'s (first) output as a symbol, from the loaded symbol's ``get_internals()``."""
        names = internals.list_outputs()
        for candidate in (node.name, f"{node.name}_output", f"{node.name}_output0"):
            if candidate in names:
                return internals[names.index(candidate)]
        raise GraphError(f"{self.path}: no output of node {node.name} among the symbol's internals")


@dataclass(frozen=True)
class SsdTail:
    """Where a GluonCV SSD inference graph's tail starts, and the settings of its decoder and NMS."""

    softmax: Node
    box_decode: Node
    score_threshold: float
    nms_threshold: float
    nms_topk: int
    post_nms: int
    force_suppress: bool


def gluoncv_tail(graph: SymbolGraph) -> SsdTail:
    """The tail of GluonCV's SSD (``hybrid_forward``'s inference branch), read from its nodes.

    softmax -> MultiPerClassDecoder (``_greater_scalar`` by its threshold) -> box_nms (overlap, topk,
    valid threshold) -> ``slice_axis`` to ``post_nms`` rows. Without a box_nms node NMS was off.
    """
    softmax = graph.first("softmax")
    threshold = float(graph.first("_greater_scalar", after=softmax.index).attrs["scalar"])
    try:
        nms = graph.first("_contrib_box_nms")
    except GraphError:
        return SsdTail(softmax, graph.first("_contrib_box_decode"), threshold, 0.0, -1, 0, False)
    # box_nms drops rows not above its valid_thresh: the stricter of the two thresholds is the one that counts.
    threshold = max(threshold, float(nms.attrs.get("valid_thresh", 0)))
    cut = next((n for n in graph.consumers(nms) if n.op == "slice_axis" and n.attrs.get("axis") == "1"), None)
    return SsdTail(
        softmax=softmax,
        box_decode=graph.first("_contrib_box_decode"),
        score_threshold=threshold,
        nms_threshold=float(nms.attrs.get("overlap_thresh", 0.5)),
        nms_topk=int(nms.attrs.get("topk", -1)),
        post_nms=int(cut.attrs["end"]) if cut is not None and cut.attrs.get("end") not in (None, "None") else 0,
        force_suppress=nms.attrs.get("force_suppress", "False") == "True",
    )
