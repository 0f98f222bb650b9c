"""Names every stage agrees on: the precisions, the calibration range methods, and the ops kept FP32.

Data only (no imports beyond the standard library), so the torch-free stages and the TensorRT
builder read the same tuples the precision passes write by.
"""

from __future__ import annotations

PRECISIONS = ("fp32", "fp16", "int8")
# Range methods of `vitdeploy quantize --method` (calib.methods implements them).
METHODS = ("entropy", "percentile", "minmax", "mse")
QDQ_OPS = frozenset({"QuantizeLinear", "DequantizeLinear"})
# Ops whose FP16 form overflows or loses too much on ViT activations: the FP16 pass and the
# TensorRT FP16-flag path keep them FP32 (FACTS.md, "FP16 hazards").
KEEP_FP32_OPS = (
    "LayerNormalization", "Softmax", "ReduceMean", "ReduceSum", "ReduceSumSquare", "ReduceL2", "ReduceLogSumExp",
    "Pow", "Sqrt", "Reciprocal", "Range", "CumSum", "TopK", "NonMaxSuppression", "Resize",
)
