"""Explicit INT8: ViT-aware Q/DQ placement and writing.

Only the inputs of MatMul / Gemm / Conv are quantized (weights per output channel, symmetric;
activations per tensor). LayerNorm, Softmax, GELU, residual Adds, ConViT's gates and
positional mixing and SReT's learnable scalars stay float: quantizing them is what wrecks ViTs
(FACTS: cosine 0.57-0.92 with ONNX Runtime's default op list, 0.991-0.9998 with this one).

Targets:
- ``trt``: symmetric signed INT8 activations (zero point 0) and Q->DQ on float weights: the
  explicit-quantization form every TensorRT from 8.5 to 11 builds.
- ``ort-cpu``: asymmetric UINT8 activations and pre-quantized INT8 weights with DQ only: the
  form ONNX Runtime's CPU kernels run faster than FP32.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field

import numpy as np

from vitdeploy.calib.graph import from_array, initializers, to_array, toposort
from vitdeploy.deps import require
from vitdeploy.errors import UsageError

QUANTIZABLE_OPS = ("MatMul", "Gemm", "Conv")
TARGETS = ("trt", "ort-cpu")


@dataclass
class QuantInput:
    node: str
    op: str
    index: int
    tensor: str
    is_weight: bool
    axis: int | None = None  # per-channel axis for weights


@dataclass
class QuantPlan:
    inputs: list[QuantInput] = field(default_factory=list)
    skipped_nodes: list[tuple[str, str]] = field(default_factory=list)  # (node, why)

    @property
    def activations(self) -> list[str]:
        seen: dict[str, None] = {}
        for q in self.inputs:
            if not q.is_weight:
                seen.setdefault(q.tensor)
        return list(seen)

    def node_outputs(self, model) -> list[str]:
        """First outputs of the quantized weight layers (ONNX Runtime CPU fuses DQ -> op -> Q into one
        INT8 kernel). Attention matmuls are left out: their scores feed Softmax, whose peaks a
        clipped INT8 range flattens."""
        names = {q.node for q in self.inputs if q.is_weight}
        graph_outputs = {o.name for o in model.graph.output}  # the model's own outputs stay float
        return [n.output[0] for n in model.graph.node if n.name in names and n.output[0] not in graph_outputs]

    @property
    def weights(self) -> list[str]:
        seen: dict[str, None] = {}
        for q in self.inputs:
            if q.is_weight:
                seen.setdefault(q.tensor)
        return list(seen)


def _weight_axis(op: str, node, index: int, ndim: int) -> int | None:
    if op == "Conv" and index == 1:
        return 0
    if op == "MatMul" and index == 1 and ndim >= 2:
        return ndim - 1
    if op == "Gemm" and index == 1:
        trans_b = next((a.i for a in node.attribute if a.name == "transB"), 0)
        return 0 if trans_b else 1
    return None


def _is_depthwise(node, inits) -> bool:
    group = next((a.i for a in node.attribute if a.name == "group"), 1)
    weight = inits.get(node.input[1]) if len(node.input) > 1 else None
    return group > 1 and weight is not None and weight.dims[1] == 1


def _derived_from(tensor: str, prod: dict, source: str, hops: int = 6, require_arithmetic: bool = False) -> bool:
    """True when ``tensor`` comes from a ``source`` op (Softmax, Exp) through reshapes and elementwise
    arithmetic within ``hops`` nodes; with ``require_arithmetic`` a plain ``source`` output does not count."""
    passthrough = {"Reshape", "Transpose", "Identity", "Squeeze", "Unsqueeze", "Cast"}
    arithmetic = {"Mul", "Add", "Sub", "Div", "ReduceSum", "MatMul"}
    frontier, seen_arith = [tensor], False
    for _ in range(hops):
        nxt = []
        for t in frontier:
            node = prod.get(t)
            if node is None:
                continue
            if node.op_type == source:
                if seen_arith or not require_arithmetic:
                    return True
                continue
            if node.op_type in arithmetic:
                seen_arith = True
            if node.op_type in arithmetic or node.op_type in passthrough:
                nxt.extend(x for x in node.input if x)
        frontier = nxt
    return False


def plan(model, exclude: tuple[str, ...] = (), quantize_attention: bool = True,
         quantize_depthwise: bool = False, float_mixed_attention: bool = False,
         float_input_layer: bool = False, float_kernel_attention: bool = False) -> QuantPlan:
    """Which inputs get Q/DQ. ``exclude`` holds op types, node names or node-name globs
    (``*/attn/MatMul_1``); one that matches nothing is an error."""
    graph = model.graph
    op_types = {n.op_type for n in graph.node}
    names = {n.name for n in graph.node}

    def excluded(node) -> bool:
        return any(node.op_type == e or fnmatch.fnmatchcase(node.name, e) for e in exclude)

    unknown = [e for e in exclude if e not in op_types and not any(fnmatch.fnmatchcase(n, e) for n in names)]
    if unknown:
        raise UsageError(f"--exclude {', '.join(unknown)}: neither an op type nor a node name in this model "
                         f"(op types here: {', '.join(sorted(op_types & set(QUANTIZABLE_OPS)))})")
    inits = initializers(model)
    from vitdeploy.calib.graph import producers

    prod = producers(model)
    graph_inputs = {i.name for i in graph.input}
    result = QuantPlan()
    for node in graph.node:
        if node.op_type not in QUANTIZABLE_OPS:
            continue
        if excluded(node):
            result.skipped_nodes.append((node.name, "excluded"))
            continue
        if float_input_layer and node.input[0] in graph_inputs:
            result.skipped_nodes.append((node.name, "layer reading the model input left in float (family hint)"))
            continue
        if node.op_type == "Conv" and _is_depthwise(node, inits) and not quantize_depthwise:
            # One per-tensor activation scale cannot serve channels whose ranges differ by orders of
            # magnitude, and a depthwise conv is cheap: INT8 there cost CeiT/SReT 0.02-0.1 cosine.
            result.skipped_nodes.append((node.name, "depthwise conv left in float"))
            continue
        data_inputs = list(node.input[:2])
        weight_flags = [x in inits and inits[x].data_type == 1 and len(inits[x].dims) >= 2 for x in data_inputs]
        if node.op_type == "MatMul" and not any(weight_flags):
            if not quantize_attention:
                result.skipped_nodes.append((node.name, "attention matmul left unquantized"))
                continue
            if float_mixed_attention and _derived_from(node.input[0], prod, "Softmax", require_arithmetic=True):
                result.skipped_nodes.append((node.name, "blended attention probabilities (e.g. ConViT GPSA) left in float"))
                continue
            if float_kernel_attention and any(_derived_from(x, prod, "Exp") for x in data_inputs):
                result.skipped_nodes.append((node.name, "kernel (Performer) attention on exp features left in float"))
                continue
        if any(x in inits and not w for x, w in zip(data_inputs, weight_flags)):
            result.skipped_nodes.append((node.name, "constant non-weight input"))
            continue
        for i, (x, w) in enumerate(zip(data_inputs, weight_flags)):
            axis = _weight_axis(node.op_type, node, i, len(inits[x].dims)) if w else None
            result.inputs.append(QuantInput(node.name, node.op_type, i, x, w, axis))
    return result


def softmax_outputs(model, tensors: list[str]) -> list[str]:
    """The tensors among ``tensors`` that are Softmax outputs (possibly through reshapes/transposes)."""
    from vitdeploy.calib.graph import producers

    prod = producers(model)
    passthrough = {"Reshape", "Transpose", "Identity", "Squeeze", "Unsqueeze", "Cast"}
    result = []
    for t in tensors:
        node = prod.get(t)
        while node is not None and node.op_type in passthrough:
            node = prod.get(node.input[0])
        if node is not None and node.op_type == "Softmax":
            result.append(t)
    return result


def _scalar(value, dtype, name):
    return from_array(np.asarray(value, dtype=dtype), name)


def activation_qparams(rng, target: str) -> tuple[float, int]:
    """(scale, zero point) from a calibrated range: symmetric amax (trt) or [lo, hi] (ort-cpu)."""
    if target == "trt":
        amax = float(rng)
        return (amax / 127.0 if amax > 0 else 1.0 / 127.0), 0
    lo, hi = rng
    scale = (hi - lo) / 255.0 if hi > lo else 1.0 / 255.0
    zp = int(np.clip(np.round(-lo / scale), 0, 255))
    return float(scale), zp


def write(model, qplan: QuantPlan, act_ranges: dict, target: str, output_ranges: dict | None = None):
    """A copy of ``model`` with Q/DQ inserted per ``qplan``; ``act_ranges`` maps tensor -> amax or (lo, hi).

    ``output_ranges`` (ort-cpu): Q/DQ also on the outputs of the quantized nodes, so ONNX Runtime
    runs QLinearMatMul/QLinearConv instead of dequantizing weights at every call. TensorRT wants
    Q/DQ on inputs only and fuses the rest itself.
    """
    onnx = require("onnx")
    if target not in TARGETS:
        raise UsageError(f"unknown quantization target {target!r}; choose from {', '.join(TARGETS)}")
    m = onnx.ModelProto()
    m.CopyFrom(model)
    graph = m.graph
    inits = initializers(m)
    by_node = {n.name: n for n in graph.node}
    act_dtype, act_np = (onnx.TensorProto.INT8, np.int8) if target == "trt" else (onnx.TensorProto.UINT8, np.uint8)
    new_nodes, new_inits = [], []
    replaced: dict[str, str] = {}

    for t in qplan.activations:
        scale, zp = activation_qparams(act_ranges[t], target)
        s_name, z_name = f"{t}__scale", f"{t}__zero_point"
        new_inits += [_scalar(scale, np.float32, s_name), _scalar(zp, act_np, z_name)]
        new_nodes.append(onnx.helper.make_node("QuantizeLinear", [t, s_name, z_name], [f"{t}__q"], name=f"{t}__Q"))
        new_nodes.append(onnx.helper.make_node("DequantizeLinear", [f"{t}__q", s_name, z_name], [f"{t}__dq"], name=f"{t}__DQ"))
        replaced[t] = f"{t}__dq"

    axes = {q.tensor: q.axis for q in qplan.inputs if q.is_weight}
    for w in qplan.weights:
        arr = to_array(inits[w]).astype(np.float32)
        axis = axes[w]
        reduce_axes = tuple(i for i in range(arr.ndim) if i != axis)
        amax = np.abs(arr).max(axis=reduce_axes)
        # ort-cpu: 7-bit weights. ONNX Runtime's x86 U8S8 kernels (AVX2 vpmaddubsw) add pairs of
        # u8*s8 products in int16 and saturate with full 8-bit weights (DeiT-S cosine 0.96 -> see tests).
        qmax = 127.0 if target == "trt" else 63.0
        scale = np.where(amax > 0, amax / qmax, 1.0).astype(np.float32)
        s_name, z_name = f"{w}__wscale", f"{w}__wzero_point"
        new_inits += [from_array(scale, s_name), from_array(np.zeros_like(scale, dtype=np.int8), z_name)]
        if target == "trt":
            new_nodes.append(onnx.helper.make_node("QuantizeLinear", [w, s_name, z_name], [f"{w}__q"], name=f"{w}__Q", axis=axis))
            src = f"{w}__q"
        else:  # pre-quantized INT8 weights, DQ only
            shape = [1] * arr.ndim
            shape[axis] = -1
            q = np.clip(np.round(arr / scale.reshape(shape)), -qmax, qmax).astype(np.int8)
            src = f"{w}__int8"
            new_inits.append(from_array(q, src))
        new_nodes.append(onnx.helper.make_node("DequantizeLinear", [src, s_name, z_name], [f"{w}__dq"], name=f"{w}__DQ", axis=axis))
        replaced[w] = f"{w}__dq"

    for q in qplan.inputs:
        node = by_node[q.node]
        node.input[q.index] = replaced[q.tensor]
    for t, rng in (output_ranges or {}).items():
        producer = next(n for n in graph.node if t in n.output)
        scale, zp = activation_qparams(rng, target)
        raw, s_name, z_name = f"{t}__float", f"{t}__oscale", f"{t}__ozero_point"
        producer.output[list(producer.output).index(t)] = raw
        new_inits += [_scalar(scale, np.float32, s_name), _scalar(zp, act_np, z_name)]
        new_nodes.append(onnx.helper.make_node("QuantizeLinear", [raw, s_name, z_name], [f"{t}__oq"], name=f"{t}__OQ"))
        new_nodes.append(onnx.helper.make_node("DequantizeLinear", [f"{t}__oq", s_name, z_name], [t], name=f"{t}__ODQ"))
    if target == "ort-cpu":  # float copies of quantized weights are dead unless something else reads them
        still_used = {x for n in list(graph.node) + new_nodes for x in n.input}
        keep = [i for i in graph.initializer if i.name in still_used or i.name not in qplan.weights]
        del graph.initializer[:]
        graph.initializer.extend(keep)
    graph.initializer.extend(new_inits)
    graph.node.extend(new_nodes)
    toposort(m)
    return m
