"""What each target TensorRT's ONNX parser accepts: the data behind the TensorRT readiness check.

Stdlib only (no torch, no onnx, no tensorrt): `vitdeploy check` runs it on a laptop before any
device is involved.

Targets (what the Jetson ships):
    trt8.5    TensorRT 8.5   JetPack 5
    trt10     TensorRT 10.3  JetPack 6
    trt10.16  TensorRT 10.16
    trt11     TensorRT 11.4  JetPack 7.2

Where the data comes from
-------------------------
Op lists are the rows marked "Y" in onnx/onnx-tensorrt ``docs/operators.md`` (domain ai.onnx; that
file lists no com.microsoft ops; the 11.x file only links to a separate TRT_custom_ops.md for
``trt``-domain custom ops, which are left out here). The parser version each TensorRT release
bundles is the ``parsers/onnx`` submodule commit in NVIDIA/TensorRT at that release's branch:

    release/8.5   -> onnx-tensorrt branch 8.5-GA   (fdeeaca8)  table read (git)
    release/10.3  -> onnx-tensorrt 62bdde2a                    table NOT found (see trt10 below)
    release/10.16 -> onnx-tensorrt 6bde6596                    table read (code index)
    release/11.1  -> onnx-tensorrt 7c51a63a                    table read (code index)
    11.4          -> not in any stored snapshot                table NOT found (see trt11 below)

Two tables could not be found, so they are derived from the nearest table found, changing it only
where NVIDIA documents a change (each derivation is also in the target's ``derived`` field):

* trt10 (10.3): the operators.md of onnx-tensorrt 10.1-GA (96e78110), the last table before 10.3.
  The parser changelog for 10.2 and 10.3 adds no operator (10.2: error handling, GRU/Squeeze
  importer changes; 10.3: tensor ``axes`` input for Slice, ScatterElements plugin v2); the next
  additions are 10.4 (BlackmanWindow/HammingWindow/HannWindow, tensor Pad axes). So the op list is
  the 10.1 list, the Slice ``axes`` restriction is dropped, and max opset stays at the 10.1 doc's 20.
* trt11 (11.4): the operators.md of onnx-tensorrt 7c51a63a (TensorRT 11.1), plus what the
  TensorRT 11.2-11.4 GitHub release notes add to the parser: 11.2 "Added support for the DFT
  operator and 5D GridSample operators" (DFT through the cuFFT FFTPlugin); 11.3 and 11.4 add no
  operators. Max opset 24: the 11.1 doc says 24 and the 11.5 release notes are the first to add
  opset 25.

Checks done while building this (not repeated at run time): for 8.5-GA and 10.1-GA the "Y" rows
equal the parser's DEFINE_BUILTIN_OP_IMPORTER registry (ai.onnx names); the 10.1 -> 10.16 and
8.5 -> 8.6 row differences all match the parser changelog; all names are ai.onnx op types except
the legacy experimental ImageScaler, ParametricSoftplus and ScaledTanh.

Op-list differences (per the tables):
    8.5 -> 10.3  +CastLike DeformConv Gelu GroupNormalization Hardmax IsInf LayerNormalization Mish
    10.3 -> 10.16 +Attention BlackmanWindow HammingWindow HannWindow RMSNormalization RotaryEmbedding
                  STFT TensorScatter
    10.16 -> 11.4 +Swish (11.0) +DFT (11.2)
Col2Im is not supported by any target (not listed in 8.5; "N" in every 10.x/11.x table).

Data types come from the doc's type list plus the parser's ``convertDtype`` for versions whose
source is available (8.5-GA, 10.1-GA) and TensorRT's ``nvinfer1::DataType`` (NvInfer headers in
NVIDIA/TensorRT release/8.5, 10.3, 10.16, 11.1). TensorRT 11 facts (no kFP16/kINT8/kBF16/kFP8
builder flags, no IInt8Calibrator, networks strongly typed) are checked against NvInfer.h in
NVIDIA/TensorRT release/11.1.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

# Every onnx.TensorProto.DataType name (onnx 1.23) except UNDEFINED. Kept here so this module
# needs no onnx import; tests compare it with the installed onnx.
ONNX_DTYPES: frozenset[str] = frozenset({
    "FLOAT", "UINT8", "INT8", "UINT16", "INT16", "INT32", "INT64", "STRING", "BOOL", "FLOAT16",
    "DOUBLE", "UINT32", "UINT64", "COMPLEX64", "COMPLEX128", "BFLOAT16", "FLOAT8E4M3FN",
    "FLOAT8E4M3FNUZ", "FLOAT8E5M2", "FLOAT8E5M2FNUZ", "UINT4", "INT4", "FLOAT4E2M1", "FLOAT8E8M0",
    "UINT2", "INT2", "FLOAT6E2M3", "FLOAT6E3M2",
})


@dataclass(frozen=True)
class ParserSupport:
    """One TensorRT version's ONNX parser, as documented. Treat the dict fields as read-only."""

    name: str  # "TensorRT 8.5": used in messages ("not supported by the TensorRT 8.5 ONNX parser")
    version: str
    max_opset: int
    min_opset: int
    supported_ops: frozenset[str]  # ai.onnx op types the parser imports
    notes: dict[str, str] = field(hash=False)  # op -> restriction that matters for ViTs
    unsupported_dtypes: frozenset[str]  # TensorProto names the parser rejects
    supports_int8_qdq: bool  # explicit INT8 quantization through QuantizeLinear/DequantizeLinear
    supports_fp16: bool  # FP16 execution (builder flag, or FP16 tensors in a strongly typed graph)
    strongly_typed_only: bool  # precision comes from the graph's types only; no precision flags
    source: str
    cast_dtypes: frozenset[str] = frozenset()  # accepted but cast down by the parser (see dtype_notes)
    dtype_notes: dict[str, str] = field(default_factory=dict, hash=False)
    fp16_int8_builder_flags: bool = True  # BuilderFlag.FP16 / INT8 exist (implicit precision)
    int8_calibrator: bool = True  # IInt8Calibrator (implicit INT8 calibration) exists
    derived: str = ""  # empty when the op table was read for this exact version; else how it was derived


def _unsupported(accepted: set[str]) -> frozenset[str]:
    assert accepted <= ONNX_DTYPES, accepted - ONNX_DTYPES
    return frozenset(ONNX_DTYPES - accepted)


# --------------------------------------------------------------------------------------------
# Op tables: the "Y" rows of docs/operators.md, sorted (Python's default, case-sensitive order).
# --------------------------------------------------------------------------------------------

# onnx/onnx-tensorrt branch 8.5-GA @ fdeeaca8 (TensorRT 8.5.3; JetPack 5.1 ships 8.5.2). The GA tag
# release/8.5-GA @ 3b008c46 marked HardSwish, Mod and OneHot "N" although their importers
# existed; the branch fixed the doc (#880, #882), so the branch table is used. 142 ops.
_OPS_8_5: tuple[str, ...] = (
    "Abs", "Acos", "Acosh", "Add", "And", "ArgMax", "ArgMin", "Asin", "Asinh", "Atan",
    "Atanh", "AveragePool", "BatchNormalization", "Cast", "Ceil", "Celu", "Clip", "Concat",
    "Constant", "ConstantOfShape", "Conv", "ConvTranspose", "Cos", "Cosh", "CumSum",
    "DepthToSpace", "DequantizeLinear", "Div", "Dropout", "Einsum", "Elu", "Equal", "Erf",
    "Exp", "Expand", "EyeLike", "Flatten", "Floor", "GRU", "Gather", "GatherElements",
    "GatherND", "Gemm", "GlobalAveragePool", "GlobalLpPool", "GlobalMaxPool", "Greater",
    "GreaterOrEqual", "GridSample", "HardSigmoid", "HardSwish", "Identity", "If",
    "ImageScaler", "InstanceNormalization", "IsNaN", "LRN", "LSTM", "LeakyRelu", "Less",
    "LessOrEqual", "Log", "LogSoftmax", "Loop", "LpNormalization", "LpPool", "MatMul",
    "Max", "MaxPool", "Mean", "MeanVarianceNormalization", "Min", "Mod", "Mul", "Neg",
    "NonMaxSuppression", "NonZero", "Not", "OneHot", "Or", "PRelu", "Pad",
    "ParametricSoftplus", "Pow", "QuantizeLinear", "RNN", "RandomNormal",
    "RandomNormalLike", "RandomUniform", "RandomUniformLike", "Range", "Reciprocal",
    "ReduceL1", "ReduceL2", "ReduceLogSum", "ReduceLogSumExp", "ReduceMax", "ReduceMean",
    "ReduceMin", "ReduceProd", "ReduceSum", "ReduceSumSquare", "Relu", "Reshape", "Resize",
    "ReverseSequence", "RoiAlign", "Round", "ScaledTanh", "Scan", "Scatter",
    "ScatterElements", "ScatterND", "Selu", "Shape", "Shrink", "Sigmoid", "Sign", "Sin",
    "Sinh", "Size", "Slice", "Softmax", "Softplus", "Softsign", "SpaceToDepth", "Split",
    "Sqrt", "Squeeze", "Sub", "Sum", "Tan", "Tanh", "ThresholdedRelu", "Tile", "TopK",
    "Transpose", "Trilu", "Unsqueeze", "Upsample", "Where", "Xor",
)

# onnx/onnx-tensorrt 10.1-GA @ 96e78110 (its header still says "TensorRT 10.0 ... opset 9 to
# opset 20"). Used for 10.3: DERIVED, see the module docstring. 150 ops.
_OPS_10_1_DOC: tuple[str, ...] = (
    "Abs", "Acos", "Acosh", "Add", "And", "ArgMax", "ArgMin", "Asin", "Asinh", "Atan",
    "Atanh", "AveragePool", "BatchNormalization", "Cast", "CastLike", "Ceil", "Celu",
    "Clip", "Concat", "Constant", "ConstantOfShape", "Conv", "ConvTranspose", "Cos", "Cosh",
    "CumSum", "DeformConv", "DepthToSpace", "DequantizeLinear", "Div", "Dropout", "Einsum",
    "Elu", "Equal", "Erf", "Exp", "Expand", "EyeLike", "Flatten", "Floor", "GRU", "Gather",
    "GatherElements", "GatherND", "Gelu", "Gemm", "GlobalAveragePool", "GlobalLpPool",
    "GlobalMaxPool", "Greater", "GreaterOrEqual", "GridSample", "GroupNormalization",
    "HardSigmoid", "HardSwish", "Hardmax", "Identity", "If", "ImageScaler",
    "InstanceNormalization", "IsInf", "IsNaN", "LRN", "LSTM", "LayerNormalization",
    "LeakyRelu", "Less", "LessOrEqual", "Log", "LogSoftmax", "Loop", "LpNormalization",
    "LpPool", "MatMul", "Max", "MaxPool", "Mean", "MeanVarianceNormalization", "Min",
    "Mish", "Mod", "Mul", "Neg", "NonMaxSuppression", "NonZero", "Not", "OneHot", "Or",
    "PRelu", "Pad", "ParametricSoftplus", "Pow", "QuantizeLinear", "RNN", "RandomNormal",
    "RandomNormalLike", "RandomUniform", "RandomUniformLike", "Range", "Reciprocal",
    "ReduceL1", "ReduceL2", "ReduceLogSum", "ReduceLogSumExp", "ReduceMax", "ReduceMean",
    "ReduceMin", "ReduceProd", "ReduceSum", "ReduceSumSquare", "Relu", "Reshape", "Resize",
    "ReverseSequence", "RoiAlign", "Round", "ScaledTanh", "Scan", "Scatter",
    "ScatterElements", "ScatterND", "Selu", "Shape", "Shrink", "Sigmoid", "Sign", "Sin",
    "Sinh", "Size", "Slice", "Softmax", "Softplus", "Softsign", "SpaceToDepth", "Split",
    "Sqrt", "Squeeze", "Sub", "Sum", "Tan", "Tanh", "ThresholdedRelu", "Tile", "TopK",
    "Transpose", "Trilu", "Unsqueeze", "Upsample", "Where", "Xor",
)

# onnx/onnx-tensorrt @ 6bde6596 (NVIDIA/TensorRT release/10.16 submodule; header "TensorRT 10.16
# supports operators in the inclusive range of opset 9 to opset 24"). Identical rows to the 10.15
# table (@ fa5aa9f6). 158 ops.
_OPS_10_16: tuple[str, ...] = (
    "Abs", "Acos", "Acosh", "Add", "And", "ArgMax", "ArgMin", "Asin", "Asinh", "Atan",
    "Atanh", "Attention", "AveragePool", "BatchNormalization", "BlackmanWindow", "Cast",
    "CastLike", "Ceil", "Celu", "Clip", "Concat", "Constant", "ConstantOfShape", "Conv",
    "ConvTranspose", "Cos", "Cosh", "CumSum", "DeformConv", "DepthToSpace",
    "DequantizeLinear", "Div", "Dropout", "Einsum", "Elu", "Equal", "Erf", "Exp", "Expand",
    "EyeLike", "Flatten", "Floor", "GRU", "Gather", "GatherElements", "GatherND", "Gelu",
    "Gemm", "GlobalAveragePool", "GlobalLpPool", "GlobalMaxPool", "Greater",
    "GreaterOrEqual", "GridSample", "GroupNormalization", "HammingWindow", "HannWindow",
    "HardSigmoid", "HardSwish", "Hardmax", "Identity", "If", "ImageScaler",
    "InstanceNormalization", "IsInf", "IsNaN", "LRN", "LSTM", "LayerNormalization",
    "LeakyRelu", "Less", "LessOrEqual", "Log", "LogSoftmax", "Loop", "LpNormalization",
    "LpPool", "MatMul", "Max", "MaxPool", "Mean", "MeanVarianceNormalization", "Min",
    "Mish", "Mod", "Mul", "Neg", "NonMaxSuppression", "NonZero", "Not", "OneHot", "Or",
    "PRelu", "Pad", "ParametricSoftplus", "Pow", "QuantizeLinear", "RMSNormalization",
    "RNN", "RandomNormal", "RandomNormalLike", "RandomUniform", "RandomUniformLike",
    "Range", "Reciprocal", "ReduceL1", "ReduceL2", "ReduceLogSum", "ReduceLogSumExp",
    "ReduceMax", "ReduceMean", "ReduceMin", "ReduceProd", "ReduceSum", "ReduceSumSquare",
    "Relu", "Reshape", "Resize", "ReverseSequence", "RoiAlign", "RotaryEmbedding", "Round",
    "STFT", "ScaledTanh", "Scan", "Scatter", "ScatterElements", "ScatterND", "Selu",
    "Shape", "Shrink", "Sigmoid", "Sign", "Sin", "Sinh", "Size", "Slice", "Softmax",
    "Softplus", "Softsign", "SpaceToDepth", "Split", "Sqrt", "Squeeze", "Sub", "Sum", "Tan",
    "Tanh", "TensorScatter", "ThresholdedRelu", "Tile", "TopK", "Transpose", "Trilu",
    "Unsqueeze", "Upsample", "Where", "Xor",
)

# onnx/onnx-tensorrt @ 7c51a63a (NVIDIA/TensorRT release/11.1 and main submodule; header
# "TensorRT 11.1 supports operators in the inclusive range of opset 9 to opset 24"): the same rows
# as 10.16 (same types and restrictions) plus one, Swish (added in 11.0). 159 ops.
_OPS_11_1_DOC: tuple[str, ...] = tuple(sorted(_OPS_10_16 + ("Swish",)))

# 11.4: DERIVED from the 11.1 table + "DFT" (TensorRT 11.2 release notes). 160 ops.
_OPS_11_4: tuple[str, ...] = tuple(sorted(_OPS_11_1_DOC + ("DFT",)))


# --------------------------------------------------------------------------------------------
# Per-op notes for ops a ViT export produces (or that a ViT checker should explain when absent).
# "types ..." is the doc's Supported Types column; quoted restrictions are the doc's; anything else
# names its source. Ops a target does not support say so and give the usual way around.
# --------------------------------------------------------------------------------------------

_RESIZE_DOC = ("coordinate_transformation_mode half_pixel, pytorch_half_pixel, tf_half_pixel_for_nn, "
               "asymmetric or align_corners; mode nearest or linear; nearest_mode floor, ceil, "
               "round_prefer_floor or round_prefer_ceil")
_RESIZE_CUBIC = ("The doc lists only nearest/linear, but the parser source (8.5-GA and 10.1-GA) also "
                 "imports mode='cubic' (2D bicubic, opset >= 11): bicubic position-embedding "
                 "interpolation parses, but check its accuracy on the device.")
_RESIZE_10 = ("; aspect-ratio policy stretch only; when `scales` is a tensor input, `axes` must be an "
              "iota vector of length rank(input); antialiasing is not supported.")
_ATTENTION_DOC = (
    "types FP32, FP16, BF16, INT8, FP8. `Q`, `K`, `V` and `attn_mask` must be 4D. `past_key`, "
    "`past_value` and `nonpad_kv_seqlen` inputs are unsupported. `present_key`, `present_value` and "
    "`qk_matmul_output` outputs are unsupported. `qk_matmul_output_mode` and `softcap` attributes are "
    "unsupported. `q_num_heads`/`kv_num_heads` are taken from the second dimension of Q and K/V "
    "(added in 10.14; ONNX Attention is opset 23).")
_NO_ATTENTION = ("Not supported: ONNX Attention is opset 23 (above this parser's max opset; parser support "
                 "came in 10.14). Export scaled-dot-product attention as MatMul/Softmax/MatMul; "
                 "TensorRT fuses that pattern itself.")
_COL2IM = ("Not supported (torch nn.Fold exports to Col2Im at opset >= 18). Re-express Fold with "
           "Reshape/Transpose/Pad or a plugin.")
_Q_10 = ("types FP32, FP16, BF16 input. `y_zero_point` must be 0 (symmetric). Quantized types INT8, FP8 "
         "(E4M3), INT4{fp4}. zero_point is optional; a UINT8 zero_point is replaced by INT8 with a warning; "
         "the scale tensor must have a static shape; block quantization allows one blocked axis "
         "(parser source 10.1-GA QuantDequantLinearHelper).")
_DQ_10 = "types {types}. `x_zero_point` must be zero. Same rules as QuantizeLinear."

_NOTES_8_5: dict[str, str] = {
    "Attention": _NO_ATTENTION,
    "Cast": "types FP32, FP16, INT32, INT8, BOOL. A cast to INT64 becomes INT32 and to DOUBLE becomes FLOAT.",
    "Col2Im": _COL2IM + " (Not listed in the 8.5 table.)",
    "ConstantOfShape": "types FP32 (the only type the 8.5 table lists).",
    "Conv": "types FP32, FP16, INT8.",
    "CumSum": "types FP32, FP16. `axis` must be an initializer.",
    "DequantizeLinear": ("types INT8. `x_zero_point` must be zero. Same parser rules as QuantizeLinear."),
    "Einsum": ("types FP32, FP16. Ellipsis and diagonal operations are not supported. Broadcasting "
               "between inputs is not supported. (Einsum support came in 8.2 EA.)"),
    "Erf": "types FP32, FP16.",
    "GatherND": "types FP32, FP16, INT8, INT32, BOOL (GatherND support came in 8.2 EA).",
    "Gather": "types FP32, FP16, INT8, INT32, BOOL.",
    "Gelu": ("Not supported: ONNX Gelu is opset 20 (above max opset 17). torch exports GELU as "
             "Erf (exact) or Tanh (approximate) arithmetic below opset 20, which parses."),
    "Gemm": "types FP32, FP16, INT8.",
    "GroupNormalization": ("Not supported (not listed; parser support came in 8.6 EA; ONNX "
                           "GroupNormalization is opset 18, above max opset 17)."),
    "LayerNormalization": ("Not supported (marked N; support came in 8.6 EA). torch exports nn.LayerNorm "
                           "as a LayerNormalization node at opset >= 17: export at opset <= 16 so it is "
                           "decomposed into ReduceMean/Sub/Pow/Sqrt/Div/Mul/Add."),
    "MatMul": "types FP32, FP16 (INT8 only through Q/DQ).",
    "Pow": "types FP32, FP16 (no integer base or exponent before 10.8).",
    "QuantizeLinear": ("types FP32, FP16. `y_zero_point` must be 0. Parser source (8.5-GA "
                       "QuantDequantLinearHelper): INT8 only (UINT8 rejected), exactly 3 inputs "
                       "(zero_point must be present), scales must be positive, per-axis scales only "
                       "along the weights' output-channel axis (activations per-tensor)."),
    "ReduceMean": "types FP32, FP16.",
    "Resize": f"types FP32, FP16. {_RESIZE_DOC}. {_RESIZE_CUBIC}",
    "RMSNormalization": "Not supported (ONNX opset 23; parser support came in 10.15).",
    "Slice": "types FP32, FP16, INT32, INT8, BOOL. `axes` must be an initializer.",
    "Softmax": "types FP32, FP16.",
    "Sqrt": "types FP32, FP16.",
    "Squeeze": "types FP32, FP16, INT32, INT8, BOOL. `axes` must be an initializer.",
    "TopK": "types FP32, FP16. `K` input must be an initializer.",
    "Unsqueeze": "types FP32, FP16, INT32, INT8, BOOL. `axes` must be a constant tensor.",
}

_NOTES_10_3: dict[str, str] = {
    "Attention": _NO_ATTENTION,
    "Cast": "types FP32, FP16, BF16, INT32, INT64, UINT8, BOOL.",
    "Col2Im": _COL2IM,
    "CumSum": "types FP32, FP16, BF16. `axis` must be an initializer (dynamic axis came in 10.8).",
    "DequantizeLinear": _DQ_10.format(types="INT8, FP8, INT4"),
    "Einsum": ("types FP32, FP16, BF16. The 10.1 table lists no restriction, but the parser changelog "
               "for 10.12 says 'Added support for ellipses, diagonal, and broadcasting in Einsum': "
               "treat ellipsis, diagonal and broadcasting as unsupported here."),
    "Erf": "types FP32, FP16, BF16.",
    "GatherND": "types FP32, FP16, BF16, INT32, INT64, BOOL.",
    "Gelu": "types FP32, FP16, BF16, INT8, INT32, INT64 (ONNX Gelu is opset 20, this parser's max).",
    "GridSample": "types FP32, FP16. Input must be 4D input.",
    "LayerNormalization": "types FP32, FP16, BF16. Only the first output `Y` is supported.",
    "MatMul": "types FP32, FP16, BF16.",
    "Pad": "types FP32, FP16, BF16, INT32, INT64. `axes` must be an initializer (tensor axes came in 10.4).",
    "Pow": "types FP32, FP16, BF16 (integer base/exponent came in 10.8).",
    "QuantizeLinear": _Q_10.format(fp4=""),
    "ReduceMean": ("types FP32, FP16, BF16, INT32, INT64. `axes` must be an initializer (from opset 18 "
                   "axes is an input)."),
    "Resize": f"types FP32, FP16, BF16. {_RESIZE_DOC}{_RESIZE_10} {_RESIZE_CUBIC}",
    "RMSNormalization": "Not supported (ONNX opset 23; parser support came in 10.15).",
    "Slice": ("types FP32, FP16, BF16, INT32, INT64, BOOL. The 10.1 table requires `axes` to be an "
              "initializer; 10.3 added tensor `axes` inputs (parser changelog), so no restriction."),
    "Softmax": "types FP32, FP16, BF16.",
    "Squeeze": ("types FP32, FP16, BF16, INT32, INT64, BOOL. `axes` must be an initializer (dynamic "
                "axes came in 10.7)."),
    "TopK": "types FP32, FP16, BF16, INT32, INT64. `sorted` must be 1. `K` input must be less than 3840.",
    "Unsqueeze": ("types FP32, FP16, BF16, INT32, INT64, BOOL. `axes` must be a constant tensor (dynamic "
                  "axes came in 10.7)."),
}

_NOTES_10_16: dict[str, str] = {
    "Attention": _ATTENTION_DOC,
    "Cast": "types FP32, FP16, BF16, INT32, INT64, UINT8, BOOL.",
    "Col2Im": _COL2IM,
    "CumSum": "types FP32, FP16, BF16. `axis` must be a build-time constant.",
    "DequantizeLinear": _DQ_10.format(types="INT8, FP8, FP4, INT4"),
    "Einsum": "types FP32, FP16, BF16. Ellipsis, diagonal and broadcasting supported since 10.12.",
    "Erf": "types FP32, FP16, BF16.",
    "GatherND": "types FP32, FP16, BF16, INT32, INT64, BOOL.",
    "Gelu": "types FP32, FP16, BF16, INT8, INT32, INT64.",
    "GridSample": "types FP32, FP16. Input must be 4D input.",
    "LayerNormalization": "types FP32, FP16, BF16. Only the first output `Y` is supported.",
    "MatMul": "types FP32, FP16, BF16.",
    "Pow": "types FP32, FP16, BF16, INT32, INT64.",
    "QuantizeLinear": _Q_10.format(fp4=", FP4 (E2M1, since 10.8)"),
    "ReduceMean": ("types FP32, FP16, BF16, INT32, INT64. `axes` must be an initializer (from opset 18 "
                   "axes is an input)."),
    "Resize": f"types FP32, FP16, BF16. {_RESIZE_DOC}{_RESIZE_10} {_RESIZE_CUBIC}",
    "RMSNormalization": "types FP32, FP16, BF16 (since 10.15).",
    "RotaryEmbedding": "types FP32, FP16, BF16. `position_ids` must be INT64 (since 10.15).",
    "Softmax": "types FP32, FP16, BF16.",
    "Squeeze": ("types FP32, FP16, BF16, INT32, INT64, BOOL. `axes` must be resolvable to a constant; "
                "an omitted `axes` input is supported only from 11.5 (see trt11)."),
    "TopK": "types FP32, FP16, BF16, INT32, INT64. `sorted` must be 1. `K` input must be less than 3840.",
    "Unsqueeze": "types FP32, FP16, BF16, INT32, INT64, BOOL. `axes` must be resolvable to a constant.",
}

_NOTES_11_4: dict[str, str] = {
    **_NOTES_10_16,
    "Attention": _ATTENTION_DOC + (" TensorRT 11.0 also parses the trt-domain custom op TRT_Attention "
                                   "(not ai.onnx; see onnx-tensorrt docs/TRT_custom_ops.md)."),
    "DFT": ("Supported from 11.2 through the cuFFT-backed FFTPlugin (TensorRT 11.2 release notes); "
            "not in the 11.1 table this data was read from."),
    "GridSample": ("types FP32, FP16. The 11.1 table says input must be 4D; 11.2 added 5D (3D sampling) "
                   "GridSample (release notes)."),
    "Squeeze": ("types FP32, FP16, BF16, INT32, INT64, BOOL. `axes` must be resolvable to a constant; "
                "an omitted `axes` input is supported only from 11.5."),
    "Swish": "types FP32, FP16, BF16 (since 11.0).",
}


# --------------------------------------------------------------------------------------------
# Data types
# --------------------------------------------------------------------------------------------

# 8.5-GA onnx2trt_utils.cpp convertDtype: DOUBLE->kFLOAT, FLOAT, INT8, UINT8, FLOAT16, BOOL, INT32,
# INT64->kINT32; anything else is "Unsupported ONNX data type".
_ACCEPTED_8_5 = {"FLOAT", "FLOAT16", "DOUBLE", "INT8", "UINT8", "INT32", "INT64", "BOOL"}
# 10.1-GA importerUtils.cpp convertDtype adds BFLOAT16, INT64 (native), FLOAT8E4M3FN, INT4; TensorRT
# 10.3's nvinfer1::DataType has no other type (no FP4/E8M0), so 10.3 takes the same set.
_ACCEPTED_10_3 = _ACCEPTED_8_5 | {"BFLOAT16", "FLOAT8E4M3FN", "INT4"}
# 10.16 and 11.1 docs add FP4 (FLOAT4E2M1, parser changelog 10.8).
_ACCEPTED_10_16 = _ACCEPTED_10_3 | {"FLOAT4E2M1"}

_DTYPE_NOTES_COMMON = {
    "DOUBLE": "Accepted but cast down to FLOAT, clamping to +-FLT_MAX.",
    "UINT8": "Network inputs/outputs only (convert to FLOAT/FLOAT16 before other layers).",
}
_DTYPE_NOTES_8_5 = {
    **_DTYPE_NOTES_COMMON,
    "INT64": ("Not native: cast down to INT32 with a warning ('...INT64 weights, while TensorRT does not "
              "natively support INT64. Attempting to cast down to INT32.'), clamping to +-INT_MAX; INT64 "
              "graph inputs/outputs become INT32 bindings."),
    "INT8": "Only as a quantized type, through QuantizeLinear/DequantizeLinear.",
    "BFLOAT16": "Rejected: TensorRT 8.5 has no BF16 type (BF16 came in 9.0).",
    "FLOAT8E4M3FN": "Rejected: TensorRT 8.5 has no FP8 type (FP8 came in 9.0).",
}
_DTYPE_NOTES_10 = {
    **_DTYPE_NOTES_COMMON,
    "INT64": "Native since 9.0 (no cast): INT64 graph inputs/outputs need INT64 bindings.",
    "INT8": "Quantized type: only through QuantizeLinear/DequantizeLinear.",
    "INT4": "Quantized type (weights): only through QuantizeLinear/DequantizeLinear.",
    "FLOAT8E4M3FN": "Quantized type: only through QuantizeLinear/DequantizeLinear.",
    "FLOAT8E5M2": "Rejected: TensorRT's FP8 (kFP8) is E4M3 only.",
}
_DTYPE_NOTES_10_3 = {
    **_DTYPE_NOTES_10,
    "FLOAT4E2M1": "Rejected: FP4 came in 10.8.",
}
_DTYPE_NOTES_10_16 = {
    **_DTYPE_NOTES_10,
    "FLOAT4E2M1": "Quantized type: only through QuantizeLinear/DequantizeLinear (since 10.8).",
    "FLOAT8E8M0": ("Treated as unsupported: TensorRT has kE8M0 (MXFP8 scales, parser changelog 10.12 "
                   "'custom MXFP8 quantization operations') but operators.md does not list it."),
}

_SRC = "onnx/onnx-tensorrt docs/operators.md"

TARGETS: OrderedDict[str, ParserSupport] = OrderedDict([
    ("trt8.5", ParserSupport(
        name="TensorRT 8.5",
        version="8.5",
        max_opset=17,  # "TensorRT 8.5 supports operators up to Opset 17."
        # The 8.5 table states no minimum; TensorRT 8.x Developer Guide ("Working with ONNX"): the
        # parser is backward compatible up to opset 7 where possible (read in a translated copy).
        min_opset=7,
        supported_ops=frozenset(_OPS_8_5),
        notes=_NOTES_8_5,
        unsupported_dtypes=_unsupported(_ACCEPTED_8_5),
        supports_int8_qdq=True,
        supports_fp16=True,
        strongly_typed_only=False,
        source=(f"{_SRC} @ branch 8.5-GA (fdeeaca87ad2); dtypes: onnx2trt_utils.cpp convertDtype @ 8.5-GA; "
                "builder: NVIDIA/TensorRT include/NvInfer.h @ release/8.5"),
        cast_dtypes=frozenset({"DOUBLE", "INT64"}),
        dtype_notes=_DTYPE_NOTES_8_5,
    )),
    ("trt10", ParserSupport(
        name="TensorRT 10.3",
        version="10.3",
        max_opset=20,  # DERIVED: 10.1 table's "opset 9 to opset 20"; no 10.3 table found
        min_opset=9,
        supported_ops=frozenset(_OPS_10_1_DOC),
        notes=_NOTES_10_3,
        unsupported_dtypes=_unsupported(_ACCEPTED_10_3),
        supports_int8_qdq=True,
        supports_fp16=True,
        strongly_typed_only=False,
        source=(f"{_SRC} @ 10.1-GA (96e781103cfc), derived for 10.3 (parser 62bdde2a, table not "
                "found) with docs/Changelog.md 10.2/10.3; dtypes: importerUtils.cpp convertDtype @ "
                "10.1-GA and NvInfer DataType @ NVIDIA/TensorRT release/10.3"),
        cast_dtypes=frozenset({"DOUBLE"}),
        dtype_notes=_DTYPE_NOTES_10_3,
        derived=("10.3's operators.md (onnx-tensorrt 62bdde2a) was not found; op list and opset range "
                 "are the 10.1-GA table's (10.2 and 10.3 add no operators per the parser changelog); "
                 "Slice `axes` restriction dropped (10.3 changelog)."),
    )),
    ("trt10.16", ParserSupport(
        name="TensorRT 10.16",
        version="10.16",
        max_opset=24,  # "TensorRT 10.16 supports operators in the inclusive range of opset 9 to opset 24"
        min_opset=9,
        supported_ops=frozenset(_OPS_10_16),
        notes=_NOTES_10_16,
        unsupported_dtypes=_unsupported(_ACCEPTED_10_16),
        supports_int8_qdq=True,
        supports_fp16=True,
        strongly_typed_only=False,
        source=(f"{_SRC} @ 6bde6596eca8 (NVIDIA/TensorRT release/10.16 parsers/onnx); dtypes: doc type "
                "list and NvInfer DataType @ release/10.16"),
        cast_dtypes=frozenset({"DOUBLE"}),
        dtype_notes=_DTYPE_NOTES_10_16,
    )),
    ("trt11", ParserSupport(
        name="TensorRT 11.4",
        version="11.4",
        max_opset=24,  # 11.1 table says 24; opset 25 first appears in the 11.5 release notes
        min_opset=9,
        supported_ops=frozenset(_OPS_11_4),
        notes=_NOTES_11_4,
        unsupported_dtypes=_unsupported(_ACCEPTED_10_16),
        supports_int8_qdq=True,  # explicit quantization (Q/DQ) is the only INT8 path in 11.x
        supports_fp16=True,  # FP16 tensors in the graph (strongly typed); no FP16 builder flag
        strongly_typed_only=True,
        source=(f"{_SRC} @ 7c51a63a719 (NVIDIA/TensorRT release/11.1 parsers/onnx), derived for 11.4 "
                "with NVIDIA/TensorRT v11.2-v11.5 release notes; builder: include/NvInfer.h @ "
                "release/11.1"),
        cast_dtypes=frozenset({"DOUBLE"}),
        dtype_notes=_DTYPE_NOTES_10_16,
        fp16_int8_builder_flags=False,  # 11.1 BuilderFlag has no kFP16/kINT8/kBF16/kFP8
        int8_calibrator=False,  # 11.1 NvInfer.h has no IInt8Calibrator
        derived=("11.4's operators.md was not found; op list is the 11.1 table (onnx-tensorrt 7c51a63a) "
                 "plus DFT (11.2 release notes); 11.3/11.4 release notes add no operators; max opset 24 "
                 "(opset 25 arrives in 11.5)."),
    )),
])


def parser_support(target: str) -> ParserSupport:
    """The ParserSupport for a target key ("trt8.5", "trt10", "trt10.16", "trt11")."""
    try:
        return TARGETS[target]
    except KeyError:
        raise KeyError(f"unknown TensorRT parser version {target!r} (--trt-version); known: {', '.join(TARGETS)}") from None
