"""Graph simplification with onnxsim, onnxslim as the fallback.

The caller validates the result and keeps it only if it is not bigger and still passes parity.
"""

from __future__ import annotations

import contextlib
import io

from vitdeploy.core.deps import require
from vitdeploy.core.errors import ExportError

# onnxsim's default rewrites MatMul+Add into Reshape-Gemm-Reshape, tuned for ONNX Runtime CPU.
# TensorRT and the INT8 Q/DQ placement want the MatMul kept.
_ONNXSIM_SKIP = ["fuse_matmul_add_bias_into_gemm"]


def simplify_onnxsim(model):
    onnxsim = require("onnxsim", "graph simplification")
    sink = io.StringIO()
    try:
        with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
            simplified, ok = onnxsim.simplify(model, skipped_optimizers=_ONNXSIM_SKIP)
    except Exception as exc:
        raise ExportError(f"onnxsim failed: {str(exc).splitlines()[0][:300]}") from exc
    if not ok:
        raise ExportError("onnxsim could not validate its own result")
    return simplified


def simplify_onnxslim(model):
    onnxslim = require("onnxslim", "graph simplification")
    sink = io.StringIO()
    try:
        with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
            return onnxslim.slim(model)
    except Exception as exc:
        raise ExportError(f"onnxslim failed: {str(exc).splitlines()[0][:300]}") from exc


SIMPLIFIERS = {"onnxsim": simplify_onnxsim, "onnxslim": simplify_onnxslim}


def order(choice: str) -> list[str]:
    """Simplifiers to try, first choice first: the other one is the fallback."""
    if choice == "none":
        return []
    return [choice] + [s for s in SIMPLIFIERS if s != choice]
