"""The deploy side works without torch (a Jetson installs vitdeploy without it).

Each check runs in a fresh interpreter whose import system cannot see torch: every finder on
sys.meta_path is wrapped so that ``torch`` is "not installed" (``import torch`` raises
ModuleNotFoundError, ``importlib.util.find_spec("torch")`` is None), exactly as on a machine
without it, while everything else imports normally.

The rule is a deny-list: every module of the installed package (walked, so new ones are covered)
must import that way except the declared torch side (TORCH_SIDE). tests/test_torch_free_venv.py
checks the same on a real install without torch.
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

RUN_CLI = HIDE_TORCH + r"""
from vitdeploy import cli
code = cli.run(sys.argv[1:])
assert "torch" not in sys.modules, "torch was imported"
sys.exit(code)
"""

# The torch side: the only modules of the installed package allowed to need torch at import, each
# because it is PyTorch code. Every other module must import without torch (checked below), and
# every entry here must really fail without it (so the list stays the short list of what needs it).
TORCH_SIDE = {
    # the model definitions: nn.Module classes, torch at module level
    "vitdeploy.models.layers": "shared nn.Module blocks (attention, MLP, patch embedding)",
    "vitdeploy.models.vit": "ViT/DeiT nn.Modules",
    "vitdeploy.models.ceit": "CeiT nn.Modules",
    "vitdeploy.models.convit": "ConViT nn.Modules",
    "vitdeploy.models.sret": "SReT nn.Modules",
    "vitdeploy.models.t2t_vit": "T2T-ViT nn.Modules",
    "vitdeploy.models.deploy": "deploy-ready rewrites of nn.Modules (torch.nn)",
    "vitdeploy.models.checkpoint": "checkpoint reading with torch.load(weights_only=True)",
    # the ONNX export: runs torch.onnx
    "vitdeploy.export.pipeline": "checkpoint -> ONNX, validated against PyTorch (imports torch)",
    "vitdeploy.export.patches": "export-time patches of torch functions",
    "vitdeploy.export.torch_onnx": "runs torch's ONNX exporters",
}
# folders installed inside vitdeploy (pyproject [tool.setuptools.package-dir]): not under vitdeploy.__path__
NESTED = ("vitdeploy.models", "vitdeploy.export", "vitdeploy.calib")


def installed_modules() -> list[str]:
    """Every module of the installed vitdeploy package, by walking it (a new module is checked too)."""
    import importlib
    import pkgutil

    def failed(name: str) -> None:
        raise ImportError(f"walking vitdeploy: {name} does not import")

    names = {"vitdeploy"}
    for package in ("vitdeploy", *NESTED):
        names.add(package)
        path = importlib.import_module(package).__path__
        names.update(m.name for m in pkgutil.walk_packages(path, package + ".", onerror=failed))
    return sorted(names)


IMPORT_ALL = HIDE_TORCH + r"""
import importlib, json
required, torch_side = json.loads(sys.argv[1]), json.loads(sys.argv[2])
failed = {}
for m in required:
    try:
        importlib.import_module(m)
    except Exception as exc:
        failed[m] = f"{type(exc).__name__}: {exc}"
torch_loaded = "torch" in sys.modules
imported_anyway = []  # torch-side modules that import without torch: drop them from TORCH_SIDE
for m in torch_side:
    try:
        importlib.import_module(m)
        imported_anyway.append(m)
    except ModuleNotFoundError as exc:
        if exc.name != "torch" and not (exc.name or "").startswith("torch."):
            failed[m] = f"ModuleNotFoundError: {exc}"
print(json.dumps({"failed": failed, "torch": torch_loaded, "imported_anyway": imported_anyway}))
"""


def _python(code: str, *args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120, cwd=cwd)


def test_torch_is_really_hidden():
    proc = _python(HIDE_TORCH + "import importlib.util\nassert importlib.util.find_spec('torch') is None\nimport torch\n")
    assert proc.returncode != 0 and "No module named 'torch'" in proc.stderr


def test_the_walk_finds_the_whole_package():
    """Guard against a vacuous pass: the walk reaches every folder, the torch side included."""
    modules = installed_modules()
    for m in ("vitdeploy.validate", "vitdeploy.bench.report", "vitdeploy.runners.factory", "vitdeploy.pipeline.run",
              "vitdeploy.cli.engine_cmd", "vitdeploy.engine.builder", "vitdeploy.calib.quantize", "vitdeploy.models.registry",
              "vitdeploy.export.config", "vitdeploy.runners.torch_runner"):
        assert m in modules
    assert set(TORCH_SIDE) <= set(modules), sorted(set(TORCH_SIDE) - set(modules))  # no stale entries
    assert len(modules) > 80


def test_every_module_but_the_torch_side_imports_without_torch():
    modules = installed_modules()
    required = [m for m in modules if m not in TORCH_SIDE]
    proc = _python(IMPORT_ALL, json.dumps(required), json.dumps(sorted(TORCH_SIDE)))
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result == {"failed": {}, "torch": False, "imported_anyway": []}


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
    proc = _python(RUN_CLI, "check", str(onnx_file), "--trt-version", "trt10")
    assert proc.returncode == 0, proc.stderr
    # LayerNormalization is not in 8.5's parser: an "info" finding (build-engine decomposes it), not an error
    proc = _python(RUN_CLI, "check", str(onnx_file), "--trt-version", "trt8.5", "--strict")
    assert proc.returncode == 0 and "LayerNormalization" in proc.stdout and "--decompose-layernorm" in proc.stdout


def test_build_engine_option_errors_without_torch(onnx_file):
    proc = _python(RUN_CLI, "build-engine", str(onnx_file), "--int8")
    assert proc.returncode == 2 and "no Q/DQ nodes" in proc.stderr


@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is not None, reason="tensorrt is installed here")
def test_build_engine_reaches_the_tensorrt_import_without_torch(onnx_file):
    proc = _python(RUN_CLI, "build-engine", str(onnx_file), "--fp16", "--dynamic-batch", "1:2:4")
    assert proc.returncode == 7, proc.stderr
    assert "tensorrt is not installed" in proc.stderr
