"""What this machine is: software versions, GPU, Jetson release and power mode.

Every probe is guarded: a missing or broken piece is reported as such, never raised. Used by
`vitdeploy env`, and recorded with every benchmark so results can be compared honestly.
"""

from __future__ import annotations

import importlib
import importlib.util
import importlib.metadata as md
import os
import platform
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

# (module to import, distribution names to look up the version of)
PACKAGES: dict[str, tuple[str, ...]] = {
    "numpy": ("numpy",),
    "torch": ("torch",),
    "onnx": ("onnx",),
    "onnxruntime": ("onnxruntime", "onnxruntime-gpu", "onnxruntime-directml"),
    "onnxsim": ("onnxsim",),
    "onnxslim": ("onnxslim",),
    "tensorrt": ("tensorrt", "tensorrt-cu12", "tensorrt-cu13", "tensorrt-bindings"),
}

L4T_RELEASE_FILE = Path("/etc/nv_tegra_release")
# L4T major.minor -> JetPack (NVIDIA's release table)
L4T_TO_JETPACK = {
    "32.6": "4.6", "32.7": "4.6.x", "35.1": "5.0.2", "35.2": "5.1", "35.3": "5.1.1", "35.4": "5.1.2",
    "35.5": "5.1.3", "35.6": "5.1.4", "36.2": "6.0 DP", "36.3": "6.0", "36.4": "6.1/6.2", "38.2": "7.0",
    "38.4": "7.2",
}


def _dist_version(names: tuple[str, ...]) -> str | None:
    for name in names:
        try:
            return md.version(name)
        except md.PackageNotFoundError:
            continue
    return None


def package_status(module: str) -> dict[str, Any]:
    """{"installed": bool, "version": str|None, "error": str|None} without importing heavy modules."""
    from vitdeploy.core.deps import is_available

    version = _dist_version(PACKAGES.get(module, (module,)))
    found = sys.modules.get(module) is not None or is_available(module)
    return {"installed": bool(found), "version": version if found else None, "error": None}


def _onnxruntime_info() -> dict[str, Any]:
    info = package_status("onnxruntime")
    if info["installed"]:
        try:
            ort = importlib.import_module("onnxruntime")
            info["version"] = ort.__version__
            info["providers"] = ort.get_available_providers()
        except Exception as exc:  # a broken install is a finding, not a crash
            info["error"] = f"{type(exc).__name__}: {exc}"
    return info


def _tensorrt_info() -> dict[str, Any]:
    info = package_status("tensorrt")
    if info["installed"]:
        try:
            trt = importlib.import_module("tensorrt")
            info["version"] = trt.__version__
        except Exception as exc:
            info["error"] = f"{type(exc).__name__}: {exc}"
    return info


def _torch_info() -> dict[str, Any]:
    info = package_status("torch")
    if info["installed"] and "torch" in sys.modules:
        torch = sys.modules["torch"]
        info["cuda_available"] = bool(torch.cuda.is_available())
        info["cuda_version"] = torch.version.cuda
    return info


def gpus() -> list[dict[str, Any]]:
    """GPUs from nvidia-smi (desktop/server). Jetsons have no nvidia-smi: see jetson_info."""
    exe = shutil.which("nvidia-smi")
    if not exe:
        return []
    query = "name,compute_cap,memory.total,driver_version,clocks.sm,clocks.max.sm,clocks.mem"
    try:
        out = subprocess.run([exe, f"--query-gpu={query}", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=10, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    result = []
    for line in out.strip().splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) >= 7:
            result.append({
                "name": parts[0], "compute_capability": parts[1], "memory_mib": _num(parts[2]),
                "driver": parts[3], "sm_clock_mhz": _num(parts[4]), "sm_clock_max_mhz": _num(parts[5]),
                "mem_clock_mhz": _num(parts[6]),
            })
    return result


def _num(s: str) -> float | None:
    try:
        return float(s)
    except ValueError:
        return None


def parse_l4t_release(text: str) -> str | None:
    """'# R35 (release), REVISION: 4.1, ...' -> '35.4.1'."""
    m = re.search(r"R(\d+)\s+\(release\),\s+REVISION:\s*([\d.]+)", text)
    return f"{m.group(1)}.{m.group(2)}" if m else None


def jetpack_for_l4t(l4t: str | None) -> str | None:
    if not l4t:
        return None
    major_minor = ".".join(l4t.split(".")[:2])
    return L4T_TO_JETPACK.get(major_minor)


def jetson_info(root: Path = Path("/")) -> dict[str, Any] | None:
    """L4T/JetPack release, module model, nvpmodel power mode and clock lock, on a Jetson; else None."""
    release_file = root / L4T_RELEASE_FILE.relative_to("/")
    if not release_file.exists():
        return None
    l4t = parse_l4t_release(release_file.read_text(errors="replace"))
    info: dict[str, Any] = {"l4t": l4t, "jetpack": jetpack_for_l4t(l4t)}
    model_file = root / "proc/device-tree/model"
    if model_file.exists():
        info["module"] = model_file.read_text(errors="replace").strip("\x00\n ")
    info["power_mode"] = _nvpmodel_mode(root)
    info["clocks_locked"] = _clocks_locked(root)
    return info


def _nvpmodel_mode(root: Path) -> str | None:
    status = root / "var/lib/nvpmodel/status"
    if status.exists():  # e.g. "pmode:0000 fmode:..."
        m = re.search(r"pmode:(\d+)", status.read_text(errors="replace"))
        if m:
            return f"mode {int(m.group(1))}"
    exe = shutil.which("nvpmodel")
    if exe and root == Path("/"):
        try:
            out = subprocess.run([exe, "-q"], capture_output=True, text=True, timeout=10).stdout
            m = re.search(r"NV Power Mode:\s*(\S+)", out)
            return m.group(1) if m else None
        except (OSError, subprocess.SubprocessError):
            return None
    return None


def _clocks_locked(root: Path) -> bool | None:
    """jetson_clocks pins the GPU min frequency to its max: compare the devfreq bounds."""
    for dev in sorted((root / "sys/class/devfreq").glob("*")):
        name = (dev / "name").read_text().strip() if (dev / "name").exists() else dev.name
        if "gpu" in name.lower() or "gv11b" in name or "ga10b" in name or "gb10b" in name:
            try:
                lo = int((dev / "min_freq").read_text())
                hi = int((dev / "max_freq").read_text())
                return lo == hi
            except (OSError, ValueError):
                return None
    return None


def cpu_info() -> dict[str, Any]:
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith(("model name", "hardware")):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    return {"model": model, "cores": os.cpu_count(), "load_1min": load, "machine": platform.machine()}


def environment(probe_imports: bool = True) -> dict[str, Any]:
    """Everything `vitdeploy env` shows. ``probe_imports`` imports onnxruntime/tensorrt to read providers."""
    from vitdeploy import __version__

    info: dict[str, Any] = {
        "vitdeploy": __version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": cpu_info(),
        "packages": {},
    }
    for name in PACKAGES:
        if probe_imports and name == "onnxruntime":
            info["packages"][name] = _onnxruntime_info()
        elif probe_imports and name == "tensorrt":
            info["packages"][name] = _tensorrt_info()
        elif name == "torch":
            info["packages"][name] = _torch_info()
        else:
            info["packages"][name] = package_status(name)
    info["gpus"] = gpus()
    info["jetson"] = jetson_info()
    return info
