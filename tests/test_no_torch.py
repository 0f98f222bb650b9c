"""The deploy side works without torch (a Jetson installs vitdeploy without it).

Each check runs in a fresh interpreter whose import system cannot see torch: every finder on
sys.meta_path is wrapped so that ``torch`` is "not installed" (``import torch`` raises
ModuleNotFoundError, ``importlib.util.find_spec("torch")`` is None), exactly as on a machine
without it, while everything else imports normally.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

import pytest

from test_trt_fakes import tiny_onnx

HIDE_TORCH = r"""
import sys
class _Hidden:
    def __init__(self, inner):
        self.inner = inner
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            return None
        return self.inner.find_spec(name, path, target)
    def __getattr__(self, attr):
        return getattr(self.inner, attr)
sys.meta_path[:] = [_Hidden(f) if hasattr(f, "find_spec") else f for f in sys.meta_path]
"""

# build-engine is registered here until the lead wires engine_cmd into vitdeploy.cli
RUN_CLI = HIDE_TORCH + r"""
from vitdeploy import cli
from vitdeploy.cli import engine_cmd
if "build-engine" not in {c.name for c in cli.app.registered_commands}:
    engine_cmd.register(cli.app)
code = cli.run(sys.argv[1:])
assert "torch" not in sys.modules, "torch was imported"
sys.exit(code)
"""

MODULES = [
    "vitdeploy", "vitdeploy.cli", "vitdeploy.cli.engine_cmd", "vitdeploy.runners", "vitdeploy.runners.ort",
    "vitdeploy.core.compare", "vitdeploy.core.io", "vitdeploy.core.sysinfo", "vitdeploy.trt.check", "vitdeploy.trt.support",
    "vitdeploy.trt", "vitdeploy.trt.version", "vitdeploy.engine.config", "vitdeploy.trt.layers", "vitdeploy.trt.compat",
    "vitdeploy.trt.cuda", "vitdeploy.trt.calibrator", "vitdeploy.engine.build", "vitdeploy.runners.trt_runner",
    "vitdeploy.calib", "vitdeploy.data.datasets", "vitdeploy.calib.qdq", "vitdeploy.calib.quantize", "vitdeploy.trt.calibration_cache",
    "vitdeploy.calib.fp16", "vitdeploy.trt.rewrite", "vitdeploy.core.fp16_emulation",  # build-engine decomposes LayerNorm for 8.5 on a Jetson
]


def _python(code: str, *args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120, cwd=cwd)


def test_torch_is_really_hidden():
    proc = _python(HIDE_TORCH + "import importlib.util\nassert importlib.util.find_spec('torch') is None\nimport torch\n")
    assert proc.returncode != 0 and "No module named 'torch'" in proc.stderr


def test_deploy_modules_import_without_torch():
    code = HIDE_TORCH + "import importlib, json\n" + f"mods = {MODULES!r}\n" + (
        "failed = {}\n"
        "for m in mods:\n"
        "    try:\n"
        "        importlib.import_module(m)\n"
        "    except Exception as exc:\n"
        "        failed[m] = f'{type(exc).__name__}: {exc}'\n"
        "print(json.dumps({'failed': failed, 'torch': 'torch' in sys.modules}))\n")
    proc = _python(code)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result == {"failed": {}, "torch": False}


@pytest.fixture(scope="module")
def onnx_file(tmp_path_factory):
    return tiny_onnx(tmp_path_factory.mktemp("notorch"))


@pytest.mark.parametrize("args,code,needle", [
    (["--help"], 0, "build-engine"),
    (["env", "--json"], 0, '"packages"'),
    (["build-engine", "--help"], 0, "--dynamic-batch"),
])
def test_cli_without_torch(args, code, needle):
    proc = _python(RUN_CLI, *args)
    assert proc.returncode == code, proc.stderr
    assert needle in proc.stdout


def test_check_without_torch(onnx_file):
    proc = _python(RUN_CLI, "check", str(onnx_file), "--target", "trt10")
    assert proc.returncode == 0, proc.stderr
    # LayerNormalization is not in 8.5's parser: an "info" finding (build-engine decomposes it), not an error
    proc = _python(RUN_CLI, "check", str(onnx_file), "--target", "trt8.5", "--strict")
    assert proc.returncode == 0 and "LayerNormalization" in proc.stdout and "--decompose-layernorm" in proc.stdout


def test_build_engine_option_errors_without_torch(onnx_file):
    proc = _python(RUN_CLI, "build-engine", str(onnx_file), "--int8")
    assert proc.returncode == 2 and "no Q/DQ nodes" in proc.stderr


@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is not None, reason="tensorrt is installed here")
def test_build_engine_reaches_the_tensorrt_import_without_torch(onnx_file):
    proc = _python(RUN_CLI, "build-engine", str(onnx_file), "--fp16", "--dynamic-batch", "1:2:4")
    assert proc.returncode == 7, proc.stderr
    assert "tensorrt is not installed" in proc.stderr
