"""SReT family: official sizes and keys, checkpoints, the fixed permutation, deploy form, export."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from helpers import randomize, save_official_checkpoint
from vitdeploy.core.errors import CheckpointError, UsageError
from vitdeploy.models import create_model, get_spec, list_models, make_deploy_ready, model_params
from vitdeploy.models.registry import get_entry
from vitdeploy.models.sret import SReT, alias_groups

torch.set_num_threads(1)

OFFICIAL = [
    "SReT_T", "SReT_LT", "SReT_S", "SReT_T_distill", "SReT_LT_distill",
    "SReT_T_wo_slice", "SReT_LT_wo_slice", "SReT_S_wo_slice", "SReT_LT_wo_slice_distill",
    "SReT_S_wo_slice_finetune_384",
]
SLICED = ["SReT_T", "SReT_LT", "SReT_S", "SReT_T_distill", "SReT_LT_distill"]


def _meta(name: str, **kwargs) -> SReT:
    with torch.device("meta"):
        return get_entry(name).factory(**kwargs)


def _tiny(seed: int = 0, **kwargs) -> SReT:
    model = randomize(create_model("sret_tiny_test", **kwargs), seed=seed, scale=0.2)
    with torch.no_grad():  # coefficients near 1, as trained ones are, so every branch matters
        for name, p in model.named_parameters():
            if "coefficient" in name:
                p.add_(1.0)
    return model.eval()


def _x(batch: int, side: int = 32, seed: int = 1) -> torch.Tensor:
    return torch.randn(batch, 3, side, side, generator=torch.Generator().manual_seed(seed))


# ---------------------------------------------------------------- registry, sizes, keys


def test_registry_lists_every_variant():
    names = list_models("sret")
    assert set(OFFICIAL) | {"sret_tiny_test"} == set(names)
    assert list_models("sret", include_tiny=False) == [n for n in names if n != "sret_tiny_test"]


@pytest.mark.parametrize("name", OFFICIAL)
def test_param_count_matches_official_and_paper(name):
    spec = get_spec(name)
    n = model_params(name)
    assert n == spec.official_params
    assert spec.paper_top1 and spec.macs_g
    if name == "SReT_S_wo_slice_finetune_384":
        # README rounds to 21.0M; the exact count is SReT_S plus the larger position embedding.
        assert n == get_spec("SReT_S").official_params + 126 * (48 * 48 - 28 * 28)
        assert abs(n - spec.extra["paper_params"]) / spec.extra["paper_params"] < 0.005
    else:
        assert abs(n - spec.extra["paper_params"]) / spec.extra["paper_params"] < 1e-3


@pytest.mark.parametrize("name", ["SReT_T", "SReT_S_wo_slice"])
def test_official_state_dict_layout(name):
    model = _meta(name)
    sd = model.state_dict(keep_vars=True)
    assert len(sd) == 510
    groups = alias_groups(model)
    assert len(groups) == 160
    # a shared block is saved at its two positions, i and i + 2
    for keys in groups:
        a, b = sorted(keys, key=lambda k: int(k.split(".")[3]))
        assert len(keys) == 2 and a.split(".")[4:] == b.split(".")[4:]
        assert int(b.split(".")[3]) == int(a.split(".")[3]) + 2 and sd[a] is sd[b]
    coefficients = [k for k, _ in model.named_parameters() if "coefficient" in k]
    assert len(coefficients) == 80 and all(k.endswith(".bias") for k in coefficients)
    assert not any("perm" in k for k in sd)  # permutations are non-persistent


def test_odd_widths():
    t = _meta("SReT_T").state_dict()
    assert [t[f"transformers.{s}.blocks.0.mlp.fc1.weight"].shape[0] for s in range(3)] == [230, 460, 921]
    assert t["transformers.0.blocks.1.mlp.fc1.weight"].shape == (64, 64)  # non-projection MLP ratio 1
    s = _meta("SReT_S")
    attn = s.transformers[0].blocks[0].attn
    assert attn.qkv.weight.shape == (378, 126) and 126 // attn.num_heads == 42
    assert s.pools[0].conv.weight.shape == (252, 1, 3, 3)  # depthwise, channel multiplier 2


def test_meta_build_knows_its_permutations():
    info = _meta("SReT_T").deploy_info()
    assert list(info["permutations"]) == ["transformers.0.blocks.2.attn", "transformers.0.blocks.6.attn"]
    assert all(sorted(p) == list(range(784)) for p in info["permutations"].values())
    assert _meta("SReT_T_wo_slice").deploy_info()["permutations"] == {}


def test_groups_must_divide_tokens():
    with pytest.raises(ValueError, match="groups"):
        create_model("sret_tiny_test", image_size=40)  # 5x5 tokens, 4 groups


# ---------------------------------------------------------------- checkpoints


@pytest.mark.parametrize("name,prefix", [("sret_tiny_test", False), ("sret_tiny_test", True), ("SReT_T", False)])
def test_official_checkpoint_loads_with_identical_logits(tmp_path, name, prefix):
    src = _tiny(3) if name == "sret_tiny_test" else randomize(create_model(name), seed=3).eval()
    # the README's loader: torch.load(path)["model"]; DeiT-style extras next to it
    path = save_official_checkpoint(tmp_path / f"{name}.pth", src.state_dict(), wrapper="model",
                                    module_prefix=prefix, extra={"optimizer": {"lr": 1e-3}})
    model = create_model(name, checkpoint=path)
    side = src.pos_embed.shape[-1] * 8
    x = _x(2, side)
    with torch.no_grad():
        assert torch.equal(model(x), src(x))
    assert model.vitdeploy_load_report.ok


def test_checkpoint_with_one_copy_of_shared_tensors(tmp_path):
    src = _tiny(4)
    sd = src.state_dict()
    dropped = [k for keys in alias_groups(src) for k in sorted(keys)[1:]]
    assert len(dropped) == 32
    path = save_official_checkpoint(tmp_path / "one_copy.pth", {k: v for k, v in sd.items() if k not in dropped})
    model = create_model("sret_tiny_test", checkpoint=path)
    with torch.no_grad():
        assert torch.equal(model(_x(2)), src(_x(2)))
    assert any("alias" in n for n in model.vitdeploy_load_report.notes)


def test_checkpoint_with_disagreeing_aliases_is_refused(tmp_path):
    sd = _tiny(5).state_dict()
    sd = {k: v.clone() for k, v in sd.items()}
    sd["transformers.0.blocks.2.attn.qkv.weight"] += 1.0
    path = save_official_checkpoint(tmp_path / "bad.pth", sd)
    with pytest.raises(CheckpointError, match=r"transformers\.0\.blocks\.2\.attn\.qkv\.weight"):
        create_model("sret_tiny_test", checkpoint=path)


@pytest.mark.parametrize("edit,key", [("rename", "head.weight"), ("drop", "norm.bias"), ("shape", "head.bias"),
                                      ("shape", "transformers.1.blocks.1.mlp.fc1.weight")])
def test_bad_checkpoint_names_the_key(tmp_path, edit, key):
    sd = dict(_tiny(6).state_dict())
    if edit == "rename":
        sd["head.w"] = sd.pop(key)
    elif edit == "drop":
        del sd[key]
    else:
        sd[key] = torch.zeros(tuple(s + 1 for s in sd[key].shape))
    path = save_official_checkpoint(tmp_path / "bad.pth", sd)
    with pytest.raises(CheckpointError, match=key.replace(".", r"\.")):
        create_model("sret_tiny_test", checkpoint=path)


def test_pos_embed_from_another_grid_is_resized(tmp_path):
    big = _tiny(7, image_size=64)  # 8x8 position embedding
    path = save_official_checkpoint(tmp_path / "64px.pth", big.state_dict())
    model = create_model("sret_tiny_test", checkpoint=path)
    expected = F.interpolate(big.pos_embed.detach(), size=(4, 4), mode="bicubic", align_corners=False)
    assert torch.allclose(model.pos_embed, expected, atol=1e-6)
    assert any("pos_embed resized" in n for n in model.vitdeploy_load_report.notes)


# ---------------------------------------------------------------- the permutation


def test_fixed_permutation_is_deterministic_and_seeded():
    a, b = _tiny(8), _tiny(8)
    x = _x(2)
    with torch.no_grad():
        y = a(x)
        assert torch.equal(y, a(x)) and torch.equal(y, b(x))
        other = _tiny(8, permutation_seed=1)
        assert other.deploy_info()["permutations"] != a.deploy_info()["permutations"]
        assert (other(x) - y).abs().max() > 1e-4  # the permutation changes the slicing, hence the logits


def test_deploy_info_records_seed_and_permutations():
    model = _tiny(9, permutation_seed=5)
    info = make_deploy_ready(model).deploy_info()
    assert info["permutation_seed"] == 5 and info["fixed_permutation"] is True
    sites = dict(model.permutation_sites)
    assert set(info["permutations"]) == set(sites) == {"transformers.0.blocks.2.attn", "transformers.1.blocks.2.attn"}
    for name, perm in info["permutations"].items():
        inv = info["inverse_permutations"][name]
        assert isinstance(perm, list) and sorted(perm) == list(range(len(perm)))
        assert [perm[i] for i in inv] == list(range(len(perm)))
        assert sites[name].perm.tolist() == perm and sites[name].perm_inv.tolist() == inv
    assert [len(p) for p in info["permutations"].values()] == [16, 4]


def test_random_mode_reproduces_the_official_randperm():
    fixed = _tiny(10)
    rnd = create_model("sret_tiny_test", fixed_permutation=False)
    rnd.load_state_dict(fixed.state_dict())
    x = _x(2)
    # the official forward draws randperm(N) on each sliced recursive pass, in order
    torch.manual_seed(123)
    drawn = [torch.randperm(16), torch.randperm(4)]
    for attn, perm in zip(fixed.permutation_sites.values(), drawn):
        attn.set_permutation(perm.tolist())
    with torch.no_grad():
        torch.manual_seed(123)
        y = rnd(x)
        assert torch.allclose(y, fixed(x), atol=1e-6, rtol=0)
        outs = [rnd(x) for _ in range(4)]
    assert any((o - outs[0]).abs().max() > 1e-5 for o in outs[1:])  # nondeterministic, as the official
    with pytest.raises(UsageError, match="fixed_permutation"):
        make_deploy_ready(rnd)


def test_learnable_coefficients_are_used():
    model = _tiny(11)
    x = _x(1)
    with torch.no_grad():
        y = model(x)
        model.transformers[0].blocks[0].coefficient2.bias.fill_(0.0)  # shared: both passes
        assert (model(x) - y).abs().max() > 1e-4


# ---------------------------------------------------------------- deploy form


def _check_deploy(model: SReT, batches, side: int) -> None:
    keys = list(model.state_dict())
    n = sum(p.numel() for p in model.parameters())
    dep = make_deploy_ready(model)
    assert list(dep.state_dict()) == keys and sum(p.numel() for p in dep.parameters()) == n
    assert all(a.deploy for a in dep.permutation_sites.values())
    assert dep.permutation_sites["transformers.0.blocks.2.attn"] is dep.transformers[0].blocks[2].attn
    with torch.no_grad():
        for b in batches:
            x = _x(b, side, seed=b)
            assert (dep(x) - model(x)).abs().max().item() <= 1e-5


def test_deploy_matches_plain_tiny():
    _check_deploy(_tiny(12), (1, 3), 32)


def test_deploy_matches_plain_sret_t_at_224():
    _check_deploy(randomize(create_model("SReT_T"), seed=13).eval(), (1,), 224)


def test_deploy_export_has_plain_gathers_only(tmp_path):
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    model = _tiny(14)
    dep = make_deploy_ready(model)
    path = tmp_path / "tiny.onnx"
    torch.onnx.export(dep, _x(1), str(path), opset_version=17, dynamo=False, input_names=["input"],
                      output_names=["logits"], dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
    graph = onnx.load(str(path)).graph
    ops = [n.op_type for n in graph.node]
    assert not {"GatherND", "TopK", "RandomUniform", "RandomNormal", "Einsum", "Loop", "If"} & set(ops)
    assert ops.count("Gather") == 4  # permutation + inverse for each of the two sliced recursive passes
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = _x(5)
    with torch.no_grad():
        ref = model(x).numpy()
    assert abs(sess.run(None, {"input": x.numpy()})[0] - ref).max() <= 1e-4


@pytest.mark.slow
def test_dynamo_export_keeps_opset_17(tmp_path):
    onnx = pytest.importorskip("onnx")
    dep = make_deploy_ready(_tiny(15))
    path = tmp_path / "tiny_dynamo.onnx"
    batch = torch.export.Dim("batch", min=1, max=64)
    torch.onnx.export(dep, (_x(2),), str(path), opset_version=17, dynamo=True, input_names=["input"],
                      output_names=["logits"], dynamic_shapes={"x": {0: batch}})
    proto = onnx.load(str(path))
    assert [o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")] == [17]
    ops = {n.op_type for n in proto.graph.node}
    assert not {"GatherND", "TopK", "ReduceMean"} & ops and "Gather" in ops
