"""`vitdeploy env` never crashes: with a package missing, or installed but broken."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap


def _env_json(tmp_path, blocker: str) -> tuple[int, dict, str]:
    (tmp_path / "sitecustomize.py").write_text(textwrap.dedent(blocker))
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    proc = subprocess.run([sys.executable, "-m", "vitdeploy", "env", "--json"], capture_output=True, text=True,
                          env=env, timeout=120)
    return proc.returncode, (json.loads(proc.stdout) if proc.returncode == 0 else {}), proc.stderr


def test_env_without_onnxruntime_and_tensorrt(tmp_path):
    code, info, err = _env_json(tmp_path, """
        import importlib.abc, sys
        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in ("onnxruntime", "tensorrt"):
                    raise ModuleNotFoundError(name)
                return None
        sys.meta_path.insert(0, Block())
    """)
    assert code == 0, err
    assert info["packages"]["onnxruntime"]["installed"] is False
    assert info["packages"]["tensorrt"]["installed"] is False
    assert info["packages"]["onnx"]["installed"] is True


def test_env_with_a_broken_onnxruntime(tmp_path):
    pkg = tmp_path / "onnxruntime"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("raise ImportError('libonnxruntime.so: cannot open shared object file')\n")
    code, info, err = _env_json(tmp_path, "")
    assert code == 0, err
    ort = info["packages"]["onnxruntime"]
    assert ort["installed"] is True and "cannot open shared object" in ort["error"]
