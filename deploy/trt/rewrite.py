"""ONNX rewrites that TensorRT parser versions need, each for a stated reason (torch-free).

``decompose_layernorm``: TensorRT 8.5 (JetPack 5) has no LayerNormalization importer (added
in 8.6), so a file that must parse there gets LayerNorm as ReduceMean/Sub/Pow/ReduceMean/Add/
Sqrt/Div/Mul/Add. Exports keep the fused op (one layer, kept FP32 by TensorRT >= 8.6; measured:
the decomposed form doubles the casts of an FP16 file and ONNX Runtime's LayerNorm fusion
mistypes it when its pieces run in FP32 from an FP16 input); `vitdeploy build-engine` applies
this pass in memory on TensorRT < 8.6, and `export --decompose-layernorm` writes it for trtexec.
"""

from __future__ import annotations

import numpy as np

from vitdeploy.core import onnx_utils
from vitdeploy.core.errors import ExportError


def targets_without(op: str, targets: tuple[str, ...]) -> list[str]:
    from vitdeploy.trt.support import TARGETS, parser_support

    return [t for t in targets if t in TARGETS and op not in parser_support(t).supported_ops]


def decompose_layernorm(model) -> int:
    """Replace every LayerNormalization node in place; returns how many were replaced."""
    onnx = onnx_utils.onnx_module()
    helper = onnx.helper
    opset = onnx_utils.opset_of(model)
    graph = model.graph
    used = {x for n in graph.node for x in n.input}
    new_nodes, count = [], 0
    for node in graph.node:
        if node.op_type != "LayerNormalization" or node.domain not in ("", "ai.onnx"):
            new_nodes.append(node)
            continue
        if any(o and o in used for o in node.output[1:]):
            raise ExportError(f"LayerNormalization {node.name} uses its Mean/InvStdDev outputs; cannot decompose")
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        axis, eps = int(attrs.get("axis", -1)), float(attrs.get("epsilon", 1e-5))
        if axis >= 0:
            raise ExportError(f"LayerNormalization {node.name} normalises from a positive axis {axis}; export with axis=-1")
        axes = list(range(axis, 0))
        p = f"{node.name or 'ln'}_{count}"
        x, scale = node.input[0], node.input[1]
        bias = node.input[2] if len(node.input) > 2 and node.input[2] else None

        def reduce_mean(inp: str, out: str, name: str):
            if opset >= 18:
                axes_name = f"{p}/axes"
                if axes_name not in {i.name for i in graph.initializer}:
                    graph.initializer.append(onnx.numpy_helper.from_array(np.asarray(axes, np.int64), axes_name))
                return helper.make_node("ReduceMean", [inp, axes_name], [out], name=name, keepdims=1)
            return helper.make_node("ReduceMean", [inp], [out], name=name, axes=axes, keepdims=1)

        inits = {i.name: i for i in graph.initializer}
        dtype = onnx.helper.tensor_dtype_to_np_dtype(inits[scale].data_type) if scale in inits else np.float32
        graph.initializer.extend([  # the scale's type: an FP16-typed LayerNorm stays FP16
            onnx.numpy_helper.from_array(np.asarray(eps, dtype), f"{p}/eps"),
            onnx.numpy_helper.from_array(np.asarray(2.0, dtype), f"{p}/two"),
        ])
        y = node.output[0]
        new_nodes += [
            reduce_mean(x, f"{p}/mean", f"{p}/ReduceMean"),
            helper.make_node("Sub", [x, f"{p}/mean"], [f"{p}/centered"], name=f"{p}/Sub"),
            helper.make_node("Pow", [f"{p}/centered", f"{p}/two"], [f"{p}/sq"], name=f"{p}/Pow"),
            reduce_mean(f"{p}/sq", f"{p}/var", f"{p}/ReduceMeanVar"),
            helper.make_node("Add", [f"{p}/var", f"{p}/eps"], [f"{p}/var_eps"], name=f"{p}/AddEps"),
            helper.make_node("Sqrt", [f"{p}/var_eps"], [f"{p}/std"], name=f"{p}/Sqrt"),
            helper.make_node("Div", [f"{p}/centered", f"{p}/std"], [f"{p}/normed"], name=f"{p}/Div"),
            helper.make_node("Mul", [f"{p}/normed", scale], [f"{p}/scaled" if bias else y], name=f"{p}/Mul"),
        ]
        if bias:
            new_nodes.append(helper.make_node("Add", [f"{p}/scaled", bias], [y], name=f"{p}/AddBias"))
        count += 1
    del graph.node[:]
    graph.node.extend(new_nodes)
    return count
