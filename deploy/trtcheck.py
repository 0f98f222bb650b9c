"""TensorRT readiness: what each target's ONNX parser will not take, found before any device is involved.

Walks the graph (subgraphs included) and reports, per target, ops the parser lacks, an opset
outside its range, tensor types it rejects, INT64 graph I/O it casts, and data-dependent-shape
ops left in. Torch-free; used by `vitdeploy export --target` and `vitdeploy check`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from vitdeploy import onnx_utils
from vitdeploy.errors import UsageError

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
    kind: str  # "opset" | "op" | "dtype" | "int64" | "dynamic" | "rewrite"
    subject: str
    message: str

    def to_dict(self) -> dict:
        return asdict(self)


def known_targets() -> list[str]:
    from vitdeploy.trt_support import TARGETS

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
    results: dict[str, list[Finding]] = {}
    for target in targets:
        if target == ORT_TARGET:
            results[target] = []
            continue
        from vitdeploy.trt_support import parser_support

        try:
            support = parser_support(target)
        except KeyError:
            raise UsageError(f"unknown target {target!r}; known: {', '.join(known_targets())}") from None
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


def blocking(results: dict[str, list[Finding]]) -> dict[str, list[Finding]]:
    """The findings ``--strict`` fails on: every one but the "info" ones build-engine takes care of."""
    return {t: [f for f in fs if f.severity != "info"] for t, fs in results.items()}


def summarize(results: dict[str, list[Finding]]) -> dict[str, dict]:
    return {t: {"errors": sum(f.severity == "error" for f in fs), "warnings": sum(f.severity == "warning" for f in fs),
                "findings": [f.to_dict() for f in fs]} for t, fs in results.items()}
