"""vitdeploy.trt.cuda (the ctypes wrapper over libcudart) without a GPU.

A tiny fake ``libcudart.so.12`` is compiled with gcc into a temporary folder (skipped cleanly when
gcc is absent): the CUDA runtime symbols vitdeploy uses, over host memory (malloc/memcpy; events
record CLOCK_MONOTONIC), with cudaGetErrorName/String tables and error codes where the real runtime
returns them. ``VITDEPLOY_CUDART`` points the real wrapper at it, so the ctypes prototypes, out
parameters, memcpy kinds, handles and error path are exercised for real; only the GPU is fake.
The same calls on a real device: tests/test_gpu_runtimes.py::test_cudart_round_trip.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from vitdeploy.core.errors import CompatibilityError, MissingDependencyError

FAKE_CUDART_C = r"""
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct { int recorded; double ms; } event_t;
static long live_allocs, live_streams, live_events, copies[5];

static const char *names[] = {"cudaSuccess", "cudaErrorInvalidValue", "cudaErrorMemoryAllocation"};
static const char *texts[] = {"no error", "invalid argument", "out of memory"};

const char *cudaGetErrorName(int e) {
    if (e >= 0 && e <= 2) return names[e];
    if (e == 100) return "cudaErrorNoDevice";
    if (e == 400) return "cudaErrorInvalidResourceHandle";
    return "cudaErrorUnknown";
}
const char *cudaGetErrorString(int e) {
    if (e >= 0 && e <= 2) return texts[e];
    if (e == 100) return "no CUDA-capable device is detected";
    if (e == 400) return "invalid resource handle";
    return "unknown error";
}
int cudaGetDevice(int *d) { if (getenv("FAKE_CUDART_NO_DEVICE")) return 100; *d = 0; return 0; }
int cudaGetDeviceProperties(void *prop, int d) {
    if (d != 0) return 1;
    memset(prop, 0xAB, 1008);  /* a CUDA 13 sized struct: only the name is meant to be read */
    memset(prop, 0, 256);
    strcpy((char *)prop, "Fake GPU (host memory)");
    return 0;
}
int cudaDeviceGetAttribute(int *v, int attr, int d) {
    switch (attr) {
        case 75: *v = 8; return 0;
        case 76: *v = 7; return 0;
        case 18: *v = 1; return 0;
        case 16: *v = 16; return 0;
        default: return 1;
    }
}
int cudaMemGetInfo(size_t *free_, size_t *total) { *free_ = (size_t)6 << 30; *total = (size_t)8 << 30; return 0; }
#ifndef RUNTIME_VERSION
#define RUNTIME_VERSION 12060
#endif
int cudaRuntimeGetVersion(int *v) { *v = RUNTIME_VERSION; return 0; }
int cudaDriverGetVersion(int *v) { *v = 12080; return 0; }
int cudaMalloc(void **p, size_t n) {
    if (n > ((size_t)1 << 40)) return 2;
    *p = malloc(n); if (!*p) return 2;
    live_allocs++; return 0;
}
int cudaFree(void *p) { if (p) { free(p); live_allocs--; } return 0; }
int cudaStreamCreate(void **s) { *s = malloc(16); live_streams++; return 0; }
int cudaStreamDestroy(void *s) { if (!s) return 400; free(s); live_streams--; return 0; }
int cudaStreamSynchronize(void *s) { return 0; }
int cudaMemcpyAsync(void *dst, const void *src, size_t n, int kind, void *s) {
    if (kind < 0 || kind > 4) return 1;
    memcpy(dst, src, n); copies[kind]++; return 0;
}
int cudaEventCreate(void **e) { *e = calloc(1, sizeof(event_t)); live_events++; return 0; }
int cudaEventDestroy(void *e) { if (!e) return 400; free(e); live_events--; return 0; }
int cudaEventRecord(void *e, void *s) {
    struct timespec ts; clock_gettime(CLOCK_MONOTONIC, &ts);
    ((event_t *)e)->recorded = 1; ((event_t *)e)->ms = ts.tv_sec * 1e3 + ts.tv_nsec / 1e6; return 0;
}
int cudaEventSynchronize(void *e) { return 0; }
int cudaEventElapsedTime(float *ms, void *a, void *b) {
    event_t *x = a, *y = b;
    if (!x->recorded || !y->recorded) return 400;
    *ms = (float)(y->ms - x->ms); return 0;
}
long fakeLive(void) { return live_allocs + live_streams + live_events; }
long fakeCopies(int kind) { return copies[kind]; }
"""


def _compile(folder: Path, soname: str, *defines: str) -> Path:
    gcc = shutil.which("gcc")
    if gcc is None or not sys.platform.startswith("linux"):
        pytest.skip("gcc (on Linux) is needed to build the fake libcudart")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "fake_cudart.c").write_text(FAKE_CUDART_C)
    lib = folder / soname
    subprocess.run([gcc, "-shared", "-fPIC", "-O1", *defines, "-o", str(lib), str(folder / "fake_cudart.c")], check=True,
                   capture_output=True)
    return lib


@pytest.fixture(autouse=True)
def _no_runtime_in_process(monkeypatch):
    """The search prefers a libcudart already mapped into the process (one TensorRT loaded); the fake
    libraries these tests load stay mapped, so each test starts from none."""
    import vitdeploy.trt.cuda as cuda_mod

    monkeypatch.setattr(cuda_mod, "_mapped_cudart", lambda: [])


@pytest.fixture(scope="module")
def fake_cudart(tmp_path_factory) -> Path:
    return _compile(tmp_path_factory.mktemp("fake_cudart"), "libcudart.so.12")


@pytest.fixture
def cuda(fake_cudart, monkeypatch):
    from vitdeploy.trt.cuda import Cuda

    monkeypatch.setenv("VITDEPLOY_CUDART", str(fake_cudart))
    return Cuda()


def _probe(fake_cudart):
    lib = ctypes.CDLL(str(fake_cudart))  # the same handle dlopen gave the wrapper
    lib.fakeLive.restype = lib.fakeCopies.restype = ctypes.c_long
    return lib


def test_wrapper_loads_the_library_named_by_the_env_var(cuda, fake_cudart):
    assert cuda.path == str(fake_cudart)


def test_copy_round_trip_stream_and_events(cuda, fake_cudart):
    probe = _probe(fake_cudart)
    live, h2d, d2h = probe.fakeLive(), probe.fakeCopies(1), probe.fakeCopies(2)
    host = np.random.default_rng(0).standard_normal((4, 3, 8, 8)).astype(np.float32)
    back = np.zeros_like(host)
    ptr, stream = cuda.malloc(host.nbytes), cuda.stream()
    start, end = cuda.event(), cuda.event()
    assert all(isinstance(h, int) and h for h in (ptr, stream, start, end))
    assert probe.fakeLive() == live + 4
    cuda.record(start, stream)
    cuda.to_device(ptr, host, stream)
    time.sleep(0.02)
    cuda.to_host(back, ptr, stream)
    cuda.record(end, stream)
    cuda.synchronize(stream)
    ms = cuda.elapsed_ms(start, end)
    np.testing.assert_array_equal(back, host)
    assert (probe.fakeCopies(1), probe.fakeCopies(2)) == (h2d + 1, d2h + 1)  # the H2D / D2H kinds went through
    assert 15.0 <= ms < 5000.0  # the float out-parameter read back
    for event in (start, end):
        cuda.destroy_event(event)
    cuda.destroy_stream(stream)
    cuda.free(ptr)
    assert probe.fakeLive() == live
    with pytest.raises(ValueError, match="C-contiguous"):
        cuda.to_host(np.zeros((4, 4), np.float32).T, ptr, stream)


def test_device_info_reads_only_the_name_from_the_struct(cuda):
    info = cuda.device_info()
    assert info == {"index": 0, "name": "Fake GPU (host memory)", "compute_capability": "8.7", "memory_bytes": 8 << 30,
                    "integrated": True, "multiprocessors": 16, "cuda_runtime": "12.6", "cuda_driver": "12.8"}


def test_failing_call_is_a_one_line_error_with_the_runtime_text(cuda):
    with pytest.raises(CompatibilityError) as e:
        cuda.malloc(1 << 41)
    assert str(e.value) == f"CUDA cudaMalloc of {1 << 41} bytes failed: cudaErrorMemoryAllocation (out of memory)"
    assert e.value.exit_code == 10
    start, end = cuda.event(), cuda.event()
    with pytest.raises(CompatibilityError, match=r"cudaEventElapsedTime failed: cudaErrorInvalidResourceHandle "
                                                 r"\(invalid resource handle\)"):
        cuda.elapsed_ms(start, end)  # never recorded
    cuda.destroy_event(start)
    cuda.destroy_event(end)
    with pytest.raises(CompatibilityError, match="cudaStreamDestroy failed"):
        cuda.destroy_stream(0)


def test_gpu_info_falls_back_to_nvidia_smi_without_a_device(cuda, monkeypatch):
    from vitdeploy.core import sysinfo
    from vitdeploy.trt.cuda import gpu_info

    assert gpu_info()["name"] == "Fake GPU (host memory)"
    monkeypatch.setenv("FAKE_CUDART_NO_DEVICE", "1")
    with pytest.raises(CompatibilityError, match=r"cudaGetDevice failed: cudaErrorNoDevice \(no CUDA-capable device"):
        cuda.device_info()
    monkeypatch.setattr(sysinfo, "gpus", list)
    assert gpu_info() is None
    monkeypatch.setattr(sysinfo, "gpus", lambda: [{"name": "smi GPU", "compute_capability": "9.0"}])
    assert gpu_info() == {"index": 0, "name": "smi GPU", "compute_capability": "9.0"}


def test_runner_runs_on_the_wrapper_over_the_fake_library(cuda, fake_cudart, tmp_path):
    """TensorRTRunner with the fake TensorRT and the real wrapper: buffers, copies, events, frees."""
    from test_trt_fakes import make_fake_trt, tiny_onnx
    from vitdeploy.engine.config import EngineConfig
    from vitdeploy.pipeline.engine import build as build_engine
    from vitdeploy.runners.trt_runner import TensorRTRunner

    gpu = {"index": 0, "name": "Fake GPU (host memory)", "compute_capability": "8.7"}
    engine = build_engine(EngineConfig(model=tiny_onnx(tmp_path)), trt=make_fake_trt("10.3.0"), gpu=gpu, jetson=None)
    probe = _probe(fake_cudart)
    live = probe.fakeLive()
    x = np.random.default_rng(1).standard_normal((3, 3, 4, 4)).astype(np.float32)
    want = x.reshape(3, -1).sum(1, keepdims=True) * np.arange(1, 11, dtype=np.float32)
    with TensorRTRunner(engine.engine_path, trt=make_fake_trt("10.3.0", cuda=cuda), cuda=cuda) as r:
        np.testing.assert_allclose(r.infer({"input": x})["logits"], want, rtol=1e-5)
        out, ms = r.timed_infer({"input": x})
        np.testing.assert_allclose(out["logits"], want, rtol=1e-5)
        assert ms >= 0.0 and r.infer_device_only({"input": x}) >= 0.0
        assert probe.fakeLive() == live + 2 + 1 + 2  # two buffers, the stream, the event pair
    assert probe.fakeLive() == live


def test_explicit_library_that_does_not_load_is_one_line(monkeypatch, tmp_path):
    from vitdeploy.trt.cuda import Cuda

    monkeypatch.setenv("VITDEPLOY_CUDART", str(tmp_path / "libcudart.so.12"))
    with pytest.raises(MissingDependencyError) as e:
        Cuda()
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith("VITDEPLOY_CUDART=") and "cannot be loaded" in msg
    assert e.value.exit_code == 7


def test_missing_library_is_one_line_saying_what_to_install(monkeypatch):
    import vitdeploy.trt.cuda as cuda_mod

    monkeypatch.delenv("VITDEPLOY_CUDART", raising=False)
    monkeypatch.setattr(cuda_mod, "_loaded", {})
    monkeypatch.setattr(cuda_mod, "candidates", lambda: ["/nonexistent/libcudart.so.12", "libcudart.so.0-not-there"])
    with pytest.raises(MissingDependencyError) as e:
        cuda_mod.Cuda()
    msg = str(e.value)
    assert "\n" not in msg and "libcudart" in msg and "JetPack" in msg and "VITDEPLOY_CUDART" in msg
    assert e.value.exit_code == 7
    monkeypatch.setattr(cuda_mod, "candidates", list)
    info = cuda_mod.gpu_info()  # nvidia-smi's answer or None, never a raise
    assert info is None or info["name"]


def test_a_library_that_is_not_cudart_is_refused(monkeypatch):
    from vitdeploy.trt.cuda import Cuda

    libm = ctypes.util.find_library("m") if sys.platform.startswith("linux") else None
    if not libm:
        pytest.skip("no libm to stand in for a wrong library")
    monkeypatch.setenv("VITDEPLOY_CUDART", libm)
    with pytest.raises(MissingDependencyError, match="has no cudaGetDevice: it is not the CUDA runtime library"):
        Cuda()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux search order")
def test_search_order(monkeypatch, tmp_path):
    import vitdeploy.trt.cuda as cuda_mod

    jetson = tmp_path / "cuda" / "targets" / "aarch64-linux" / "lib"
    jetson.mkdir(parents=True)
    (jetson / "libcudart.so.12").write_bytes(b"")
    monkeypatch.setenv("CUDA_HOME", str(tmp_path / "cuda"))
    monkeypatch.setattr(cuda_mod.ctypes.util, "find_library", lambda name: "libcudart.so.11.0" if name == "cudart" else None)
    found = cuda_mod.candidates()
    assert found[:3] == ["libcudart.so.11.0", "libcudart.so.13", "libcudart.so.12"]  # find_library, then the sonames
    assert str(jetson / "libcudart.so.12") in found  # a Jetson's targets/aarch64-linux/lib under $CUDA_HOME


def test_search_skips_a_runtime_newer_than_the_driver(monkeypatch, tmp_path, fake_cudart):
    """A CUDA 13 toolkit first on the search path, a CUDA 12 driver: the CUDA 12 runtime is taken."""
    import vitdeploy.trt.cuda as cuda_mod

    cuda13 = _compile(tmp_path / "cuda13", "libcudart.so.13", "-DRUNTIME_VERSION=13000")
    monkeypatch.delenv("VITDEPLOY_CUDART", raising=False)
    monkeypatch.setattr(cuda_mod, "_loaded", {})
    monkeypatch.setattr(cuda_mod, "candidates", lambda: [str(tmp_path / "none.so"), str(cuda13), str(fake_cudart)])
    assert cuda_mod.Cuda().path == str(fake_cudart)
    monkeypatch.setattr(cuda_mod, "_loaded", {})
    monkeypatch.setattr(cuda_mod, "candidates", lambda: [str(cuda13)])
    cuda = cuda_mod.Cuda()  # the only one there: taken, its calls will tell
    assert cuda.path == str(cuda13) and cuda.device_info()["cuda_runtime"] == "13.0"


def test_search_prefers_the_newest_runtime_the_driver_runs(monkeypatch, tmp_path, fake_cudart):
    """A leftover CUDA 11 runtime found first (ldconfig's cache) never wins over the CUDA 12 one
    TensorRT 10 needs: among the runtimes the driver runs, the newest major is taken."""
    import vitdeploy.trt.cuda as cuda_mod

    cuda11 = _compile(tmp_path / "cuda11", "libcudart.so.11.0", "-DRUNTIME_VERSION=11080")
    monkeypatch.delenv("VITDEPLOY_CUDART", raising=False)
    monkeypatch.setattr(cuda_mod, "_loaded", {})
    monkeypatch.setattr(cuda_mod, "_mapped_cudart", lambda: [])
    monkeypatch.setattr(cuda_mod, "candidates", lambda: [str(cuda11), str(fake_cudart)])
    assert cuda_mod.Cuda().path == str(fake_cudart)


def test_a_runtime_already_in_the_process_is_the_one_used(monkeypatch, tmp_path, fake_cudart):
    import vitdeploy.trt.cuda as cuda_mod

    cuda13 = _compile(tmp_path / "cuda13", "libcudart.so.13", "-DRUNTIME_VERSION=13000")
    monkeypatch.delenv("VITDEPLOY_CUDART", raising=False)
    monkeypatch.setattr(cuda_mod, "_loaded", {})
    monkeypatch.setattr(cuda_mod, "_mapped_cudart", lambda: [str(fake_cudart)])
    monkeypatch.setattr(cuda_mod, "candidates", lambda: [str(cuda13)])
    assert cuda_mod.Cuda().path == str(fake_cudart)
