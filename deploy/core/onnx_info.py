"""What every stage reads off an ONNX file before running it: Q/DQ, FP16 tensors, inputs, manifest.

One reading of a file's precision (``OnnxInfo.precision``) for build-engine, the runners and reports.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from vitdeploy.core.errors import InputError
from vitdeploy.core.manifest import Manifest
from vitdeploy.core.precision import INT8_OPS, PRECISIONS, QDQ_OPS

@dataclass(frozen=True)
class OnnxInfo:
    """What build-engine needs to know about an ONNX file before TensorRT is involved."""

    path: Path
    has_qdq: bool  # Q/DQ nodes: the INT8 form TensorRT builds
    has_fp16: bool
    manifest: Manifest | None  # a JSON dict given here is read into a Manifest
    node_names: tuple[str, ...]  # graph order (TensorRT 8 parser errors give only a node index)
    node_ops: tuple[str, ...]
    inputs: tuple[tuple[str, tuple[int | str | None, ...]], ...]  # (name, dims; str/None = dynamic)
    has_int8_ops: bool = False  # Q/DQ or ONNX Runtime's integer ops (core.precision.INT8_OPS)

    def __post_init__(self) -> None:
        object.__setattr__(self, "manifest", Manifest.coerce(self.manifest))

    @property
    def precision(self) -> str:
        declared = self.manifest.precision if self.manifest else None
        if self.has_qdq or self.has_int8_ops:
            return "int8"
        if declared in PRECISIONS:
            return declared
        return "fp16" if self.has_fp16 else "fp32"

    @property
    def qdq_target(self) -> str | None:
        q = self.manifest.quantization if self.manifest else None
        return q.target if q else None

    def fp32_keep_names(self, ops: tuple[str, ...]) -> frozenset[str]:
        """Names of nodes the FP16 flag path keeps FP32: those whose op type is in ``ops``, and those
        the precision pass kept FP32 for their calibrated range (listed in the manifest)."""
        islands = self.manifest.fp16_islands if self.manifest else None
        listed = islands.kept_nodes if islands else frozenset()
        return frozenset(n for n, op in zip(self.node_names, self.node_ops) if n and (op in ops or n in listed))


def inspect_onnx(path: Path) -> OnnxInfo:
    """Read the graph (no weights) and the manifest beside it."""
    from vitdeploy.core import manifest as manifests
    from vitdeploy.core import onnx_utils
    from vitdeploy.core.fp16_emulation import has_fp16

    path = Path(path)
    if not path.exists():
        raise InputError(f"ONNX model {path} not found")
    model = onnx_utils.load(path, load_external_data=False)
    nodes = list(onnx_utils.all_nodes(model.graph))
    inits = {t.name for t in model.graph.initializer}
    inputs = []
    for vi in model.graph.input:
        if vi.name in inits:
            continue
        dims = tuple((d.dim_value if d.HasField("dim_value") else (d.dim_param or None))
                     for d in vi.type.tensor_type.shape.dim)
        inputs.append((vi.name, dims))
    return OnnxInfo(
        path=path,
        has_qdq=any(n.op_type in QDQ_OPS for n in nodes),
        has_fp16=has_fp16(model),
        manifest=manifests.read(path),
        node_names=tuple(n.name for n in model.graph.node),
        node_ops=tuple(n.op_type for n in model.graph.node),
        inputs=tuple(inputs),
        has_int8_ops=any(n.op_type in INT8_OPS for n in nodes),
    )
