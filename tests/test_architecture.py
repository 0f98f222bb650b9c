"""The one-way architecture of README "Layout", checked with import-linter (contracts in pyproject.toml).

The installed package is assembled from four folders (setuptools ``package-dir``); import-linter
walks one directory tree, so the test lays the package out as it is installed (a copy of the
sources in a temporary folder) and lints that copy. A planted backward import must fail.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("importlinter")

ROOT = Path(__file__).resolve().parents[1]
SUBPACKAGES = ("models", "export", "calib")  # top-level folders installed inside vitdeploy


def installed_layout(dest: Path) -> Path:
    """Copy the sources as setuptools installs them: deploy/ is vitdeploy, the rest nest inside it."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    pkg = dest / "vitdeploy"
    shutil.copytree(ROOT / "deploy", pkg, ignore=ignore)
    for name in SUBPACKAGES:
        shutil.copytree(ROOT / name, pkg / name, ignore=ignore)
    return pkg


def lint(tree: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(tree)}  # before site-packages: the copy, not the editable install
    return subprocess.run([sys.executable, "-c", "from importlinter.cli import lint_imports_command; lint_imports_command()",
                           str(ROOT / "pyproject.toml"), "--no-cache"],
                          cwd=tree, env=env, capture_output=True, text=True, timeout=300)


def test_layers_hold(tmp_path):
    installed_layout(tmp_path)
    result = lint(tmp_path)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "Contracts: 2 kept, 0 broken." in result.stdout, result.stdout[-2000:]


@pytest.mark.parametrize("module,planted", [
    ("core/errors.py", "from vitdeploy.pipeline import run as _planted  # noqa"),
    ("calib/quantize.py", "import vitdeploy.validate as _planted  # noqa"),
    ("runners/base.py", "from vitdeploy.engine import build as _planted  # noqa"),
    ("core/compare.py", "def _planted():\n    import onnxruntime  # noqa"),  # core-light: even a function-level import
])
def test_planted_backward_import_fails(tmp_path, module, planted):
    pkg = installed_layout(tmp_path)
    target = pkg / module
    target.write_text(target.read_text() + "\n" + planted + "\n")
    result = lint(tmp_path)
    assert result.returncode != 0, result.stdout[-2000:]
    assert "BROKEN" in result.stdout
