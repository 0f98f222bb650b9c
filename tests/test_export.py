"""`vitdeploy export`: parity, opset honesty, manifest contents, and bad input."""

import json
from pathlib import Path

import onnx
import pytest

from vitdeploy.core.errors import ExportError, ValueMismatchError
from vitdeploy.export import BatchRange, ExportConfig, Preprocessing, export


def _files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_zoo_tiny_export_dynamic_batch_and_manifest(tmp_path):
    out = tmp_path / "vit.onnx"
    res = export(ExportConfig("vit_tiny_test", output=out, batch=BatchRange(1, 1, 8), targets=("ort",)))
    model = onnx.load(str(out))
    assert [i.version for i in model.opset_import if i.domain in ("", "ai.onnx")] == [17]
    dims = model.graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param == "batch" and [d.dim_value for d in dims[1:]] == [3, 32, 32]
    m = json.loads((tmp_path / "vit.json").read_text())
    assert m == res.manifest | {"sha256": m["sha256"]}
    assert m["export"]["opset"] == 17 and m["precision"] == "fp32"
    assert set(m["parity"]["final"]) == {"1", "8"}
    for fig in m["parity"]["final"].values():
        assert fig["max_abs"] <= 1e-4 and fig["cosine_min"] >= 0.99999 and fig["top1_agreement"] == 1.0
    assert m["preprocessing"]["mean"] == [0.5, 0.5, 0.5] and m["batch"] == {"min": 1, "opt": 1, "max": 8}
    assert m["graph"]["nodes"] <= m["graph"]["nodes_raw"]
    assert "Einsum" not in m["graph"]["ops"]
    assert _files(tmp_path) == ["vit.json", "vit.onnx"]


def test_user_factory_exports_and_validates(tmp_path):
    out = tmp_path / "user.onnx"
    res = export(ExportConfig("usermodels:build_small_vit", output=out, targets=("ort",),
                              preprocessing=Preprocessing(input_size=(3, 32, 32))))
    m = res.manifest
    assert m["model"]["source"] == "factory"
    assert all(f["max_abs"] <= 1e-4 for f in m["parity"]["final"].values())
    assert any("ImageNet defaults assumed" in n for n in m["notes"])
    # the SDPA patch turned attention into the MatMul -> Softmax -> MatMul pattern
    assert m["graph"]["ops"].get("Softmax") == 1 and m["graph"]["ops"]["MatMul"] >= 2


def test_asking_opset_17_never_yields_another_opset(tmp_path):
    out = tmp_path / "pad.onnx"
    cfg = ExportConfig("usermodels:build_reflect_pad", output=out, exporter="dynamo", targets=("ort",),
                       preprocessing=Preprocessing(input_size=(3, 32, 32)))
    with pytest.raises(ExportError, match="asked for opset 17 but the dynamo exporter wrote opset 18"):
        export(cfg)
    assert _files(tmp_path) == []
    # auto: the family's exporter order finds one that honours the opset, and says which
    res = export(ExportConfig("usermodels:build_reflect_pad", output=out, targets=("ort",),
                              preprocessing=Preprocessing(input_size=(3, 32, 32))))
    assert onnx.load(str(out)).opset_import[0].version == 17
    assert res.manifest["export"]["opset"] == 17


def test_planted_parity_failure_reports_figures(tmp_path):
    cfg = ExportConfig("usermodels:build_drift", output=tmp_path / "d.onnx", targets=("ort",),
                       preprocessing=Preprocessing(input_size=(3, 32, 32)))
    with pytest.raises(ValueMismatchError) as err:
        export(cfg)
    assert "max_abs 0.05" in str(err.value) and "batch 1" in str(err.value)
    assert err.value.figures["max_abs"] == pytest.approx(0.05, rel=1e-3)
    assert _files(tmp_path) == []


@pytest.mark.parametrize(
    "args, code, message",
    [
        (["export", "no_such_model"], 3, "unknown model"),
        (["export", "usermodels:not_a_module", "--input-size", "3,32,32"], 3, "not a torch.nn.Module"),
        (["export", "vit_tiny_test", "--dynamic-batch", "0:1:4"], 2, "invalid batch range"),
        (["export", "vit_tiny_test", "--dynamic-batch", "a:b"], 2, "invalid batch range"),
        (["export", "vit_tiny_test", "--batch", "2", "--dynamic-batch", "1:8"], 2, "not both"),
        (["export", "usermodels:build_small_vit"], 2, "--input-size"),
    ],
)
def test_bad_input_one_line_error(cli, tmp_path, monkeypatch, args, code, message):
    monkeypatch.chdir(tmp_path)
    rc, _, err = cli(*args)
    assert rc == code, err
    assert message in err and "Traceback" not in err
    assert _files(tmp_path) == []


def test_existing_output_needs_force(cli, tmp_path):
    out = tmp_path / "v.onnx"
    out.write_bytes(b"keep me")
    rc, _, err = cli("export", "vit_tiny_test", "-o", out, "--trt-version", "ort")
    assert rc == 5 and "--force" in err
    assert out.read_bytes() == b"keep me"
    rc, _, err = cli("export", "vit_tiny_test", "-o", out, "--trt-version", "ort", "--force")
    assert rc == 0, err
    assert onnx.load(str(out)).graph.node


def test_unwritable_output(cli, tmp_path):
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where the output folder should be")  # fails even for root
    rc, _, err = cli("export", "vit_tiny_test", "-o", blocker / "v.onnx", "--trt-version", "ort")
    assert rc == 5, err
    assert "cannot create output folder" in err
    assert _files(tmp_path) == ["blocker"]


def test_checkpoint_of_another_architecture(cli, tmp_path):
    import torch

    from vitdeploy.models import create_model

    other = create_model("deit_tiny_patch16_224")
    torch.save({"model": other.state_dict()}, tmp_path / "deit.pth")
    rc, _, err = cli("export", "vit_tiny_test", "-c", tmp_path / "deit.pth", "-o", tmp_path / "x.onnx", "--trt-version", "ort")
    assert rc == 4
    assert "does not match vit_tiny_test" in err and "shape mismatch" in err
    assert not (tmp_path / "x.onnx").exists()


def test_layernorm_fused_by_default_and_decomposed_on_request(tmp_path):
    """The default targets include trt8.5: LayerNormalization stays one op (an "info" finding there,
    since build-engine decomposes it); --decompose-layernorm writes the primitive ops for trtexec."""
    fused = export(ExportConfig("vit_tiny_test", output=tmp_path / "f.onnx")).manifest
    assert fused["graph"]["ops"]["LayerNormalization"] == 5 and "decompose_layernorm" not in fused["passes"]
    (info,) = fused["trt_readiness"]["trt8.5"]["findings"]
    assert info["severity"] == "info" and "--decompose-layernorm" in info["message"]
    assert any("build-engine" in n and "decomposes" in n for n in fused["notes"])
    split = export(ExportConfig("vit_tiny_test", output=tmp_path / "d.onnx", decompose_layernorm=True)).manifest
    assert "LayerNormalization" not in split["graph"]["ops"] and "decompose_layernorm" in split["passes"]
    assert split["trt_readiness"]["trt8.5"]["findings"] == []
    assert split["parity"]["final"]["8"]["max_abs"] <= 1e-4


FAMILY_TINY = ["vit_tiny_test", "convit_tiny_test", "t2t_vit_tiny_test", "sret_tiny_test", "ceit_tiny_test"]


@pytest.mark.parametrize("name", FAMILY_TINY)
def test_zoo_model_at_another_input_size_resamples_its_grid(name, tmp_path):
    """A checkpoint trained at 32 px exported at 64 px: the token grid is rebuilt for 64 and the
    checkpoint's position embeddings (and each family's grid-sized tensors) are resampled."""
    import torch

    from vitdeploy.models import create_model

    torch.manual_seed(0)
    ckpt = tmp_path / "w.pth"
    torch.save({"model": create_model(name).state_dict()}, ckpt)
    res = export(ExportConfig(name, checkpoint=ckpt, output=tmp_path / "m.onnx", targets=("ort",),
                              preprocessing=Preprocessing(input_size=(3, 64, 64))))
    m = res.manifest
    assert m["preprocessing"]["input_size"] == [3, 64, 64]
    assert m["input"]["shape"][1:] == [3, 64, 64]
    assert any(n.startswith("built for input [3, 64, 64]") for n in m["notes"])
    assert all(fig["max_abs"] <= 1e-4 for fig in m["parity"]["final"].values())


@pytest.mark.parametrize("name, size, message", [
    ("vit_tiny_test", "3,48,40", "takes square 3-channel images"),
    ("vit_tiny_test", "1,32,32", "takes square 3-channel images"),
    ("sret_tiny_test", "3,48,48", "cannot be built for --input-size 3,48,48"),
    ("sret_tiny_test", "3,48,48", "; it runs at 32 and 64 px"),  # what to pass instead
])
def test_zoo_model_sizes_no_family_supports_are_one_line(cli, tmp_path, name, size, message):
    out = tmp_path / "m.onnx"
    rc, _, err = cli("export", name, "--input-size", size, "-o", out)
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert rc == 2 and len(errors) == 1 and message in errors[0] and "\x1b[" not in err, err
    assert not out.exists()
