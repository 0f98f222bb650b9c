"""Explicit INT8: ViT-aware Q/DQ placement and writing.

Only the inputs of MatMul / Gemm / Conv are quantized (weights per output channel, symmetric;
activations per tensor). LayerNorm, Softmax, GELU, residual Adds, ConViT's gates and
positional mixing and SReT's learnable scalars stay float: quantizing them is what wrecks ViTs
(FACTS: cosine 0.57-0.92 with ONNX Runtime's default op list, 0.991-0.9998 with this one).

Targets:
- ``trt``: symmetric signed INT8 activations (zero point 0) and Q->DQ on float weights: the
  explicit-quantization form every TensorRT from 8.5 to 11 builds.
- ``ort-cpu``: asymmetric UINT8 activations and pre-quantized INT8 weights with DQ only, laid out
  for ONNX Runtime's CPU kernels as below; the float parts stay FP32.

The ort-cpu layout, each rule measured with ONNX Runtime's profiler (1 thread, batch 8, AVX-512
VNNI Xeon, min per node over 6-8 runs, the five families' smallest variants):
- linear layers keep a float output: DQ -> Gemm -> float becomes one QGemm with a float output,
  DQ -> MatMul -> float one MatMulIntegerToFloat (rewriting such a MatMul as a 2-D Gemm for QGemm
  measured no faster: T2T-ViT-7 25.5 vs 25.4 ms). Q/DQ on their outputs (QLinearMatMul, QGemm to
  UINT8) cost SReT-T 16 ms of dequantizing per batch and broke ONNX Runtime's GELU fusion (Div,
  Erf, Add, Mul left apart: +25 ms).
- a Gemm's bias is written INT32 at input scale x weight scale behind a DQ: with a float bias
  ONNX Runtime does not fuse the Gemm at all and dequantizes its weight at every call (SReT-T:
  89 ms of float Gemm instead of 30 ms of QGemm).
- Conv outputs keep Q/DQ: ONNX Runtime fuses a quantized Conv only into QLinearConv (UINT8 out).
  A GELU reading such an output is written as one com.microsoft Gelu: ONNX Runtime gives each
  consumer of a DQ its own copy first, and its GELU fusion then no longer matches (CeiT-T LeFF:
  Div/Erf/Add/Mul 27 ms instead of 8 ms of Gelu).
- attention matmuls (QK^T, PV: no weight) stay float: ONNX Runtime's kernels for two quantized
  activations ran no faster than FP32 (SReT-T 26.7 vs 25.4 ms; its largest QK^T 8.6 vs 4.5 ms)
  and the probabilities and q/k/v then need Quantize nodes of their own.
- a layer reading a MaxPool output stays float: ONNX Runtime moves the Q above the MaxPool and
  pools on UINT8, 24x slower than its float NCHWc pool (CeiT-T stem: 39.8 vs 1.7 ms).
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field

import numpy as np

from vitdeploy.calib.graph import from_array, fuse_erf_gelu, initializers, to_array, toposort
from vitdeploy.core.deps import require
from vitdeploy.core.precision import QuantPolicy
from vitdeploy.core.errors import UsageError

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
        """The outputs the ort-cpu form quantizes too: those of its quantized Convs (ONNX Runtime fuses
        DQ -> Conv -> Q into QLinearConv). Linear layers keep float outputs (module docstring);
        the model's own outputs stay float."""
        narrowed = ort_cpu_plan(model, self)
        names = {q.node for q in narrowed.inputs if q.is_weight and q.op == "Conv"}
        graph_outputs = {o.name for o in model.graph.output}
        relu_fused = _relu_requantized(model, narrowed)
        return [n.output[0] for n in model.graph.node
                if n.name in names and n.output[0] not in graph_outputs and n.output[0] not in relu_fused]

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


def plan(model, policy: QuantPolicy = QuantPolicy()) -> QuantPlan:
    """Which inputs get Q/DQ under ``policy`` (the user's choices and the family's hints).
    ``policy.exclude`` holds op types, node names or node-name globs (``*/attn/MatMul_1``); one
    that matches nothing is a UsageError."""
    exclude, hints = policy.exclude, policy.hints
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
        if hints.float_input_layer and node.input[0] in graph_inputs:
            result.skipped_nodes.append((node.name, "layer reading the model input left in float (family hint)"))
            continue
        if node.op_type == "Conv" and _is_depthwise(node, inits) and not policy.quantize_depthwise:
            # One per-tensor activation scale cannot serve channels whose ranges differ by orders of
            # magnitude, and a depthwise conv is cheap: INT8 there cost CeiT/SReT 0.02-0.1 cosine.
            result.skipped_nodes.append((node.name, "depthwise conv left in float"))
            continue
        data_inputs = list(node.input[:2])
        weight_flags = [x in inits and inits[x].data_type == 1 and len(inits[x].dims) >= 2 for x in data_inputs]
        if node.op_type == "MatMul" and not any(weight_flags):
            if not policy.quantize_attention:
                result.skipped_nodes.append((node.name, "attention matmul left unquantized"))
                continue
            if hints.float_mixed_attention and _derived_from(node.input[0], prod, "Softmax", require_arithmetic=True):
                result.skipped_nodes.append((node.name, "blended attention probabilities (e.g. ConViT GPSA) left in float"))
                continue
            if hints.float_kernel_attention and any(_derived_from(x, prod, "Exp") for x in data_inputs):
                result.skipped_nodes.append((node.name, "kernel (Performer) attention on exp features left in float"))
                continue
        if any(x in inits and not w for x, w in zip(data_inputs, weight_flags)):
            result.skipped_nodes.append((node.name, "constant non-weight input"))
            continue
        for i, (x, w) in enumerate(zip(data_inputs, weight_flags)):
            axis = _weight_axis(node.op_type, node, i, len(inits[x].dims)) if w else None
            result.inputs.append(QuantInput(node.name, node.op_type, i, x, w, axis))
    return result


def ort_cpu_plan(model, qplan: QuantPlan) -> QuantPlan:
    """The part of ``qplan`` the ort-cpu form quantizes: attention matmuls and layers reading a
    MaxPool output are left float there (why: the module docstring), each named in ``skipped_nodes``."""
    from vitdeploy.calib.graph import producers

    prod = producers(model)
    weighted = {q.node for q in qplan.inputs if q.is_weight}
    drop: dict[str, str] = {}
    for q in qplan.inputs:
        if q.node in drop:
            continue
        if q.op == "MatMul" and q.node not in weighted:
            drop[q.node] = "attention matmul left float on ort-cpu (ONNX Runtime's integer kernels are no faster there)"
        elif not q.is_weight and _produced_by(q.tensor, prod, "MaxPool"):
            drop[q.node] = "reads a MaxPool output: left float on ort-cpu (ONNX Runtime would pool on UINT8, slowly)"
    return QuantPlan([q for q in qplan.inputs if q.node not in drop], qplan.skipped_nodes + list(drop.items()))


def _relu_requantized(model, qplan: QuantPlan) -> set[str]:
    """Conv outputs read only by a Relu whose output is read only as quantized input of planned
    layers: that input's Q (zero point 0) follows the Relu, and ONNX Runtime fuses Conv -> Relu -> Q
    into one QLinearConv, so the Conv output needs no Q/DQ of its own (SReT-T stem: 3 ms)."""
    from vitdeploy.calib.graph import consumers

    cons = consumers(model)
    graph_outputs = {o.name for o in model.graph.output}
    quantized_reads: dict[str, int] = {}
    for q in qplan.inputs:
        if not q.is_weight:
            quantized_reads[q.tensor] = quantized_reads.get(q.tensor, 0) + 1
    result = set()
    for n in model.graph.node:
        if n.op_type != "Conv" or n.output[0] in graph_outputs:
            continue
        users = cons.get(n.output[0], [])
        if len(users) != 1 or users[0][0].op_type != "Relu":
            continue
        r = users[0][0].output[0]
        if r not in graph_outputs and r in quantized_reads and quantized_reads[r] == len(cons.get(r, [])):
            result.add(n.output[0])
    return result


def _produced_by(tensor: str, prod: dict, op_type: str) -> bool:
    """True when ``tensor`` is an ``op_type`` output, possibly through reshapes/transposes."""
    node = prod.get(tensor)
    while node is not None and node.op_type in ("Reshape", "Transpose", "Identity", "Squeeze", "Unsqueeze", "Flatten"):
        node = prod.get(node.input[0])
    return node is not None and node.op_type == op_type


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

    ``trt``: Q/DQ on the inputs of the planned layers only (TensorRT fuses the rest itself).
    ``ort-cpu``: the layout in the module docstring; ``output_ranges`` holds the ranges of the tensors
    ``qplan.node_outputs`` named (the quantized Convs' outputs). For ort-cpu, ``qplan`` is narrowed in
    place to what was quantized (``ort_cpu_plan``), so a manifest made from it afterwards is right.
    """
    if target not in TARGETS:
        raise UsageError(f"unknown Q/DQ form {target!r} (--qdq-form); choose from {', '.join(TARGETS)}")
    if target == "ort-cpu":
        return _write_ort_cpu(model, qplan, act_ranges, output_ranges or {})
    onnx = require("onnx")
    m = onnx.ModelProto()
    m.CopyFrom(model)
    graph = m.graph
    inits = initializers(m)
    by_node = {n.name: n for n in graph.node}
    new_nodes, new_inits, replaced, _ = _activation_qdq(qplan, act_ranges, target)

    axes = {q.tensor: q.axis for q in qplan.inputs if q.is_weight}
    for w in qplan.weights:
        axis = axes[w]
        scale = _weight_scale(to_array(inits[w]).astype(np.float32), axis, 127.0)
        s_name, z_name = f"{w}__wscale", f"{w}__wzero_point"
        new_inits += [from_array(scale, s_name), from_array(np.zeros_like(scale, dtype=np.int8), z_name)]
        new_nodes.append(onnx.helper.make_node("QuantizeLinear", [w, s_name, z_name], [f"{w}__q"], name=f"{w}__Q", axis=axis))
        new_nodes.append(onnx.helper.make_node("DequantizeLinear", [f"{w}__q", s_name, z_name], [f"{w}__dq"], name=f"{w}__DQ", axis=axis))
        replaced[w] = f"{w}__dq"

    for q in qplan.inputs:
        node = by_node[q.node]
        node.input[q.index] = replaced[q.tensor]
    for t, rng in (output_ranges or {}).items():
        new_nodes += _output_qdq(graph, new_inits, t, rng, target)
    graph.initializer.extend(new_inits)
    graph.node.extend(new_nodes)
    toposort(m)
    return m


def _activation_qdq(qplan: QuantPlan, act_ranges: dict, target: str) -> tuple[list, list, dict[str, str], dict[str, float]]:
    """Q -> DQ for every planned activation: (nodes, initializers, tensor -> its DQ output, tensor ->
    scale). Signed INT8 with zero point 0 for ``trt``, UINT8 with its zero point for ``ort-cpu``."""
    helper = require("onnx").helper
    zp_dtype = np.int8 if target == "trt" else np.uint8
    nodes, inits, replaced, scales = [], [], {}, {}
    for t in qplan.activations:
        scale, zp = activation_qparams(act_ranges[t], target)
        scales[t] = scale
        s_name, z_name = f"{t}__scale", f"{t}__zero_point"
        inits += [_scalar(scale, np.float32, s_name), _scalar(zp, zp_dtype, z_name)]
        nodes.append(helper.make_node("QuantizeLinear", [t, s_name, z_name], [f"{t}__q"], name=f"{t}__Q"))
        nodes.append(helper.make_node("DequantizeLinear", [f"{t}__q", s_name, z_name], [f"{t}__dq"], name=f"{t}__DQ"))
        replaced[t] = f"{t}__dq"
    return nodes, inits, replaced, scales


def _weight_scale(arr: np.ndarray, axis: int | None, qmax: float) -> np.ndarray:
    """Symmetric per-channel (``axis``) or per-tensor scale of a float weight."""
    reduce_axes = tuple(i for i in range(arr.ndim) if i != axis)
    amax = np.abs(arr).max(axis=reduce_axes)
    return np.where(amax > 0, amax / qmax, 1.0).astype(np.float32)


def _output_qdq(graph, new_inits: list, t: str, rng, target: str) -> list:
    """Q -> DQ on the output ``t`` of its producer (the producer now writes ``t__float``)."""
    onnx = require("onnx")
    producer = next(n for n in graph.node if t in n.output)
    scale, zp = activation_qparams(rng, target)
    raw, s_name, z_name = f"{t}__float", f"{t}__oscale", f"{t}__ozero_point"
    producer.output[list(producer.output).index(t)] = raw
    new_inits += [_scalar(scale, np.float32, s_name), _scalar(zp, np.int8 if target == "trt" else np.uint8, z_name)]
    return [onnx.helper.make_node("QuantizeLinear", [raw, s_name, z_name], [f"{t}__oq"], name=f"{t}__OQ"),
            onnx.helper.make_node("DequantizeLinear", [f"{t}__oq", s_name, z_name], [t], name=f"{t}__ODQ")]


def _attr(node, name: str, default):
    onnx = require("onnx")
    return next((onnx.helper.get_attribute_value(a) for a in node.attribute if a.name == name), default)


# ort-cpu: 7-bit weights. ONNX Runtime's x86 U8S8 kernels without VNNI (AVX2 vpmaddubsw) add pairs of
# u8*s8 products in int16 and saturate with full 8-bit weights (DeiT-S cosine 0.96 -> see tests).
ORT_CPU_WEIGHT_QMAX = 63.0
_INT32_MAX = 2**31 - 1


def _write_ort_cpu(model, qplan: QuantPlan, act_ranges: dict, output_ranges: dict):
    """The ort-cpu form (module docstring): DQ on the inputs (and INT32 bias) of the quantized linear
    layers, whose outputs stay float; Q/DQ on the quantized Convs' outputs."""
    onnx = require("onnx")
    helper = onnx.helper
    narrowed = ort_cpu_plan(model, qplan)
    qplan.inputs[:] = narrowed.inputs
    qplan.skipped_nodes[:] = narrowed.skipped_nodes
    m = onnx.ModelProto()
    m.CopyFrom(model)
    graph = m.graph
    inits = initializers(m)
    by_node = {n.name: n for n in graph.node}
    new_nodes, new_inits, replaced, act_scale = _activation_qdq(qplan, act_ranges, "ort-cpu")

    w_scales: dict[str, np.ndarray] = {}
    axes = {q.tensor: q.axis for q in qplan.inputs if q.is_weight}
    for w in qplan.weights:  # pre-quantized INT8 weights, DQ only
        arr = to_array(inits[w]).astype(np.float32)
        axis = axes[w]
        scale = w_scales[w] = _weight_scale(arr, axis, ORT_CPU_WEIGHT_QMAX)
        shape = [1] * arr.ndim
        if axis is not None:
            shape[axis] = -1
        q = np.clip(np.round(arr / scale.reshape(shape)), -ORT_CPU_WEIGHT_QMAX, ORT_CPU_WEIGHT_QMAX).astype(np.int8)
        s_name, z_name = f"{w}__wscale", f"{w}__wzero_point"
        new_inits += [from_array(scale, s_name), from_array(np.zeros_like(scale, dtype=np.int8), z_name),
                      from_array(q, f"{w}__int8")]
        kw = {} if axis is None else {"axis": axis}
        new_nodes.append(helper.make_node("DequantizeLinear", [f"{w}__int8", s_name, z_name], [f"{w}__dq"],
                                          name=f"{w}__DQ", **kw))
        replaced[w] = f"{w}__dq"

    for q in qplan.inputs:
        by_node[q.node].input[q.index] = replaced[q.tensor]
    for t, rng in output_ranges.items():
        new_nodes += _output_qdq(graph, new_inits, t, rng, "ort-cpu")

    # Gemm biases in INT32 at input scale x weight scale, the form QGemm adds: ONNX Runtime fuses a
    # Gemm into QGemm only when all its inputs are dequantized (a float bias leaves a float Gemm
    # that dequantizes its weight at every call: SReT-T 89 ms of Gemm instead of 30).
    layers: dict[str, dict[int, QuantInput]] = {}
    for q in qplan.inputs:
        layers.setdefault(q.node, {})[q.index] = q
    for name, ins in layers.items():
        node = by_node[name]
        a, w = ins.get(0), ins.get(1)
        c = node.input[2] if node.op_type == "Gemm" and len(node.input) > 2 else ""
        if not c or c not in inits or a is None or w is None or a.is_weight or not w.is_weight \
                or _attr(node, "alpha", 1.0) != 1.0:
            continue
        n_out = int(inits[w.tensor].dims[0 if _attr(node, "transB", 0) else 1])
        bias = to_array(inits[c]).astype(np.float64).reshape(-1) * _attr(node, "beta", 1.0)
        scale = (np.float32(act_scale[a.tensor]) * np.broadcast_to(w_scales[w.tensor], (n_out,))).astype(np.float32)
        if bias.shape != (n_out,):
            continue
        bq = np.round(bias / scale)
        if not np.isfinite(bq).all() or np.abs(bq).max(initial=0) > _INT32_MAX:
            continue  # left float (never seen: a bias 2^31 times its quantization step)
        base = f"{name}__bias"
        new_inits += [from_array(bq.astype(np.int32), f"{base}_int32"), from_array(scale, f"{base}_scale"),
                      from_array(np.zeros(n_out, dtype=np.int32), f"{base}_zero_point")]
        new_nodes.append(helper.make_node("DequantizeLinear", [f"{base}_int32", f"{base}_scale", f"{base}_zero_point"],
                                          [f"{base}_dq"], name=f"{base}_DQ", axis=0))
        node.input[2] = f"{base}_dq"
        for attr in [x for x in node.attribute if x.name == "beta"]:
            node.attribute.remove(attr)

    graph.node.extend(new_nodes)
    # a GELU reading a quantized Conv's output: ONNX Runtime no longer fuses it (fuse_erf_gelu)
    fuse_erf_gelu(m)
    # float copies of quantized weights, folded biases and fused GELU constants are dead unless
    # something else reads them
    still_used = {x for n in graph.node for x in n.input} | {i.name for i in graph.input}
    keep = [i for i in list(graph.initializer) + new_inits if i.name in still_used]
    del graph.initializer[:]
    graph.initializer.extend(keep)
    toposort(m)
    return m
