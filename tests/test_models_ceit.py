"""CeiT family (coeusguo/ceit): parameter counts, checkpoints, family traps, deploy form."""

from __future__ import annotations

import argparse
import math

import pytest
import torch
import torch.nn.functional as F
from helpers import randomize, save_official_checkpoint

from vitdeploy.core.errors import CheckpointError
from vitdeploy.models import create_model, get_spec, list_models, make_deploy_ready, model_params
from vitdeploy.models.ceit import CeiT, LayerClassAttention, LocallyEnhancedFeedForward, ceit_tiny_test

torch.set_num_threads(1)

# exact counts of the official models (sum of p.numel() over ceit_model.py's CeIT)
OFFICIAL = {
    "ceit_tiny_patch16_224": 6_356_904,
    "ceit_small_patch16_224": 24_204_840,
    "ceit_base_patch16_224": 94_405_416,
    "ceit_tiny_patch16_384": 6_429_864,
    "ceit_small_patch16_384": 24_350_760,
}
PAPER_M = {"ceit_tiny_patch16_224": 6.36, "ceit_small_patch16_224": 24.2, "ceit_base_patch16_224": 94.4}
WIDTH = {"tiny": 192, "small": 384}

# Logits of the official CeIT class (ceit_model.py) built with ceit_tiny_test's hyper-parameters
# (Image2Tokens(out_chans=16), img_size 32, patch 2, dim 64, depth 2, heads 2, 10 classes), weights
# from _fill(seed=0), input _pattern_input(); computed once with the official code.
GOLDEN = [
    [-0.150749, 0.376549, 0.609417, 0.62286, -1.326114, -0.788349, 0.387283, 0.067094, -0.148906, 0.768559],
    [-0.143134, 0.368927, 0.629918, 0.650234, -1.319067, -0.799564, 0.362415, 0.061129, -0.147774, 0.768942],
]


def _fill(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Deterministic weights keyed by state_dict name (independent of module order), BN stats included."""
    g = torch.Generator().manual_seed(seed)
    sd = model.state_dict()
    new = {}
    for k in sorted(sd):
        v = sd[k]
        if not v.is_floating_point():
            new[k] = v.clone()
        elif k.endswith("running_var"):
            new[k] = torch.rand(v.shape, generator=g) + 0.5
        elif k.endswith("running_mean"):
            new[k] = torch.randn(v.shape, generator=g) * 0.2
        elif k.endswith(".weight") and v.ndim == 1:  # LayerNorm / BatchNorm scale
            new[k] = 1 + torch.randn(v.shape, generator=g) * 0.1
        else:
            new[k] = torch.randn(v.shape, generator=g) * 0.1
    model.load_state_dict(new)
    return model


def _pattern_input(batch: int = 2, size: int = 32) -> torch.Tensor:
    n = batch * 3 * size * size
    return torch.sin(torch.arange(n, dtype=torch.float32) * 0.37).reshape(batch, 3, size, size)


def _rand_input(batch: int, size: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(seed))


def _training_checkpoint(path, model, **kw):
    """Save as coeusguo/ceit main.py does: model_without_ddp weights plus optimizer/scheduler/EMA/args."""
    sd = model.state_dict()
    extra = {
        "optimizer": {"state": {}, "param_groups": [{"lr": 5e-4, "weight_decay": 0.05, "params": [0, 1]}]},
        "lr_scheduler": {"t_initial": 300, "base_values": [5e-4]},
        "scaler": {"scale": 65536.0, "growth_factor": 2.0, "_growth_tracker": 0},
    }
    return save_official_checkpoint(path, sd, wrapper="model", with_args=True, ema="model_ema", extra=extra, **kw)


# --- registry and parameter counts -------------------------------------------------------------


def test_registered_variants():
    assert sorted(list_models("ceit")) == sorted([*OFFICIAL, "ceit_tiny_test"])
    assert sorted(list_models("ceit", include_tiny=False)) == sorted(OFFICIAL)
    tiny = get_spec("ceit_tiny_test")
    assert tiny.tiny and tiny.input_size == (3, 32, 32) and tiny.num_classes == 10
    for name in OFFICIAL:
        spec = get_spec(name)
        assert spec.source == "coeusguo/ceit"
        assert (spec.interpolation, spec.crop_pct, spec.mean, spec.std) == (
            "bicubic", 0.875, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
        assert spec.paper_top1 and spec.macs_g
        assert spec.input_size == (3, 384, 384) if name.endswith("384") else (3, 224, 224)


@pytest.mark.parametrize("name", list(OFFICIAL))
def test_param_count_matches_official(name):
    n = model_params(name)  # meta device
    assert n == OFFICIAL[name] == get_spec(name).official_params


@pytest.mark.parametrize("name", list(PAPER_M))
def test_param_count_within_paper_figure(name):
    assert abs(OFFICIAL[name] - PAPER_M[name] * 1e6) / (PAPER_M[name] * 1e6) < 1e-3


@pytest.mark.parametrize("size", ["tiny", "small"])
def test_384_variants_differ_only_by_position_embedding(size):
    # the paper lists the 224 model's count for the 384 fine-tunes; the only extra parameters are
    # the (24*24 - 14*14) additional position embeddings
    extra = OFFICIAL[f"ceit_{size}_patch16_384"] - OFFICIAL[f"ceit_{size}_patch16_224"]
    assert extra == (24 * 24 - 14 * 14) * WIDTH[size]


def test_grid_derived_from_img_size():
    assert create_model("ceit_tiny_test").grid_size == (4, 4)
    with torch.device("meta"):
        assert CeiT(img_size=224, embed_dim=192, depth=1, num_heads=3).pos_embed.shape == (1, 197, 192)
        assert CeiT(img_size=384, embed_dim=192, depth=1, num_heads=3).pos_embed.shape == (1, 577, 192)


# --- agreement with the official implementation -------------------------------------------------


def test_tiny_matches_official_logits():
    model = _fill(create_model("ceit_tiny_test"))
    with torch.no_grad():
        y = model(_pattern_input())
    torch.testing.assert_close(y, torch.tensor(GOLDEN), rtol=0, atol=2e-5)


def test_tiny_exercises_every_mechanism():
    m = create_model("ceit_tiny_test")
    assert len(m.blocks) == 2 and m.pos_layer_embed.shape == (1, 2, 64)
    assert isinstance(m.i2t.backbone.bn, torch.nn.BatchNorm2d)
    leff = m.blocks[0].leff
    assert leff.with_bn and leff.conv2.groups == leff.conv2.in_channels == 256 and leff.conv1.kernel_size == (1, 1)
    assert isinstance(m.lca.attn, LayerClassAttention)


def test_leff_class_token_passthrough_and_batchnorm_running_stats():
    torch.manual_seed(0)
    leff = LocallyEnhancedFeedForward(8, 16, (3, 4)).eval()
    randomize(leff, seed=2, scale=0.3)
    x = torch.randn(2, 1 + 12, 8)
    with torch.no_grad():
        y = leff(x)

    def bn(t, m):  # eval-mode BatchNorm written out with the running statistics
        shape = (1, -1, 1, 1)
        return (t - m.running_mean.view(shape)) / torch.sqrt(m.running_var.view(shape) + m.eps) * m.weight.view(
            shape) + m.bias.view(shape)

    with torch.no_grad():
        img = x[:, 1:].reshape(2, 3, 4, 8).permute(0, 3, 1, 2)
        t = F.gelu(bn(F.conv2d(img, leff.conv1.weight, leff.conv1.bias), leff.bn1))
        t = F.gelu(bn(F.conv2d(t, leff.conv2.weight, leff.conv2.bias, padding=1, groups=16), leff.bn2))
        t = bn(F.conv2d(t, leff.conv3.weight, leff.conv3.bias), leff.bn3)
    assert torch.equal(y[:, 0], x[:, 0])  # the class token skips the convolutions
    torch.testing.assert_close(y[:, 1:], t.flatten(2).transpose(1, 2), rtol=0, atol=1e-5)


def test_lca_queries_only_the_last_token():
    torch.manual_seed(0)
    attn = LayerClassAttention(8, num_heads=2, qkv_bias=True).eval()
    randomize(attn, seed=3, scale=0.3)
    x = torch.randn(2, 5, 8)
    with torch.no_grad():
        y = attn(x)
        q, k, v = attn.qkv(x).reshape(2, 5, 3, 2, 4).permute(2, 0, 3, 1, 4)
        a = (q[:, :, -1:] @ k.transpose(-2, -1) * 4**-0.5).softmax(-1)
        ref = attn.proj((a @ v).transpose(1, 2).reshape(2, 1, 8))
    assert y.shape == (2, 1, 8)
    torch.testing.assert_close(y, ref, rtol=0, atol=1e-6)


# --- checkpoints -----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["ceit_tiny_test", "ceit_tiny_patch16_224"])
def test_training_checkpoint_loads_strictly(tmp_path, name):
    src = randomize(create_model(name), seed=5)
    path = _training_checkpoint(tmp_path / "checkpoint.pth", src)
    raw = torch.load(path, map_location="cpu", weights_only=False)
    assert isinstance(raw["args"], argparse.Namespace) and set(raw) >= {"model", "model_ema", "optimizer", "epoch"}
    with pytest.raises(Exception):  # what the FACTS trap is about: plain weights_only loading refuses it
        torch.load(path, map_location="cpu", weights_only=True)

    loaded = create_model(name, checkpoint=path)
    assert loaded.vitdeploy_load_report.ok
    assert torch.equal(loaded.blocks[0].leff.bn1.running_var, src.blocks[0].leff.bn1.running_var)
    size = get_spec(name).input_size[-1]
    x = _rand_input(2, size)
    with torch.no_grad():
        assert torch.equal(loaded(x), src(x))


def test_checkpoint_with_module_prefix(tmp_path):
    src = randomize(create_model("ceit_tiny_test"), seed=6)
    path = _training_checkpoint(tmp_path / "ddp.pth", src, module_prefix=True)
    loaded = create_model("ceit_tiny_test", checkpoint=path)
    assert loaded.vitdeploy_load_report.stripped_prefix == "module."
    x = _rand_input(3, 32)
    with torch.no_grad():
        assert torch.equal(loaded(x), src(x))


def test_official_eval_weights_are_model_not_ema(tmp_path):
    # main.py --eval --resume evaluates checkpoint["model"]; the EMA copy differs after training
    src = randomize(create_model("ceit_tiny_test"), seed=7)
    ema = randomize(create_model("ceit_tiny_test"), seed=8)
    path = save_official_checkpoint(tmp_path / "c.pth", src.state_dict(), wrapper="model", with_args=True,
                                    extra={"model_ema": ema.state_dict()})
    loaded = create_model("ceit_tiny_test", checkpoint=path, prefer_ema=False)
    assert loaded.vitdeploy_load_report.source_key == "model"
    x = _rand_input(1, 32)
    with torch.no_grad():
        assert torch.equal(loaded(x), src(x))


def test_renamed_key_is_named(tmp_path):
    sd = create_model("ceit_tiny_test").state_dict()
    sd["blocks.1.leff.bn2.running_varx"] = sd.pop("blocks.1.leff.bn2.running_var")
    path = save_official_checkpoint(tmp_path / "bad.pth", sd)
    with pytest.raises(CheckpointError, match=r"blocks\.1\.leff\.bn2\.running_var"):
        create_model("ceit_tiny_test", checkpoint=path)


def test_missing_key_is_named(tmp_path):
    sd = create_model("ceit_tiny_test").state_dict()
    del sd["pos_layer_embed"]
    path = save_official_checkpoint(tmp_path / "bad.pth", sd)
    with pytest.raises(CheckpointError, match="pos_layer_embed"):
        create_model("ceit_tiny_test", checkpoint=path)


def test_wrong_shape_is_named(tmp_path):
    sd = create_model("ceit_tiny_test").state_dict()
    sd["lca.attn.qkv.weight"] = torch.zeros(3 * 64, 32)
    path = save_official_checkpoint(tmp_path / "bad.pth", sd)
    with pytest.raises(CheckpointError, match=r"lca\.attn\.qkv\.weight"):
        create_model("ceit_tiny_test", checkpoint=path)


def test_pos_embed_resized_from_other_resolution(tmp_path):
    src = randomize(ceit_tiny_test(img_size=48), seed=9)  # 6x6 grid
    assert src.pos_embed.shape == (1, 37, 64)
    path = save_official_checkpoint(tmp_path / "48.pth", src.state_dict())
    model = create_model("ceit_tiny_test", checkpoint=path)  # 4x4 grid
    assert any("pos_embed resized" in n for n in model.vitdeploy_load_report.notes)
    pe = model.pos_embed.detach()
    assert pe.shape == (1, 17, 64)
    assert torch.equal(pe[:, 0], src.pos_embed.detach()[:, 0])  # class slot kept
    grid = src.pos_embed.detach()[:, 1:].reshape(1, 6, 6, 64).permute(0, 3, 1, 2)
    ref = F.interpolate(grid, size=(4, 4), mode="bicubic", align_corners=False).permute(0, 2, 3, 1).reshape(1, 16, 64)
    torch.testing.assert_close(pe[:, 1:], ref)


def test_unofficial_checkpoint_rejected(tmp_path):
    # rishikksh20/CeiT-pytorch (not the official code): other names, other architecture
    sd = {
        "pos_embedding": torch.zeros(1, 17, 64),
        "cls_token": torch.zeros(1, 1, 64),
        "conv.0.weight": torch.zeros(32, 3, 7, 7),
        "to_patch_embedding.1.weight": torch.zeros(64, 128),
        "transformer.layers.0.0.fn.fn.to_qkv.weight": torch.zeros(192, 64),
        "mlp_head.1.weight": torch.zeros(10, 64),
    }
    path = save_official_checkpoint(tmp_path / "unofficial.pth", sd, wrapper=None)
    with pytest.raises(CheckpointError, match="rishikksh20"):
        create_model("ceit_tiny_test", checkpoint=path)


# --- deploy form and export-relevant shape handling ----------------------------------------------------


def test_non_square_grid_uses_configured_size():
    # the official LeFF takes sqrt(tokens) as the grid side: a 4x6 grid would not reshape
    model = randomize(ceit_tiny_test(img_size=(32, 48)), seed=10).eval()
    assert model.grid_size == (4, 6) and model.blocks[0].leff.grid == (4, 6)
    with torch.no_grad():
        y = model(torch.randn(2, 3, 32, 48))
    assert y.shape == (2, 10) and torch.isfinite(y).all()


@pytest.mark.parametrize("batch", [1, 3])
def test_deploy_form_equals_plain_tiny(batch):
    model = randomize(create_model("ceit_tiny_test"), seed=11)
    deployed = make_deploy_ready(model)
    assert deployed is not model and list(deployed.state_dict()) == list(model.state_dict())
    x = _rand_input(batch, 32)
    with torch.no_grad():
        torch.testing.assert_close(deployed(x), model(x), rtol=0, atol=1e-5)


def test_deploy_form_equals_plain_official_variant():
    model = randomize(create_model("ceit_tiny_patch16_224"), seed=12)
    deployed = make_deploy_ready(model)
    x = _rand_input(1, 224)
    with torch.no_grad():
        torch.testing.assert_close(deployed(x), model(x), rtol=0, atol=1e-5)


def test_onnx_dynamic_batch(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    model = make_deploy_ready(randomize(create_model("ceit_tiny_test"), seed=13))
    f = tmp_path / "ceit.onnx"
    torch.onnx.export(model, _rand_input(2, 32), str(f), opset_version=17, dynamo=False, input_names=["input"],
                      output_names=["logits"], dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
    sess = ort.InferenceSession(str(f), providers=["CPUExecutionProvider"])
    for batch in (1, 3):
        x = _rand_input(batch, 32, seed=batch)
        (y,) = sess.run(None, {"input": x.numpy()})
        with torch.no_grad():
            ref = model(x).numpy()
        assert y.shape == (batch, 10) and math.isclose(float(abs(y - ref).max()), 0.0, abs_tol=1e-4)
