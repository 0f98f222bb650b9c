"""Export-time patches and a quiet exporter (issue 15): torch's own nn.TransformerEncoder exports at
opset 17 with its fast path off, and what the exporters say never reaches the user's stderr."""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
import warnings
from pathlib import Path

import onnx
import pytest
import torch
from torch import nn

from vitdeploy.export import patches
from vitdeploy.export.torch_onnx import captured

TESTS = Path(__file__).parent


class EncoderViT(nn.Module):
    """A user ViT built from torch's own nn.TransformerEncoder (the fused fast path in eval)."""

    def __init__(self, batch_first: bool, norm_first: bool, pool: str, dim: int = 32, classes: int = 5):
        super().__init__()
        self.batch_first, self.pool = batch_first, pool
        self.patch = nn.Conv2d(3, dim, 8, 8)
        self.cls = nn.Parameter(torch.randn(1, 1, dim) * 0.02)
        self.pos = nn.Parameter(torch.randn(1, 17, dim) * 0.02)
        layer = nn.TransformerEncoderLayer(dim, 2, 2 * dim, dropout=0.1, batch_first=batch_first, norm_first=norm_first)
        self.encoder = nn.TransformerEncoder(layer, 2, enable_nested_tensor=True)
        self.head = nn.Linear(dim, classes)

    def forward(self, x):
        x = self.patch(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls.expand(x.shape[0], -1, -1), x], 1) + self.pos
        x = self.encoder(x if self.batch_first else x.transpose(0, 1))
        x = x if self.batch_first else x.transpose(0, 1)
        return self.head(x.mean(1) if self.pool == "mean" else x[:, 0])


def _build(batch_first: bool, norm_first: bool, pool: str) -> nn.Module:
    torch.manual_seed(0)
    return EncoderViT(batch_first, norm_first, pool)


def build_batch_first():
    return _build(True, False, "mean")


def build_seq_first():
    return _build(False, False, "cls")


def build_norm_first():
    return _build(True, True, "cls")


def build_seq_first_norm_first():
    return _build(False, True, "mean")


@pytest.mark.parametrize("factory", ["build_batch_first", "build_seq_first", "build_norm_first",
                                     "build_seq_first_norm_first"])
def test_torch_transformer_encoder_exports_at_opset_17(cli, tmp_path, monkeypatch, factory):
    monkeypatch.chdir(TESTS)
    out = tmp_path / "enc.onnx"
    assert torch.backends.mha.get_fastpath_enabled()
    rc, _, err = cli("export", f"{__name__}:{factory}", "--input-size", "3,32,32", "-o", out, "--trt-version", "ort")
    assert rc == 0, err
    assert torch.backends.mha.get_fastpath_enabled()  # the patch put the fast path back
    model = onnx.load(str(out))
    assert [i.version for i in model.opset_import if i.domain in ("", "ai.onnx")] == [17]
    assert {n.domain for n in model.graph.node} <= {""}  # no fused or custom op left
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param  # dynamic batch
    m = json.loads(out.with_suffix(".json").read_text())
    assert m["export"]["opset"] == 17 and "mha_slow_path" in m["export"]["patches"]
    assert m["input"]["shape"][0] is None and set(m["parity"]["final"]) == {"1", "8"}
    for fig in m["parity"]["final"].values():
        assert fig["max_abs"] <= 1e-4 and fig["top1_agreement"] == 1.0


def test_mha_slow_path_is_scoped():
    assert torch.backends.mha.get_fastpath_enabled()
    with pytest.raises(RuntimeError), patches.mha_slow_path():
        assert not torch.backends.mha.get_fastpath_enabled()
        raise RuntimeError("the export failed")
    assert torch.backends.mha.get_fastpath_enabled()


def test_captured_takes_every_channel_and_gives_it_back(capfd):
    sink: list[str] = []
    torch_onnx_handlers = logging.getLogger("torch.onnx").handlers[:]
    with captured(sink):
        print("[torch.onnx] progress")
        print("python stderr", file=sys.stderr)
        warnings.warn("a deprecation", DeprecationWarning, stacklevel=1)
        logging.getLogger("torch.onnx._internal.exporter._registration").warning("torchvision is not installed")
        logging.getLogger("onnxscript.version_converter").warning("converter fell back")
        os.write(2, b"native IR dump\n")  # what C++ code writes past sys.stderr
    assert capfd.readouterr() == ("", "")
    text = "\n".join(sink)
    for said in ("[torch.onnx] progress", "python stderr", "a deprecation", "torchvision is not installed",
                 "converter fell back", "native IR dump"):
        assert said in text
    assert logging.getLogger("torch.onnx").handlers == torch_onnx_handlers
    print("after")
    os.write(2, b"fd 2 is back\n")
    assert capfd.readouterr() == ("after\n", "fd 2 is back\n")


@pytest.mark.parametrize("exporter", ["legacy", pytest.param("dynamo", marks=pytest.mark.slow)])  # dynamo: ~10 s
def test_export_stderr_has_only_vitdeploy_lines(tmp_path, exporter):
    """A real process, so Python warnings, torch's log handlers and C++ writes all reach its stderr."""
    out = tmp_path / "enc.onnx"
    proc = subprocess.run(
        [sys.executable, "-m", "vitdeploy", "export", f"{__name__}:build_norm_first", "--input-size", "3,32,32",
         "-o", str(out), "--trt-version", "ort", "--exporter", exporter],
        cwd=TESTS, capture_output=True, text=True, timeout=300, check=False,
        env={**os.environ, "PYTHONWARNINGS": "default", "OMP_NUM_THREADS": "1"},
    )
    assert proc.returncode == 0, proc.stderr
    foreign = [ln for ln in proc.stderr.splitlines() if ln.strip() and not re.match(r"\s+[✓✗] ", ln)]
    assert foreign == []
    for chatter in ("W1", "Warning", "torchvision", "torch.onnx", "onnxscript"):
        assert chatter not in proc.stderr
    m = json.loads(out.with_suffix(".json").read_text())
    assert m["export"]["exporter"] == exporter and m["export"]["messages"]  # kept in the manifest instead
    assert any("enable_nested_tensor" in n for n in m["notes"])  # torch's warning about the model: a note
