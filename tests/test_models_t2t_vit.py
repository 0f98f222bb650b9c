"""T2T-ViT family: official sizes and names, checkpoints, deploy form and the family's traps."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from helpers import randomize, save_official_checkpoint
from vitdeploy.core.errors import CheckpointError
from vitdeploy.models import create_model, get_spec, list_models, make_deploy_ready, model_params
from vitdeploy.models.layers import resize_pos_embed
from vitdeploy.models.registry import get_entry
from vitdeploy.models.spec import IMAGENET_MEAN, IMAGENET_STD
from vitdeploy.models.t2t_vit import SoftSplit, T2T_ViT, TokenAttention, TokenPerformer

torch.set_num_threads(1)

# name: (paper/README params in millions, embed_dim, depth, heads, tokens type,
#        number of state_dict entries of the official model)
OFFICIAL = {
    "t2t_vit_7": (4.31, 256, 7, 4, "performer", 111),
    "t2t_vit_10": (5.89, 256, 10, 4, "performer", 144),
    "t2t_vit_12": (6.94, 256, 12, 4, "performer", 166),
    "t2t_vit_14": (21.55, 384, 14, 6, "performer", 188),
    "t2t_vit_19": (39.18, 448, 19, 7, "performer", 243),
    "t2t_vit_24": (64.11, 512, 24, 8, "performer", 298),
    "t2t_vit_t_14": (21.54, 384, 14, 6, "transformer", 184),
    "t2t_vit_t_19": (39.2, 448, 19, 7, "transformer", 239),
    "t2t_vit_t_24": (64.1, 512, 24, 8, "transformer", 294),
}
TINY = ["t2t_vit_tiny_test", "t2t_vit_t_tiny_test"]


def _meta(name: str, **kwargs) -> T2T_ViT:
    with torch.device("meta"):
        return get_entry(name).factory(**kwargs)


def _model(name: str, seed: int = 0, **kwargs) -> T2T_ViT:
    torch.manual_seed(seed + 100)  # different seeds -> different Performer draws `w`
    return randomize(create_model(name, **kwargs), seed=seed).eval()


def _input(name: str, batch: int, seed: int = 0) -> torch.Tensor:
    size = get_spec(name).input_size
    return torch.randn((batch,) + tuple(size), generator=torch.Generator().manual_seed(seed))


# --------------------------------------------------------------------------- registry / sizes


def test_registry_has_every_official_variant():
    names = set(list_models("t2t_vit"))
    assert set(OFFICIAL) | set(TINY) == names
    assert set(list_models("t2t_vit", include_tiny=False)) == set(OFFICIAL)


@pytest.mark.parametrize("name", list(OFFICIAL))
def test_param_count_matches_official_and_paper(name):
    spec = get_spec(name)
    n = model_params(name)
    assert n == spec.official_params
    paper = OFFICIAL[name][0] * 1e6
    assert abs(n - paper) / paper < 1e-3
    assert spec.crop_pct == 0.9 and spec.interpolation == "bicubic"
    assert spec.mean == IMAGENET_MEAN and spec.std == IMAGENET_STD
    assert spec.paper_top1 is not None and spec.macs_g is not None


@pytest.mark.parametrize("name", list(OFFICIAL))
def test_state_dict_layout_is_official(name):
    _, dim, depth, heads, kind, n_keys = OFFICIAL[name]
    sd = _meta(name).state_dict()
    assert len(sd) == n_keys
    t = "tokens_to_token."
    assert tuple(sd["pos_embed"].shape) == (1, 197, dim)
    assert tuple(sd["cls_token"].shape) == (1, 1, dim)
    assert tuple(sd[t + "project.weight"].shape) == (dim, 576)
    assert f"blocks.{depth - 1}.attn.qkv.weight" in sd and f"blocks.{depth}.norm1.weight" not in sd
    assert "blocks.0.attn.qkv.bias" not in sd  # qkv_bias=False
    if kind == "performer":
        assert tuple(sd[t + "attention1.w"].shape) == (32, 64)
        assert tuple(sd[t + "attention2.w"].shape) == (32, 64)
        assert tuple(sd[t + "attention1.kqv.weight"].shape) == (192, 147)
        assert tuple(sd[t + "attention2.kqv.weight"].shape) == (192, 576)
        assert tuple(sd[t + "attention1.mlp.2.weight"].shape) == (64, 64)
        assert t + "attention1.norm2.weight" in sd
    else:
        assert tuple(sd[t + "attention1.attn.qkv.weight"].shape) == (192, 147)
        assert t + "attention1.attn.qkv.bias" not in sd
        assert tuple(sd[t + "attention2.mlp.fc1.weight"].shape) == (64, 64)


def test_tiny_variants_are_small_and_exercise_both_t2t_kinds():
    for name in TINY:
        spec = get_spec(name)
        assert spec.tiny and spec.input_size == (3, 32, 32) and spec.num_classes == 10
        model = _meta(name)
        assert len(model.blocks) == 2 and model_params(name) < 200_000
    assert isinstance(_meta(TINY[0]).tokens_to_token.attention1, TokenPerformer)
    assert isinstance(_meta(TINY[1]).tokens_to_token.attention1.attn, TokenAttention)


# --------------------------------------------------------------------------- family traps


@pytest.mark.parametrize("name", list(OFFICIAL) + TINY)
def test_default_attention_scale_matches_released_weights(name):
    model = _meta(name)
    dim = model.embed_dim
    for blk in model.blocks:  # qk_scale = embed_dim ** -0.5, not head_dim ** -0.5
        assert blk.attn.scale == pytest.approx(dim**-0.5, rel=1e-12)
    t2t = model.tokens_to_token
    if isinstance(t2t.attention1, nn.Module) and hasattr(t2t.attention1, "attn"):
        # the token transformer keeps (input width) ** -0.5: qk_scale never reaches it
        assert t2t.attention1.attn.scale == pytest.approx(t2t.attention1.norm1.normalized_shape[0] ** -0.5)
        assert t2t.attention2.attn.scale == pytest.approx(t2t.attention2.norm1.normalized_shape[0] ** -0.5)
    head_dim = dim // model.blocks[0].attn.num_heads
    assert _meta(name, qk_scale=None).blocks[0].attn.scale == pytest.approx(head_dim**-0.5)


def test_attention_scale_changes_the_output():
    ref = randomize(create_model(TINY[0]), seed=2, scale=0.3)
    other = create_model(TINY[0], qk_scale=None)
    other.load_state_dict(ref.state_dict())
    x = _input(TINY[0], 2)
    with torch.no_grad():
        assert (ref(x) - other(x)).abs().max() > 1e-3


@pytest.mark.parametrize("name", ["t2t_vit_14", "t2t_vit_t_14"] + TINY)
def test_layernorm_eps_is_official(name):
    norms = [m for m in _meta(name).modules() if isinstance(m, nn.LayerNorm)]
    assert norms and all(m.eps == 1e-5 for m in norms)


def _official_sinusoid(n_position: int, dim: int) -> torch.Tensor:
    angles = np.array([[p / np.power(10000, 2 * (j // 2) / dim) for j in range(dim)] for p in range(n_position)])
    angles[:, 0::2] = np.sin(angles[:, 0::2])
    angles[:, 1::2] = np.cos(angles[:, 1::2])
    return torch.FloatTensor(angles).unsqueeze(0)


@pytest.mark.parametrize("name", TINY + ["t2t_vit_7"])
def test_pos_embed_is_the_frozen_sinusoid_parameter(name):
    model = create_model(name)
    pe = model.pos_embed
    assert isinstance(pe, nn.Parameter) and not pe.requires_grad
    assert "pos_embed" in model.state_dict()
    assert any(p is pe for p in model.parameters())  # counted as the official code counts it
    assert torch.equal(pe.detach(), _official_sinusoid(pe.shape[1], pe.shape[2]))


def _performer_reference(mod: TokenPerformer, x: torch.Tensor) -> torch.Tensor:
    """The official Performer formula, written out: kqv split order k, q, v."""
    h = F.layer_norm(x, mod.norm1.normalized_shape, mod.norm1.weight, mod.norm1.bias, 1e-5)
    kqv = h @ mod.kqv.weight.t() + mod.kqv.bias
    e = mod.emb
    k, q, v = kqv[..., :e], kqv[..., e:2 * e], kqv[..., 2 * e:]
    w = mod.w

    def phi(t):
        return torch.exp(t @ w.t() - (t * t).sum(-1, keepdim=True) / 2) / math.sqrt(w.shape[0])

    kp, qp = phi(k), phi(q)
    num = qp @ (kp.transpose(1, 2) @ v)
    den = qp @ kp.sum(1, keepdim=True).transpose(1, 2)
    y = v + (num / (den + 1e-8)) @ mod.proj.weight.t() + mod.proj.bias
    return y + mod.mlp(F.layer_norm(y, mod.norm2.normalized_shape, mod.norm2.weight, mod.norm2.bias, 1e-5))


def test_performer_matches_reference_with_kqv_order_and_stored_w():
    mod = TokenPerformer(27, 16).eval()
    w = mod.w.detach().clone()  # keep the orthogonal draw, randomize the trained weights strongly
    randomize(mod, seed=3, scale=0.3)
    with torch.no_grad():
        mod.w.copy_(w)
    x = torch.randn(2, 10, 27, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref = _performer_reference(mod, x)
        assert (mod(x) - ref).abs().max() < 1e-5
        mod.switch_to_deploy()
        assert (mod(x) - ref).abs().max() < 1e-5
        # the check can fail: k and q swapped gives another result
        kqv_w = mod.kqv.weight.clone()
        mod.kqv.weight[:16], mod.kqv.weight[16:32] = kqv_w[16:32], kqv_w[:16]
        mod.kqv.bias[:16], mod.kqv.bias[16:32] = mod.kqv.bias[16:32].clone(), mod.kqv.bias[:16].clone()
        assert (mod(x) - ref).abs().max() > 1e-4


def test_token_attention_matches_reference():
    mod = randomize(TokenAttention(27, 1, in_dim=16), seed=4).eval()
    x = torch.randn(2, 10, 27, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        q, k, v = (x @ mod.qkv.weight.t()).split(16, dim=-1)
        attn = (q @ k.transpose(1, 2) * 27**-0.5).softmax(-1)
        ref = v + (attn @ v) @ mod.proj.weight.t() + mod.proj.bias
        assert (mod(x) - ref).abs().max() < 1e-6


def test_performer_w_is_loaded_not_redrawn(tmp_path):
    src = _model(TINY[0], seed=1)
    fresh = create_model(TINY[0])
    w_key = "tokens_to_token.attention1.w"
    assert not torch.equal(src.state_dict()[w_key], fresh.state_dict()[w_key])
    path = save_official_checkpoint(tmp_path / "ck.pth.tar", src.state_dict(), wrapper="state_dict")
    loaded = create_model(TINY[0], checkpoint=path)
    assert torch.equal(loaded.state_dict()[w_key], src.state_dict()[w_key])
    deployed = make_deploy_ready(loaded)
    assert torch.equal(deployed.state_dict()[w_key], src.state_dict()[w_key])
    assert not deployed.tokens_to_token.attention1.w.requires_grad


def test_checkpoint_without_performer_w_is_refused_even_non_strict(tmp_path):
    sd = _model(TINY[0]).state_dict()
    del sd["tokens_to_token.attention2.w"]
    path = save_official_checkpoint(tmp_path / "now.pth.tar", sd, wrapper="state_dict")
    for strict in (True, False):
        with pytest.raises(CheckpointError, match=r"tokens_to_token\.attention2\.w"):
            create_model(TINY[0], checkpoint=path, strict=strict)


# --------------------------------------------------------------------------- checkpoints


@pytest.mark.parametrize("name", TINY + ["t2t_vit_7"])
def test_official_checkpoint_loads_strictly_with_identical_logits(tmp_path, name):
    src = _model(name, seed=5)
    # timm 0.3.4 CheckpointSaver layout, weights behind DistributedDataParallel's "module."
    path = save_official_checkpoint(tmp_path / "model_best.pth.tar", src.state_dict(), wrapper="state_dict",
                                    module_prefix=True, ema="state_dict_ema",
                                    extra={"arch": name, "version": 2, "metric": 71.7})
    model = create_model(name, checkpoint=path)
    report = model.vitdeploy_load_report
    assert report.ok and report.source_key == "state_dict_ema" and report.stripped_prefix == "module."
    x = _input(name, 2)
    with torch.no_grad():
        assert torch.equal(model(x), src(x))


def test_ema_weights_are_preferred(tmp_path):
    ema, raw = _model(TINY[0], seed=6), _model(TINY[0], seed=7)
    path = save_official_checkpoint(tmp_path / "ck.pth.tar", raw.state_dict(), wrapper="state_dict",
                                    extra={"state_dict_ema": {k: v.clone() for k, v in ema.state_dict().items()}})
    model = create_model(TINY[0], checkpoint=path)
    x = _input(TINY[0], 1)
    with torch.no_grad():
        assert torch.equal(model(x), ema(x))


def test_checkpoint_with_renamed_key_names_it(tmp_path):
    sd = _model(TINY[0]).state_dict()
    sd["tokens_to_token.attention1.qkv.weight"] = sd.pop("tokens_to_token.attention1.kqv.weight")
    path = save_official_checkpoint(tmp_path / "renamed.pth.tar", sd, wrapper="state_dict")
    with pytest.raises(CheckpointError, match=r"tokens_to_token\.attention1\.kqv\.weight"):
        create_model(TINY[0], checkpoint=path)


def test_checkpoint_with_wrong_shape_names_it(tmp_path):
    sd = _model(TINY[1]).state_dict()
    sd["tokens_to_token.project.weight"] = torch.zeros(64, 100)
    path = save_official_checkpoint(tmp_path / "shape.pth.tar", sd, wrapper="state_dict")
    with pytest.raises(CheckpointError, match=r"tokens_to_token\.project\.weight"):
        create_model(TINY[1], checkpoint=path)


def test_pos_embed_from_another_grid_is_resized_and_noted(tmp_path):
    src = _model(TINY[0], seed=8, img_size=64)  # 4x4 grid + class token
    assert src.pos_embed.shape[1] == 17
    path = save_official_checkpoint(tmp_path / "64px.pth.tar", src.state_dict(), wrapper="state_dict")
    model = create_model(TINY[0], checkpoint=path)  # 2x2 grid
    assert any("pos_embed resized" in n for n in model.vitdeploy_load_report.notes)
    expected = resize_pos_embed(src.pos_embed.detach(), (2, 2), 1)
    assert torch.equal(model.pos_embed.detach(), expected)
    assert torch.equal(model.pos_embed[:, 0], src.pos_embed[:, 0])  # class slot kept


# --------------------------------------------------------------------------- deploy form


@pytest.mark.parametrize("channels,kernel,stride,padding,size", [(3, 7, 4, 2, 32), (16, 3, 2, 1, 8), (5, 3, 2, 1, 7)])
def test_soft_split_conv_is_exactly_unfold(channels, kernel, stride, padding, size):
    split = SoftSplit(channels, kernel, stride, padding)
    x = torch.randn(3, channels, size, size + 1)
    ref = F.unfold(x, kernel, padding=padding, stride=stride).transpose(1, 2)
    assert torch.equal(split(x), ref)
    split.build_conv()
    assert split.state_dict() == {}  # one-hot kernels are not persistent
    assert torch.equal(split(x), ref)
    assert split.output_grid(size, size + 1)[0] * split.output_grid(size, size + 1)[1] == ref.shape[1]


@pytest.mark.parametrize("name", TINY)
def test_deploy_form_matches_plain_without_einsum_or_unfold(name, monkeypatch):
    model = _model(name, seed=9)
    deployed = make_deploy_ready(model)
    assert set(deployed.state_dict()) == set(model.state_dict())
    assert sum(p.numel() for p in deployed.parameters()) == sum(p.numel() for p in model.parameters())
    outputs = {}
    with torch.no_grad():
        for b in (1, 3):
            outputs[b] = model(_input(name, b, seed=b))

    def refuse(*args, **kwargs):
        raise AssertionError("deploy form must not call einsum / unfold")

    monkeypatch.setattr(torch, "einsum", refuse)
    monkeypatch.setattr(F, "unfold", refuse)
    with torch.no_grad():
        for b in (1, 3):
            assert (deployed(_input(name, b, seed=b)) - outputs[b]).abs().max() <= 1e-5


def test_deploy_form_of_official_variant_at_224():
    model = _model("t2t_vit_7", seed=10)
    deployed = make_deploy_ready(model)
    x = _input("t2t_vit_7", 1)
    with torch.no_grad():
        ref = model(x)
        assert ref.abs().max() > 0.1
        assert (deployed(x) - ref).abs().max() <= 1e-5
    for i in range(3):
        assert deployed.tokens_to_token.get_submodule(f"soft_split{i}").deploy
    assert deployed.tokens_to_token.attention1.deploy and not model.tokens_to_token.attention1.deploy
