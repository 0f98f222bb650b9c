"""Small ONNX graph utilities for the precision passes (torch-free)."""

from __future__ import annotations

from collections import defaultdict, deque

import numpy as np

from vitdeploy.core import onnx_utils
from vitdeploy.core.deps import require


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


def float_tensor_names(model, types: dict[str, int] | None = None) -> list[str]:
    """Outputs of nodes that are float32, in graph order. ``types``: ``onnx_utils.elem_types(model)``
    (shape inference, the costly part) when the caller already has it."""
    types = onnx_utils.elem_types(model) if types is None else types
    float32 = require("onnx").TensorProto.FLOAT
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


def _scalar_value(name: str, inits: dict) -> float | None:
    t = inits.get(name)
    if t is None or int(np.prod(t.dims)) != 1:
        return None
    return float(to_array(t).reshape(-1)[0])


def fuse_erf_gelu(model) -> int:
    """Replace each exact (Erf) GELU subgraph by one ``com.microsoft`` Gelu node, in place; returns how many.

    Matches ONNX Runtime's own two forms, ``x * (1 + erf(x / sqrt2)) * 0.5`` and
    ``(0.5 * x) * (1 + erf(x / sqrt2))``. ONNX Runtime fuses these itself, except when ``x`` is a
    DequantizeLinear output: it first gives each consumer of a DQ its own copy, and the two copies
    no longer match the pattern (CeiT's LeFF, whose GELU reads a QLinearConv output).
    """
    onnx = require("onnx")
    inits = initializers(model)
    prod, cons = producers(model), consumers(model)

    def near(name: str, value: float) -> bool:
        v = _scalar_value(name, inits)
        return v is not None and abs(v - value) < 1e-4 * abs(value)

    def other(node, known: str) -> str:
        return node.input[1] if node.input[0] == known else node.input[0]

    def sole(tensor: str, op: str):
        users = cons.get(tensor, [])
        return users[0][0] if len(users) == 1 and users[0][0].op_type == op else None

    outputs = {o.name for o in model.graph.output}
    fused, dead, new = 0, set(), {}
    for div in model.graph.node:
        if div.op_type != "Div" or not near(div.input[1], 2 ** 0.5):
            continue
        x = div.input[0]
        erf = sole(div.output[0], "Erf")
        add = erf and sole(erf.output[0], "Add")
        mul = add and sole(add.output[0], "Mul")
        if not mul or not near(other(add, erf.output[0]), 1.0):
            continue
        factor = other(mul, add.output[0])
        half = prod.get(factor)
        if factor == x:  # x * (1 + erf) then * 0.5
            last = sole(mul.output[0], "Mul")
            if last is None or not near(other(last, mul.output[0]), 0.5):
                continue
            pieces = [div, erf, add, mul, last]
        elif half is not None and half.op_type == "Mul" and x in half.input and near(other(half, x), 0.5) \
                and len(cons.get(factor, [])) == 1:  # (0.5 * x) * (1 + erf)
            pieces, last = [half, div, erf, add, mul], mul
        else:
            continue
        if any(n.output[0] in outputs for n in pieces if n is not last):
            continue
        dead.update(id(n) for n in pieces)
        new[id(last)] = onnx.helper.make_node("Gelu", [x], [last.output[0]], name=f"{div.name}/Gelu",
                                               domain="com.microsoft")
        fused += 1
    if fused:
        nodes = [new.get(id(n), n) for n in model.graph.node if id(n) not in dead or id(n) in new]
        del model.graph.node[:]
        model.graph.node.extend(nodes)
        if not any(o.domain == "com.microsoft" for o in model.opset_import):
            model.opset_import.append(onnx.helper.make_opsetid("com.microsoft", 1))
    return fused
