"""Names every stage agrees on: the precisions, the calibration range methods, and the ops kept FP32.

Data only (no imports beyond the standard library), so the torch-free stages and the TensorRT
builder read the same tuples the precision passes write by; and the typed quantization policy
the export manifest hands to the Q/DQ planner.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

PRECISIONS = ("fp32", "fp16", "int8")
# Range methods of `vitdeploy quantize --method` (calib.methods implements them).
METHODS = ("entropy", "percentile", "minmax", "mse")
QDQ_OPS = frozenset({"QuantizeLinear", "DequantizeLinear"})
# Any of these makes a graph INT8: Q/DQ, or ONNX Runtime's integer forms (static QOperator and dynamic
# quantization), which a file quantized outside vitdeploy may carry without a manifest.
INT8_OPS = QDQ_OPS | {"QLinearConv", "QLinearMatMul", "MatMulInteger", "ConvInteger", "DynamicQuantizeLinear",
                      "QGemm", "QLinearAdd"}
# Ops whose FP16 form overflows or loses too much on ViT activations: the FP16 pass and the
# TensorRT FP16-flag path keep them FP32 (FACTS.md, "FP16 hazards").
KEEP_FP32_OPS = (
    "LayerNormalization", "Softmax", "ReduceMean", "ReduceSum", "ReduceSumSquare", "ReduceL2", "ReduceLogSumExp",
    "Pow", "Sqrt", "Reciprocal", "Range", "CumSum", "TopK", "NonMaxSuppression", "Resize",
)


@dataclass(frozen=True)
class QuantHints:
    """A family's quantization hints: layers its INT8 form leaves in float, with the measured reason.

    Written by `vitdeploy export` into the manifest (``quantization_hints``: only the flags that
    are set, plus ``why``), read back by `vitdeploy quantize` unless ``--no-family-hints``.
    """

    float_kernel_attention: bool = False  # Performer attention on exp random features (T2T-ViT)
    float_mixed_attention: bool = False  # attention probabilities blended after Softmax (ConViT GPSA)
    float_input_layer: bool = False  # the layer reading the raw image (CeiT's I2T stem conv)
    why: str = ""

    FLAGS: ClassVar[tuple[str, ...]] = ("float_kernel_attention", "float_mixed_attention", "float_input_layer")

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {k: True for k in self.FLAGS if getattr(self, k)}
        if self.why:
            out["why"] = self.why
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> QuantHints:
        data = data or {}
        return cls(**{k: bool(data.get(k)) for k in cls.FLAGS}, why=str(data.get("why") or ""))


@dataclass(frozen=True)
class QuantPolicy:
    """What the Q/DQ planner (vitdeploy.calib.qdq.plan) quantizes: the user's choices and the family's hints."""

    exclude: tuple[str, ...] = ()  # op types, node names or node-name globs left in float (--exclude)
    quantize_attention: bool = True  # the activation x activation MatMuls (--float-attention turns off)
    quantize_depthwise: bool = False  # depthwise convs (--quantize-depthwise)
    hints: QuantHints = field(default_factory=QuantHints)
    float_nodes: frozenset[str] = frozenset()  # exact node names kept float by the precision search (--max-drop)
