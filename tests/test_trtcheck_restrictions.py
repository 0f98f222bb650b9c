"""Per-op parser restrictions (issue 15): nodes in a form a TensorRT version's parser refuses.

Small graphs built with onnx.helper; exact findings per target.
"""

from __future__ import annotations

import pytest
from onnx import TensorProto, helper, numpy_helper

import numpy as np

from vitdeploy.trt import check as trtcheck
from vitdeploy.trt.restrictions import RESTRICTIONS, Restriction, restrictions_for
from vitdeploy.trt.support import TARGETS

ALL = ("trt8.5", "trt10", "trt10.16", "trt11")
F = TensorProto.FLOAT


def _model(nodes, inputs, outputs, inits=(), opset=17):
    g = helper.make_graph(nodes, "g", inputs, outputs, initializer=list(inits))
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])


def _vi(name, shape, t=F):
    return helper.make_tensor_value_info(name, t, shape)


def _op_findings(model, targets=ALL):
    res = trtcheck.check(model, list(targets))
    return {t: [(f.severity, f.kind, f.subject, f.message) for f in fs if f.kind == "op"] for t, fs in res.items()}


def _einsum(eq, a_shape, b_shape, out_shape, name="/blocks.0/attn/Einsum"):
    node = helper.make_node("Einsum", ["a", "b"], ["y"], name=name, equation=eq)
    return _model([node], [_vi("a", a_shape), _vi("b", b_shape)], [_vi("y", out_shape)])


def _msg(what, name="TensorRT 8.5", node="Einsum /blocks.0/attn/Einsum", later="10.12"):
    return f"{node}: {what} is not supported by the {name} ONNX parser ({later}+ takes it)"


def test_ellipsis_einsum_is_an_error_before_10_12_only():
    m = _einsum("...id,...jd->...ij", [1, 2, 5, 4], [1, 2, 5, 4], [1, 2, 5, 5])
    what = "ellipsis in equation '...id,...jd->...ij'"
    assert _op_findings(m) == {
        "trt8.5": [("error", "op", "Einsum", _msg(what))],
        "trt10": [("error", "op", "Einsum", _msg(what, "TensorRT 10.3"))],
        "trt10.16": [],
        "trt11": [],
    }
    blocking = trtcheck.blocking(trtcheck.check(m, list(ALL)))
    assert [t for t, fs in blocking.items() if fs] == ["trt8.5", "trt10"]


@pytest.mark.parametrize("equation, shapes, what", [
    ("ii,j->ij", ([3, 3], [4], [3, 4]),  # 'ii' in one operand: a diagonal
     "diagonal (index 'i' repeated in input 0 'ii') in equation 'ii,j->ij'"),
    ("bhid,bhjd->bhij", ([1, 2, 5, 4], [3, 2, 5, 4], [3, 2, 5, 5]),  # b: 1 vs 3
     "broadcasting between inputs (index 'b' has sizes 1, 3) in equation 'bhid,bhjd->bhij'"),
], ids=["diagonal", "broadcasting"])
def test_einsum_forms_refused_before_10_12(equation, shapes, what):
    assert _op_findings(_einsum(equation, *shapes)) == {
        "trt8.5": [("error", "op", "Einsum", _msg(what))],
        "trt10": [("error", "op", "Einsum", _msg(what, "TensorRT 10.3"))],
        "trt10.16": [], "trt11": [],
    }


def test_single_input_diagonal_einsum():
    node = helper.make_node("Einsum", ["a"], ["y"], name="diag", equation="ii->i")
    m = _model([node], [_vi("a", [3, 3])], [_vi("y", [3])])
    what = "diagonal (index 'i' repeated in input 0 'ii') in equation 'ii->i'"
    assert _op_findings(m) == {
        "trt8.5": [("error", "op", "Einsum", _msg(what, node="Einsum diag"))],
        "trt10": [("error", "op", "Einsum", _msg(what, "TensorRT 10.3", node="Einsum diag"))],
        "trt10.16": [], "trt11": [],
    }


def test_explicit_attention_einsum_is_clean_everywhere():
    m = _einsum("bhid,bhjd->bhij", [2, 2, 5, 4], [2, 2, 5, 4], [2, 2, 5, 5])
    assert _op_findings(m) == {t: [] for t in ALL}
    m = _einsum("bhid,bhjd->bhij", ["N", 2, 5, 4], ["N", 2, 5, 4], ["N", 2, 5, 5])  # dynamic batch
    assert _op_findings(m) == {t: [] for t in ALL}


def test_cumsum_axis_must_be_an_initializer_before_10_8():
    shape = helper.make_node("Shape", ["x"], ["s"], name="shape")
    axis = helper.make_node("ReduceMin", ["s"], ["ax"], name="ax", keepdims=0)
    cs = helper.make_node("CumSum", ["x", "ax"], ["y"], name="/pos/CumSum")
    m = _model([shape, axis, cs], [_vi("x", [2, 3])], [_vi("y", [2, 3])])
    what = "`axis` input 'ax' computed in the graph (not an initializer)"
    assert _op_findings(m) == {
        "trt8.5": [("error", "op", "CumSum", _msg(what, node="CumSum /pos/CumSum", later="10.8"))],
        "trt10": [("error", "op", "CumSum", _msg(what, "TensorRT 10.3", node="CumSum /pos/CumSum", later="10.8"))],
        "trt10.16": [], "trt11": [],
    }
    # from an initializer or a Constant node: fine everywhere
    cs_init = helper.make_node("CumSum", ["x", "axis"], ["y"], name="c")
    m = _model([cs_init], [_vi("x", [2, 3])], [_vi("y", [2, 3])],
               inits=[numpy_helper.from_array(np.array(1, dtype=np.int64), "axis")])
    assert _op_findings(m) == {t: [] for t in ALL}
    const = helper.make_node("Constant", [], ["axis"], value=numpy_helper.from_array(np.array(1, dtype=np.int64)))
    m = _model([const, cs_init], [_vi("x", [2, 3])], [_vi("y", [2, 3])])
    assert _op_findings(m) == {t: [] for t in ALL}


def test_slice_axes_must_be_an_initializer_on_8_5_only():
    starts = numpy_helper.from_array(np.array([0], dtype=np.int64), "starts")
    ends = numpy_helper.from_array(np.array([1], dtype=np.int64), "ends")
    axes = helper.make_node("Shape", ["x"], ["sh"], start=1, end=2)
    sub = helper.make_node("Sub", ["sh", "sh1"], ["axes"])
    sl = helper.make_node("Slice", ["x", "starts", "ends", "axes"], ["y"], name="sl")
    m = _model([axes, sub, sl], [_vi("x", [2, 3])], [_vi("y", [1, 3])],
               inits=[starts, ends, numpy_helper.from_array(np.array([3], dtype=np.int64), "sh1")])
    what = "`axes` input 'axes' computed in the graph (not an initializer)"
    assert _op_findings(m) == {"trt8.5": [("error", "op", "Slice", _msg(what, node="Slice sl", later="10.3"))],
                               "trt10": [], "trt10.16": [], "trt11": []}


def _squeeze_model(axes_from_graph: bool, unsqueeze=False):
    op = "Unsqueeze" if unsqueeze else "Squeeze"
    shp = helper.make_node("Shape", ["x"], ["s"])
    sub = helper.make_node("Sub", ["s", "s"], ["z"])  # [0, 0]
    ax = helper.make_node("Slice", ["z", "zero", "one"], ["ax"])  # [0], computed
    node = helper.make_node(op, ["x", "ax" if axes_from_graph else "axc"], ["y"], name="sq")
    inits = [numpy_helper.from_array(np.array([0], dtype=np.int64), n) for n in ("zero", "axc")]
    inits.append(numpy_helper.from_array(np.array([1], dtype=np.int64), "one"))
    out = [2, 1, 3] if unsqueeze else [3]
    return _model([shp, sub, ax, node], [_vi("x", [1, 3] if not unsqueeze else [2, 3])], [_vi("y", out)], inits)


@pytest.mark.parametrize("op", ["Squeeze", "Unsqueeze"])
def test_squeeze_unsqueeze_axes_must_be_constant_before_10_7(op):
    m = _squeeze_model(True, unsqueeze=op == "Unsqueeze")
    what = "`axes` input 'ax' computed in the graph (not an initializer)"
    assert _op_findings(m) == {
        "trt8.5": [("error", "op", op, _msg(what, node=f"{op} sq", later="10.7"))],
        "trt10": [("error", "op", op, _msg(what, "TensorRT 10.3", node=f"{op} sq", later="10.7"))],
        "trt10.16": [], "trt11": [],
    }
    assert _op_findings(_squeeze_model(False, unsqueeze=op == "Unsqueeze")) == {t: [] for t in ALL}


def test_squeeze_without_axes_before_11_5():
    m = _model([helper.make_node("Squeeze", ["x"], ["y"], name="sq")], [_vi("x", [1, 3])], [_vi("y", [3])])
    what = "no `axes` (squeeze every size-1 axis)"
    assert _op_findings(m) == {t: [("error", "op", "Squeeze", _msg(what, TARGETS[t].name, "Squeeze sq", "11.5"))]
                               for t in ALL}


def test_reducemean_axes_input_must_be_an_initializer():
    shp = helper.make_node("Shape", ["x"], ["s"])
    ax = helper.make_node("Slice", ["s", "zero", "one"], ["ax"])
    rm = helper.make_node("ReduceMean", ["x", "ax"], ["y"], name="rm")
    inits = [numpy_helper.from_array(np.array([0], dtype=np.int64), "zero"),
             numpy_helper.from_array(np.array([1], dtype=np.int64), "one")]
    m = _model([shp, ax, rm], [_vi("x", [2, 3])], [_vi("y", None)], inits, opset=18)
    what = "`axes` input 'ax' computed in the graph (not an initializer)"
    got = _op_findings(m, ("trt10", "trt10.16", "trt11"))
    assert got == {t: [("error", "op", "ReduceMean",
                        f"ReduceMean rm: {what} is not supported by the {TARGETS[t].name} ONNX parser")]
                   for t in ("trt10", "trt10.16", "trt11")}


def test_pad_axes_input_must_be_an_initializer_on_10_3():
    pads = numpy_helper.from_array(np.array([1, 1], dtype=np.int64), "pads")
    shp = helper.make_node("Shape", ["x"], ["s"])
    ax = helper.make_node("Slice", ["s", "zero", "one"], ["ax"])
    pad = helper.make_node("Pad", ["x", "pads", "", "ax"], ["y"], name="pad")
    inits = [pads, numpy_helper.from_array(np.array([0], dtype=np.int64), "zero"),
             numpy_helper.from_array(np.array([1], dtype=np.int64), "one")]
    m = _model([shp, ax, pad], [_vi("x", [2, 3])], [_vi("y", None)], inits, opset=18)
    what = "`axes` input 'ax' computed in the graph (not an initializer)"
    assert _op_findings(m, ("trt10", "trt10.16", "trt11")) == {
        "trt10": [("error", "op", "Pad", _msg(what, "TensorRT 10.3", "Pad pad", "10.4"))],
        "trt10.16": [], "trt11": []}


def _resize(**attrs):
    scales = numpy_helper.from_array(np.array([1, 1, 2, 2], dtype=np.float32), "scales")
    node = helper.make_node("Resize", ["x", "", "scales"], ["y"], name="rs", **attrs)
    return _model([node], [_vi("x", [1, 3, 4, 4])], [_vi("y", [1, 3, 8, 8])], [scales], opset=18)


def test_resize_modes():
    assert _op_findings(_resize(mode="cubic", coordinate_transformation_mode="align_corners")) == {t: [] for t in ALL}
    m = _resize(mode="linear", coordinate_transformation_mode="tf_crop_and_resize")
    assert _op_findings(m) == {t: [("error", "op", "Resize", f"Resize rs: coordinate_transformation_mode="
                                    f"'tf_crop_and_resize' is not supported by the {TARGETS[t].name} ONNX parser")]
                               for t in ALL}


def test_resize_antialias_and_aspect_policy_on_10_and_later():
    m = _resize(mode="linear", antialias=1)
    assert _op_findings(m) == {"trt8.5": [], **{t: [("error", "op", "Resize", f"Resize rs: antialias=1 is not "
                                                     f"supported by the {TARGETS[t].name} ONNX parser")]
                                                for t in ALL[1:]}}
    m = _resize(mode="linear", keep_aspect_ratio_policy="not_larger")
    assert [f[3] for f in _op_findings(m)["trt10"]] == [
        "Resize rs: keep_aspect_ratio_policy='not_larger' is not supported by the TensorRT 10.3 ONNX parser"]


def test_resize_axes_must_be_iota_with_scales():
    scales = numpy_helper.from_array(np.array([2, 2], dtype=np.float32), "scales")
    node = helper.make_node("Resize", ["x", "", "scales"], ["y"], name="rs", mode="linear", axes=[2, 3])
    m = _model([node], [_vi("x", [1, 3, 4, 4])], [_vi("y", [1, 3, 8, 8])], [scales], opset=18)
    assert [f[3] for f in _op_findings(m)["trt10.16"]] == [
        "Resize rs: axes=[2, 3] with `scales` (must be the iota 0..3) is not supported by the TensorRT 10.16 "
        "ONNX parser"]
    assert _op_findings(m)["trt8.5"] == []


def test_layernormalization_only_first_output_and_8_5_info_untouched():
    ln = helper.make_node("LayerNormalization", ["x", "g", "b"], ["y", "mean", "inv"], name="ln", axis=-1)
    inits = [numpy_helper.from_array(np.ones(4, dtype=np.float32), "g"),
             numpy_helper.from_array(np.zeros(4, dtype=np.float32), "b")]
    m = _model([ln], [_vi("x", [2, 4])], [_vi("y", [2, 4]), _vi("mean", None), _vi("inv", None)], inits)
    res = trtcheck.check(m, list(ALL))
    assert [(f.severity, f.kind, f.subject) for f in res["trt8.5"]] == [("info", "rewrite", "LayerNormalization")]
    for t in ALL[1:]:
        assert [(f.severity, f.kind, f.subject, f.message) for f in res[t]] == [
            ("error", "op", "LayerNormalization", "LayerNormalization ln: outputs besides `Y` ('mean', 'inv') is "
             f"not supported by the {TARGETS[t].name} ONNX parser")]
    ln1 = helper.make_node("LayerNormalization", ["x", "g", "b"], ["y"], name="ln", axis=-1)
    m = _model([ln1], [_vi("x", [2, 4])], [_vi("y", [2, 4])], inits)
    assert _op_findings(m) == {t: [] for t in ALL}


def test_topk_restrictions():
    k = helper.make_node("Shape", ["x"], ["kk"], start=1, end=2)
    node = helper.make_node("TopK", ["x", "kk"], ["v", "i"], name="tk")
    m = _model([k, node], [_vi("x", [2, 5])], [_vi("v", None), _vi("i", None, TensorProto.INT64)])
    assert _op_findings(m) == {"trt8.5": [("error", "op", "TopK", _msg("`K` input 'kk' computed in the graph "
                                                                         "(not an initializer)", node="TopK tk",
                                                                         later="10.1"))],
                               "trt10": [], "trt10.16": [], "trt11": []}
    node = helper.make_node("TopK", ["x", "k"], ["v", "i"], name="tk", sorted=0)
    m = _model([node], [_vi("x", [2, 5000])], [_vi("v", None), _vi("i", None, TensorProto.INT64)],
               [numpy_helper.from_array(np.array([4000], dtype=np.int64), "k")])
    got = _op_findings(m)
    assert got["trt8.5"] == []
    assert [f[3] for f in got["trt10.16"]] == [
        "TopK tk: sorted=0 is not supported by the TensorRT 10.16 ONNX parser",
        "TopK tk: K=4000 (must be less than 3840) is not supported by the TensorRT 10.16 ONNX parser"]


def test_pow_integer_before_10_8():
    node = helper.make_node("Pow", ["x", "e"], ["y"], name="pw")
    m = _model([node], [_vi("x", [3], TensorProto.INT32), _vi("e", [3], TensorProto.INT32)],
               [_vi("y", [3], TensorProto.INT32)])
    what = "an integer base (INT32 'x')"
    assert _op_findings(m) == {"trt8.5": [("error", "op", "Pow", _msg(what, node="Pow pw", later="10.8"))],
                               "trt10": [("error", "op", "Pow", _msg(what, "TensorRT 10.3", "Pow pw", "10.8"))],
                               "trt10.16": [], "trt11": []}


def test_gridsample_must_be_4d_before_11_2():
    node = helper.make_node("GridSample", ["x", "grid"], ["y"], name="gs")
    m = _model([node], [_vi("x", [1, 2, 3, 4, 5]), _vi("grid", [1, 3, 4, 5, 3])], [_vi("y", None)], opset=20)
    got = _op_findings(m, ("trt10", "trt10.16", "trt11"))
    assert got == {"trt10": [("error", "op", "GridSample", _msg("a 5D input (must be 4D)", "TensorRT 10.3",
                                                                "GridSample gs", "11.2"))],
                   "trt10.16": [("error", "op", "GridSample", _msg("a 5D input (must be 4D)", "TensorRT 10.16",
                                                                   "GridSample gs", "11.2"))],
                   "trt11": []}


def test_quantize_zero_point_must_be_zero_and_8_5_wants_int8_with_three_inputs():
    s = numpy_helper.from_array(np.array(0.1, dtype=np.float32), "s")
    zp = numpy_helper.from_array(np.array(3, dtype=np.int8), "zp")
    q = helper.make_node("QuantizeLinear", ["x", "s", "zp"], ["q"], name="q")
    dq = helper.make_node("DequantizeLinear", ["q", "s", "zp"], ["y"], name="dq")
    m = _model([q, dq], [_vi("x", [4])], [_vi("y", [4])], [s, zp], opset=13)
    got = _op_findings(m)
    for t in ALL:
        assert [f[3] for f in got[t]] == [
            f"QuantizeLinear q: a non-zero `y_zero_point` ('zp', asymmetric quantization) is not supported by the "
            f"{TARGETS[t].name} ONNX parser",
            f"DequantizeLinear dq: a non-zero `x_zero_point` ('zp', asymmetric quantization) is not supported by "
            f"the {TARGETS[t].name} ONNX parser"]
    q2 = helper.make_node("QuantizeLinear", ["x", "s", "zpu"], ["y"], name="q")
    m = _model([q2], [_vi("x", [4])], [_vi("y", [4], TensorProto.UINT8)],
               [s, numpy_helper.from_array(np.array(0, dtype=np.uint8), "zpu")], opset=13)
    got = _op_findings(m)
    assert [f[3] for f in got["trt8.5"]] == [_msg("a UINT8 zero point 'zpu' (INT8 only)", node="QuantizeLinear q",
                                                  later="10.0")]
    assert got["trt10"] == []
    q3 = helper.make_node("QuantizeLinear", ["x", "s"], ["y"], name="q")
    m = _model([q3], [_vi("x", [4])], [_vi("y", [4], TensorProto.UINT8)], [s], opset=13)
    assert [f[3] for f in _op_findings(m)["trt8.5"]] == [
        _msg("no `y_zero_point` input (8.5 needs exactly 3 inputs)", node="QuantizeLinear q", later="10.0")]


def test_attention_unsupported_inputs_outputs_and_rank():
    node = helper.make_node("Attention", ["q", "k", "v"], ["y", "pk"], name="att")
    m = _model([node], [_vi("q", [1, 2, 5, 4]), _vi("k", [1, 2, 5, 4]), _vi("v", [1, 2, 5, 4])],
               [_vi("y", None), _vi("pk", None)], opset=23)
    got = _op_findings(m, ("trt10.16", "trt11"))
    assert got == {t: [("error", "op", "Attention", f"Attention att: a `present_key` output is not supported by "
                        f"the {TARGETS[t].name} ONNX parser")] for t in ("trt10.16", "trt11")}
    node = helper.make_node("Attention", ["q", "k", "v"], ["y"], name="att", q_num_heads=2, kv_num_heads=2)
    m = _model([node], [_vi("q", [1, 5, 8]), _vi("k", [1, 5, 8]), _vi("v", [1, 5, 8])], [_vi("y", None)], opset=23)
    assert [f[3] for f in _op_findings(m, ("trt10.16",))["trt10.16"]] == [
        "Attention att: a 3D `Q` input (must be 4D) is not supported by the TensorRT 10.16 ONNX parser"]
    # attention itself is unsupported on 10.3: that is the op finding, not a restriction one
    assert [f[2] for f in _op_findings(m, ("trt10",))["trt10"]] == ["Attention"]


def test_restrictions_only_apply_to_ops_the_parser_imports():
    ln = helper.make_node("LayerNormalization", ["x", "g", "b"], ["y", "mean"], name="ln", axis=-1)
    inits = [numpy_helper.from_array(np.ones(4, dtype=np.float32), "g"),
             numpy_helper.from_array(np.zeros(4, dtype=np.float32), "b")]
    m = _model([ln], [_vi("x", [2, 4])], [_vi("y", [2, 4]), _vi("mean", None)], inits)
    assert [f.severity for f in trtcheck.check(m, ["trt8.5"])["trt8.5"]] == ["info"]


def test_restriction_table_is_data_keyed_by_op_and_version():
    assert all(isinstance(r, Restriction) and r.op for r in RESTRICTIONS)
    for r in RESTRICTIONS:  # every restricted op is imported by some target, and has a note there
        assert any(r.op in TARGETS[t].supported_ops and r.applies_to(TARGETS[t].version) for t in ALL), r
    einsum = {t: len(restrictions_for(t).get("Einsum", ())) for t in ALL}
    assert einsum == {"trt8.5": 3, "trt10": 3, "trt10.16": 0, "trt11": 0}
    assert "10.12" in TARGETS["trt10"].notes["Einsum"] and "since 10.12" in TARGETS["trt10.16"].notes["Einsum"]


def test_ort_target_has_no_restrictions():
    m = _einsum("...id,...jd->...ij", [1, 2, 5, 4], [1, 2, 5, 4], [1, 2, 5, 5])
    assert trtcheck.check(m, ["ort"]) == {"ort": []}


def test_the_ort_cpu_form_is_named_first_as_build_engine_names_it():
    """UINT8 zero points are the ort-cpu INT8 form: check says so first, on every target, as build-engine
    refuses it; the node-level findings follow."""
    s = numpy_helper.from_array(np.array(0.1, dtype=np.float32), "s")
    zpu = numpy_helper.from_array(np.array(128, dtype=np.uint8), "zpu")
    q = helper.make_node("QuantizeLinear", ["x", "s", "zpu"], ["q"], name="q")
    dq = helper.make_node("DequantizeLinear", ["q", "s", "zpu"], ["y"], name="dq")
    m = _model([q, dq], [_vi("x", [4])], [_vi("y", [4])], [s, zpu], opset=13)
    for target, findings in trtcheck.check(m, list(ALL)).items():
        assert (findings[0].kind, findings[0].subject) == ("form", "ort-cpu INT8"), target
        assert "--qdq-form trt" in findings[0].message


def test_the_table_shows_three_findings_per_op_kind_and_counts_the_rest():
    many = [trtcheck.Finding("trt10", "error", "op", "QuantizeLinear", f"QuantizeLinear q{i}: ...") for i in range(7)]
    other = trtcheck.Finding("trt10", "error", "form", "ort-cpu INT8", "the ort-cpu form")
    shown = trtcheck.shown([other, *many])
    assert [f.message for f in shown] == ["the ort-cpu form", "QuantizeLinear q0: ...", "QuantizeLinear q1: ...",
                                          "QuantizeLinear q2: ...", "... and 4 more QuantizeLinear finding(s) like these"]
