"""FP16 with FP32 islands, written into the ONNX (TensorRT 10/11 build it strongly typed).

Every node runs either in FP16 or in FP32, and a tensor is cast only where its producer and a
consumer disagree: a tensor that flows between two FP32 nodes stays FP32 (no FP16 round trip,
which is how a "kept" decomposed LayerNorm or a Softmax still overflowed with ONNX Runtime's
float16 converter: NVIDIA/TensorRT#2781, microsoft/onnxruntime#21345).

Kept in FP32:
- LayerNormalization, Softmax, reductions and the statistics ops of a decomposed LayerNorm
  (``KEEP_FP32_OPS``); Q/DQ nodes (their scales are FP32 up to opset 18);
- nodes the caller names: ``--keep-fp32``, and those ``range_fp32_nodes`` finds from calibrated
  ranges (the producer and every consumer of a tensor beyond the FP16 range or below its normal
  range; everything upstream of a Softmax/Exp whose input is too large for FP16's spacing);
- data-movement ops (Reshape, Transpose, ...) whose data arrives in FP32, so an island stays
  one island through the reshapes between its nodes.
Graph inputs and outputs stay FP32. Pure ONNX rewriting: needs only ``onnx`` (no onnxruntime).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from vitdeploy.core import onnx_utils
from vitdeploy.calib.graph import from_array, initializers, to_array
from vitdeploy.core.deps import require
from vitdeploy.core.fp16_emulation import FP16_MAX
from vitdeploy.core.precision import KEEP_FP32_OPS, QDQ_OPS

# Ops that only move, select or join data: they take the precision their data arrives in.
PASSTHROUGH_OPS = frozenset({
    "Reshape", "Transpose", "Squeeze", "Unsqueeze", "Flatten", "Identity", "Gather", "GatherElements", "GatherND",
    "Slice", "Split", "Concat", "Expand", "Tile", "Pad", "SpaceToDepth", "DepthToSpace",
})
# Inputs typed apart from the data (they stay FP32 whatever the node's precision).
FP32_ONLY_INPUTS = {"Resize": (1, 2)}
# Ops that accept a float input of any precision (no cast needed in front of them).
ANY_FLOAT_INPUT_OPS = frozenset({"Shape", "Size", "Cast", "CastLike"})
SAFETY = 0.25  # a tensor beyond a quarter of the FP16 range is kept FP32 (headroom for unseen inputs)
UNDERFLOW_SHARE = 0.5  # a tensor most of whose non-zero values are below FP16's smallest normal
DIVISOR_SHARE = 0.01  # a divisor 1 % of whose values FP16 flushes or blurs
# exp() turns an absolute input error into a relative output error, and FP16's spacing at |x| is
# |x| / 1024. Softmax subtracts the row maximum and the largest logits dominate: above 256 (spacing
# 0.25) FP16 logits are too coarse. A bare Exp has no such normalisation; Performer features
# exp(w.x - |x|^2/2) are compared and summed at magnitudes of 20-100 (T2T-ViT: 1-3 % error, FP16
# cosine 0.9958 instead of 0.9999+), so above 16 (spacing 1/64) its input is too coarse.
COARSE_INPUT = {"Softmax": 256.0, "LogSoftmax": 256.0, "Exp": 16.0}

_FLOAT, _FLOAT16 = 1, 10  # onnx.TensorProto.FLOAT / FLOAT16


def convert(model, keep_ops: Iterable[str] = (), keep_nodes: Iterable[str] = (), types: dict[str, int] | None = None):
    """FP16 copy of ``model`` with FP32 islands; inputs and outputs stay FP32.

    ``keep_ops`` (op types) and ``keep_nodes`` (node names) run in FP32 on top of
    ``KEEP_FP32_OPS`` and Q/DQ. Float initializers read only in FP16 become FP16 (clipped to
    +-65504); one read in both precisions gets an FP16 copy. Nodes with subgraphs stay FP32.
    ``types``: ``onnx_utils.elem_types(model)`` when the caller already has it (else inferred here).
    """
    onnx = require("onnx")
    m = onnx.ModelProto()
    m.CopyFrom(model)
    graph = m.graph
    types = onnx_utils.elem_types(m) if types is None else types
    fp32_ops = set(KEEP_FP32_OPS) | set(QDQ_OPS) | set(keep_ops)
    fp32_names = set(keep_nodes) - {""}
    inits = initializers(m)
    float_inits = {n for n, t in inits.items() if t.data_type == _FLOAT}
    now = {v.name: v.type.tensor_type.elem_type for v in graph.input}
    casts: dict[tuple[str, int], str] = {}
    fp16_inits: dict[str, str] = {}
    used_fp32_inits: set[str] = set()
    nodes = []

    def cast(tensor: str, to: int) -> str:
        key = (tensor, to)
        if key not in casts:
            out = f"{tensor}__to_{'fp16' if to == _FLOAT16 else 'fp32'}"
            nodes.append(onnx.helper.make_node("Cast", [tensor], [out], name=f"{out}__Cast", to=to))
            casts[key] = out
        return casts[key]

    def fp16_init(name: str) -> str:
        if name not in fp16_inits:
            arr = np.clip(to_array(inits[name]), -FP16_MAX, FP16_MAX).astype(np.float16)
            fp16_inits[name] = f"{name}__fp16"
            graph.initializer.append(from_array(arr, fp16_inits[name]))
        return fp16_inits[name]

    for node in list(graph.node):
        floats = [i for i, x in enumerate(node.input) if x and types.get(x) == _FLOAT]
        precision = _node_precision(node, floats, fp32_ops, fp32_names, float_inits, now)
        for i in floats:
            if node.op_type in ANY_FLOAT_INPUT_OPS:
                if node.input[i] in float_inits:
                    used_fp32_inits.add(node.input[i])
                continue
            want = _FLOAT if i in FP32_ONLY_INPUTS.get(node.op_type, ()) else precision
            x = node.input[i]
            if x in float_inits:
                if want == _FLOAT16:
                    node.input[i] = fp16_init(x)
                else:
                    used_fp32_inits.add(x)
            elif now.get(x, _FLOAT) != want:
                node.input[i] = cast(x, want)
        if node.op_type == "Cast":
            to = next(a for a in node.attribute if a.name == "to")
            if to.i == _FLOAT and precision == _FLOAT16:
                to.i = _FLOAT16
        for o in node.output:
            if types.get(o) == _FLOAT:
                now[o] = precision if (floats or node.op_type == "Cast") else _FLOAT
        nodes.append(node)

    # FP32 outputs: the last FP16 tensor is renamed and cast back under the output's name
    producer_of = {o: n for n in nodes for o in n.output}
    readers = {}
    for n in nodes:
        for i, x in enumerate(n.input):
            readers.setdefault(x, []).append((n, i))
    for out in graph.output:
        if now.get(out.name) != _FLOAT16:
            continue
        inner = f"{out.name}__fp16"
        node = producer_of[out.name]
        node.output[list(node.output).index(out.name)] = inner
        for reader, i in readers.get(out.name, ()):
            reader.input[i] = inner
        nodes.append(onnx.helper.make_node("Cast", [inner], [out.name], name=f"{out.name}__to_fp32__Cast", to=_FLOAT))

    keep = [t for t in graph.initializer if t.name not in float_inits or t.name in used_fp32_inits]
    del graph.initializer[:]
    graph.initializer.extend(keep)
    del graph.node[:]
    graph.node.extend(nodes)
    del graph.value_info[:]  # types changed; ONNX Runtime and TensorRT infer them again
    return m


def kept_fp32_op_types(model, keep_ops: Iterable[str] = (), types: dict[str, int] | None = None) -> list[str]:
    """The op types ``convert`` keeps FP32 by type (``KEEP_FP32_OPS`` and ``keep_ops``; not Q/DQ)
    that this model's graph has on float data: what its "kept FP32" line may name. An op type
    the model lacks, or has only on integer tensors (a ReduceSum of shapes), is not listed.
    ``types``: ``onnx_utils.elem_types(model)`` when the caller already has it."""
    wanted = set(KEEP_FP32_OPS) | set(keep_ops)
    types = onnx_utils.elem_types(model) if types is None else types
    return sorted({n.op_type for n in model.graph.node
                   if n.op_type in wanted and any(types.get(x) == _FLOAT for x in n.input if x)})


def _node_precision(node, floats: list[int], fp32_ops: set[str], fp32_names: set[str], float_inits: set[str],
                    now: dict[str, int]) -> int:
    if node.op_type in fp32_ops or node.name in fp32_names or any(a.type in (5, 10) for a in node.attribute):
        return _FLOAT  # attribute type GRAPH/GRAPHS: If/Loop/Scan bodies are left as they are
    if node.op_type in PASSTHROUGH_OPS:
        data = [node.input[i] for i in floats if node.input[i] not in float_inits]
        if data and all(now.get(x, _FLOAT) == _FLOAT for x in data):
            return _FLOAT
    return _FLOAT16


def range_fp32_nodes(model, tensor_amax: dict[str, float], tiny_share: dict[str, float] | None = None) -> dict[str, str]:
    """Nodes that must run in FP32 given calibrated ranges, each with the reason.

    ``tensor_amax``: max |value| per float tensor (node outputs) over calibration data;
    ``tiny_share``: per tensor, the share of its non-zero values below FP16's smallest normal.
    - overflow: a node that reads or writes a tensor beyond ``SAFETY`` x the FP16 range, so an
      overflowing tensor is never cast to FP16 on its way anywhere;
    - underflow: likewise for a tensor that mostly lives below FP16's normal range, or a divisor
      with any real share there (T2T-ViT's Performer features exp(w.x - |x|^2/2) have a median of
      5e-9 and are normalised by a sum of them: FP16 flushes them to zero and the division
      returns inf or noise);
    - coarse logits: Softmax/LogSoftmax/Exp turn an absolute input error into a relative output
      error (``COARSE_INPUT``; logits of an unscaled q.k reach 1e5: pytorch/pytorch#60939).
      Rounding anywhere upstream shows up there, so the node and every node it depends on stay FP32.
    """
    limit = FP16_MAX * SAFETY
    big = {t for t, a in tensor_amax.items() if a > limit}
    shares = tiny_share or {}
    small = {t for t, share in shares.items() if share > UNDERFLOW_SHARE}
    small |= {n.input[1] for n in model.graph.node if n.op_type == "Div" and shares.get(n.input[1], 0.0) > DIVISOR_SHARE}
    small |= {n.input[0] for n in model.graph.node if n.op_type == "Reciprocal" and shares.get(n.input[0], 0.0) > DIVISOR_SHARE}
    keep: dict[str, str] = {}
    for n in model.graph.node:
        if any(o in big for o in n.output) or any(x in big for x in n.input):
            keep.setdefault(n.name, "overflow")
        elif any(o in small for o in n.output) or any(x in small for x in n.input):
            keep.setdefault(n.name, "underflow")
    producer = {o: n for n in model.graph.node for o in n.output}
    stack = [n for n in model.graph.node if n.op_type in COARSE_INPUT
             and tensor_amax.get(n.input[0], 0.0) > COARSE_INPUT[n.op_type]]
    seen: set[str] = set()
    while stack:
        node = stack.pop()
        if node.name in seen:
            continue
        seen.add(node.name)
        keep.setdefault(node.name, "coarse logits")
        stack.extend(producer[x] for x in node.input if x in producer)
    return keep
