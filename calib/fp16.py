"""FP16 with FP32 islands, written into the ONNX (TensorRT 10/11 build it strongly typed).

Kept in FP32: LayerNormalization and the ops of a decomposed LayerNorm's statistics
(ReduceMean, Pow, Sqrt), Softmax, other reductions, plus any node the user names or whose
calibrated output range would overflow FP16. Graph inputs and outputs stay FP32.
"""

from __future__ import annotations

from vitdeploy.calib.graph import consumers, from_array, initializers, to_array, toposort
from vitdeploy.deps import require

KEEP_FP32_OPS = (
    "LayerNormalization", "Softmax", "ReduceMean", "ReduceSum", "ReduceSumSquare", "ReduceL2", "ReduceLogSumExp",
    "Pow", "Sqrt", "Reciprocal", "Range", "CumSum", "TopK", "NonMaxSuppression", "Resize",
)
FP16_MAX = 65504.0
SAFETY = 0.25  # keep a node FP32 when its |output| exceeds a quarter of the FP16 range


def convert(model, keep_ops: tuple[str, ...] = (), keep_nodes: tuple[str, ...] = ()):
    """FP16 copy of ``model`` with FP32 islands (ops and node names given)."""
    f16 = require("onnxruntime.transformers.float16", "FP16 conversion")
    onnx = require("onnx")
    m = onnx.ModelProto()
    m.CopyFrom(model)
    block_ops = sorted(set(f16.DEFAULT_OP_BLOCK_LIST) | set(KEEP_FP32_OPS) | set(keep_ops))
    _unshare_initializers(m, set(block_ops), set(keep_nodes))
    out = f16.convert_float_to_float16(m, keep_io_types=True, op_block_list=block_ops,
                                       node_block_list=list(keep_nodes), disable_shape_infer=False)
    toposort(out)  # the converter appends its input/output casts at the end of the node list
    return out


def _unshare_initializers(model, block_ops: set[str], block_nodes: set[str]) -> None:
    """Give each FP32-kept consumer of a shared initializer its own copy.

    onnxsim merges identical initializers (e.g. the LayerNorm weights of an untrained model);
    ONNX Runtime's converter then names the per-use casts identically and breaks SSA form.
    """
    inits = initializers(model)
    for name, users in consumers(model).items():
        if name not in inits or len(users) < 2:
            continue
        for k, (node, idx) in enumerate(users[1:], 1):
            if node.op_type in block_ops or node.name in block_nodes:
                copy_name = f"{name}__copy{k}"
                model.graph.initializer.append(from_array(to_array(inits[name]), copy_name))
                node.input[idx] = copy_name


def overflow_nodes(model, tensor_amax: dict[str, float]) -> list[str]:
    """Nodes whose calibrated output magnitude is unsafe in FP16."""
    limit = FP16_MAX * SAFETY
    return [n.name for n in model.graph.node if any(tensor_amax.get(o, 0.0) > limit for o in n.output)]
