"""ConViT family: official sizes, checkpoints, deploy form and the family's traps."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from helpers import randomize, save_official_checkpoint
from vitdeploy.core.errors import CheckpointError, UsageError
from vitdeploy.models import create_model, get_spec, list_models, make_deploy_ready, model_params
from vitdeploy.models.convit import GPSA, ConViT, relative_indices
from vitdeploy.models.registry import get_entry

torch.set_num_threads(1)

# FACTS.md / paper figures (millions) and the widths the official factories produce
# (--embed_dim is per head: 48, or 64 for the "+" models).
OFFICIAL = {
    "convit_tiny": (5.71, 4, 192),
    "convit_small": (27.78, 9, 432),
    "convit_base": (86.54, 16, 768),
    "convit_tiny_plus": (9.97, 4, 256),
    "convit_small_plus": (48.98, 9, 576),
    "convit_base_plus": (153.13, 16, 1024),
}


def get_spec_factory(name):
    return get_entry(name).factory


def _meta(name: str) -> ConViT:
    with torch.device("meta"):
        return get_spec_factory(name)()


def _tiny_test(seed: int = 0) -> ConViT:
    return randomize(create_model("convit_tiny_test"), seed=seed, scale=0.2).eval()


def test_registered_variants():
    assert set(list_models("convit", include_tiny=False)) == set(OFFICIAL)
    assert "convit_tiny_test" in list_models("convit")
    spec = get_spec("convit_tiny_test")
    assert spec.tiny and spec.input_size == (3, 32, 32) and spec.num_classes == 10


@pytest.mark.parametrize("name", sorted(OFFICIAL))
def test_param_counts_and_widths(name):
    paper_m, heads, width = OFFICIAL[name]
    spec = get_spec(name)
    n = model_params(name)
    assert n == spec.official_params
    assert abs(n - paper_m * 1e6) / (paper_m * 1e6) < 1e-3
    model = _meta(name)
    assert model.embed_dim == width
    assert model.pos_embed.shape == (1, 196, width)  # no class slot
    kinds = [type(b.attn).__name__ for b in model.blocks]
    assert kinds == ["GPSA"] * 10 + ["Attention"] * 2
    assert all(b.attn.num_heads == heads for b in model.blocks)
    assert spec.interpolation == "bicubic" and spec.crop_pct == 0.875 and spec.paper_top1 and spec.macs_g


def test_layernorm_eps_is_1e6():
    model = _meta("convit_tiny")
    norms = [m for m in model.modules() if isinstance(m, nn.LayerNorm)]
    assert len(norms) == 2 * 12 + 1
    assert all(m.eps == 1e-6 for m in norms)


def test_factory_refuses_ambiguous_embed_dim():
    # Official factories take embed_dim per head and multiply by the heads; ours fix the width.
    with pytest.raises(UsageError, match="per head"):
        get_spec_factory("convit_tiny")(embed_dim=64)


def test_class_token_joins_before_first_plain_block():
    model = _meta("convit_tiny")
    seen = []
    hooks = [b.register_forward_pre_hook(lambda m, a: seen.append(tuple(a[0].shape))) for b in model.blocks]
    with torch.no_grad():
        out = model(torch.empty(2, 3, 224, 224, device="meta"))
    for h in hooks:
        h.remove()
    assert out.shape == (2, 1000)
    assert seen == [(2, 196, 192)] * 10 + [(2, 197, 192)] * 2

    tiny = create_model("convit_tiny_test")
    kinds = [type(b.attn).__name__ for b in tiny.blocks]
    assert kinds == ["GPSA", "Attention"]
    assert tiny.pos_embed.shape == (1, 16, 64)


def _official_rel_indices(num_patches: int) -> torch.Tensor:
    """The official construction (repeat / repeat_interleave), rewritten for the test."""
    s = int(num_patches**0.5)
    ind = torch.arange(s).view(1, -1) - torch.arange(s).view(-1, 1)
    indx = ind.repeat(s, s)
    indy = ind.repeat_interleave(s, dim=0).repeat_interleave(s, dim=1)
    out = torch.zeros(1, num_patches, num_patches, 3)
    out[..., 0], out[..., 1], out[..., 2] = indx, indy, indx**2 + indy**2
    return out


@pytest.mark.parametrize("grid", [4, 14])
def test_relative_indices_match_official_layout(grid):
    assert torch.equal(relative_indices(grid), _official_rel_indices(grid * grid))


def test_local_init_of_positional_projection():
    attn = GPSA(64, num_heads=4, grid=4, locality_strength=1.0)
    assert torch.equal(attn.v.weight, torch.eye(64))
    # 4 heads: 2x2 offsets around the query, centre 0.5; column 0 multiplies dx, 1 dy, 2 dx^2+dy^2
    expected = torch.tensor([[-1.0, -1.0, -1.0], [-1.0, 1.0, -1.0], [1.0, -1.0, -1.0], [1.0, 1.0, -1.0]])
    assert torch.equal(attn.pos_proj.weight, expected)
    assert torch.equal(attn.gating_param, torch.ones(4))


def test_local_init_heads_peak_on_a_3x3_neighbourhood():
    attn = GPSA(36, num_heads=9, grid=5)
    pos = attn.positional_attention()[0]  # heads, N, N
    centre = 2 * 5 + 2  # query at (row 2, col 2)
    peaks = pos[:, centre].argmax(dim=-1).tolist()
    # head h = h1 + 3*h2 looks at (dx, dy) = (h2 - 1, h1 - 1): key (row 2 + dy, col 2 + dx)
    assert peaks == [(1 + h % 3) * 5 + (1 + h // 3) for h in range(9)]
    assert len(set(peaks)) == 9


def test_rel_indices_not_in_state_dict():
    model = create_model("convit_tiny_test")
    assert not any("rel_indices" in k for k in model.state_dict())
    assert "blocks.0.attn.rel_indices" in dict(model.named_buffers())


@pytest.mark.parametrize("batch", [1, 3])
def test_deploy_matches_plain_tiny(batch):
    model = _tiny_test()
    deploy = make_deploy_ready(model)
    x = torch.randn(batch, 3, 32, 32, generator=torch.Generator().manual_seed(batch))
    with torch.no_grad():
        diff = (model(x) - deploy(x)).abs().max().item()
    assert diff <= 1e-5
    assert list(deploy.state_dict()) == list(model.state_dict())
    assert sum(p.numel() for p in deploy.parameters()) == sum(p.numel() for p in model.parameters())
    assert deploy.deploy_info()["gpsa_positional_attention"] == "precomputed"


def test_deploy_uses_precomputed_positional_attention():
    deploy = make_deploy_ready(_tiny_test())
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        before = deploy(x)
        deploy.blocks[0].attn.rel_indices.fill_(1e3)  # the deploy forward must not read it
        deploy.blocks[0].attn.pos_proj.weight.zero_()
        after = deploy(x)
    assert torch.equal(before, after)
    assert "pos_attn" not in deploy.state_dict() and not any("pos_attn" in k for k in deploy.state_dict())


def test_deploy_matches_plain_convit_tiny_224():
    model = randomize(create_model("convit_tiny"), seed=1, scale=0.1).eval()
    deploy = make_deploy_ready(model)
    x = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert (model(x) - deploy(x)).abs().max().item() <= 1e-5


def test_export_tracing_leaves_live_model_intact():
    # The official GPSA caches its indices on the first forward; when that first forward is
    # torch.export's trace, fake tensors stay in the live model. Here nothing is assigned in
    # forward, so exporting a fresh model first must leave it intact.
    model = _tiny_test()
    untouched = copy.deepcopy(model)
    x = torch.randn(2, 3, 32, 32)
    torch.export.export(model, (x,), strict=False)
    attn = model.blocks[0].attn
    assert type(attn.rel_indices) is torch.Tensor and torch.equal(attn.rel_indices, relative_indices(4))
    with torch.no_grad():
        assert torch.equal(model(x), untouched(x))


def _roundtrip(name, tmp_path, **save_kwargs):
    src = randomize(create_model(name), seed=3, scale=0.1).eval()
    path = save_official_checkpoint(tmp_path / f"{name}.pth", src.state_dict(), **save_kwargs)
    loaded = create_model(name, checkpoint=path)
    x = torch.randn(2, *get_spec(name).input_size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.equal(src(x), loaded(x))
    return loaded


@pytest.mark.parametrize("save_kwargs", [
    dict(wrapper=None),  # released weights: bare state dict
    dict(wrapper="model", extra={"model_ema": None, "optimizer": {"state": {}, "param_groups": []},
                                 "lr_scheduler": {"last_epoch": 299}}),  # main.py without EMA
    dict(wrapper="model", ema="model_ema"),
    dict(wrapper="model", module_prefix=True),
], ids=["bare", "model+ema_none", "model_ema", "module_prefix"])
def test_checkpoint_roundtrip_tiny_test(tmp_path, save_kwargs):
    _roundtrip("convit_tiny_test", tmp_path, **save_kwargs)


def test_checkpoint_roundtrip_convit_tiny(tmp_path):
    loaded = _roundtrip("convit_tiny", tmp_path, wrapper="model", extra={"model_ema": None})
    assert loaded.vitdeploy_load_report.source_key == "model"


def test_checkpoint_wrong_key_and_shape_raise(tmp_path):
    sd = create_model("convit_tiny_test").state_dict()
    renamed = dict(sd)
    renamed["blocks.0.attn.qkv.weight"] = renamed.pop("blocks.0.attn.qk.weight")
    p = save_official_checkpoint(tmp_path / "renamed.pth", renamed)
    with pytest.raises(CheckpointError, match=r"blocks\.0\.attn\.qk\.weight"):
        create_model("convit_tiny_test", checkpoint=p)

    missing = {k: v for k, v in sd.items() if k != "blocks.0.attn.gating_param"}
    p = save_official_checkpoint(tmp_path / "missing.pth", missing)
    with pytest.raises(CheckpointError, match="gating_param"):
        create_model("convit_tiny_test", checkpoint=p)

    shaped = dict(sd)
    shaped["head.weight"] = torch.zeros(1000, 64)
    p = save_official_checkpoint(tmp_path / "shape.pth", shaped)
    with pytest.raises(CheckpointError, match=r"head\.weight"):
        create_model("convit_tiny_test", checkpoint=p)


def test_checkpoint_of_other_dims_per_head_gets_a_hint(tmp_path):
    # A model trained with another per-head --embed_dim (8 instead of 16 dims per head).
    other = ConViT(img_size=32, patch_size=8, num_classes=10, embed_dim=32, depth=2, num_heads=4, local_up_to_layer=1)
    p = save_official_checkpoint(tmp_path / "narrow.pth", other.state_dict())
    with pytest.raises(CheckpointError, match=r"cls_token.*8 dims per head.*_plus"):
        create_model("convit_tiny_test", checkpoint=p)


def test_checkpoint_pos_embed_resized_without_class_slot(tmp_path):
    src = randomize(ConViT(img_size=48, patch_size=8, num_classes=10, embed_dim=64, depth=2, num_heads=4,
                           local_up_to_layer=1), seed=4)
    p = save_official_checkpoint(tmp_path / "grid6.pth", src.state_dict())
    model = create_model("convit_tiny_test", checkpoint=p)
    report = model.vitdeploy_load_report
    assert any("pos_embed resized" in n for n in report.notes)
    # bicubic on the 6x6 grid, no prefix tokens: the first token is a grid cell, not a class slot
    grid = src.pos_embed.detach().reshape(1, 6, 6, 64).permute(0, 3, 1, 2)
    want = torch.nn.functional.interpolate(grid, size=(4, 4), mode="bicubic", align_corners=False)
    assert torch.allclose(model.pos_embed, want.permute(0, 2, 3, 1).reshape(1, 16, 64), atol=1e-6)


def test_checkpoint_pos_embed_with_class_slot_rejected(tmp_path):
    sd = create_model("convit_tiny_test").state_dict()
    sd["pos_embed"] = torch.zeros(1, 17, 64)  # DeiT-style: class slot + 4x4 grid
    p = save_official_checkpoint(tmp_path / "deit_like.pth", sd)
    with pytest.raises(CheckpointError, match="class"):
        create_model("convit_tiny_test", checkpoint=p)


def test_checkpoint_with_derived_gpsa_tensors_loads(tmp_path):
    src = _tiny_test(seed=5)
    sd = dict(src.state_dict())
    sd["blocks.0.attn.rel_indices"] = relative_indices(4)  # saved by ports that keep it as a buffer
    p = save_official_checkpoint(tmp_path / "with_rel.pth", sd)
    model = create_model("convit_tiny_test", checkpoint=p)
    assert any("rel_indices" in n for n in model.vitdeploy_load_report.notes)
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(model(x), src(x))


def test_deploy_copy_is_independent():
    model = _tiny_test()
    ref = copy.deepcopy(model)
    make_deploy_ready(model)
    assert not model.blocks[0].attn.deploy
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(model(x), ref(x))
