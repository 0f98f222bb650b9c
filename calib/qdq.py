"""Explicit INT8: ViT-aware Q/DQ placement (the plan; ``qdq_write`` writes it into the graph).

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

from vitdeploy.calib.graph import initializers
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


PASSTHROUGH_OPS = frozenset({"Reshape", "Transpose", "Identity", "Squeeze", "Unsqueeze", "Flatten", "Cast"})
ARITHMETIC_OPS = frozenset({"Mul", "Add", "Sub", "Div", "ReduceSum", "MatMul"})
ELEMENTWISE_OPS = frozenset({"Mul", "Add", "Sub", "Div"})


def source_path(tensor: str, prod: dict, source: str, hops: int = 6,
                arithmetic: frozenset[str] = ARITHMETIC_OPS) -> str | None:
    """How ``tensor`` comes from a ``source`` op (Softmax, Exp, MaxPool) within ``hops`` nodes: "arithmetic"
    when some path to it goes through an ``arithmetic`` op, "plain" when it is the op's output through
    reshapes/transposes/casts only, None when it does not come from one."""
    frontier, seen_arith, plain = [tensor], False, False
    for _ in range(hops):
        nxt = []
        for t in frontier:
            node = prod.get(t)
            if node is None:
                continue
            if node.op_type == source:
                if seen_arith:
                    return "arithmetic"
                plain = True
                continue
            if node.op_type in arithmetic:
                seen_arith = True
            if node.op_type in arithmetic or node.op_type in PASSTHROUGH_OPS:
                nxt.extend(x for x in node.input if x)
        frontier = nxt
    return "plain" if plain else None


def derived_from(tensor: str, prod: dict, source: str, hops: int = 6, require_arithmetic: bool = False) -> bool:
    """True when ``tensor`` comes from a ``source`` op (Softmax, Exp) through reshapes and arithmetic
    (``ARITHMETIC_OPS``) within ``hops`` nodes; with ``require_arithmetic`` a plain ``source`` output does not count."""
    path = source_path(tensor, prod, source, hops)
    return path == "arithmetic" or (path == "plain" and not require_arithmetic)


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
        if node.name in policy.float_nodes:
            result.skipped_nodes.append((node.name, "kept float by the precision search (--max-drop)"))
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
            if hints.float_mixed_attention and derived_from(node.input[0], prod, "Softmax", require_arithmetic=True):
                result.skipped_nodes.append((node.name, "blended attention probabilities (e.g. ConViT GPSA) left in float"))
                continue
            if hints.float_kernel_attention and any(derived_from(x, prod, "Exp") for x in data_inputs):
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
        elif not q.is_weight and source_path(q.tensor, prod, "MaxPool", arithmetic=frozenset()) == "plain":
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


def probability_tensors(model, tensors: list[str], ranges: dict[str, tuple[float, float]]) -> list[str]:
    """The tensors among ``tensors`` that hold attention probabilities: a Softmax output (possibly through
    reshapes/transposes), or Softmax outputs mixed and renormalised by elementwise arithmetic whose
    calibrated values (``ranges``: tensor -> (min, max)) stay within [0, 1]. The second kind is ConViT's
    gated positional self-attention (GPSA): ``(1 - g) * softmax(q k^T) + g * softmax(pos)``, each row
    divided by its sum, before the product with v."""
    from vitdeploy.calib.graph import producers

    prod = producers(model)
    result = []
    for t in tensors:
        path = source_path(t, prod, "Softmax", hops=8, arithmetic=ELEMENTWISE_OPS)
        lo, hi = ranges.get(t, (float("-inf"), float("inf")))  # no statistics: not known to be a probability
        if path == "plain" or (path == "arithmetic" and 0.0 <= lo <= hi <= 1.0 + 1e-6):  # NaN-only stats: lo > hi
            result.append(t)
    return result
