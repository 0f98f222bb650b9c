"""Model sources and checkpoint formats beyond the zoo's .pth: .safetensors weights, .pt2 programs."""

from __future__ import annotations

import json

import onnx
import pytest
import torch

from vitdeploy.core.errors import CheckpointError


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
    rc, _, err = cli("export", tmp_path / "vit.pt2", "-o", out, "--trt-version", "ort", "--mean", "0.5,0.5,0.5", "--std", "0.5,0.5,0.5")
    assert rc == 0, err
    m = json.loads((tmp_path / "vit.json").read_text())
    assert m["model"]["source"] == "exported_program" and m["export"]["exporter"] == "dynamo"
    assert m["input"]["shape"] == [None, 3, 32, 32] and m["export"]["opset"] == 17
    assert all(f["max_abs"] <= 1e-4 for f in m["parity"]["final"].values())
    assert onnx.load(str(out)).graph.input[0].type.tensor_type.shape.dim[0].dim_param


def _static_program(path):
    from vitdeploy.models import create_model

    torch.manual_seed(0)
    model = create_model("vit_tiny_test").eval()
    torch.export.save(torch.export.export(model, (torch.randn(1, 3, 32, 32),)), str(path))


def test_program_with_batch_fixed_at_1_exports_static_with_a_note(cli, tmp_path):
    _static_program(tmp_path / "one.pt2")
    out = tmp_path / "one.onnx"
    rc, _, err = cli("export", tmp_path / "one.pt2", "-o", out, "--trt-version", "ort", "--mean", "0.5,0.5,0.5",
                     "--std", "0.5,0.5,0.5")
    assert rc == 0, err
    m = json.loads((tmp_path / "one.json").read_text())
    assert m["input"]["shape"] == [1, 3, 32, 32] and m["input"]["dynamic_axes"] == {}
    assert m["batch"] == {"min": 1, "opt": 1, "max": 1} and set(m["parity"]["final"]) == {"1"}
    assert any("batch fixed at 1" in n for n in m["notes"])
    assert onnx.load(str(out)).graph.input[0].type.tensor_type.shape.dim[0].dim_value == 1


@pytest.mark.parametrize("option", [["--dynamic-batch", "1:4:16"], ["--batch", "4"]])
def test_program_with_batch_fixed_at_1_refuses_another_batch_in_one_line(cli, tmp_path, option):
    _static_program(tmp_path / "one.pt2")
    rc, _, err = cli("export", tmp_path / "one.pt2", "-o", tmp_path / "one.onnx", "--trt-version", "ort", *option)
    assert rc == 2, err
    lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and "takes batch 1 only" in lines[0] and " ".join(option) in lines[0]
    assert "--batch 1" in lines[0] and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["one.pt2"]


class TrainState:
    """What training scripts pickle beside the weights (module level: pickled by reference)."""

    epoch = 3


TORCH_ADVICE = ("weights_only=False", "will likely succeed", "WeightsUnpickler", "add_safe_globals", "Re-running")


@pytest.mark.parametrize("what", ["custom_object", "whole_model", "not_a_checkpoint"])
def test_checkpoint_weights_only_refuses_is_one_line_with_the_safe_way(cli, tmp_path, what):
    from vitdeploy.models import create_model

    model = create_model("vit_tiny_test")
    path = tmp_path / "ckpt.pth"
    if what == "custom_object":
        torch.save({"model": model.state_dict(), "state": TrainState()}, path)
    elif what == "whole_model":
        torch.save(model, path)
    else:
        path.write_bytes(b"not a checkpoint at all")
    rc, _, err = cli("export", "vit_tiny_test", "-c", path, "-o", tmp_path / "x.onnx", "--trt-version", "ort")
    assert rc == 4, err
    error = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(error) == 1 and "torch.save(model.state_dict(), path)" in error[0]
    assert not any(advice in err for advice in TORCH_ADVICE)
    expected = {"custom_object": f"pickles {TrainState.__module__}.TrainState",
                "whole_model": "whole pickled model (vitdeploy.models.",
                "not_a_checkpoint": "cannot read"}[what]
    assert expected in error[0]
