"""Calibration: data loading, methods that really differ, Q/DQ placement, caches, bad input."""

import json

import numpy as np
import onnx
import pytest
from PIL import Image

from vitdeploy.core.preprocessing import Preprocessing
from vitdeploy.data.batches import load_samples
from vitdeploy.data.checks import check_shape
from vitdeploy.data.sampling import sample_indices
from vitdeploy.data.sources import open_dataset
from vitdeploy.calib import qdq
from vitdeploy.core.precision import QuantHints, QuantPolicy
from vitdeploy.trt import calibration_cache as trtcache
from vitdeploy.calib.methods import METHODS, TensorStats, asymmetric_range, symmetric_amax
from vitdeploy.core.errors import InputError, UsageError

PRE = Preprocessing((3, 32, 32), (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), "bilinear", 1.0)


@pytest.fixture(autouse=True)
def _cache(isolated_cache):
    return isolated_cache


def skewed_stats(seed=0) -> TensorStats:
    rng = np.random.default_rng(seed)
    s = TensorStats()
    for _ in range(3):
        x = rng.standard_normal(200_000).astype(np.float32)
        x[:4] = rng.uniform(40, 60, 4)  # a few large outliers, as attention/MLP activations have
        s.update(x)
    return s


def test_methods_differ_and_clip_outliers():
    s = skewed_stats()
    amax = {m: symmetric_amax(s, m) for m in METHODS}
    assert amax["minmax"] == pytest.approx(s.amax) and amax["minmax"] > 40
    assert len({round(v, 4) for v in amax.values()}) == len(METHODS), amax
    for m in ("entropy", "percentile"):
        assert amax[m] < 0.25 * amax["minmax"], (m, amax)  # the outliers are clipped
        assert amax[m] > 3.0  # but not the bulk of a unit Gaussian
    lo, hi = asymmetric_range(s, "percentile")
    assert lo < 0 < hi and hi < 10


def test_histogram_growth_keeps_counts_and_extrema():
    s = TensorStats()
    s.update(np.linspace(-1, 1, 1001, dtype=np.float32))
    s.update(np.array([-7.5, 3.0], np.float32))  # range grows: bins merge
    assert s.count == 1003 and s.min == -7.5 and s.max == 3.0
    assert s.folded().sum() == 1003 and s.range >= 7.5


def _digit_folder(root, n=12, bad=0):
    rng = np.random.default_rng(0)
    for i in range(n):
        d = root / f"class{i % 3}"
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (20, 24, 3), dtype=np.uint8)).save(d / f"{i}.png")
    for i in range(bad):
        (root / "class0" / f"broken{i}.jpg").write_bytes(b"not an image")
    return root


def test_image_folder_labels_and_preprocessing(tmp_path):
    ds = open_dataset(_digit_folder(tmp_path / "imgs"))
    assert ds.classes == ["class0", "class1", "class2"] and len(ds) == 12
    s = load_samples(ds, PRE, np.arange(len(ds)))
    x, idx = s[:], s.indices
    assert x.shape == (12, 3, 32, 32) and x.dtype == np.float32
    assert -1.0 - 1e-6 <= x.min() and x.max() <= 1.0 + 1e-6
    assert list(ds.labels[idx][:3]) == [0, 0, 0]


def test_undecodable_images_are_counted_or_fatal(tmp_path):
    root = _digit_folder(tmp_path / "imgs", n=6, bad=2)
    ds = open_dataset(root)
    x = load_samples(ds, PRE, np.arange(len(ds)))
    assert len(x) == 6 and len(ds.skipped) == 2 and "broken" in ds.skipped[0][0]
    with pytest.raises(InputError, match="cannot decode .*broken0.jpg"):
        load_samples(open_dataset(root), PRE, np.arange(len(ds)), on_error="fail")


def test_npz_and_text_list(tmp_path):
    arr = np.zeros((5, 3, 32, 32), np.float32)
    np.savez(tmp_path / "c.npz", images=arr, labels=np.arange(5))
    ds = open_dataset(tmp_path / "c.npz")
    assert ds.kind == "array" and list(ds.labels) == [0, 1, 2, 3, 4]
    root = _digit_folder(tmp_path / "imgs", n=3)
    lst = tmp_path / "list.txt"
    lst.write_text("\n".join(str(p) for p in sorted(root.rglob("*.png"))))
    assert len(open_dataset(lst)) == 3
    np.save(tmp_path / "bad.npy", np.zeros((4, 3, 16, 16), np.float32))
    with pytest.raises(InputError, match=r"samples are \(3, 16, 16\) but the model takes \(3, 32, 32\)"):
        check_shape(open_dataset(tmp_path / "bad.npy"), PRE)


def test_sampling_is_deterministic():
    a = sample_indices(100, 10, seed=3)
    assert np.array_equal(a, sample_indices(100, 10, seed=3))
    assert not np.array_equal(a, sample_indices(100, 10, seed=4))


def test_trt_calibration_cache_round_trip():
    text = trtcache.encode({"input": 2.54, "/blocks.0/x": 127.0}, "8.5.2")
    header, scales = trtcache.decode(text)
    assert header == "TRT-8502-EntropyCalibration2"
    assert scales["input"] == pytest.approx(0.02) and scales["/blocks.0/x"] == pytest.approx(1.0)
    assert text.splitlines()[2] == "/blocks.0/x: 3f800000"  # 1.0f big-endian


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory):
    from vitdeploy.export import ExportConfig, export

    out = tmp_path_factory.mktemp("m") / "vit.onnx"
    export(ExportConfig("vit_tiny_test", output=out, targets=("trt10",)))  # keeps LayerNormalization
    return out


def test_qdq_placement_is_vit_aware(tiny_onnx):
    model = onnx.load(str(tiny_onnx))
    plan = qdq.plan(model)
    ops = {q.op for q in plan.inputs}
    assert ops <= {"MatMul", "Gemm", "Conv"} and {"MatMul", "Conv"} <= ops
    consumers = {n.op_type for n in model.graph.node for x in n.input if x in plan.activations}
    assert "LayerNormalization" not in {q.op for q in plan.inputs}
    assert consumers & {"MatMul", "Gemm", "Conv"}
    attention = [q for q in plan.inputs if q.op == "MatMul" and not q.is_weight]
    no_attn = qdq.plan(model, QuantPolicy(quantize_attention=False))
    assert len(no_attn.inputs) < len(plan.inputs) and any("attention" in why for _, why in no_attn.skipped_nodes)
    assert attention
    with pytest.raises(UsageError, match="neither an op type nor a node name"):
        qdq.plan(model, QuantPolicy(exclude=("NoSuchOp",)))
    excl = qdq.plan(model, QuantPolicy(exclude=("Conv",)))
    assert "Conv" not in {q.op for q in excl.inputs}


def test_quantize_int8_trt_and_cache_reuse(cli, tiny_onnx, tmp_path):
    data = _digit_folder(tmp_path / "imgs", n=40)
    out = tmp_path / "q.onnx"
    rc, _, err = cli("quantize", tiny_onnx, "--int8", "--calib", data, "--samples", "24", "--holdout", "8", "-o", out,
                     "--trt-calibration-cache")
    assert rc == 0, err
    m = json.loads((tmp_path / "q.json").read_text())
    q = m["quantization"]
    assert q["method"] == "percentile" and q["statistics"]["cached"] is False
    assert m["calibration_data"]["calibration_samples"] == 24 and m["calibration_data"]["holdout_samples"] == 8
    assert m["accuracy"]["vs_fp32"]["cosine_min"] > 0.9 and m["parent"]["precision"] == "fp32"
    model = onnx.load(str(out))
    qs = [n for n in model.graph.node if n.op_type == "QuantizeLinear"]
    assert qs and all(onnx.numpy_helper.to_array(i).dtype == np.int8 for i in model.graph.initializer if i.name.endswith("__zero_point"))
    header, scales = trtcache.decode((tmp_path / "q.calib").read_text())
    assert "input" in scales and len(scales) > len(qs) // 2
    # another method reuses the statistics: the model is not run again
    rc, _, err = cli("quantize", tiny_onnx, "--int8", "--calib", data, "--samples", "24", "--holdout", "8", "-o", out,
                     "--method", "minmax", "--force", "--trt-calibration-cache")
    assert rc == 0, err
    m2 = json.loads((tmp_path / "q.json").read_text())
    assert m2["quantization"]["statistics"]["cached"] is True
    r1, r2 = q["ranges"], m2["quantization"]["ranges"]
    assert any(r2[t] > r1[t] for t in r1)  # minmax keeps outliers that percentile clipped


def test_quantize_ort_cpu_uses_uint8_activations(cli, tiny_onnx, tmp_path):
    data = _digit_folder(tmp_path / "imgs", n=20)
    rc, _, err = cli("quantize", tiny_onnx, "--int8", "--calib", data, "--samples", "12", "--qdq-form", "ort-cpu",
                     "-o", tmp_path / "o.onnx")
    assert rc == 0, err
    model = onnx.load(str(tmp_path / "o.onnx"))
    zps = [onnx.numpy_helper.to_array(i) for i in model.graph.initializer if i.name.endswith("__zero_point")]
    assert zps and all(z.dtype == np.uint8 for z in zps)
    weights = [onnx.numpy_helper.to_array(i) for i in model.graph.initializer if i.name.endswith("__int8")]
    assert weights and all(np.abs(w).max() <= 63 for w in weights)  # 7-bit: no U8S8 saturation on AVX2
    # outputs of weight layers are quantized too, so ONNX Runtime fuses QLinearMatMul / QLinearConv
    out_q = [n for n in model.graph.node if n.op_type == "QuantizeLinear" and n.name.endswith("__OQ")]
    assert out_q and json.loads((tmp_path / "o.json").read_text())["quantization"]["quantized_outputs"] == len(out_q)
    assert model.graph.output[0].name == "logits" and not any(n.name == "logits__OQ" for n in model.graph.node)


def test_quantize_fp16(cli, tiny_onnx, tmp_path):
    rc, _, err = cli("quantize", tiny_onnx, "--fp16", "-o", tmp_path / "h.onnx")
    assert rc == 0, err
    m = json.loads((tmp_path / "h.json").read_text())
    assert m["precision"] == "fp16" and m["accuracy"]["vs_fp32"]["cosine_min"] > 0.9999
    model = onnx.load(str(tmp_path / "h.onnx"))
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    ln = [n for n in model.graph.node if n.op_type == "LayerNormalization"]
    types = {i.name: i.data_type for i in model.graph.initializer}
    assert ln and all(types.get(n.input[1]) == onnx.TensorProto.FLOAT for n in ln)  # LayerNorm kept FP32
    assert any(t == onnx.TensorProto.FLOAT16 for t in types.values())


@pytest.mark.parametrize("case, code, message", [
    ("empty", 3, "no images"),
    ("undecodable", 3, "no decodable image"),
    ("wrong_npy", 3, "but the model takes"),
    ("no_manifest", 2, "no preprocessing known"),
    ("bad_exclude", 2, "neither an op type nor a node name"),
    ("no_calib", 2, "--int8 needs calibration data"),
    ("bad_method", 2, "unknown method"),
])
def test_quantize_bad_input(cli, tiny_onnx, tmp_path, case, code, message):
    model = tiny_onnx
    args = ["--int8", "--calib"]
    if case == "empty":
        (tmp_path / "empty").mkdir()
        args += [tmp_path / "empty"]
    elif case == "undecodable":
        (tmp_path / "bad").mkdir()
        (tmp_path / "bad" / "a.png").write_bytes(b"junk")
        args += [tmp_path / "bad"]
    elif case == "wrong_npy":
        np.save(tmp_path / "w.npy", np.zeros((4, 3, 8, 8), np.float32))
        args += [tmp_path / "w.npy"]
    else:
        np.save(tmp_path / "ok.npy", np.zeros((4, 3, 32, 32), np.float32))
        args += [tmp_path / "ok.npy"]
        if case == "no_manifest":  # images need mean/std (a preprocessed array would not)
            model = tmp_path / "bare.onnx"
            model.write_bytes(tiny_onnx.read_bytes())
            from PIL import Image

            (tmp_path / "imgs").mkdir()
            Image.new("RGB", (40, 40), (90, 120, 30)).save(tmp_path / "imgs" / "a.png")
            args[-1] = tmp_path / "imgs"
        elif case == "bad_exclude":
            args += ["--exclude", "Blocks42"]
        elif case == "no_calib":
            args = ["--int8"]
        elif case == "bad_method":
            args += ["--method", "magic"]
    out = tmp_path / "out.onnx"
    rc, _, err = cli("quantize", model, *args, "-o", out)
    assert rc == code, err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and message in errors[0] and "Traceback" not in err
    assert not out.exists() and not (tmp_path / "out.json").exists()


def test_entropy_ignores_the_relu_zero_spike():
    rng = np.random.default_rng(1)
    s = TensorStats()
    x = np.maximum(rng.standard_normal(300_000).astype(np.float32), 0)  # half the mass exactly at 0
    s.update(x)
    t = symmetric_amax(s, "entropy")
    assert t > 0.6 * s.amax, (t, s.amax)  # without the fix, the zero spike drags this to ~0.3 * amax


def _graph_with_depthwise_and_constant_weight():
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w_dw = numpy_helper.from_array(rng.standard_normal((4, 1, 3, 3)).astype(np.float32), "w_dw")
    w_pw = rng.standard_normal((4, 4, 1, 1)).astype(np.float32)
    nodes = [
        helper.make_node("Constant", [], ["w_pw"], value=numpy_helper.from_array(w_pw, "w_pw_value")),
        helper.make_node("Conv", ["x", "w_pw"], ["a"], name="pointwise"),
        helper.make_node("Conv", ["a", "w_dw"], ["b"], name="depthwise", group=4, pads=[1, 1, 1, 1]),
        helper.make_node("Conv", ["b", "w_pw"], ["y"], name="pointwise2"),
    ]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 8, 8])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, 8])], [w_dw])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def test_depthwise_constant_weights_and_input_layer_rules():
    from vitdeploy.calib.graph import constants_to_initializers

    model = _graph_with_depthwise_and_constant_weight()
    raw = qdq.plan(model)  # Constant-node weights look like activations until hoisted
    assert not any(q.is_weight and q.tensor == "w_pw" for q in raw.inputs)
    assert constants_to_initializers(model) == 1
    p = qdq.plan(model)
    assert {q.node for q in p.inputs} == {"pointwise", "pointwise2"}
    assert ("depthwise", "depthwise conv left in float") in p.skipped_nodes
    assert any(q.is_weight and q.tensor == "w_pw" and q.axis == 0 for q in p.inputs)
    assert "depthwise" in {q.node for q in qdq.plan(model, QuantPolicy(quantize_depthwise=True)).inputs}
    hinted = qdq.plan(model, QuantPolicy(hints=QuantHints(float_input_layer=True)))
    assert "pointwise" not in {q.node for q in hinted.inputs}
    globbed = qdq.plan(model, QuantPolicy(exclude=("point*2",)))
    assert "pointwise2" not in {q.node for q in globbed.inputs} and "pointwise" in {q.node for q in globbed.inputs}


def test_family_hints_flow_from_export_manifest(tmp_path):
    from vitdeploy.calib.quantize import QuantizeConfig, quantize
    from vitdeploy.export import ExportConfig, export

    onnx_path = export(ExportConfig("convit_tiny_test", output=tmp_path / "c.onnx", targets=("trt10",))).onnx_path
    hints = json.loads((tmp_path / "c.json").read_text())["quantization_hints"]
    assert hints["float_mixed_attention"] is True and hints["why"]
    arr = np.random.default_rng(0).standard_normal((24, 3, 32, 32)).astype(np.float32)
    np.save(tmp_path / "d.npy", arr)
    with_hints = quantize(QuantizeConfig(model=onnx_path, precision="int8", calib=tmp_path / "d.npy", samples=16,
                                         output=tmp_path / "a.onnx")).manifest["quantization"]
    without = quantize(QuantizeConfig(model=onnx_path, precision="int8", calib=tmp_path / "d.npy", samples=16,
                                      output=tmp_path / "b.onnx", family_hints=False)).manifest["quantization"]
    blended = [n for n, why in with_hints["skipped_nodes"] if "blended attention" in why]
    assert blended and with_hints["quantized_nodes"] == without["quantized_nodes"] - len(blended)


@pytest.mark.parametrize("batch, available, samples, calibrated", [
    (4, 30, 18, 16),  # whole batches of 4
    (48, 110, 100, 96),  # 96 calibrate, but the FP16 range statistics read the first 64: one whole batch
])
def test_quantize_static_batch_model(tmp_path, batch, available, samples, calibrated):
    from vitdeploy.calib.quantize import QuantizeConfig, quantize
    from vitdeploy.export import BatchRange, ExportConfig, export

    onnx_path = export(ExportConfig("vit_tiny_test", output=tmp_path / "s.onnx", batch=BatchRange(batch, batch, batch),
                                    targets=("ort",))).onnx_path
    np.save(tmp_path / "d.npy", np.random.default_rng(0).standard_normal((available, 3, 32, 32)).astype(np.float32))
    for precision in ("int8", "fp16"):
        m = quantize(QuantizeConfig(model=onnx_path, precision=precision, calib=tmp_path / "d.npy", samples=samples,
                                    holdout=7, output=tmp_path / f"{precision}.onnx")).manifest
        assert m["accuracy"]["samples"] == 7 and m["accuracy"]["vs_fp32"]["cosine_min"] > 0.9
        assert m["calibration_data"]["calibration_samples"] == calibrated


def test_trt_calibration_cache_header_per_version():
    assert trtcache.header("8.6.1") == "TRT-8601-EntropyCalibration2"
    assert trtcache.header("10.3.0") == "TRT-100300-EntropyCalibration2"


def test_family_hints_are_typed_and_round_trip_through_the_manifest_form():
    from vitdeploy.export.family import FAMILY_CONFIGS

    for fam in FAMILY_CONFIGS.values():
        h = fam.quantization_hints
        assert QuantHints.from_json(h.to_json()) == h
        assert all(v is True for k, v in h.to_json().items() if k != "why")  # only the flags that are set
    assert FAMILY_CONFIGS["ceit"].quantization_hints.to_json()["float_input_layer"] is True
    assert QuantHints.from_json(None) == QuantHints() and QuantHints().to_json() == {}


def test_mixed_attention_probabilities_are_never_clipped():
    """ConViT's GPSA: (1 - g) * softmax(q k^T) + g * softmax(pos), rows divided by their sum, then x v. The
    mixed rows are probabilities like a Softmax output's (never clipped); a product with v is not."""
    from onnx import TensorProto, helper as h

    const = lambda name, v: helper_init(name, v)  # noqa: E731
    nodes = [h.make_node("MatMul", ["q", "k"], ["logits"]), h.make_node("Softmax", ["logits"], ["content"], axis=-1),
             h.make_node("Mul", ["content", "one_minus_g"], ["gated"]), h.make_node("Add", ["gated", "pos"], ["mixed"]),
             h.make_node("ReduceSum", ["mixed", "axes"], ["rowsum"], keepdims=1),
             h.make_node("Div", ["mixed", "rowsum"], ["attn"]), h.make_node("Transpose", ["content"], ["content_t"]),
             h.make_node("MatMul", ["attn", "v"], ["out"]), h.make_node("Mul", ["out", "one_minus_g"], ["scaled_out"])]
    graph = h.make_graph(nodes, "gpsa", [h.make_tensor_value_info(n, TensorProto.FLOAT, [1, 4, 4]) for n in "qkv"],
                         [h.make_tensor_value_info("scaled_out", TensorProto.FLOAT, None)],
                         [const("one_minus_g", [0.7]), const("pos", np.full((4, 4), 0.075)), const("axes", [-1])])
    model = h.make_model(graph)
    ranges = {"attn": (0.0, 0.93), "content_t": (0.0, 1.0), "logits": (-3.0, 4.0), "out": (-0.2, 0.9),
              "gated": (0.0, 0.7), "scaled_out": (-2.0, 1.5)}
    assert qdq.probability_tensors(model, list(ranges), ranges) == ["attn", "content_t", "gated"]
    # a mix whose calibrated values leave [0, 1], or are unknown (no statistics, only NaN seen), is not a probability
    for unknown in ({"attn": (-0.1, 0.9)}, {}, {"attn": (float("inf"), float("-inf"))}):
        assert qdq.probability_tensors(model, ["attn"], unknown) == [], unknown
    assert qdq.probability_tensors(model, ["content_t"], {}) == ["content_t"]  # a plain Softmax output needs no range


def helper_init(name, values):
    return onnx.numpy_helper.from_array(np.asarray(values, dtype=np.int64 if name == "axes" else np.float32), name)


def test_statistics_of_a_batch_too_large_for_memory_are_collected_in_chunks(tiny_onnx, monkeypatch):
    """ONNX Runtime holds every requested tensor of a run: a batch whose tensors exceed the budget runs in
    chunks (extrema, counts and the share of tiny values unchanged); one that fits runs whole (histograms too)."""
    from vitdeploy.calib import stats
    from vitdeploy.calib.graph import float_tensor_names
    from vitdeploy.runners.ort import OnnxRuntimeRunner

    model = onnx.load(str(tiny_onnx))
    tensors = float_tensor_names(model)
    x = np.random.default_rng(0).standard_normal((16, 3, 32, 32)).astype(np.float32)
    sizes: list[int] = []
    real = OnnxRuntimeRunner.infer
    monkeypatch.setattr(OnnxRuntimeRunner, "infer", lambda self, feeds: (sizes.append(len(feeds["input"])), real(self, feeds))[1])
    whole = stats.collect(model, tensors, [x[:16]], "input")
    assert sizes == [1, 16]  # the one-sample probe, then the batch as it is
    sizes.clear()
    one = stats.collect(model, tensors, [x[:16]], "input", max_output_bytes=1)
    assert sizes == [1] + [1] * 16
    batched = [t for t in tensors if whole[t].count % 16 == 0]  # not the constants, computed once a run
    assert len(batched) > 50
    for t in batched:
        a, b = whole[t], one[t]
        assert (a.min, a.max, a.count, a.zeros, a.tiny) == (b.min, b.max, b.count, b.zeros, b.tiny), t
        assert a.folded().sum() == b.folded().sum()
    sizes.clear()
    stats.collect(model, tensors, [x[:4], x[4:8]], "input", static_batch=4, max_output_bytes=1)
    assert sizes == [4, 4]  # a static batch runs whole


def test_random_weights_show_no_top1_as_validate(tiny_onnx, tmp_path):
    """A model exported without --checkpoint: its held-out labels give no top-1 figure even when it scores
    above chance (kept for diagnosis), as validate treats them; the cosine still gates."""
    import json

    from vitdeploy.calib.accuracy import judge_accuracy
    from vitdeploy.calib.quantize import QuantizeConfig

    parent = json.loads(tiny_onnx.with_suffix(".json").read_text())
    comparison = {"samples": 200, "max_abs": 0.01, "max_rel": 0.01, "mean_abs": 0.001, "cosine_min": 0.999,
                  "cosine_mean": 0.9995, "top1_agreement": 0.99, "top5_agreement": 1.0, "worst": []}
    config = QuantizeConfig(model=tiny_onnx, precision="int8", calib=tmp_path)
    for weights, shown in (("random", False), ("trained", True)):
        acc = {"samples": 200, "vs_fp32": dict(comparison), "top1_fp32": 0.5, "top1": 0.5, "top1_drop_points": 0.0}
        manifest = parent if weights == "random" else {**parent, "checkpoint": {"path": "w.pth", "sha256": "0" * 64}}
        judge_accuracy(acc, config, manifest, 10, real_data=True, warnings=[])
        assert ("top1" in acc) == shown and ("unusable_labels" in acc) != shown, weights


def test_few_calibration_images_asked_for_say_nothing_went_missing(tiny_onnx, tmp_path):
    from vitdeploy.calib.quantize import QuantizeConfig, quantize

    res = quantize(QuantizeConfig(model=tiny_onnx, precision="int8", calib=_digit_folder(tmp_path / "imgs", n=40),
                                  samples=8, holdout=8, output=tmp_path / "q.onnx", gate=False))
    (few,) = [w for w in res.manifest["warnings"] if w.startswith("only 8 calibration images")]
    assert "where the rest went" not in few
