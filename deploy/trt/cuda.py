"""The few CUDA runtime calls vitdeploy makes, through cuda-python (not pycuda).

cuda-python 12.6+ / 13 has ``cuda.bindings.runtime``; older releases ``cuda.cudart``. Every call
returns ``(error, value...)``; ``check`` turns a non-success code into a one-line error.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from vitdeploy.core.errors import CompatibilityError, MissingDependencyError


def cudart():
    """The CUDA runtime module of cuda-python (MissingDependencyError when absent)."""
    from vitdeploy.core.deps import is_available

    if not is_available("cuda"):
        raise MissingDependencyError("cuda-python is not installed for the TensorRT runner: "
                                     "pip install 'cuda-python>=12' (match the CUDA major version of TensorRT)")
    try:
        from cuda.bindings import runtime  # cuda-python >= 12.6
        return runtime
    except ImportError:
        pass
    try:
        from cuda import cudart as runtime  # older cuda-python
        return runtime
    except ImportError as exc:
        raise MissingDependencyError(f"cuda-python is installed but its runtime module failed to import: {exc}") from exc


class Cuda:
    """Thin, checked wrapper: device properties, memory, streams, copies."""

    def __init__(self, rt=None) -> None:
        self.rt = rt or cudart()

    def check(self, result: Any, what: str) -> Any:
        err, *rest = result if isinstance(result, tuple) else (result,)
        if int(err) != 0:
            name = getattr(err, "name", str(err))
            raise CompatibilityError(f"CUDA {what} failed: {name}")
        return rest[0] if len(rest) == 1 else (tuple(rest) if rest else None)

    def device_info(self) -> dict[str, Any]:
        device = self.check(self.rt.cudaGetDevice(), "cudaGetDevice")
        prop = self.check(self.rt.cudaGetDeviceProperties(device), "cudaGetDeviceProperties")
        name = prop.name.decode(errors="replace") if isinstance(prop.name, bytes) else str(prop.name)
        return {"index": int(device), "name": name.rstrip("\x00").strip(),
                "compute_capability": f"{prop.major}.{prop.minor}", "memory_bytes": int(prop.totalGlobalMem),
                "integrated": bool(prop.integrated)}

    def malloc(self, nbytes: int) -> int:
        return int(self.check(self.rt.cudaMalloc(max(int(nbytes), 1)), "cudaMalloc"))

    def free(self, ptr: int) -> None:
        self.check(self.rt.cudaFree(ptr), "cudaFree")

    def stream(self):
        return self.check(self.rt.cudaStreamCreate(), "cudaStreamCreate")

    def destroy_stream(self, stream) -> None:
        self.check(self.rt.cudaStreamDestroy(stream), "cudaStreamDestroy")

    def synchronize(self, stream) -> None:
        self.check(self.rt.cudaStreamSynchronize(stream), "cudaStreamSynchronize")

    def to_device(self, dst: int, host: np.ndarray, stream) -> None:
        kind = self.rt.cudaMemcpyKind.cudaMemcpyHostToDevice
        self.check(self.rt.cudaMemcpyAsync(dst, host.ctypes.data, host.nbytes, kind, stream), "cudaMemcpyAsync H2D")

    def event(self):
        return self.check(self.rt.cudaEventCreate(), "cudaEventCreate")

    def destroy_event(self, event) -> None:
        self.check(self.rt.cudaEventDestroy(event), "cudaEventDestroy")

    def record(self, event, stream) -> None:
        self.check(self.rt.cudaEventRecord(event, stream), "cudaEventRecord")

    def elapsed_ms(self, start, end) -> float:
        self.check(self.rt.cudaEventSynchronize(end), "cudaEventSynchronize")
        return float(self.check(self.rt.cudaEventElapsedTime(start, end), "cudaEventElapsedTime"))

    def to_host(self, host: np.ndarray, src: int, stream) -> None:
        kind = self.rt.cudaMemcpyKind.cudaMemcpyDeviceToHost
        self.check(self.rt.cudaMemcpyAsync(host.ctypes.data, src, host.nbytes, kind, stream), "cudaMemcpyAsync D2H")


def stream_handle(stream) -> int:
    """The integer handle TensorRT's execute_async_v3 takes."""
    return int(stream)


def gpu_info() -> dict[str, Any] | None:
    """This machine's GPU via cuda-python, or nvidia-smi when cuda-python is absent; None when neither works."""
    try:
        return Cuda().device_info()
    except (MissingDependencyError, CompatibilityError):
        pass
    from vitdeploy.core.sysinfo import gpus

    found = gpus()
    if found:
        return {"index": 0, "name": found[0]["name"], "compute_capability": found[0]["compute_capability"]}
    return None
