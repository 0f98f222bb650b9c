"""FP16 as FP16 stores it, on a CPU: an FP32 copy of an FP16 ONNX that rounds every FP16 tensor.

ONNX Runtime's CPU provider has almost no FP16 kernels: it wraps them in casts and then drops
the casts, so an FP16 file runs in FP32 there and never shows FP16 overflow or rounding (a
MatMul of 300 x 300 x 2 gives 180000 instead of inf). Accuracy measured that way says nothing
about the device. ``emulate_fp16`` computes in FP32 and, after every tensor the file types FP16,
rounds it as FP16 stores it, in one of two ways (``rounding``):

- ``"cast"``: a Cast to FP16 and back: exact (subnormals and overflow to inf included) and cheap
  (DeiT-Ti INT8+FP16, batch 8, one thread: 347 ms against 222 ms unrounded). ONNX Runtime before
  1.17 removed such lossy Cast pairs even with optimizations off (microsoft/onnxruntime#8787, fixed
  by #17953): use it only where the runtime is seen to keep them (``runners.ort.keeps_lossy_casts``).
- ``"veltkamp"``: arithmetic no runtime removes: t = 8193 x, x16 = t - (t - x) keeps FP16's 11
  significant bits (bit-exact against numpy's float16 for normal values), |x16| > 65504 becomes
  inf. FP16 subnormals (|x| < 6.1e-5) keep FP32 precision. Six elementwise ops a tensor: 1246 ms
  for the same DeiT-Ti run.

Neither models FP16 accumulation inside kernels (TensorRT accumulates matmuls in FP32). For
accuracy only: the copy is slower than the file.
"""

from __future__ import annotations

import numpy as np

from vitdeploy.core import onnx_utils

FP16_MAX = 65504.0
_FLOAT, _FLOAT16 = 1, 10  # onnx.TensorProto.FLOAT / FLOAT16


def has_fp16(model) -> bool:
    """True when the main graph types any input, initializer or Cast output FP16 (what ``emulate_fp16``
    rounds; If/Loop bodies are not rewritten, so FP16 only inside them does not count)."""
    graph = model.graph
    return (any(v.type.tensor_type.elem_type == _FLOAT16 for v in graph.input)
            or any(t.data_type == _FLOAT16 for t in graph.initializer)
            or any(n.op_type == "Cast" and any(a.name == "to" and a.i == _FLOAT16 for a in n.attribute) for n in graph.node))


ROUNDINGS = ("cast", "veltkamp")


def emulate_fp16(model, rounding: str = "veltkamp"):
    """The FP32 copy of ``model`` with FP16 rounding (``"cast"`` or ``"veltkamp"``, see the module doc)
    after every FP16-typed tensor of the main graph; FP16 graph inputs and outputs become FP32 (inputs
    rounded first, as the file would store them)."""
    if rounding not in ROUNDINGS:
        raise ValueError(f"rounding must be one of {ROUNDINGS}, not {rounding!r}")
    onnx = onnx_utils.onnx_module()
    numpy_helper, helper = onnx.numpy_helper, onnx.helper
    m = onnx.ModelProto()
    m.CopyFrom(model)
    graph = m.graph
    types = onnx_utils.elem_types(model)
    for t in graph.initializer:
        if t.data_type == _FLOAT16:
            t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(t).astype(np.float32), t.name))
    if rounding == "veltkamp":
        graph.initializer.extend([
            numpy_helper.from_array(np.asarray(8193.0, np.float32), "fp16_emulation/split"),
            numpy_helper.from_array(np.asarray(FP16_MAX, np.float32), "fp16_emulation/max"),
            numpy_helper.from_array(np.asarray(np.inf, np.float32), "fp16_emulation/inf"),
        ])

    def rounded(raw: str, out: str) -> list:
        """Nodes that write ``raw`` rounded as FP16 stores it to ``out``."""
        p = f"fp16_emulation/{out}"
        if rounding == "cast":
            return [helper.make_node("Cast", [raw], [f"{p}/half"], name=f"{p}/ToHalf", to=_FLOAT16),
                    helper.make_node("Cast", [f"{p}/half"], [out], name=f"{p}/ToFloat", to=_FLOAT)]
        return [
            helper.make_node("Mul", [raw, "fp16_emulation/split"], [f"{p}/t"], name=f"{p}/Mul"),
            helper.make_node("Sub", [f"{p}/t", raw], [f"{p}/d"], name=f"{p}/Sub"),
            helper.make_node("Sub", [f"{p}/t", f"{p}/d"], [f"{p}/r"], name=f"{p}/Round"),
            helper.make_node("Abs", [f"{p}/r"], [f"{p}/a"], name=f"{p}/Abs"),
            # not |r| <= max: true for NaN too (an inf input makes r NaN), whose raw * inf is its own inf or NaN
            helper.make_node("LessOrEqual", [f"{p}/a", "fp16_emulation/max"], [f"{p}/fits"], name=f"{p}/Fits"),
            helper.make_node("Not", [f"{p}/fits"], [f"{p}/big"], name=f"{p}/Big"),
            helper.make_node("Mul", [raw, "fp16_emulation/inf"], [f"{p}/inf"], name=f"{p}/Inf"),
            helper.make_node("Where", [f"{p}/big", f"{p}/inf", f"{p}/r"], [out], name=f"{p}/Where"),
        ]

    nodes, renamed = [], {}
    for value in graph.input:  # an FP16 input: fed FP32 and rounded first, as the file would store it
        if value.type.tensor_type.elem_type == _FLOAT16:
            value.type.tensor_type.elem_type = _FLOAT
            renamed[value.name] = f"fp16_emulation/{value.name}/input"
            nodes += rounded(value.name, renamed[value.name])
    for value in graph.output:  # an FP16 output: written rounded, in FP32
        if value.type.tensor_type.elem_type == _FLOAT16:
            value.type.tensor_type.elem_type = _FLOAT
    for node in graph.node:
        if node.op_type == "Cast":
            to = next(a for a in node.attribute if a.name == "to")
            if to.i == _FLOAT16:
                to.i = _FLOAT
        for k, name in enumerate(node.input):
            if name in renamed:
                node.input[k] = renamed[name]
        nodes.append(node)
        for k, out in enumerate(node.output):
            if types.get(out) != _FLOAT16:
                continue
            node.output[k] = f"{out}__fp32"
            nodes += rounded(f"{out}__fp32", out)
    del graph.node[:]
    graph.node.extend(nodes)
    del graph.value_info[:]
    return m
