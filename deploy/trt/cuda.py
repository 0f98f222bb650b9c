"""The few CUDA runtime calls vitdeploy makes, straight from ``libcudart`` through ctypes.

No Python CUDA bindings: cuda-python has to match the CUDA major version (11 on JetPack 5, 12 on
JetPack 6, 13 on JetPack 7), while the runtime's C API used here (device attributes, memory,
streams, async copies, events) has been stable across those versions. The library is found the way
NVIDIA Polygraphy finds it:

1. ``VITDEPLOY_CUDART`` (a path or a soname), when set: that library and nothing else;
2. ``ctypes.util.find_library("cudart")`` (the loader cache);
3. the versioned sonames ``libcudart.so.13`` / ``.12`` / ``.11.0`` through the default loader path;
4. the usual folders: ``$CUDA_HOME``, ``$CUDA_PATH``, ``/usr/local/cuda[-X.Y]`` (``lib64``, ``lib``,
   ``targets/aarch64-linux/lib`` on a Jetson, ...) and the ``nvidia-cuda-runtime`` pip wheels.
   On Windows: ``cudart64_*.dll`` in ``%CUDA_PATH%\\bin`` and on ``PATH``.

Of those, the first whose CUDA major version the driver supports is used (the first that loads when
none is; no driver at all is left to the calls to report).

``cudaDeviceProp`` changes layout between CUDA versions, so only its first field (the 256-byte name)
is read from it, into a buffer far larger than any version's struct; everything else comes from
cudaDeviceGetAttribute, cudaMemGetInfo and the version calls. A missing library is a one-line
MissingDependencyError; a failing call a one-line CompatibilityError with cudaGetErrorString's text.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import glob
import os
import sys
import sysconfig
from ctypes import POINTER, byref, c_char_p, c_float, c_int, c_size_t, c_void_p
from pathlib import Path
from typing import Any

import numpy as np

from vitdeploy.core.errors import CompatibilityError, MissingDependencyError

ENV_VAR = "VITDEPLOY_CUDART"
SONAMES = ("libcudart.so.13", "libcudart.so.12", "libcudart.so.11.0")
INSTALL_HINT = ("install the CUDA runtime matching TensorRT's CUDA major version (on a Jetson it comes with JetPack: "
                "sudo apt install nvidia-jetpack; elsewhere the CUDA toolkit, or pip install nvidia-cuda-runtime-cu12 / "
                f"nvidia-cuda-runtime for CUDA 13), or set {ENV_VAR} to the library's path")

# cudaMemcpyKind and cudaDeviceAttr values (driver_types.h; unchanged from CUDA 11 to 13)
MEMCPY_HOST_TO_DEVICE, MEMCPY_DEVICE_TO_HOST = 1, 2
ATTR_MULTIPROCESSOR_COUNT, ATTR_INTEGRATED = 16, 18
ATTR_COMPUTE_CAPABILITY_MAJOR, ATTR_COMPUTE_CAPABILITY_MINOR = 75, 76
# cudaDeviceProp is 1008 bytes in CUDA 13 (and about that in 11/12); ``name`` is its first field
DEVICE_PROP_BUFFER, DEVICE_NAME_BYTES = 8192, 256

_INT_P, _VOID_PP, _SIZE_P = POINTER(c_int), POINTER(c_void_p), POINTER(c_size_t)
# symbol -> argument types (every call returns cudaError_t, an int, except the two error-text calls)
_PROTOTYPES: dict[str, list] = {
    "cudaGetDevice": [_INT_P],
    "cudaDeviceGetAttribute": [_INT_P, c_int, c_int],
    "cudaGetDeviceProperties": [c_void_p, c_int],
    "cudaMemGetInfo": [_SIZE_P, _SIZE_P],
    "cudaRuntimeGetVersion": [_INT_P],
    "cudaDriverGetVersion": [_INT_P],
    "cudaMalloc": [_VOID_PP, c_size_t],
    "cudaFree": [c_void_p],
    "cudaStreamCreate": [_VOID_PP],
    "cudaStreamDestroy": [c_void_p],
    "cudaStreamSynchronize": [c_void_p],
    "cudaMemcpyAsync": [c_void_p, c_void_p, c_size_t, c_int, c_void_p],
    "cudaEventCreate": [_VOID_PP],
    "cudaEventDestroy": [c_void_p],
    "cudaEventRecord": [c_void_p, c_void_p],
    "cudaEventSynchronize": [c_void_p],
    "cudaEventElapsedTime": [POINTER(c_float), c_void_p, c_void_p],
}

_loaded: dict[str, tuple[str, ctypes.CDLL]] = {}  # VITDEPLOY_CUDART value ("" when unset) -> (path, library)


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


def _cuda_roots() -> list[str]:
    roots = [os.environ.get("CUDA_HOME", ""), os.environ.get("CUDA_PATH", ""), "/usr/local/cuda"]
    roots += sorted(glob.glob("/usr/local/cuda-*"), key=_version_key, reverse=True)
    return [r for r in roots if r]


def _version_key(path: str) -> tuple[int, ...]:
    digits = Path(path).name.rsplit("-", 1)[-1].split(".")
    return tuple(int(d) for d in digits if d.isdigit())


def _wheel_dirs(sub: str) -> list[str]:
    """The lib (or bin) folders of the nvidia-cuda-runtime wheels in this environment."""
    sites = {sysconfig.get_paths().get("purelib", ""), sysconfig.get_paths().get("platlib", "")}
    sites |= {p for p in sys.path if p.endswith(("site-packages", "dist-packages"))}
    return [str(Path(s) / "nvidia" / pkg / sub) for s in sorted(s for s in sites if s)
            for pkg in ("cu13", "cuda_runtime")]


def candidates() -> list[str]:
    """Where to look for libcudart, in order (names for the default loader, then paths that exist)."""
    if sys.platform.startswith("win"):
        dirs = [str(Path(r) / "bin") for r in _cuda_roots() if r != "/usr/local/cuda"] + _wheel_dirs("bin")
        dirs += os.environ.get("PATH", "").split(os.pathsep)
        found: list[str] = []
        for d in filter(None, dirs):
            # cudart64_13.dll, cudart64_12.dll, cudart64_110.dll: newest major first
            dlls = glob.glob(os.path.join(d, "cudart64_*.dll"))
            found += sorted(dlls, key=lambda p: int("".join(c for c in Path(p).stem[9:] if c.isdigit())[:2] or 0),
                            reverse=True)
        return list(dict.fromkeys(found))
    names: list[str] = []
    found_name = ctypes.util.find_library("cudart")
    if found_name:
        names.append(found_name)
    names += SONAMES
    dirs = []
    for root in _cuda_roots():
        dirs += [os.path.join(root, sub) for sub in ("lib64", "lib", "targets/aarch64-linux/lib",
                                                     "targets/sbsa-linux/lib", "targets/x86_64-linux/lib")]
    dirs += ["/usr/lib/aarch64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/usr/lib64", "/usr/lib"] + _wheel_dirs("lib")
    for d in dirs:
        for soname in (*SONAMES, "libcudart.so"):
            path = os.path.join(d, soname)
            if os.path.isfile(path):
                names.append(path)
    return list(dict.fromkeys(names))


def load_cudart() -> tuple[str, ctypes.CDLL]:
    """(what was loaded, the library): VITDEPLOY_CUDART's, else the first candidate the driver supports."""
    explicit = os.environ.get(ENV_VAR, "").strip()
    if explicit in _loaded:
        return _loaded[explicit]
    if explicit:
        try:
            lib = ctypes.CDLL(explicit)
        except OSError as exc:
            raise MissingDependencyError(f"{ENV_VAR}={explicit} cannot be loaded ({_one_line(exc)}): point it at the CUDA "
                                         "runtime library (libcudart.so.N, cudart64_N.dll) or unset it") from None
        _loaded[explicit] = (explicit, lib)
        return _loaded[explicit]
    for name in _mapped_cudart():  # the one TensorRT (or torch) already uses: the same runtime for both
        try:
            _loaded[explicit] = (name, ctypes.CDLL(name))
            return _loaded[explicit]
        except OSError:
            continue
    first, best, best_major, seen = None, None, -1, set()
    for name in candidates():
        real = os.path.realpath(name) if os.path.isabs(name) else name
        if real in seen:  # one file under several names (soname links): loaded and asked once
            continue
        seen.add(real)
        try:
            lib = ctypes.CDLL(name)
        except OSError:
            continue
        first = first or (name, lib)
        rt_version, drv_version = _versions(lib)
        supported = not drv_version or not rt_version or drv_version // 1000 >= rt_version // 1000
        if supported and rt_version // 1000 > best_major:  # newest the driver runs: a stray older one never wins
            best, best_major = (name, lib), rt_version // 1000
    if best is not None or first is not None:  # none the driver supports: its calls say so (InsufficientDriver)
        _loaded[explicit] = best or first
        return _loaded[explicit]
    raise MissingDependencyError(f"the CUDA runtime library (libcudart) was not found for the TensorRT runner: {INSTALL_HINT}")


def _mapped_cudart() -> list[str]:
    """libcudart files already mapped into this process (Linux): loaded with TensorRT or torch."""
    try:
        with open("/proc/self/maps") as f:
            paths = {line.split()[-1] for line in f if "libcudart.so" in line}
    except OSError:
        return []
    return sorted(p for p in paths if p.startswith("/"))


def _versions(lib: ctypes.CDLL) -> tuple[int, int]:
    """(CUDA runtime version, driver version) as 12060-style integers; 0 where it cannot tell, -1000 for
    a library that is not a CUDA runtime at all (Cuda() says so)."""
    rt_version, drv_version = c_int(), c_int()
    try:
        ok_rt = lib.cudaRuntimeGetVersion(byref(rt_version)) == 0
        ok_drv = lib.cudaDriverGetVersion(byref(drv_version)) == 0
    except AttributeError:
        return -1000, 0
    return (rt_version.value if ok_rt else 0), (drv_version.value if ok_drv else 0)


class Cuda:
    """Thin, checked wrapper over libcudart: device properties, memory, streams, copies, events.

    Streams and events are plain integers (the ``cudaStream_t`` / ``cudaEvent_t`` handle values);
    ``lib`` is a path or soname to load, an already loaded ``ctypes.CDLL``, or None to search.
    """

    def __init__(self, lib: str | os.PathLike | ctypes.CDLL | None = None) -> None:
        if lib is None:
            self.path, self.lib = load_cudart()
        elif isinstance(lib, (str, os.PathLike)):
            try:
                self.path, self.lib = os.fspath(lib), ctypes.CDLL(os.fspath(lib))
            except OSError as exc:
                raise MissingDependencyError(f"{os.fspath(lib)} cannot be loaded ({_one_line(exc)}): {INSTALL_HINT}") from None
        else:
            self.path, self.lib = getattr(lib, "_name", "libcudart"), lib
        self._fn = {name: self._bind(name, args) for name, args in _PROTOTYPES.items()}
        # CUDA 12 headers map cudaGetDeviceProperties to the _v2 symbol; CUDA 11 and 13 export only the plain one
        if hasattr(self.lib, "cudaGetDeviceProperties_v2"):
            self._fn["cudaGetDeviceProperties"] = self._bind("cudaGetDeviceProperties_v2", [c_void_p, c_int])
        self._error_text = self._error_function("cudaGetErrorString")
        self._error_name = self._error_function("cudaGetErrorName")

    def _bind(self, name: str, argtypes: list):
        try:
            fn = getattr(self.lib, name)
        except AttributeError:
            raise MissingDependencyError(f"{self.path} has no {name}: it is not the CUDA runtime library (or one too "
                                         f"old); {INSTALL_HINT}") from None
        fn.argtypes, fn.restype = argtypes, c_int
        return fn

    def _error_function(self, name: str):
        fn = getattr(self.lib, name, None)
        if fn is not None:
            fn.argtypes, fn.restype = [c_int], c_char_p
        return fn

    def error_string(self, code: int) -> str:
        """'cudaErrorMemoryAllocation (out of memory)', from the runtime's own tables."""
        name = self._error_name(code) if self._error_name is not None else None
        text = self._error_text(code) if self._error_text is not None else None
        name = name.decode(errors="replace") if name else f"CUDA error {code}"
        return f"{name} ({_one_line(text.decode(errors='replace'))})" if text else name

    def check(self, code: int, what: str) -> None:
        if int(code) != 0:
            raise CompatibilityError(f"CUDA {what} failed: {self.error_string(int(code))}")

    def _call(self, name: str, *args, what: str | None = None) -> None:
        self.check(self._fn[name](*args), what or name)

    def _int(self, name: str, *args) -> int:
        out = c_int()
        self._call(name, byref(out), *args)
        return out.value

    def _handle(self, name: str) -> int:
        out = c_void_p()
        self._call(name, byref(out))
        return out.value or 0

    # -- device ------------------------------------------------------------------------------

    def device_info(self) -> dict[str, Any]:
        device = self._int("cudaGetDevice")
        buf = ctypes.create_string_buffer(DEVICE_PROP_BUFFER)
        self._call("cudaGetDeviceProperties", buf, device)
        name = buf.raw[:DEVICE_NAME_BYTES].split(b"\x00", 1)[0].decode(errors="replace").strip()
        major = self._int("cudaDeviceGetAttribute", ATTR_COMPUTE_CAPABILITY_MAJOR, device)
        minor = self._int("cudaDeviceGetAttribute", ATTR_COMPUTE_CAPABILITY_MINOR, device)
        free, total = c_size_t(), c_size_t()
        try:  # creates the context; a failure here leaves the memory unknown, not the whole answer
            self._call("cudaMemGetInfo", byref(free), byref(total))
            memory: int | None = int(total.value)
        except CompatibilityError:
            memory = None
        return {"index": device, "name": name, "compute_capability": f"{major}.{minor}", "memory_bytes": memory,
                "integrated": bool(self._int("cudaDeviceGetAttribute", ATTR_INTEGRATED, device)),
                "multiprocessors": self._int("cudaDeviceGetAttribute", ATTR_MULTIPROCESSOR_COUNT, device),
                "cuda_runtime": _cuda_version(self._int("cudaRuntimeGetVersion")),
                "cuda_driver": _cuda_version(self._int("cudaDriverGetVersion"))}

    # -- memory ------------------------------------------------------------------------------

    def malloc(self, nbytes: int) -> int:
        ptr = c_void_p()
        self._call("cudaMalloc", byref(ptr), max(int(nbytes), 1), what=f"cudaMalloc of {int(nbytes)} bytes")
        return ptr.value or 0

    def free(self, ptr: int) -> None:
        self._call("cudaFree", ptr)

    def to_device(self, dst: int, host: np.ndarray, stream: int) -> None:
        """Queue a host->device copy of ``host`` (C-contiguous; keep it alive until the stream syncs)."""
        _contiguous(host)
        self._call("cudaMemcpyAsync", dst, host.ctypes.data, host.nbytes, MEMCPY_HOST_TO_DEVICE, stream,
                   what="cudaMemcpyAsync H2D")

    def to_host(self, host: np.ndarray, src: int, stream: int) -> None:
        """Queue a device->host copy into ``host`` (valid after the stream syncs)."""
        _contiguous(host)
        self._call("cudaMemcpyAsync", host.ctypes.data, src, host.nbytes, MEMCPY_DEVICE_TO_HOST, stream,
                   what="cudaMemcpyAsync D2H")

    # -- streams and events ------------------------------------------------------------------

    def stream(self) -> int:
        return self._handle("cudaStreamCreate")

    def destroy_stream(self, stream: int) -> None:
        self._call("cudaStreamDestroy", stream)

    def synchronize(self, stream: int) -> None:
        self._call("cudaStreamSynchronize", stream)

    def event(self) -> int:
        return self._handle("cudaEventCreate")

    def destroy_event(self, event: int) -> None:
        self._call("cudaEventDestroy", event)

    def record(self, event: int, stream: int) -> None:
        self._call("cudaEventRecord", event, stream)

    def elapsed_ms(self, start: int, end: int) -> float:
        self._call("cudaEventSynchronize", end)
        ms = c_float()
        self._call("cudaEventElapsedTime", byref(ms), start, end)
        return float(ms.value)


def _cuda_version(v: int) -> str:
    """12060 -> '12.6' (0 -> '0': no driver)."""
    return f"{v // 1000}.{v % 1000 // 10}" if v else "0"


def _contiguous(host: np.ndarray) -> None:
    if not host.flags.c_contiguous:
        raise ValueError("host array for a CUDA copy must be C-contiguous (np.ascontiguousarray)")


def gpu_info() -> dict[str, Any] | None:
    """This machine's GPU via libcudart, or nvidia-smi when the runtime is absent or fails; None when neither works."""
    try:
        return Cuda().device_info()
    except (MissingDependencyError, CompatibilityError):
        pass
    from vitdeploy.core.sysinfo import gpus

    found = gpus()
    if found:
        return {"index": 0, "name": found[0]["name"], "compute_capability": found[0]["compute_capability"]}
    return None
