"""FP16 islands that hold, INT8+FP16 files whose only FP32 float ops are the islands, and a
quantize that refuses to hand over a broken file (issue: precision you can trust on the device)."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest

import digits

FLOAT, FLOAT16 = onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16


@pytest.fixture(autouse=True)
def _cache(isolated_cache):
    return isolated_cache


@pytest.fixture(scope="module")
def calib32(tmp_path_factory):
    images, labels = digits.digit_images(32)
    root = tmp_path_factory.mktemp("calib32")
    return digits.write_image_folder(root, images, labels, np.arange(0, 160))


def _export_user(name: str, out, decompose_layernorm: bool = False):
    from vitdeploy.export import ExportConfig, export
    from vitdeploy.export.config import Preprocessing

    pre = Preprocessing(input_size=(3, 32, 32), mean=(0.5,) * 3, std=(0.5,) * 3)
    return export(ExportConfig(f"usermodels:{name}", output=out, preprocessing=pre, decompose_layernorm=decompose_layernorm))


def _types(model) -> dict[str, int]:
    inferred = onnx.shape_inference.infer_shapes(model)
    g = inferred.graph
    t = {v.name: v.type.tensor_type.elem_type for v in list(g.input) + list(g.value_info) + list(g.output)}
    t.update({i.name: i.data_type for i in model.graph.initializer})
    return t


def _all_tensors_finite(path, x) -> list[str]:
    """Names of intermediate tensors that hold inf/NaN when ``x`` runs through the model."""
    import onnxruntime as ort

    m = onnx.load(str(path))
    names = [o for n in m.graph.node for o in n.output if o]
    del m.graph.output[:]
    m.graph.output.extend(onnx.helper.make_empty_tensor_value_info(o) for o in names)
    sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    outs = sess.run(None, {m.graph.input[0].name: x})
    return [n for n, v in zip(names, outs) if np.asarray(v).dtype.kind == "f" and not np.isfinite(v).all()]


def _no_round_trips(model) -> None:
    """No tensor goes FP32 -> FP16 -> FP32: a Cast to FP16 always feeds an FP16 computation."""
    users: dict[str, list] = {}
    for n in model.graph.node:
        for x in n.input:
            users.setdefault(x, []).append(n)
    for n in model.graph.node:
        to = next((a.i for a in n.attribute if a.name == "to"), None) if n.op_type == "Cast" else None
        if to == FLOAT16:
            readers = users.get(n.output[0], [])
            assert readers and not all(r.op_type == "Cast" for r in readers), f"{n.name}: FP16 round trip"


@pytest.mark.parametrize("decompose", [True, False], ids=["decomposed-layernorm", "fused-layernorm"])
@pytest.mark.parametrize("builder", ["build_massive_residual", "build_unscaled_logits"])
def test_fp16_islands_hold_for_overflowing_models(builder, decompose, calib32, tmp_path, cli):
    fp32 = tmp_path / "m.onnx"
    _export_user(builder, fp32, decompose)  # decomposed: (x - mean)^2 ~ 4e6 lives between two FP32 nodes
    rc, out, err = cli("quantize", fp32, "--fp16", "--calib", calib32, "-o", tmp_path / "m.fp16.onnx")
    assert rc == 0, err
    m = json.loads((tmp_path / "m.fp16.json").read_text())
    vs = m["accuracy"]["vs_fp32"]
    assert np.isfinite(vs["max_abs"]) and vs["cosine_min"] >= 0.999, vs
    if decompose or builder == "build_unscaled_logits":  # a fused LayerNorm keeps its 4e6 variance inside
        assert m["fp16"]["fp32_overflow_nodes"], "the calibrated ranges must have kept nodes FP32"
    model = onnx.load(str(tmp_path / "m.fp16.onnx"))
    _no_round_trips(model)
    assert any(t.data_type == FLOAT16 for t in model.graph.initializer), "still an FP16 file"
    x = np.random.default_rng(1).uniform(-1, 1, (4, 3, 32, 32)).astype(np.float32)
    assert _all_tensors_finite(tmp_path / "m.fp16.onnx", x) == []


def test_fp16_without_calib_takes_ranges_from_the_builtin_sample(tmp_path, cli):
    """No --calib: the built-in synthetic images still show the 1e5 logits, and the file holds."""
    fp32 = tmp_path / "m.onnx"
    _export_user("build_unscaled_logits", fp32)
    rc, out, err = cli("quantize", fp32, "--fp16", "-o", tmp_path / "m.fp16.onnx")
    assert rc == 0, err
    m = json.loads((tmp_path / "m.fp16.json").read_text())
    assert m["calibration_data"]["synthetic"] is True and m["fp16"]["fp32_range_reasons"]["coarse logits"] > 0
    assert m["accuracy"]["vs_fp32"]["cosine_min"] >= 0.999 and "built-in synthetic sample" in " ".join(m["warnings"])


def test_fp16_without_ranges_overflows_and_is_not_written(tmp_path, cli):
    """A bare ONNX (no manifest, so no preprocessing for images) and no --calib: nothing tells the pass
    about the 1e5 logits; the FP16 q.k is inf on the seeded inputs -> exit 6, nothing written."""
    _export_user("build_unscaled_logits", tmp_path / "m.onnx")
    fp32 = tmp_path / "bare.onnx"
    fp32.write_bytes((tmp_path / "m.onnx").read_bytes())
    out = tmp_path / "m.fp16.onnx"
    for extra in ((), ("--no-gate",)):
        rc, _, err = cli("quantize", fp32, "--fp16", "-o", out, *extra)
        assert rc == 6, err
        error = err[err.index("error:"):].strip().splitlines()
        assert "not finite" in error[0] and len(error) == 1
        assert not out.exists() and not out.with_suffix(".json").exists()


FAMILY_TINY = ["vit_tiny_test", "t2t_vit_tiny_test", "convit_tiny_test", "sret_tiny_test", "ceit_tiny_test"]


@pytest.fixture(scope="module")
def tiny_exports(tmp_path_factory):
    from vitdeploy.export import ExportConfig, export

    folder = tmp_path_factory.mktemp("tiny")
    return {n: export(ExportConfig(n, output=folder / f"{n}.onnx")).onnx_path for n in FAMILY_TINY}


@pytest.mark.parametrize("name", FAMILY_TINY)
def test_int8_trt_form_is_int8_plus_fp16(name, tiny_exports, calib32, tmp_path):
    """Every FP32 float op of the default --qdq-form trt INT8 file is an FP32 island or a Q/DQ node."""
    from vitdeploy.calib.fp16 import ANY_FLOAT_INPUT_OPS, KEEP_FP32_OPS, PASSTHROUGH_OPS, QDQ_OPS
    from vitdeploy.calib.quantize import QuantizeConfig, quantize

    res = quantize(QuantizeConfig(model=tiny_exports[name], precision="int8", calib=calib32, samples=96,
                                  output=tmp_path / "q.onnx", threads=1))
    q = res.manifest["quantization"]
    assert q["high_precision"] == "fp16"
    islands = set(q["fp16"]["fp32_nodes"]) | set(q["fp16"]["fp32_overflow_nodes"])
    model = onnx.load(str(res.onnx_path))
    types = _types(model)
    # data movement (Reshape, Unsqueeze, ...) and Shape compute nothing: they take the precision of their data
    fp32_compute = [n for n in model.graph.node if n.op_type not in ANY_FLOAT_INPUT_OPS and n.op_type not in PASSTHROUGH_OPS
                    and any(types.get(x) == FLOAT for x in list(n.input) + list(n.output) if x)]
    outside = [(n.op_type, n.name) for n in fp32_compute
               if n.op_type not in KEEP_FP32_OPS and n.op_type not in QDQ_OPS and n.name not in islands]
    assert outside == [], outside[:10]
    assert sum(types.get(n.output[0]) == FLOAT16 for n in model.graph.node if n.op_type in ("MatMul", "Gemm", "Conv")) > 0
    _no_round_trips(model)
    vs = res.manifest["accuracy"]["vs_fp32"]
    assert vs["cosine_min"] >= 0.98 and res.manifest["accuracy"]["gate"]["passed"], vs

    fp32_form = quantize(QuantizeConfig(model=tiny_exports[name], precision="int8", calib=calib32, samples=96,
                                        output=tmp_path / "q32.onnx", threads=1, high_precision="fp32"))
    assert fp32_form.manifest["quantization"]["high_precision"] == "fp32"
    assert not any(t.data_type == FLOAT16 for t in onnx.load(str(fp32_form.onnx_path)).graph.initializer)
    # INT8+FP16 is as faithful as the INT8+FP32 form on the held-out images
    assert vs["cosine_mean"] >= fp32_form.manifest["accuracy"]["vs_fp32"]["cosine_mean"] - 0.002


def test_gate_refuses_results_below_the_thresholds(tiny_exports, calib32, tmp_path, cli, monkeypatch):
    from vitdeploy.core import compare

    strict = dict(compare.PRECISION_THRESHOLDS)
    strict["int8"] = compare.Thresholds(max_abs=1e-9, cosine_min=None, top1_agreement=None)
    monkeypatch.setattr(compare, "PRECISION_THRESHOLDS", strict)
    out = tmp_path / "g.onnx"
    rc, _, err = cli("quantize", tiny_exports["vit_tiny_test"], "--int8", "--calib", calib32, "--samples", "64", "-o", out)
    assert rc == 6 and "fails its default thresholds" in err and "--no-gate" in err, err
    assert not out.exists()
    rc, stdout, err = cli("quantize", tiny_exports["vit_tiny_test"], "--int8", "--calib", calib32, "--samples", "64",
                          "-o", out, "--no-gate")
    assert rc == 0, err
    m = json.loads(out.with_suffix(".json").read_text())
    assert m["accuracy"]["gate"]["passed"] is False and m["warnings"]
    assert "FAIL" in stdout and "warning" in stdout


def test_random_weights_gate_on_cosine_only(tiny_exports, calib32, tmp_path):
    from vitdeploy.calib.quantize import QuantizeConfig, quantize

    res = quantize(QuantizeConfig(model=tiny_exports["vit_tiny_test"], precision="fp16", calib=calib32, samples=32,
                                  output=tmp_path / "h.onnx"))
    gate = res.manifest["accuracy"]["gate"]
    assert gate["top1_counted"] is False and "random weights" in gate["note"]
    assert "top1_agreement" not in gate["thresholds"] and gate["thresholds"]["cosine_min"] == 0.999


def test_too_few_samples_and_no_holdout_are_warnings(tiny_exports, calib32, tmp_path):
    from vitdeploy.calib.quantize import QuantizeConfig, quantize

    res = quantize(QuantizeConfig(model=tiny_exports["vit_tiny_test"], precision="int8", calib=calib32, samples=1000,
                                  holdout=0, output=tmp_path / "w.onnx"))
    w = " | ".join(res.manifest["warnings"])
    assert "fewer than --samples 1000" in w and "no held-out images" in w
    assert res.manifest["calibration_data"]["calibration_samples"] == 160


def _matmul_fp16_model():
    from onnx import TensorProto as T
    from onnx import helper as h

    nodes = [h.make_node("Cast", ["a"], ["a16"], to=FLOAT16), h.make_node("Cast", ["b"], ["b16"], to=FLOAT16),
             h.make_node("MatMul", ["a16", "b16"], ["c16"]), h.make_node("Cast", ["c16"], ["c"], to=FLOAT),
             h.make_node("Cast", ["a16"], ["a32"], to=FLOAT)]
    g = h.make_graph(nodes, "g", [h.make_tensor_value_info(n, T.FLOAT, [None, 2]) for n in "ab"],
                     [h.make_tensor_value_info(n, T.FLOAT, [None, 2]) for n in ("c", "a32")])
    return h.make_model(g, opset_imports=[h.make_opsetid("", 17)])


@pytest.mark.parametrize("rounding", ["cast", "veltkamp"])
def test_fp16_emulation_rounds_like_fp16_storage_where_onnx_runtime_does_not(rounding):
    import onnxruntime as ort

    from vitdeploy.core.fp16_emulation import emulate_fp16
    from vitdeploy.runners.ort import keeps_lossy_casts

    newer = tuple(int(v) for v in ort.__version__.split(".")[:2]) >= (1, 17)
    assert keeps_lossy_casts() == newer  # microsoft/onnxruntime#17953 (1.17) stopped removing lossy Cast pairs
    if rounding == "cast" and not newer:
        pytest.skip("this ONNX Runtime removes Cast pairs to FP16 and back (< 1.17): the runner uses veltkamp")
    model = _matmul_fp16_model()
    a = np.full((2, 2), 300.1, np.float32)
    plain = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    assert np.isfinite(plain.run(None, {"a": a, "b": a})[0]).all()  # the CPU provider silently stays FP32
    emulated = ort.InferenceSession(emulate_fp16(model, rounding).SerializeToString(), providers=["CPUExecutionProvider"])
    c, _ = emulated.run(None, {"a": a, "b": a})
    assert np.isinf(c).all()  # 2 x 300^2 = 180000 > 65504
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((20000, 2)) * 10.0 ** rng.uniform(-8, 5, (20000, 2))).astype(np.float32)
    _, rounded = emulated.run(None, {"a": x, "b": np.zeros((2, 2), np.float32)})
    with np.errstate(over="ignore"):
        want = x.astype(np.float16).astype(np.float32)
    normal = np.abs(x) >= 6.2e-5
    assert np.array_equal(rounded[normal], want[normal])
    if rounding == "cast":  # exact for FP16 subnormals too; veltkamp keeps their FP32 precision
        assert np.array_equal(rounded, want) and (~normal).sum() > 1000


def test_the_runner_rounds_by_casts_only_where_the_runtime_keeps_them(monkeypatch):
    from vitdeploy.core import fp16_emulation
    from vitdeploy.runners import ort as ort_runner

    used = []
    real = fp16_emulation.emulate_fp16
    monkeypatch.setattr(fp16_emulation, "emulate_fp16", lambda m, rounding="veltkamp": (used.append(rounding), real(m, rounding))[1])
    model = _matmul_fp16_model().SerializeToString()
    for kept, want in ((True, "cast"), (False, "veltkamp")):
        monkeypatch.setattr(ort_runner, "keeps_lossy_casts", lambda optimization="all", kept=kept: kept)
        with ort_runner.OnnxRuntimeRunner(model, fp16_rounding=True) as r:
            assert r.fp16_emulated
            c = r.infer({"a": np.full((2, 2), 300.1, np.float32), "b": np.full((2, 2), 300.1, np.float32)})
        assert used[-1] == want and np.isinf(next(iter(c.values()))).all()


def test_validate_measures_fp16_files_through_fp16_rounding(tiny_exports, calib32, tmp_path):
    from vitdeploy.calib.quantize import QuantizeConfig, quantize
    from vitdeploy.validate import ValidateConfig, validate

    fp32 = tiny_exports["vit_tiny_test"]
    res = quantize(QuantizeConfig(model=fp32, precision="fp16", output=tmp_path / "h.onnx"))
    assert res.manifest["accuracy"]["fp16_emulated"] is True
    doc = validate(ValidateConfig(reference=str(fp32), candidates=(str(res.onnx_path),), data=calib32, samples=16))
    (cand,) = doc["candidates"]
    assert cand["fp16_emulated"] is True and cand["comparison"]["cosine_min"] > 0.999


def test_range_rules_overflow_coarse_exp_input_and_underflowing_divisors():
    """The three range rules on a Performer-like graph: x -> MatMul -> Sub -> Exp -> (ReduceSum) -> Div."""
    from onnx import TensorProto as T
    from onnx import helper as h

    from vitdeploy.calib.fp16 import range_fp32_nodes

    nodes = [h.make_node("MatMul", ["x", "w"], ["xw"], name="proj"), h.make_node("Sub", ["xw", "c"], ["z"], name="sub"),
             h.make_node("Exp", ["z"], ["e"], name="exp"), h.make_node("ReduceSum", ["e"], ["d"], name="sum", keepdims=1),
             h.make_node("Div", ["e", "d"], ["y"], name="normalise"), h.make_node("Relu", ["y"], ["out"], name="after")]
    g = h.make_graph(nodes, "g", [h.make_tensor_value_info(n, T.FLOAT, [4, 4]) for n in ("x", "w", "c")],
                     [h.make_tensor_value_info("out", T.FLOAT, [4, 4])])
    model = h.make_model(g)
    calm = {"xw": 3.0, "z": 3.0, "e": 20.0, "d": 80.0, "y": 1.0, "out": 1.0}
    assert range_fp32_nodes(model, calm) == {}
    # exp of inputs up to 40: FP16's spacing there (1/32) is a 3 % error after exp -> all upstream FP32
    coarse = range_fp32_nodes(model, {**calm, "z": 40.0})
    assert coarse == {"exp": "coarse logits", "sub": "coarse logits", "proj": "coarse logits"}
    # a divisor with 5 % of its values below FP16's smallest normal: producer and Div stay FP32
    under = range_fp32_nodes(model, calm, {"d": 0.05, "e": 0.2})
    assert under == {"sum": "underflow", "normalise": "underflow"}
    # most values below the normal range: the tensor's producer and consumers
    assert set(range_fp32_nodes(model, calm, {"e": 0.8})) == {"exp", "sum", "normalise"}
    # beyond a quarter of the FP16 range: producer and consumers
    assert range_fp32_nodes(model, {**calm, "d": 3e4}) == {"sum": "overflow", "normalise": "overflow"}


def test_validate_random_weights_gate_on_closeness_only(tiny_exports, calib32, tmp_path, cli):
    """A zoo export without --checkpoint: which class wins is noise, so top-1 agreement and accuracy
    neither gate nor show (as in quantize); cosine still does."""
    from vitdeploy.calib.quantize import QuantizeConfig, quantize
    from vitdeploy.validate import ValidateConfig, validate

    fp32 = tiny_exports["convit_tiny_test"]
    q = quantize(QuantizeConfig(model=fp32, precision="int8", calib=calib32, samples=64, output=tmp_path / "q.onnx"))
    doc = validate(ValidateConfig(reference=str(fp32), candidates=(str(q.onnx_path),), data=calib32, samples=48))
    (cand,) = doc["candidates"]
    assert doc["data"]["random_weights"] and any("random weights" in w for w in doc["warnings"])
    assert cand["thresholds"]["top1_agreement"] is None and cand["thresholds"]["cosine_min"] == 0.98
    assert "top1" not in doc["reference"] and "top1_drop_points" not in cand
    rc, _, err = cli("validate", fp32, q.onnx_path, "--data", calib32, "--samples", "48")
    assert rc == (0 if cand["passed"] else 6) and "random weights" in err


@pytest.mark.parametrize("rounding", ["cast", "veltkamp"])
def test_fp16_inputs_and_outputs_are_emulated_in_fp32(rounding):
    """A file typed FP16 end to end: the emulated copy takes and gives FP32, rounding its input first."""
    import onnxruntime as ort
    from onnx import TensorProto as T, helper as h

    from vitdeploy.core.fp16_emulation import emulate_fp16, has_fp16

    g = h.make_graph([h.make_node("MatMul", ["a", "b"], ["c"]), h.make_node("Add", ["c", "a"], ["y"])], "io16",
                     [h.make_tensor_value_info(n, T.FLOAT16, [2, 2]) for n in "ab"], [h.make_tensor_value_info("y", T.FLOAT16, [2, 2])])
    model = h.make_model(g, opset_imports=[h.make_opsetid("", 17)])
    assert has_fp16(model)
    sess = ort.InferenceSession(emulate_fp16(model, rounding).SerializeToString(), providers=["CPUExecutionProvider"])
    assert [i.type for i in sess.get_inputs()] == ["tensor(float)"] * 2 and sess.get_outputs()[0].type == "tensor(float)"
    a = np.array([[300.1, 0.1], [1.0, 2.0]], np.float32)
    b = np.array([[300.1, 0.0], [0.0, 1.0]], np.float32)
    (y,) = sess.run(None, {"a": a, "b": b})
    a16, b16 = a.astype(np.float16).astype(np.float32), b.astype(np.float16).astype(np.float32)
    with np.errstate(over="ignore"):
        want = ((a16 @ b16).astype(np.float16).astype(np.float32) + a16).astype(np.float16).astype(np.float32)
    assert np.isinf(y[0, 0]) and np.array_equal(y, want)
