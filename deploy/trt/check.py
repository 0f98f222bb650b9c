"""TensorRT readiness: what each target's ONNX parser will not take, found before any device is involved.

Walks the graph (subgraphs included) and reports, per target, ops the parser lacks, an opset
outside its range, tensor types it rejects, INT64 graph I/O it casts, and data-dependent-shape
ops left in, and nodes in a form the parser refuses (per-op restrictions: ellipsis Einsum before
10.12, a computed CumSum axis, ...; see ``vitdeploy.trt.restrictions.RESTRICTIONS``). Torch-free; used by
`vitdeploy export --trt-version` and `vitdeploy check`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from vitdeploy.core import onnx_utils
from vitdeploy.core.errors import UsageError

# Ops whose output shape depends on tensor values: TensorRT needs data-dependent-shape support
# (slow or absent) and they usually mean an exporter left dynamic logic in.
DATA_DEPENDENT_OPS = frozenset({"NonZero", "NonMaxSuppression", "Unique", "Loop", "If", "Scan", "Compress"})

ORT_TARGET = "ort"

# Ops a target's parser lacks but `vitdeploy build-engine` rewrites for it before parsing: an
# "info" finding (shown, never fatal), since trtexec on that version would still refuse the file.
BUILD_TIME_REWRITES = {
    "LayerNormalization": "vitdeploy build-engine decomposes it into ReduceMean/Sub/Pow/Sqrt/Div before parsing "
                          "(for trtexec, export with --decompose-layernorm)",
}


@dataclass(frozen=True)
class Finding:
    target: str
    severity: str  # "error": the parser/builder refuses; "warning": builds with a caveat; "info": handled by build-engine
    kind: str  # "opset" | "form" | "op" | "dtype" | "int64" | "dynamic" | "rewrite"
    subject: str
    message: str

    def to_dict(self) -> dict:
        return asdict(self)


def known_targets() -> list[str]:
    from vitdeploy.trt.support import TARGETS

    return list(TARGETS) + [ORT_TARGET]


def _dtype_names(model) -> dict[str, set[str]]:
    """ONNX element type name -> where it occurs (initializer/input/output/value/cast)."""
    onnx = onnx_utils.onnx_module()
    name = onnx.TensorProto.DataType.Name
    found: dict[str, set[str]] = {}

    def add(t: int, where: str) -> None:
        if t:
            found.setdefault(name(t), set()).add(where)

    g = model.graph
    for init in g.initializer:
        add(init.data_type, f"initializer {init.name}")
    for v in g.input:
        add(v.type.tensor_type.elem_type, f"input {v.name}")
    for v in g.output:
        add(v.type.tensor_type.elem_type, f"output {v.name}")
    for v in g.value_info:
        add(v.type.tensor_type.elem_type, f"tensor {v.name}")
    for node in onnx_utils.all_nodes(g):
        if node.op_type == "Cast":
            for a in node.attribute:
                if a.name == "to":
                    add(a.i, f"Cast {node.name}")
    return found


class _Node:
    """A NodeProto as restrictions.NodeView: decoded attributes plus graph-wide tensor facts."""

    def __init__(self, node, graph_facts: "_GraphFacts"):
        onnx = onnx_utils.onnx_module()
        self.op_type = node.op_type
        self.inputs = list(node.input)
        self.outputs = list(node.output)
        self.name = node.name or f"(unnamed, output '{node.output[0] if node.output else ''}')"
        self.attrs = {}
        for a in node.attribute:
            if a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS):
                continue
            v = onnx.helper.get_attribute_value(a)
            self.attrs[a.name] = v.decode() if isinstance(v, bytes) else v
        self._facts = graph_facts

    def is_constant(self, tensor: str) -> bool:
        return tensor in self._facts.constants

    def constant(self, tensor: str):
        return self._facts.values(tensor)

    def shape(self, tensor: str):
        return self._facts.shapes.get(tensor)

    def dtype(self, tensor: str):
        return self._facts.dtypes.get(tensor)


class _GraphFacts:
    """Constants (initializers, Constant outputs), shapes and element types over all (sub)graphs."""

    def __init__(self, model):
        onnx = onnx_utils.onnx_module()
        type_name = onnx.TensorProto.DataType.Name
        self.constants: dict[str, object] = {}  # name -> TensorProto or Constant NodeProto
        self.shapes: dict[str, list] = {}
        self.dtypes: dict[str, str] = {}
        self._cache: dict[str, list | None] = {}

        def visit(g):
            for init in g.initializer:
                self.constants[init.name] = init
                self.shapes[init.name] = list(init.dims)
                if init.data_type:
                    self.dtypes[init.name] = type_name(init.data_type)
            for v in list(g.input) + list(g.output) + list(g.value_info):
                tt = v.type.tensor_type
                if tt.elem_type:
                    self.dtypes.setdefault(v.name, type_name(tt.elem_type))
                if tt.HasField("shape"):
                    self.shapes.setdefault(v.name, [d.dim_value if d.HasField("dim_value") else None
                                                    for d in tt.shape.dim])
            for node in g.node:
                if node.op_type == "Constant" and node.output:
                    self.constants[node.output[0]] = node
                for a in node.attribute:
                    if a.type == onnx.AttributeProto.GRAPH:
                        visit(a.g)
                    for sub in a.graphs:
                        visit(sub)

        visit(model.graph)

    def values(self, tensor: str):
        if tensor not in self.constants:
            return None
        if tensor not in self._cache:
            onnx = onnx_utils.onnx_module()
            src = self.constants[tensor]
            try:
                if isinstance(src, onnx.TensorProto):
                    vals = onnx.numpy_helper.to_array(src).ravel().tolist()
                else:
                    a = next(iter(src.attribute), None)
                    v = onnx.helper.get_attribute_value(a) if a is not None else None
                    if isinstance(v, onnx.TensorProto):
                        vals = onnx.numpy_helper.to_array(v).ravel().tolist()
                    elif isinstance(v, (int, float)):
                        vals = [v]
                    elif isinstance(v, (list, tuple)) and all(isinstance(x, (int, float)) for x in v):
                        vals = list(v)
                    else:
                        vals = None
            except Exception:
                vals = None
            self._cache[tensor] = vals
        return self._cache[tensor]


def _zero_point_dtypes(facts: "_GraphFacts", nodes: list) -> set[str]:
    """The element types of the Q/DQ zero points in the graph ("uint8" marks the ort-cpu form)."""
    found = set()
    for n in nodes:
        if n.op_type in ("QuantizeLinear", "DequantizeLinear") and len(n.inputs) > 2 and n.inputs[2]:
            dt = n.dtype(n.inputs[2])
            if dt is not None:
                found.add(str(dt).lower())
    return found


def check(model, targets: list[str] | tuple[str, ...]) -> dict[str, list[Finding]]:
    """Findings per target for a loaded ONNX ModelProto."""
    onnx = onnx_utils.onnx_module()
    try:  # value_info makes the dtype scan see intermediate tensors
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception:
        inferred = model
    opset = onnx_utils.opset_of(model)
    histogram = onnx_utils.op_histogram(model)
    dtypes = _dtype_names(inferred)
    io = onnx_utils.io_summary(model)
    facts = _GraphFacts(inferred)
    nodes = [_Node(n, facts) for n in onnx_utils.all_nodes(inferred.graph)]
    results: dict[str, list[Finding]] = {}
    for target in targets:
        if target == ORT_TARGET:
            results[target] = []
            continue
        from vitdeploy.trt.support import parser_support

        try:
            support = parser_support(target)
        except KeyError:
            raise UsageError(f"unknown --trt-version {target!r}; known: {', '.join(known_targets())}") from None
        out: list[Finding] = []
        if not support.min_opset <= opset <= support.max_opset:
            out.append(Finding(target, "error", "opset", f"opset {opset}",
                               f"{support.name} parses opsets {support.min_opset}-{support.max_opset}; the file is opset {opset}"))
        for op, count in histogram.items():
            if op not in support.supported_ops and op in BUILD_TIME_REWRITES:
                out.append(Finding(target, "info", "rewrite", op,
                                   f"{count} {op} node(s): no importer in {support.name}; {BUILD_TIME_REWRITES[op]}"))
            elif op not in support.supported_ops:
                out.append(Finding(target, "error", "op", op, f"{count} {op} node(s): not supported by the {support.name} ONNX parser"))
            if op in DATA_DEPENDENT_OPS:
                out.append(Finding(target, "warning", "dynamic", op,
                                   f"{count} {op} node(s): data-dependent shapes/control flow left in the graph"))
        from vitdeploy.trt.restrictions import node_violations, restrictions_for

        table = restrictions_for(target)  # once per target, not per node
        by_op: dict[str, list[str]] = {}
        for node in nodes:  # the form of ops the parser takes only in some forms
            if node.op_type in support.supported_ops and node.op_type in table:
                by_op.setdefault(node.op_type, []).extend(node_violations(node, table, support))
        if "uint8" in _zero_point_dtypes(facts, nodes):
            out.insert(0, Finding(target, "error", "form", "ort-cpu INT8",  # first: what to do about all the rest
                               "UINT8 zero points: the ort-cpu INT8 form, which TensorRT cannot build; "
                               "quantize again with --qdq-form trt"))
        for op, msgs in by_op.items():
            out.extend(Finding(target, "error", "op", op, msg) for msg in msgs)
        for dtype, where in sorted(dtypes.items()):
            if dtype in support.unsupported_dtypes:
                sample = ", ".join(sorted(where)[:3])
                out.append(Finding(target, "error", "dtype", dtype, f"{dtype} tensors ({sample}) are not supported by {support.name}"))
        if "INT64" in getattr(support, "cast_dtypes", frozenset()):
            for v in io["inputs"] + io["outputs"]:
                if v["dtype"] == "int64":
                    out.append(Finding(target, "warning", "int64", v["name"],
                                       f"graph I/O {v['name']} is INT64: {support.name} casts it to INT32"))
        for v in io["inputs"]:
            dynamic = [i for i, d in enumerate(v["shape"]) if not isinstance(d, int)]
            if any(i != 0 for i in dynamic):
                out.append(Finding(target, "warning", "dynamic", v["name"],
                                   f"input {v['name']} has dynamic axes {dynamic}: only the batch axis should be dynamic"))
        results[target] = out
    return results


def shown(findings: list[Finding], per_op: int = 3) -> list[Finding]:
    """The findings a table shows: at most ``per_op`` node-level findings per target and op type, then
    one line counting the rest (hundreds of Q/DQ nodes alike say one thing; --json keeps them all)."""
    out, seen = [], {}
    for f in findings:
        key = (f.target, f.kind, f.subject)
        seen[key] = seen.get(key, 0) + 1
        if f.kind != "op" or seen[key] <= per_op:
            out.append(f)
    for (target, kind, subject), n in seen.items():
        if kind == "op" and n > per_op:
            out.append(Finding(target, "error", kind, subject, f"... and {n - per_op} more {subject} finding(s) like these"))
    return out


def blocking(results: dict[str, list[Finding]]) -> dict[str, list[Finding]]:
    """The findings ``--strict`` fails on: every one but the "info" ones build-engine takes care of."""
    return {t: [f for f in fs if f.severity != "info"] for t, fs in results.items()}


def summarize(results: dict[str, list[Finding]]) -> dict[str, dict]:
    return {t: {"errors": sum(f.severity == "error" for f in fs), "warnings": sum(f.severity == "warning" for f in fs),
                "findings": [f.to_dict() for f in fs]} for t, fs in results.items()}
