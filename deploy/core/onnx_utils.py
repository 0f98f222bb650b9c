"""Torch-free helpers over ONNX files: load, opset, op histogram, structural checks, save."""

from __future__ import annotations

import collections
import os
from pathlib import Path

from vitdeploy.core.errors import ExportError, InputError


def onnx_module():
    from vitdeploy.core.deps import require

    return require("onnx", "reading ONNX files")


def load(path: str | os.PathLike, load_external_data: bool = True):
    onnx = onnx_module()
    path = Path(path)
    if not path.is_file():
        raise InputError(f"ONNX file {path} not found")
    try:
        model = onnx.load(str(path), load_external_data=load_external_data)
    except Exception as exc:  # protobuf DecodeError and friends
        raise InputError(f"{path} is not a readable ONNX model: {exc}") from exc
    if not model.graph.node or not model.graph.input:  # an empty file parses as an empty protobuf
        raise InputError(f"{path} is not an ONNX model (no graph)")
    return model


def opset_of(model) -> int:
    """The default-domain opset the file declares."""
    for imp in model.opset_import:
        if imp.domain in ("", "ai.onnx"):
            return int(imp.version)
    raise ExportError("model declares no default-domain opset")


def all_nodes(graph):
    """Nodes of a graph and of its subgraphs (If/Loop bodies), depth first."""
    for node in graph.node:
        yield node
        for attr in node.attribute:
            if attr.g is not None and len(attr.g.node):
                yield from all_nodes(attr.g)
            for g in attr.graphs:
                yield from all_nodes(g)


def op_histogram(model) -> dict[str, int]:
    counts = collections.Counter(
        (n.op_type if n.domain in ("", "ai.onnx") else f"{n.domain}::{n.op_type}") for n in all_nodes(model.graph)
    )
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def node_count(model) -> int:
    return sum(1 for _ in all_nodes(model.graph))


def check_model(model, full: bool = True) -> None:
    """onnx.checker (with strict shape inference when ``full``); raises ExportError with the reason."""
    onnx = onnx_module()
    try:
        onnx.checker.check_model(model, full_check=full)
    except Exception as exc:
        raise ExportError(f"ONNX checker rejected the model: {str(exc).splitlines()[0]}") from exc


def io_summary(model) -> dict:
    """Names, element types and shapes (dim_param strings for dynamic axes) of inputs and outputs."""
    onnx = onnx_module()
    init = {i.name for i in model.graph.initializer}

    def desc(v):
        t = v.type.tensor_type
        dims = [d.dim_param if d.dim_param else (d.dim_value if d.HasField("dim_value") else None) for d in t.shape.dim]
        return {"name": v.name, "dtype": onnx.TensorProto.DataType.Name(t.elem_type).lower(), "shape": dims}

    return {
        "inputs": [desc(v) for v in model.graph.input if v.name not in init],
        "outputs": [desc(v) for v in model.graph.output],
    }


def save(model, path: str | os.PathLike) -> None:
    """Save (as one file below protobuf's 2 GiB limit, else with external data beside it)."""
    onnx = onnx_module()
    size = model.ByteSize()
    if size < 1_900_000_000:
        onnx.save(model, str(path))
    else:
        onnx.save(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                  location=Path(path).name + ".data")


def elem_types(model) -> dict[str, int]:
    """Element type (TensorProto enum) of every typed tensor: declared, initializer, or inferred."""
    onnx = onnx_module()
    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception:  # noqa: BLE001 - inference is best effort; declared types still count
        inferred = model
    g = inferred.graph
    types = {v.name: v.type.tensor_type.elem_type for v in list(g.input) + list(g.value_info) + list(g.output)}
    types.update({t.name: t.data_type for t in model.graph.initializer})
    return types
