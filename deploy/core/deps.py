"""Lazy imports of optional heavy modules, with a one-line fix hint when they are missing.

``require("onnxruntime")`` returns the module or raises MissingDependencyError saying what to
install. Import errors *inside* an installed package (a broken CUDA library, say) are not
swallowed: they are reported with the original message.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from types import ModuleType

from vitdeploy.core.errors import MissingDependencyError

# module name -> what to install
INSTALL_HINTS: dict[str, str] = {
    "torch": "pip install 'vitdeploy[export]' (a CPU wheel is enough for export)",
    "safetensors": "pip install safetensors",
    "onnxruntime": "pip install 'vitdeploy[ort]' (or onnxruntime-gpu / the JetPack onnxruntime wheel)",
    "onnxsim": "pip install onnxsim",
    "onnxslim": "pip install onnxslim",
    "onnxscript": "pip install onnxscript (needed by torch's dynamo exporter)",
    "tensorrt": "TensorRT Python bindings: on a Jetson they come with JetPack (apt install python3-libnvinfer); elsewhere pip install tensorrt",
    "matplotlib": "pip install matplotlib (for PNG plots)",
    "PIL": "pip install pillow",
}


def is_available(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def require(name: str, purpose: str | None = None) -> ModuleType:
    """Import and return module ``name`` or raise MissingDependencyError with a fix hint."""
    loaded = sys.modules.get(name)
    if loaded is not None:  # the common case, called per tensor by the graph passes: no finder walk
        return loaded
    top = name.split(".")[0]
    if not is_available(top):
        hint = INSTALL_HINTS.get(top, f"pip install {top}")
        what = f" for {purpose}" if purpose else ""
        raise MissingDependencyError(f"{top} is not installed{what}: {hint}")
    try:
        return importlib.import_module(name)
    except ImportError as exc:  # installed but broken: say so, with the real reason
        raise MissingDependencyError(f"{top} is installed but failed to import: {exc}") from exc
