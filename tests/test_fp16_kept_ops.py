"""The FP16 "kept FP32" line names only op types the model's graph keeps FP32 (issue 11)."""

from __future__ import annotations

import json

import pytest

onnx = pytest.importorskip("onnx")

from vitdeploy.calib import fp16 as F16


def test_only_op_types_on_float_data():
    h, tp = onnx.helper, onnx.TensorProto
    nodes = [h.make_node("Shape", ["x"], ["s"]),
             h.make_node("ReduceSum", ["s"], ["n"], keepdims=0),  # integer: never a precision island
             h.make_node("Softmax", ["x"], ["y"], axis=-1)]
    graph = h.make_graph(nodes, "g", [h.make_tensor_value_info("x", tp.FLOAT, [1, 4])],
                         [h.make_tensor_value_info("y", tp.FLOAT, [1, 4]), h.make_tensor_value_info("n", tp.INT64, [])])
    model = h.make_model(graph, opset_imports=[h.make_opsetid("", 17)])
    assert F16.kept_fp32_op_types(model) == ["Softmax"]
    assert F16.kept_fp32_op_types(model, ["Softmax", "Exp"]) == ["Softmax"]  # a keep op the model lacks


@pytest.mark.parametrize("variant", ["vit_tiny_test", "t2t_vit_tiny_test"])
def test_quantize_fp16_lists_what_the_tiny_model_has(cli, tmp_path, variant):
    pytest.importorskip("torch")
    pytest.importorskip("onnxruntime")
    onnx_path = tmp_path / f"{variant}.onnx"
    code, _, err = cli("export", variant, "-o", onnx_path)
    assert code == 0, err
    code, out, err = cli("quantize", onnx_path, "--fp16", "--samples", "16")
    assert code == 0, err
    manifest = json.loads((tmp_path / f"{variant}.fp16.json").read_text())
    listed = manifest["fp16"]["fp32_ops"]
    graph_ops = {n.op_type for n in onnx.load(onnx_path).graph.node}
    assert listed and set(listed) <= graph_ops
    assert "LayerNormalization" in listed and "Softmax" in listed
    absent = [op for op in F16.KEEP_FP32_OPS if op not in graph_ops]
    kept_line = next(line for line in out.splitlines() if "kept FP32" in line)
    assert not [op for op in absent if op in kept_line], kept_line
    if variant == "vit_tiny_test":
        assert listed == ["LayerNormalization", "Softmax"]
