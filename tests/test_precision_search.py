"""Accuracy-budgeted mixed precision (`quantize --max-drop`, vitdeploy.calib.search): the layers kept float
for a budget, chosen on one half of the held-out images and confirmed on the other."""

from __future__ import annotations

import json
import math

import numpy as np
import onnx
import pytest

import digits
from vitdeploy.calib import cost, search
from vitdeploy.calib.quantize import QuantizeConfig, quantize
from vitdeploy.core.errors import UsageError
from vitdeploy.core.precision import QuantPolicy


@pytest.fixture(autouse=True)
def _cache(isolated_cache):
    return isolated_cache


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory):
    from vitdeploy.export import ExportConfig, export

    out = tmp_path_factory.mktemp("m") / "vit.onnx"
    export(ExportConfig("vit_tiny_test", output=out, targets=("trt10",)))
    return out


@pytest.fixture(scope="module")
def digits_npz(tmp_path_factory):
    """Every digit, preprocessed as vit_tiny_test takes it, with labels."""
    from vitdeploy.models import get_spec

    images, labels = digits.digit_images(32)
    path = tmp_path_factory.mktemp("npz") / "digits.npz"
    np.savez(path, x=digits.preprocessed(images, get_spec("vit_tiny_test").preprocessing()), labels=labels)
    return path


# --- the acceptance rule ---------------------------------------------------------------------------

def test_flip_rate_sees_how_close_a_plan_came_without_any_flip():
    rng = np.random.default_rng(0)
    ref = rng.standard_normal((400, 10)) * 3
    assert search.flip_rate(ref, ref, None, "agreement") == 0.0
    small = ref + rng.standard_normal(ref.shape) * 1e-4
    larger = ref + rng.standard_normal(ref.shape) * 1e-3
    assert (larger.argmax(1) == ref.argmax(1)).all() and (small.argmax(1) == ref.argmax(1)).all()  # no flip here...
    r_small, r_larger = search.flip_rate(ref, small, None, "agreement"), search.flip_rate(ref, larger, None, "agreement")
    assert 0 < r_small < r_larger  # ...but the larger perturbation is expected to flip more new images
    large = ref + rng.standard_normal(ref.shape) * 0.3
    r_large = search.flip_rate(ref, large, None, "agreement")
    # it predicts the flips of another sample of the same kind
    new = rng.standard_normal((20000, 10)) * 3
    flips = ((new + rng.standard_normal(new.shape) * 0.3).argmax(1) != new.argmax(1)).mean()
    assert r_large == pytest.approx(flips, rel=0.5)


def test_top1_flip_rate_counts_only_images_that_were_right():
    ref = np.array([[3.0, 0.0], [0.0, 3.0], [1.0, 0.9]])
    cand = np.array([[3.0, 0.0], [0.0, 3.0], [0.9, 1.0]])  # the third flips
    lost = search.flip_rate(ref, cand, np.array([0, 1, 0]), "top1")
    gained = search.flip_rate(ref, cand, np.array([0, 1, 1]), "top1")  # it was wrong: a gain, not a loss
    assert lost > 3 * gained  # the flipped image at risk counts; as a gain it does not


def test_pass_probability_is_a_poisson_count_within_the_budget():
    assert search.pass_probability(0.0, 400, 0.1) == 1.0
    # 0.5 pt of 400 images allows 2 flips; an expected 1 flip passes with e^-1 (1 + 1 + 1/2)
    assert search.pass_probability(1 / 400, 400, 0.5) == pytest.approx(math.exp(-1) * 2.5)
    assert search.pass_probability(0.05, 400, 0.5) < 1e-5  # 20 expected flips
    # large sets and budgets (hundreds of allowed flips): no overflow, and the Poisson median where it should be
    assert search.pass_probability(0.02, 5000, 5.0) == pytest.approx(1.0)
    assert search.pass_probability(0.01, 20000, 1.0) == pytest.approx(0.5, abs=0.03)
    assert search.pass_probability(0.2, 50000, 1.0) == pytest.approx(0.0, abs=1e-9)


def test_path_budget_bounds_the_search():
    assert [search.path_budget(n) for n in (0, 1, 14, 74)] == [1, 3, 9, 15]


# --- the cost model ----------------------------------------------------------------------------------

def test_gpu_profiles_are_published_dense_throughput_with_their_source():
    orin = cost.profile("orin")
    assert orin.mac["fp16"] == pytest.approx(2 * orin.mac["int8"])  # 85 dense INT8 TOPS, 42.5 FP16 TFLOPS
    assert "170" in orin.source and "sparsity" in orin.source and not orin.measured
    layer = cost.LayerCost(macs=10**9, input_elements=10**5, weight_elements=10**6, output_elements=10**5)
    assert orin.layer_seconds(layer, "int8") < orin.layer_seconds(layer, "fp16")  # compute-bound: 2x
    thin = cost.LayerCost(macs=10**5, input_elements=10**6, weight_elements=10, output_elements=10**6)
    # memory-bound: INT8 saves the input's bytes only, not half the time
    assert orin.layer_seconds(thin, "int8") / orin.layer_seconds(thin, "fp16") == pytest.approx(3 / 4, rel=1e-4)
    with pytest.raises(UsageError):
        cost.profile("tpu")


def test_ort_cpu_profile_is_timed_here():
    p = cost.profile("ort-cpu")
    assert p.measured and "timed here" in p.source and p.byte is None
    assert p.mac["int8"] > 0 and p.mac["fp32"] > 0 and p.boundary_element > 0


# --- the switchable model ----------------------------------------------------------------------------

@pytest.mark.parametrize("target", ["trt", "ort-cpu"])
def test_switchable_model_runs_every_layer_float_or_int8(tiny_onnx, target):
    from vitdeploy.calib import qdq, qdq_write
    from vitdeploy.calib.graph import constants_to_initializers, name_unnamed_nodes
    from vitdeploy.core.precision import QuantPolicy
    from vitdeploy.runners.ort import OnnxRuntimeRunner

    model = onnx.load(str(tiny_onnx))
    constants_to_initializers(model)
    name_unnamed_nodes(model)
    qplan = qdq.plan(model, QuantPolicy())
    rng = {t: (2.0 if target == "trt" else (-2.0, 2.0)) for t in qplan.activations}
    out_ranges = {t: (-2.0, 2.0) for t in qplan.node_outputs(model)} if target == "ort-cpu" else {}
    qmodel = qdq_write.write(model, qplan, rng, target, out_ranges)  # narrows qplan to what ort-cpu quantizes
    groups = search.layer_groups(model, qplan)
    names = [g.name for g in groups]
    assert len(set(names)) == len(names)
    assert {"patch_embed.proj", "blocks.0.attn.qkv", "blocks.1.attn.proj", "head"} <= set(names)
    attention = {"blocks.0.attn.QK^T", "blocks.0.attn.AV"}
    assert attention <= set(names) if target == "trt" else not attention & set(names)  # ort-cpu keeps them float
    sim = search.switchable(model, qmodel, groups)
    onnx.checker.check_model(sim)
    switched = {n.name.split("__switch")[0] for n in sim.graph.node if "__switch" in n.name}
    assert switched == {g.node for g in groups}  # every group has a switch, and nothing else does
    x = np.random.default_rng(0).standard_normal((4, 3, 32, 32)).astype(np.float32)
    with OnnxRuntimeRunner(tiny_onnx) as r:
        fp32 = r.infer_one(x)
    with OnnxRuntimeRunner(qmodel.SerializeToString()) as r:
        int8 = r.infer_one(x)
    with search.Evaluator(sim.SerializeToString(), "input", len(groups), 1, 8, None) as ev:
        np.testing.assert_allclose(ev.run(x, set()), fp32, rtol=1e-5, atol=1e-5)
        every = ev.run(x, set(range(len(groups))))
        if target == "trt":
            np.testing.assert_allclose(every, int8, rtol=1e-4, atol=1e-4)
        else:  # ONNX Runtime runs the file's integer kernels (requantized QLinearConv): the same up to rounding
            assert search.metric_drop(int8, every, None, "cosine")[1] < 1e-3
        one = ev.run(x, {0})
        assert ev.count == 3
    assert not np.allclose(one, fp32, atol=1e-7) and not np.allclose(one, int8, atol=1e-5)


# --- options and refusals ----------------------------------------------------------------------------

def _one_error(err: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith(("error:", "internal error:"))]
    assert len(lines) == 1 and lines[0].startswith("error:") and "Traceback" not in err, err
    return lines[0]


@pytest.mark.parametrize("kwargs, match", [
    ({"metric": "top1"}, "give --max-drop"),
    ({"device_profile": "orin"}, "give --max-drop"),
    ({"max_drop": -1.0}, ">= 0"),
    ({"max_drop": float("nan")}, ">= 0"),
    ({"max_drop": 0.5, "metric": "top5"}, "unknown --metric"),
    ({"max_drop": 0.5, "device_profile": "h200"}, "unknown --device-profile"),
])
def test_budget_options_are_checked_before_any_work(tmp_path, kwargs, match):
    with pytest.raises(UsageError, match=match):
        QuantizeConfig(model=tmp_path / "m.onnx", precision="int8", calib=tmp_path, **kwargs)


def test_max_drop_refuses_the_implicit_int8_calibration_cache(tmp_path):
    with pytest.raises(UsageError, match="--trt-calibration-cache"):
        QuantizeConfig(model=tmp_path / "m.onnx", precision="int8", calib=tmp_path, max_drop=0.5, trt_calibration_cache=True)


def test_nothing_left_to_search_is_a_usage_error(tiny_onnx, digits_npz, tmp_path):
    with pytest.raises(UsageError, match="no quantizable layer is left"):
        quantize(QuantizeConfig(model=tiny_onnx, precision="int8", calib=digits_npz, samples=32, holdout=32, max_drop=0.5,
                                policy=QuantPolicy(exclude=("MatMul", "Gemm", "Conv")), output=tmp_path / "q.onnx"))


def test_a_static_batch_model_is_searched(tmp_path, digits_npz, tiny_onnx):
    from vitdeploy.export import BatchRange, ExportConfig, export

    static = export(ExportConfig("vit_tiny_test", output=tmp_path / "s.onnx", targets=("trt10",),
                                 batch=BatchRange(4, 4, 4))).onnx_path
    res = quantize(QuantizeConfig(model=static, precision="int8", calib=digits_npz, samples=32, holdout=30,
                                  max_drop=1.0, metric="cosine", output=tmp_path / "q.onnx"))
    ps = res.manifest["quantization"]["precision_search"]
    dynamic = search.layer_costs(onnx.load(str(tiny_onnx)), np.load(digits_npz)["x"][:1], "input", 1)[0]
    assert ps["model_macs_per_image"] == sum(c.macs for c in dynamic.values())  # per image, not per batch of 4


def test_top1_and_agreement_need_class_scores(tmp_path):
    from vitdeploy.calib.quantize import _search_split

    config = QuantizeConfig(model=tmp_path / "m.onnx", precision="int8", calib=tmp_path, max_drop=0.5)
    assert _search_split(config, np.arange(10), None, None, ["N", 1])[0] == "cosine"  # the default follows the output
    with pytest.raises(UsageError, match="needs class scores"):
        _search_split(QuantizeConfig(model=tmp_path / "m.onnx", precision="int8", calib=tmp_path, max_drop=0.5,
                                     metric="agreement"), np.arange(10), None, None, ["N", 1])
    metric, sel, conf = _search_split(config, np.arange(10), None, None, ["N", 10])
    assert metric == "agreement" and not set(sel) & set(conf) and len(sel) + len(conf) == 10


def test_max_drop_is_int8_only(tmp_path):
    with pytest.raises(UsageError, match="--max-drop only applies to --int8"):
        QuantizeConfig(model=tmp_path / "m.onnx", precision="fp16", max_drop=0.5)


@pytest.mark.parametrize("args, match", [
    (("--metric", "agreement"), "give --max-drop"),
    (("--max-drop", "0.5", "--precisions", "fp32,fp16"), "add int8 to --precisions"),
    (("--max-drop", "-0.5"), ">= 0"),
    (("--max-drop", "0.5", "--metric", "top5"), "unknown --metric"),
])
def test_deploy_checks_budget_options_before_the_export(cli, tmp_path, args, match):
    rc, _, err = cli("deploy", "vit_tiny_test", "--out", tmp_path / "out", *args)
    assert rc == 2 and match in _one_error(err)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").glob("*.onnx"))


def test_top1_needs_labels_and_says_so_in_one_line(tiny_onnx, tmp_path, cli):
    x = np.random.default_rng(0).standard_normal((64, 3, 32, 32)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    rc, out, err = cli("quantize", tiny_onnx, "--int8", "--calib", tmp_path / "x.npy", "--samples", "32", "--holdout", "32",
                       "--max-drop", "0.5", "--metric", "top1", "--no-data-check", "-o", tmp_path / "q.onnx")
    assert rc == 2 and "needs labelled images" in _one_error(err)
    assert not (tmp_path / "q.onnx").exists() and not (tmp_path / "q.search.png").exists()


def test_unreachable_budget_names_the_best_figure_and_writes_nothing(tiny_onnx, digits_npz, tmp_path, cli):
    # a cosine drop of 0 cannot be met even with every layer in FP16: FP16 rounding alone moves the outputs
    out = tmp_path / "q.onnx"
    rc, _, err = cli("quantize", tiny_onnx, "--int8", "--calib", digits_npz, "--samples", "64", "--holdout", "64",
                     "--max-drop", "0", "--metric", "cosine", "-o", out)
    line = _one_error(err)
    assert rc == 6 and "budget not reachable: even with every layer in FP16" in line and "over --max-drop 0" in line
    assert not out.exists() and not out.with_suffix(".json").exists() and not (tmp_path / "q.search.png").exists()


# --- the planted-outlier user model (issue 13's acceptance test) -------------------------------------

def _plant_outliers(src, dst, block: int, channels: list[int], factor: float) -> str:
    """Scale a few channels of blocks.N.norm1's output by ``factor`` and the qkv weights that read them by
    1/factor: the FP32 function is unchanged, the LayerNorm output gets outlier channels (as trained ViTs
    do), and a per-tensor INT8 scale for it loses the other channels. Returns the qkv layer's name."""
    from onnx import numpy_helper as nh

    m = onnx.load(str(src))
    inits = {i.name: i for i in m.graph.initializer}
    ln = next(n for n in m.graph.node if n.op_type == "LayerNormalization" and f"blocks.{block}/norm1" in n.name)
    for k in (1, 2):  # private copies: LayerNorm parameters may be shared initializers
        a = nh.to_array(inits[ln.input[k]]).copy()
        a[channels] *= factor
        m.graph.initializer.append(nh.from_array(a, f"{ln.input[k]}__planted"))
        ln.input[k] = f"{ln.input[k]}__planted"
    consumers = {x: [n for n in m.graph.node if x in n.input] for n in m.graph.node for x in n.output}
    node = ln
    while node.op_type not in ("Gemm", "MatMul"):  # through the Reshape to the 2-D Gemm
        node = consumers[node.output[0]][0]
    transposed = node.op_type == "Gemm" and any(a.name == "transB" and a.i for a in node.attribute)
    w = nh.to_array(inits[node.input[1]]).copy()
    if transposed:
        w[:, channels] /= factor
    else:
        w[channels, :] /= factor
    m.graph.initializer.append(nh.from_array(w, f"{node.input[1]}__planted"))
    node.input[1] = f"{node.input[1]}__planted"
    onnx.save(m, str(dst))
    return f"blocks.{block}.attn.qkv"


@pytest.mark.slow
def test_outlier_channels_after_layernorm_are_kept_float_within_budget(digits_vit_tiny, digits_npz, tmp_path, capsys):
    import torch

    from vitdeploy.export import ExportConfig, export
    from vitdeploy.runners.ort import OnnxRuntimeRunner

    state = torch.load(digits_vit_tiny["checkpoint"])
    ckpt = tmp_path / "vit.pth"
    torch.save(state, ckpt)
    trained = tmp_path / "trained.onnx"
    export(ExportConfig("vit_tiny_test", checkpoint=ckpt, output=trained, targets=("trt10",)))
    user = tmp_path / "user.onnx"  # a user's ONNX: no manifest; preprocessed data needs none
    qkv = _plant_outliers(trained, user, block=1, channels=[5, 20, 41], factor=150.0)

    x = np.load(digits_npz)["x"][:256]
    with OnnxRuntimeRunner(trained) as a, OnnxRuntimeRunner(user) as b:
        np.testing.assert_allclose(b.infer_one(x), a.infer_one(x), rtol=1e-3, atol=1e-3)  # same function in FP32

    common = dict(model=user, precision="int8", calib=digits_npz, samples=512, holdout=898, threads=2)
    naive = quantize(QuantizeConfig(**common, output=tmp_path / "naive.onnx", gate=False)).manifest["accuracy"]["vs_fp32"]
    assert naive["cosine_mean"] < 0.95 and naive["top1_agreement"] < 0.9, naive  # the planted outliers hurt (0.905, 83.9%)

    res = quantize(QuantizeConfig(**common, max_drop=0.5, metric="agreement", output=tmp_path / "budget.onnx"))
    ps = res.manifest["quantization"]["precision_search"]
    with capsys.disabled():
        print(f"\n[outliers] naive INT8: cosine {naive['cosine_mean']:.4f}, agreement {naive['top1_agreement']:.2%}; "
              f"--max-drop 0.5 agreement: {ps['confirmation']['drop_points']:.2f} pt on {ps['confirmation']['samples']} "
              f"confirmation images, {ps['int8_mac_share']:.1%} of MACs INT8, float: {', '.join(ps['float_layers'])}; "
              f"{ps['evaluations']['total']} evaluations (bound {ps['evaluations']['bound']})")
    assert ps["confirmation"]["within_budget"] and ps["confirmation"]["drop_points"] <= 0.5
    assert 100 * (1 - res.manifest["accuracy"]["vs_fp32"]["top1_agreement"]) == pytest.approx(ps["confirmation"]["drop_points"], abs=1e-3)
    assert ps["int8_mac_share"] >= 0.8, ps["int8_mac_share"]
    assert qkv in ps["float_layers"]  # the plan names the outlier-fed layer
    assert ps["evaluations"]["total"] <= ps["evaluations"]["bound"] < 2 * ps["layers_total"] + 20
    groups = {g["layer"]: g for g in ps["layers"]}
    assert groups[qkv]["harm_int8_alone_1_minus_cos"] == max(g["harm_int8_alone_1_minus_cos"] for g in groups.values())
    assert (tmp_path / "budget.search.png").stat().st_size > 10_000 and ps["plot"] == "budget.search.png"
    manifest = json.loads((tmp_path / "budget.json").read_text())
    assert manifest["quantization"]["precision_search"]["float_layers"] == ps["float_layers"]
    assert manifest["quantization"]["exclude"] == []  # the user's --exclude: none; the search's choice is its own block

    again = quantize(QuantizeConfig(**common, max_drop=0.5, metric="agreement", output=tmp_path / "again.onnx"))
    steps = {s["name"]: s for s in again.manifest["steps"]}
    assert steps["activation statistics"]["detail"] == "from cache"  # the second run reuses the statistics
    assert again.manifest["quantization"]["precision_search"]["float_layers"] == ps["float_layers"]


@pytest.mark.slow
def test_deploy_max_drop_searches_the_int8_step_and_reports_it(digits_vit_tiny, digits_npz, tmp_path, cli):
    import torch

    ckpt = tmp_path / "vit.pth"
    torch.save(torch.load(digits_vit_tiny["checkpoint"]), ckpt)
    out = tmp_path / "out"
    rc, stdout, err = cli("deploy", "vit_tiny_test", "--checkpoint", ckpt, "--calib", digits_npz, "--samples", "256",
                          "--holdout", "400", "--precisions", "fp32,int8", "--max-drop", "0.5", "--iterations", "5",
                          "--out", out)
    assert rc == 0, err
    int8 = next(out.glob("*.int8*.json"))
    ps = json.loads(int8.read_text())["quantization"]["precision_search"]
    assert ps["max_drop_points"] == 0.5 and ps["confirmation"]["within_budget"]
    assert ps["device_profile"]["name"] == "ort-cpu"  # the CPU INT8 step is searched for this CPU
    report = (out / "report.md").read_text()
    assert "INT8 precision search: --max-drop 0.5 pt" in report and f"{ps['confirmation']['samples']} confirmation" in report


def test_the_final_pass_reuses_the_searched_ranges(tiny_onnx, digits_npz, tmp_path, monkeypatch):
    """The final plan is a part of the searched one: each tensor's entropy threshold is searched once."""
    from vitdeploy.calib import passes

    calls: list[int] = []
    real = passes.symmetric_amax
    monkeypatch.setattr(passes, "symmetric_amax", lambda s, *a: (calls.append(id(s)), real(s, *a))[1])
    res = quantize(QuantizeConfig(model=tiny_onnx, precision="int8", calib=digits_npz, samples=32, holdout=32,
                                  method="entropy", max_drop=1.0, metric="cosine", output=tmp_path / "q.onnx"))
    assert calls and len(calls) == len(set(calls))
    planned = res.manifest["quantization"]["ranges"]
    assert planned and all(v > 0 for v in planned.values())
