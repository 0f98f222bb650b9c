"""Can this engine run here? Decided from its manifest, before TensorRT deserialises anything.

A standard engine runs only on the TensorRT it was built with (major, minor, patch and build
must match) and on GPUs of the compute capability it was built for. Version-compatible engines
(``--version-compatible``, TensorRT >= 8.6) also run on newer TensorRT; hardware-compatible ones
(``--hardware-compat``) on other GPUs of the level's range.
"""

from __future__ import annotations

from typing import Any

from vitdeploy.core.errors import CompatibilityError
from vitdeploy.core.manifest import Manifest
from vitdeploy.trt.version import TrtVersion


def _cc(text: Any) -> tuple[int, int] | None:
    try:
        major, minor = str(text).split(".")[:2]
        return int(major), int(minor)
    except (ValueError, AttributeError):
        return None


def check_engine(manifest: Manifest | dict[str, Any] | None, running: TrtVersion, gpu: dict[str, Any] | None,
                 engine_name: str = "the engine") -> list[str]:
    """Raise CompatibilityError on a version or GPU mismatch; return notes (e.g. no manifest)."""
    if manifest is None:
        return [f"no manifest beside {engine_name}: TensorRT version and GPU cannot be checked before loading"]
    manifest = Manifest.coerce(manifest)
    notes: list[str] = []
    built = manifest.tensorrt.version if manifest.tensorrt else None
    version_compatible = bool(manifest.build_options and manifest.build_options.version_compatible)
    if built:
        b = TrtVersion.parse(built)
        if version_compatible:
            if (running.major, running.minor, running.patch, running.build) < (b.major, b.minor, b.patch, b.build):
                raise CompatibilityError(
                    f"{engine_name} was built with TensorRT {b} (version-compatible) and cannot run on the older "
                    f"TensorRT {running} here; rebuild it with vitdeploy build-engine on this machine")
        elif b != running:
            raise CompatibilityError(
                f"{engine_name} was built with TensorRT {b} but this machine has TensorRT {running}: engines only run on "
                "the exact TensorRT that built them; rebuild it here (or build with --version-compatible)")
    else:
        notes.append(f"the manifest of {engine_name} does not record the TensorRT version")
    built_gpu = manifest.gpu
    want, have = _cc(built_gpu.compute_capability if built_gpu else None), _cc((gpu or {}).get("compute_capability"))
    if want and have and want != have:
        level = (manifest.build_options.hardware_compat if manifest.build_options else None) or "none"
        if level == "ampere+" and want >= (8, 0) and have >= (8, 0):
            return notes
        raise CompatibilityError(
            f"{engine_name} was built for {(built_gpu.name if built_gpu else None) or 'a GPU'} (compute capability {want[0]}.{want[1]}) but "
            f"this GPU is {(gpu or {}).get('name', '?')} ({have[0]}.{have[1]}); rebuild it on this GPU"
            + (" or build with --hardware-compat ampere+" if have >= (8, 0) and want >= (8, 0) else ""))
    if want and not have:
        notes.append("GPU compute capability unknown here: not checked")
    return notes
