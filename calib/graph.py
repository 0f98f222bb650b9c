"""Small ONNX graph utilities for the precision passes (torch-free)."""

from __future__ import annotations

from collections import defaultdict, deque

import numpy as np

from vitdeploy import onnx_utils
from vitdeploy.deps import require


def initializers(model) -> dict:
    return {i.name: i for i in model.graph.initializer}


def consumers(model) -> dict[str, list[tuple[object, int]]]:
    """tensor name -> [(node, input index)]"""
    out: dict[str, list[tuple[object, int]]] = defaultdict(list)
    for node in model.graph.node:
        for i, name in enumerate(node.input):
            if name:
                out[name].append((node, i))
    return out


def producers(model) -> dict[str, object]:
    return {o: n for n in model.graph.node for o in n.output}


def to_array(tensor) -> np.ndarray:
    onnx = require("onnx")
    return onnx.numpy_helper.to_array(tensor)


def from_array(arr: np.ndarray, name: str):
    onnx = require("onnx")
    return onnx.numpy_helper.from_array(arr, name)


def toposort(model) -> None:
    """Reorder graph nodes topologically in place (after appending nodes)."""
    graph = model.graph
    available = {i.name for i in graph.input} | {i.name for i in graph.initializer} | {""}
    nodes = list(graph.node)
    need = [len({x for x in n.input if x not in available}) for n in nodes]  # unique: Mul(x, x) waits once
    waiting: dict[str, list[int]] = defaultdict(list)
    for idx, n in enumerate(nodes):
        for x in set(n.input):
            if x not in available:
                waiting[x].append(idx)
    ready = deque(i for i, k in enumerate(need) if k == 0)
    order = []
    produced = set()
    while ready:
        i = ready.popleft()
        order.append(nodes[i])
        for o in nodes[i].output:
            if o in produced:
                continue
            produced.add(o)
            for j in waiting.get(o, ()):
                need[j] -= 1
                if need[j] == 0:
                    ready.append(j)
    if len(order) != len(nodes):
        raise ValueError("graph has a cycle or a dangling input")
    del graph.node[:]
    graph.node.extend(order)


def float_tensor_names(model) -> list[str]:
    """Outputs of nodes that are float32 (from shape inference), in graph order."""
    types, float32 = onnx_utils.elem_types(model), require("onnx").TensorProto.FLOAT
    return [o for n in model.graph.node for o in n.output if types.get(o) == float32]


def constants_to_initializers(model) -> int:
    """Move tensor-valued Constant nodes into initializers (in place); returns how many.

    onnxsim leaves some folded weights (e.g. BatchNorm folded into a depthwise conv) as Constant
    nodes; the precision passes must see them as weights, not activations.
    """
    onnx = require("onnx")
    keep, moved = [], 0
    for node in model.graph.node:
        if node.op_type == "Constant" and node.domain in ("", "ai.onnx") and len(node.attribute) == 1 \
                and node.attribute[0].name == "value":
            tensor = onnx.TensorProto()
            tensor.CopyFrom(node.attribute[0].t)
            tensor.name = node.output[0]
            model.graph.initializer.append(tensor)
            moved += 1
        else:
            keep.append(node)
    if moved:
        del model.graph.node[:]
        model.graph.node.extend(keep)
    return moved


def name_unnamed_nodes(model) -> int:
    """Give every unnamed node a unique name (in place); returns how many were named.

    The precision passes keep nodes FP32 or leave them float by name, so a hand-exported
    graph with nameless nodes must not have them all share the name "".
    """
    taken = {n.name for n in model.graph.node if n.name}
    named = 0
    for i, node in enumerate(model.graph.node):
        if not node.name:
            name = f"{node.op_type}_{i}"
            while name in taken:
                name += "_"
            node.name = name
            taken.add(name)
            named += 1
    return named
