"""Checkpoints saved through training wrappers, checkpoints that are not the model, broken weights.

Issue 15: Lightning (``model.``), torch.compile (``_orig_mod.``), DDP (``module.``) prefixes in any
nesting, or one other leading component shared by every key, are stripped when that makes the keys
match; ``--non-strict`` never loads a checkpoint that is mostly not the model; NaN/Inf refused.
"""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from helpers import randomize, save_official_checkpoint
from vitdeploy.core.errors import CheckpointError
from vitdeploy.export import ExportConfig
from vitdeploy.models import create_model
from vitdeploy.models.checkpoint import MIN_FOUND_SHARE, load_checkpoint, strip_wrapper_prefixes

NAME = "vit_tiny_test"  # 32 state-dict tensors


def _source(seed: int = 0, **kwargs) -> nn.Module:
    return randomize(create_model(NAME, **kwargs), seed=seed).eval()


def _prefixed(sd: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {prefix + k: v.detach().clone() for k, v in sd.items()}


def _max_abs(a: nn.Module, b: nn.Module) -> float:
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        return float((a(x) - b(x)).abs().max())


def _one_error(err: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith(("error:", "internal error:"))]
    assert len(lines) == 1 and lines[0].startswith("error:") and "Traceback" not in err, err
    return lines[0]


# --- wrapper prefixes --------------------------------------------------------------------------------

PREFIXES = [
    "module.",                    # DDP / DataParallel
    "_orig_mod.",                 # torch.compile
    "model.",                     # Lightning: LightningModule.model
    "module._orig_mod.",          # compiled, then DDP
    "_orig_mod.module.",          # DDP, then compiled
    "module._orig_mod.model.",    # all three
    "model._orig_mod.",           # Lightning holding a compiled net
    "net.",                       # any other single component shared by every key
    "backbone.",
    "encoder.",
    "module.backbone.",           # DDP around a wrapper holding the net as .backbone
]


@pytest.mark.parametrize("wrapper", ["state_dict", None])
@pytest.mark.parametrize("prefix", PREFIXES)
def test_wrapper_prefix_is_stripped_and_reported(tmp_path, prefix, wrapper):
    src = _source()
    path = save_official_checkpoint(tmp_path / "ckpt.pth", _prefixed(src.state_dict(), prefix),
                                    wrapper=wrapper, with_args=False)
    loaded = create_model(NAME, checkpoint=path)  # strict
    report = loaded.vitdeploy_load_report
    assert report.ok
    assert report.stripped_prefix == prefix
    assert report.to_dict()["stripped_prefix"] == prefix
    assert any(repr(prefix) in note for note in report.notes), report.notes
    assert _max_abs(loaded, src) == 0.0


def test_matching_keys_are_never_stripped(tmp_path):
    src = _source()
    path = save_official_checkpoint(tmp_path / "plain.pth", src.state_dict(), wrapper=None)
    report = create_model(NAME, checkpoint=path).vitdeploy_load_report
    assert report.ok and report.stripped_prefix is None and report.notes == []


class _Holder(nn.Module):
    """A model whose first-level names ('net', 'scale', 'weight') could be mistaken for a wrapper."""

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(4))
        self.weight = nn.Parameter(torch.ones(4, 4))
        self.net = nn.Linear(4, 4)


def test_real_first_level_module_name_is_never_stripped():
    model = _Holder()
    # stripping 'net.' would turn these into 'scale'/'weight' (2 hits instead of 1), but 'net' is
    # the model's own submodule: these keys mean model.net.*
    sd = {"net.scale": torch.zeros(4), "net.weight": torch.zeros(4, 4)}
    out, prefix = strip_wrapper_prefixes(sd, model.state_dict())
    assert prefix is None and set(out) == set(sd)


def test_wrapper_named_like_a_submodule_of_a_user_model_is_kept(tmp_path):
    # a user factory holding the network as self.model: its keys are 'model.*' and must stay so
    class Wrapper(nn.Module):
        def __init__(self):
            super().__init__()
            self.model = _source()

    model = Wrapper()
    src_sd = {k: v.clone() for k, v in model.state_dict().items()}
    path = save_official_checkpoint(tmp_path / "w.pth", src_sd, wrapper=None)
    report = load_checkpoint(Wrapper(), path)
    assert report.ok and report.stripped_prefix is None
    # and a DDP copy of it loses only 'module.'
    path = save_official_checkpoint(tmp_path / "w_ddp.pth", _prefixed(src_sd, "module."), wrapper=None)
    target = Wrapper()
    report = load_checkpoint(target, path)
    assert report.ok and report.stripped_prefix == "module."
    assert _max_abs(target.model, model.model) == 0.0


def test_lightning_checkpoint_exports_and_manifest_names_the_prefix(cli, tmp_path):
    src = _source()
    torch.save({"epoch": 3, "global_step": 100, "pytorch-lightning_version": "2.4.0",
                "state_dict": _prefixed(src.state_dict(), "model."),
                "hyper_parameters": {"lr": 1e-3}}, tmp_path / "lightning.ckpt")
    out = tmp_path / "m.onnx"
    rc, _, err = cli("export", NAME, "-c", tmp_path / "lightning.ckpt", "-o", out, "--simplify", "none",
                     "--trt-version", "ort")
    assert rc == 0, err
    ck = json.loads(out.with_suffix(".json").read_text())["checkpoint"]
    assert ck["stripped_prefix"] == "model." and ck["source_key"] == "state_dict"
    assert ck["missing"] == [] and ck["unexpected"] == []
    assert any("'model.'" in n for n in ck["notes"])


# --- checkpoints that are mostly not the model -------------------------------------------------------

def test_non_strict_maps_to_the_config_field():
    assert ExportConfig(model=NAME).strict_checkpoint is True


def _other_model_checkpoint(tmp_path):
    # SReT shares only 5 of vit_tiny_test's 32 key names
    return save_official_checkpoint(tmp_path / "sret.pth", create_model("sret_tiny_test").state_dict())


@pytest.mark.parametrize("strict", [True, False])
def test_other_model_refused_even_non_strict(tmp_path, strict):
    path = _other_model_checkpoint(tmp_path)
    with pytest.raises(CheckpointError) as info:
        create_model(NAME, checkpoint=path, strict=strict)
    msg = str(info.value)
    assert "\n" not in msg
    assert "5 of 32 vit_tiny_test tensors found in the checkpoint" in msg and "not loading" in msg
    assert "another model" in msg and "--non-strict" not in msg


def test_cli_non_strict_other_model_exit_4_one_line_nothing_written(cli, tmp_path):
    path = _other_model_checkpoint(tmp_path)
    out = tmp_path / "x.onnx"
    rc, _, err = cli("export", NAME, "-c", path, "--non-strict", "-o", out, "--simplify", "none", "--trt-version", "ort")
    line = _one_error(err)
    assert rc == 4
    assert "5 of 32 vit_tiny_test tensors found in the checkpoint" in line and "--non-strict" not in line
    assert not out.exists() and not out.with_suffix(".json").exists()


def test_cli_unmatched_prefix_zero_found(cli, tmp_path):
    # every key renamed beyond a prefix: nothing to strip, nothing found
    sd = {f"foo.{k}_v2": v for k, v in _source().state_dict().items()}
    path = save_official_checkpoint(tmp_path / "foo.pth", sd, wrapper=None)
    rc, _, err = cli("export", NAME, "-c", path, "--non-strict", "-o", tmp_path / "x.onnx", "--trt-version", "ort")
    line = _one_error(err)
    assert rc == 4
    assert "0 of 32 vit_tiny_test tensors found in the checkpoint" in line and "'foo.cls_token_v2'" in line


def test_prefix_on_part_of_the_keys_is_suggested(tmp_path):
    # a LightningModule with the net as .model plus a loss module: not every key shares 'model.'
    sd = {**_prefixed(_source().state_dict(), "model."), "criterion.weight": torch.ones(10)}
    path = save_official_checkpoint(tmp_path / "mixed.ckpt", sd, wrapper="state_dict")
    for strict in (True, False):
        with pytest.raises(CheckpointError) as info:
            create_model(NAME, checkpoint=path, strict=strict)
        msg = str(info.value)
        assert "0 of 32" in msg and "32 of 32 model tensors are under 'model.'" in msg and "criterion." in msg
        assert "--non-strict" not in msg


def test_only_small_tensors_refused_by_value_share(tmp_path):
    # the 1-D tensors (norms, biases, ...) are most tensors by count but a sliver of the values
    src = _source()
    sd = {k: v for k, v in src.state_dict().items() if v.ndim == 1}
    expected = src.state_dict()
    assert len(sd) >= MIN_FOUND_SHARE * len(expected)
    path = save_official_checkpoint(tmp_path / "small.pth", sd)
    with pytest.raises(CheckpointError, match=rf"{len(sd)} of 32 vit_tiny_test tensors found .*% of the values"):
        create_model(NAME, checkpoint=path, strict=False)


def test_mostly_matching_non_strict_still_loads(tmp_path):
    # a backbone checkpoint without the classifier: strict refuses and suggests --non-strict,
    # --non-strict loads the rest exactly
    src = _source()
    sd = {k: v for k, v in src.state_dict().items() if not k.startswith("head.")}
    path = save_official_checkpoint(tmp_path / "nohead.pth", _prefixed(sd, "module."))
    with pytest.raises(CheckpointError, match="2 missing .*head.weight.*pass --non-strict"):
        create_model(NAME, checkpoint=path)
    loaded = create_model(NAME, checkpoint=path, strict=False)
    report = loaded.vitdeploy_load_report
    assert report.missing == ["head.weight", "head.bias"] and report.stripped_prefix == "module."
    assert torch.equal(loaded.pos_embed, src.pos_embed) and torch.equal(loaded.blocks[0].attn.qkv.weight,
                                                                       src.blocks[0].attn.qkv.weight)


def test_filter_failure_on_another_model_is_a_checkpoint_error(tmp_path):
    # ConViT shares 29 of 32 key names but its pos_embed has no class slot: the ViT filter cannot
    # resize it; that is a checkpoint error (exit 4), not a crash
    path = save_official_checkpoint(tmp_path / "convit.pth", create_model("convit_tiny_test").state_dict())
    with pytest.raises(CheckpointError, match="pos_embed|position embedding"):
        create_model(NAME, checkpoint=path, strict=False)


# --- broken weights ------------------------------------------------------------------------------------

@pytest.mark.parametrize("value, kind", [(float("nan"), "NaN"), (float("inf"), "Inf"), (float("-inf"), "Inf")])
def test_non_finite_weight_refused_naming_the_tensor(tmp_path, value, kind):
    sd = _source().state_dict()
    sd["blocks.1.mlp.fc1.weight"][3, 5] = value
    path = save_official_checkpoint(tmp_path / "nan.pth", sd)
    for strict in (True, False):
        with pytest.raises(CheckpointError, match=rf"non-finite.*blocks\.1\.mlp\.fc1\.weight \(1 {kind}\)"):
            create_model(NAME, checkpoint=path, strict=strict)


def test_cli_nan_weight_exit_4(cli, tmp_path):
    sd = _source().state_dict()
    sd["norm.weight"][0] = float("nan")
    path = save_official_checkpoint(tmp_path / "nan.pth", sd)
    rc, _, err = cli("export", NAME, "-c", path, "-o", tmp_path / "x.onnx", "--trt-version", "ort")
    assert rc == 4 and "norm.weight (1 NaN)" in _one_error(err)


def test_other_class_count_suggests_num_classes(cli, tmp_path):
    src = _source(num_classes=7)
    path = save_official_checkpoint(tmp_path / "ft7.pth", src.state_dict())
    with pytest.raises(CheckpointError, match=r"head\.weight: checkpoint \(7, 64\) vs model \(10, 64\).*--num-classes 7"):
        create_model(NAME, checkpoint=path)
    loaded = create_model(NAME, checkpoint=path, num_classes=7)
    assert _max_abs(loaded, src) == 0.0
    out = tmp_path / "ft7.onnx"
    rc, _, err = cli("export", NAME, "-c", path, "--num-classes", "7", "-o", out, "--simplify", "none",
                     "--trt-version", "ort")
    assert rc == 0, err
    assert json.loads(out.with_suffix(".json").read_text())["checkpoint"]["mismatched"] == []
