"""Model sources and checkpoint formats beyond the zoo's .pth: .safetensors weights, .pt2 programs."""

from __future__ import annotations

import json

import onnx
import pytest
import torch

from vitdeploy.errors import CheckpointError


def test_safetensors_checkpoint_loads_strictly(tmp_path):
    from safetensors.torch import save_file

    from vitdeploy.models import create_model

    src = create_model("vit_tiny_test")
    with torch.no_grad():
        for p in src.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    save_file({k: v.contiguous() for k, v in src.state_dict().items()}, str(tmp_path / "w.safetensors"))
    loaded = create_model("vit_tiny_test", checkpoint=tmp_path / "w.safetensors")
    x = torch.randn(2, 3, 32, 32)
    assert torch.equal(loaded(x), src(x))
    bad = {k: v for k, v in src.state_dict().items() if k != "head.bias"}
    save_file(bad, str(tmp_path / "bad.safetensors"))
    with pytest.raises(CheckpointError, match="1 missing \\(head.bias\\)"):
        create_model("vit_tiny_test", checkpoint=tmp_path / "bad.safetensors")


def test_unsafe_pickle_is_refused_not_executed(tmp_path):
    from vitdeploy.models import create_model

    class Evil:
        def __reduce__(self):
            return (print, ("this must never run",))

    torch.save({"model": create_model("vit_tiny_test").state_dict(), "payload": Evil()}, tmp_path / "evil.pth")
    with pytest.raises(CheckpointError, match="cannot read .*safely"):
        create_model("vit_tiny_test", checkpoint=tmp_path / "evil.pth")


def test_saved_torch_export_program_exports(cli, tmp_path):
    from vitdeploy.models import create_model

    model = create_model("vit_tiny_test")
    batch = torch.export.Dim("batch", min=1, max=64)
    program = torch.export.export(model, (torch.randn(2, 3, 32, 32),), dynamic_shapes=({0: batch},))
    torch.export.save(program, str(tmp_path / "vit.pt2"))
    out = tmp_path / "vit.onnx"
    rc, _, err = cli("export", tmp_path / "vit.pt2", "-o", out, "--target", "ort", "--mean", "0.5,0.5,0.5", "--std", "0.5,0.5,0.5")
    assert rc == 0, err
    m = json.loads((tmp_path / "vit.json").read_text())
    assert m["model"]["source"] == "exported_program" and m["export"]["exporter"] == "dynamo"
    assert m["input"]["shape"] == [None, 3, 32, 32] and m["export"]["opset"] == 17
    assert all(f["max_abs"] <= 1e-4 for f in m["parity"]["final"].values())
    assert onnx.load(str(out)).graph.input[0].type.tensor_type.shape.dim[0].dim_param
