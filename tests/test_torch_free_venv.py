"""A real torch-free install: a fresh venv (no system site packages) with vitdeploy's core dependencies
and onnxruntime only, vitdeploy installed from a wheel-style (non-editable) install of a copy of the
sources, then `vitdeploy validate` and `vitdeploy bench` on a tiny ONNX model, as on a Jetson.

tests/test_no_torch.py hides torch from one interpreter; this checks what that cannot: the declared
dependencies are enough, the package data is installed, and the console script works without torch.
Skips when pip cannot download (no index reachable).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from test_no_torch import NESTED, installed_modules
from test_trt_fakes import tiny_onnx

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
# what `pip install vitdeploy` builds from (pyproject [tool.setuptools.package-dir] and readme)
SOURCES = ("pyproject.toml", "README.md", "LICENSE", "deploy", "models", "export", "calib")
RUNTIME = ("onnxruntime",)  # the [ort] extra: the CPU backend validate and bench use here
NETWORK_ERRORS = ("No matching distribution", "Could not find a version", "NewConnectionError", "Max retries exceeded",
                  "Temporary failure in name resolution", "Network is unreachable", "ConnectTimeout", "ReadTimeout",
                  "ProxyError", "SSLError", "Connection refused", "Could not fetch URL")


def _run(cmd: list[str], timeout: int = 900, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=timeout, **kw)


def _pip(venv_python: Path, *args: str) -> None:
    proc = _run([venv_python, "-m", "pip", "install", "--disable-pip-version-check", "--no-input", *args],
                env={**os.environ, "PIP_NO_INPUT": "1", "PIP_DEFAULT_TIMEOUT": "30"})
    if proc.returncode != 0:
        out = proc.stdout + proc.stderr
        if any(e in out for e in NETWORK_ERRORS):
            pytest.skip(f"pip cannot download ({' '.join(args)}): " + out.strip().splitlines()[-1])
        pytest.fail(f"pip install {' '.join(args)} failed:\n{out[-4000:]}")


def core_dependencies() -> list[str]:
    return list(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"])


@pytest.fixture(scope="module")
def venv(tmp_path_factory) -> Path:
    """The venv's bin folder, with vitdeploy installed without torch."""
    root = tmp_path_factory.mktemp("torchfree")
    proc = _run([sys.executable, "-m", "venv", root / "venv"], timeout=300)
    assert proc.returncode == 0, proc.stderr
    bindir = root / "venv" / ("Scripts" if os.name == "nt" else "bin")
    python = bindir / "python"
    _pip(python, *core_dependencies(), *RUNTIME)
    # a copy of the sources: a non-editable install builds in the source tree (build/, *.egg-info)
    src = root / "src"
    src.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, src / name, ignore=ignore)
        elif (ROOT / name).exists():
            shutil.copy2(ROOT / name, src / name)
    _pip(python, "--no-deps", src)
    return bindir


def test_the_venv_has_no_torch_and_vitdeploy_is_not_the_checkout(venv):
    proc = _run([venv / "python", "-c", "import importlib.util, vitdeploy\n"
                 "print(importlib.util.find_spec('torch') is None, vitdeploy.__file__)"], timeout=120, cwd=venv)
    assert proc.returncode == 0, proc.stderr
    no_torch, where = proc.stdout.split()
    assert no_torch == "True"
    assert "site-packages" in where and not Path(where).is_relative_to(ROOT), where
    proc = _run([venv / "python", "-c", "import torch"], timeout=120, cwd=venv)
    assert proc.returncode != 0 and "No module named 'torch'" in proc.stderr


WALK = """
import importlib, json, pkgutil, sys
names = set()
for package in sys.argv[1:]:
    names.add(package)
    names.update(m.name for m in pkgutil.walk_packages(importlib.import_module(package).__path__, package + "."))
print(json.dumps(sorted(names)))
"""


def test_the_install_has_every_module_of_the_checkout(venv):
    """pyproject lists the packages by hand ([tool.setuptools] packages): a new subpackage left off is
    missing from every non-editable install while the editable checkout still imports it."""
    import json

    proc = _run([venv / "python", "-c", WALK, "vitdeploy", *NESTED], timeout=120, cwd=venv)
    assert proc.returncode == 0, proc.stderr
    missing = sorted(set(installed_modules()) - set(json.loads(proc.stdout)))
    assert missing == [], f"not installed (add them to [tool.setuptools] packages in pyproject.toml): {missing}"


def test_validate_and_bench_without_torch(venv, tmp_path):
    a, b = tiny_onnx(tmp_path, "A"), tiny_onnx(tmp_path, "B")
    rng = np.random.default_rng(0)
    data = tmp_path / "val.npz"
    np.savez(data, images=rng.standard_normal((64, 3, 4, 4)).astype(np.float32), labels=rng.integers(0, 10, 64))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # nothing from this interpreter's paths

    proc = _run([venv / "vitdeploy", "validate", a, b, "--data", data, "--samples", "64"], timeout=300, cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "B.onnx" in proc.stdout

    proc = _run([venv / "vitdeploy", "bench", a, "--iterations", "5"], timeout=300, cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "A.onnx" in proc.stdout
