"""The ort-cpu INT8 layout (what ONNX Runtime's CPU provider fuses) and choosing the CPU form by timing."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from vitdeploy.calib import cpu_form, qdq, qdq_write
from vitdeploy.calib.graph import fuse_erf_gelu


@pytest.fixture(autouse=True)
def _cache(isolated_cache):
    return isolated_cache


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from vitdeploy.export import ExportConfig, export

    out = tmp_path_factory.mktemp("m") / "vit.onnx"
    export(ExportConfig("vit_tiny_test", output=out))  # the default (deploy) export
    return out


def _quantize(model_path, tmp_path, target: str, **kw):
    from vitdeploy.calib.quantize import QuantizeConfig, quantize

    np.save(tmp_path / "d.npy", np.random.default_rng(0).standard_normal((40, 3, 32, 32)).astype(np.float32))
    return quantize(QuantizeConfig(model=model_path, precision="int8", calib=tmp_path / "d.npy", samples=24, holdout=16,
                                   target=target, high_precision="fp32" if target == "trt" else "fp16",
                                   output=tmp_path / f"{target}.onnx", force=True, **kw))


def _ort_optimized_ops(model: bytes, tmp_path) -> dict[str, int]:
    """Op histogram of the graph ONNX Runtime's CPU provider runs (QDQ fusions are 'extended' level)."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    so.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    so.log_severity_level = 3
    ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])
    ops: dict[str, int] = {}
    for n in onnx.load(str(tmp_path / "optimized.onnx")).graph.node:
        ops[n.op_type] = ops.get(n.op_type, 0) + 1
    return ops


def test_ort_cpu_layout_fuses_into_integer_kernels(tiny, tmp_path):
    res = _quantize(tiny, tmp_path, "ort-cpu")
    m = onnx.load(str(res.onnx_path))
    prod = {o: n for n in m.graph.node for o in n.output}
    inits = {i.name: i for i in m.graph.initializer}
    # Q/DQ only on Conv outputs; linear layers keep float outputs
    out_q = [n for n in m.graph.node if n.op_type == "QuantizeLinear" and n.name.endswith("__OQ")]
    assert out_q and all(prod[n.input[0]].op_type == "Conv" for n in out_q)
    # every Gemm with dequantized inputs takes an INT32 bias, so ONNX Runtime fuses it into QGemm
    gemms = [n for n in m.graph.node if n.op_type == "Gemm" and prod.get(n.input[0]) is not None
             and prod[n.input[0]].op_type == "DequantizeLinear"]
    assert gemms
    for g in gemms:
        bias_dq = prod[g.input[2]]
        assert bias_dq.op_type == "DequantizeLinear" and inits[bias_dq.input[0]].data_type == TensorProto.INT32
    # attention matmuls (no weight) stay float; weight matmuls read dequantized weights
    for n in m.graph.node:
        if n.op_type == "MatMul":
            weighted = any(prod.get(x) is not None and prod[x].op_type == "DequantizeLinear" and prod[x].input[0] in inits
                           for x in n.input)
            if not weighted:
                assert not any(prod.get(x) is not None and prod[x].op_type == "DequantizeLinear" for x in n.input)
    q = res.manifest["quantization"]
    assert any("attention matmul left float on ort-cpu" in why for _, why in q["skipped_nodes"])
    assert q["quantized_outputs"] == len(out_q)
    assert res.manifest["accuracy"]["vs_fp32"]["cosine_min"] > 0.99
    ops = _ort_optimized_ops(res.onnx_path.read_bytes(), tmp_path)
    assert ops.get("QGemm", 0) == len(gemms) and ops.get("Gemm", 0) == 0, ops  # no float Gemm left
    assert ops.get("QLinearConv", 0) >= 1 and ops.get("QLinearMatMul", 0) == 0, ops


def test_int32_bias_matches_float_bias():
    """A Gemm's bias folded to INT32 at input x weight scale gives the float result within quantization error."""
    rng = np.random.default_rng(0)
    w = rng.standard_normal((16, 8)).astype(np.float32)  # [N, K], transB=1 as PyTorch exports Linear
    b = (rng.standard_normal(16) * 3).astype(np.float32)
    g = helper.make_graph([helper.make_node("Gemm", ["x", "w", "b"], ["y"], name="fc", transB=1)], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 8])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4, 16])],
                          [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    plan = qdq.plan(model)
    out = qdq_write.write(model, plan, {"x": (-3.0, 3.0)}, "ort-cpu", {})
    names = {i.name: numpy_helper.to_array(i) for i in out.graph.initializer}
    assert "b" not in names and names["fc__bias_int32"].dtype == np.int32
    deq = names["fc__bias_int32"] * names["fc__bias_scale"]
    assert np.abs(deq - b).max() <= names["fc__bias_scale"].max() / 2 + 1e-7

    import onnxruntime as ort

    x = rng.uniform(-3, 3, (4, 8)).astype(np.float32)
    ref = x @ w.T + b
    got = ort.InferenceSession(out.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    assert np.abs(got - ref).max() < 0.05 * np.abs(ref).max()


def test_layer_reading_a_maxpool_stays_float_on_ort_cpu():
    rng = np.random.default_rng(0)
    w1 = numpy_helper.from_array(rng.standard_normal((8, 3, 3, 3)).astype(np.float32), "w1")
    w2 = numpy_helper.from_array(rng.standard_normal((8, 8, 2, 2)).astype(np.float32), "w2")
    nodes = [helper.make_node("Conv", ["x", "w1"], ["c1"], name="stem"),
             helper.make_node("MaxPool", ["c1"], ["p"], name="pool", kernel_shape=[2, 2], strides=[2, 2]),
             helper.make_node("Conv", ["p", "w2"], ["y"], name="proj", strides=[2, 2])]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 16, 16])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [w1, w2])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    plan = qdq.plan(model)
    assert {q.node for q in plan.inputs} == {"stem", "proj"}  # the TensorRT form quantizes both
    narrowed = qdq.ort_cpu_plan(model, plan)
    assert {q.node for q in narrowed.inputs} == {"stem"}
    assert any(n == "proj" and "MaxPool" in why for n, why in narrowed.skipped_nodes)
    assert plan.node_outputs(model) == ["c1"]


def test_conv_relu_conv_needs_no_conv_output_qdq(tmp_path):
    """The Relu's output Q (zero point 0) makes ONNX Runtime fuse Conv -> Relu -> Q into QLinearConv."""
    rng = np.random.default_rng(0)
    w1 = numpy_helper.from_array(rng.standard_normal((8, 3, 3, 3)).astype(np.float32), "w1")
    w2 = numpy_helper.from_array(rng.standard_normal((8, 8, 3, 3)).astype(np.float32), "w2")
    nodes = [helper.make_node("Conv", ["x", "w1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
             helper.make_node("Conv", ["r1", "w2"], ["y"], name="conv2", pads=[1, 1, 1, 1])]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 16, 16])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8, 16, 16])], [w1, w2])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    plan = qdq.plan(model)
    assert plan.node_outputs(model) == []  # conv1: the Relu's Q serves; conv2: the graph output stays float
    out = qdq_write.write(model, plan, {"x": (-3.0, 3.0), "r1": (0.0, 6.0)}, "ort-cpu", {})
    ops = _ort_optimized_ops(out.SerializeToString(), tmp_path)
    assert ops.get("QLinearConv", 0) == 1 and ops.get("Conv", 0) + ops.get("FusedConv", 0) == 1, ops
    # a Relu output read by a float op too keeps the Conv output Q/DQ (else ONNX Runtime fuses nothing)
    model.graph.node.append(helper.make_node("Sigmoid", ["r1"], ["s"], name="side"))
    model.graph.output.append(helper.make_tensor_value_info("s", TensorProto.FLOAT, None))
    assert qdq.plan(model).node_outputs(model) == ["c1"]


def test_trt_form_keeps_qdq_on_float_weights(tiny, tmp_path):
    m = onnx.load(str(_quantize(tiny, tmp_path, "trt").onnx_path))
    ops = {n.op_type for n in m.graph.node}
    assert "QuantizeLinear" in ops and not any(n.name.endswith("__OQ") for n in m.graph.node)
    assert not any(i.name.endswith("__bias_int32") or i.name.endswith("__int8") for i in m.graph.initializer)


def test_choose_times_both_forms_and_prefers_ort_cpu_on_ties(tiny, monkeypatch):
    import time

    model = onnx.load(str(tiny))
    forms = cpu_form.placeholder_forms(model)
    assert set(forms) == {"ort-cpu", "trt"}
    t = time.perf_counter()
    c = cpu_form.choose(forms, fp32=model.SerializeToString(), rounds=3)
    assert time.perf_counter() - t < 30
    assert c.choice in forms and c.batch == 8 and c.threads == 1 and c.fp32_p50_ms > 0
    assert set(c.timings) == set(forms) and all(v.runs >= 3 and v.p50_ms > 0 for v in c.timings.values())
    assert set(c.speedup_vs_fp32) == set(forms) and c.to_dict()["choice"] == c.choice

    def fake(ms_trt):
        return lambda forms, *a, **k: ({"ort-cpu": [10.0] * 5, "trt": [ms_trt] * 5}, 8)

    monkeypatch.setattr(cpu_form, "time_forms", fake(9.8))  # 2% faster: noise, not a reason to switch
    assert cpu_form.choose(forms).choice == "ort-cpu"
    monkeypatch.setattr(cpu_form, "time_forms", fake(8.0))
    chosen = cpu_form.choose(forms)
    assert chosen.choice == "trt" and "1.25x faster" in chosen.reason


def test_deploy_without_engines_picks_the_cpu_form_by_timing_and_resumes(cli, tmp_path):
    import json

    out = tmp_path / "o"
    args = ("deploy", "usermodels:build_small_vit", "--input-size", "3,32,32", "--precisions", "fp32,int8",
            "--batch", "8", "--out", out, "--iterations", "3", "--json")
    rc, _, err = cli(*args)
    assert rc == 0, err
    report = json.loads((out / "report.json").read_text())
    form = report["int8_cpu_form"]
    assert form["choice"] in ("ort-cpu", "trt") and set(form["timings"]) == {"ort-cpu", "trt"}
    assert form["batch"] == 8 and form["threads"] == 1 and form["fp32_p50_ms"] > 0
    assert json.loads((out / "int8-cpu-form.json").read_text()) == form
    row = next(r for r in report["precisions"] if r["precision"] == "int8")
    assert row["artifact"] == form["artifact"] and (out / form["artifact"]).exists()
    assert json.loads((out / form["artifact"]).with_suffix(".json").read_text())["quantization"]["target"] == form["choice"]
    assert any("the faster here: timed at batch 8" in n for n in report["notes"])
    assert "ort-cpu" in (out / "report.md").read_text()
    rc, _, err = cli(*args)  # resumed: the choice is read back, not re-timed
    assert rc == 0, err
    again = json.loads((out / "report.json").read_text())
    assert "quantize int8" in again["steps_skipped"] and again["int8_cpu_form"] == form


def _gelu_graph(form: str) -> onnx.ModelProto:
    """x -> exact GELU in one of ONNX Runtime's two Erf forms (``half_last``: x * (1 + erf) * 0.5;
    ``half_first``: (0.5 * x) * (1 + erf)); ``wrong_constant``: half_last with 0.4 instead of 0.5."""
    half = 0.4 if form == "wrong_constant" else 0.5
    consts = {"sqrt2": 2 ** 0.5, "one": 1.0, "half": half}
    nodes = [helper.make_node("Div", ["x", "sqrt2"], ["d"], name="gelu/Div"),
             helper.make_node("Erf", ["d"], ["e"]), helper.make_node("Add", ["e", "one"], ["a"])]
    if form == "half_first":
        nodes += [helper.make_node("Mul", ["x", "half"], ["h"]), helper.make_node("Mul", ["h", "a"], ["y"])]
    else:
        nodes += [helper.make_node("Mul", ["x", "a"], ["m"]), helper.make_node("Mul", ["m", "half"], ["y"])]
    graph = helper.make_graph(nodes, "gelu", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 8])],
                              [numpy_helper.from_array(np.array(v, np.float32), k) for k, v in consts.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize("form", ["half_last", "half_first"])
def test_fuse_erf_gelu_writes_one_gelu_with_the_same_values(form):
    import onnxruntime as ort

    model = _gelu_graph(form)
    x = np.linspace(-4, 4, 16, dtype=np.float32).reshape(2, 8)
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    ref = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    assert fuse_erf_gelu(model) == 1
    assert [(n.op_type, n.domain) for n in model.graph.node] == [("Gelu", "com.microsoft")]
    assert list(model.graph.node[0].input) == ["x"] and list(model.graph.node[0].output) == ["y"]
    out = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    np.testing.assert_allclose(out, ref, atol=1e-6)


def test_fuse_erf_gelu_leaves_other_math_alone():
    model = _gelu_graph("wrong_constant")
    before = [n.op_type for n in model.graph.node]
    assert fuse_erf_gelu(model) == 0
    assert [n.op_type for n in model.graph.node] == before
    assert not any(o.domain == "com.microsoft" for o in model.opset_import)
