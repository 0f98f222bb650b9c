"""Explicit INT8: writing a Q/DQ plan (``vitdeploy.calib.qdq.plan``) into a copy of the graph.

``write`` inserts the Q/DQ nodes of either form: ``trt`` (signed INT8 activations with zero point 0,
Q->DQ on float weights) or ``ort-cpu`` (``_write_ort_cpu``: UINT8 activations, pre-quantized 7-bit
INT8 weights behind DQ only, INT32 Gemm biases, Q/DQ on the quantized Convs' outputs, fused GELU).
Why each form is laid out as it is, measured, is in the ``vitdeploy.calib.qdq`` module docstring.
The helpers here make the activation, weight and output Q/DQ nodes and their scales.
"""

from __future__ import annotations

import numpy as np

from vitdeploy.calib.graph import from_array, fuse_erf_gelu, initializers, to_array, toposort
from vitdeploy.calib.qdq import TARGETS, QuantInput, QuantPlan, ort_cpu_plan
from vitdeploy.core.deps import require
from vitdeploy.core.errors import UsageError


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
    ``ort-cpu``: the layout in the ``qdq`` module docstring; ``output_ranges`` holds the ranges of the tensors
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
    """The ort-cpu form (``qdq`` module docstring): DQ on the inputs (and INT32 bias) of the quantized linear
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
