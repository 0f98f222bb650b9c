"""TensorRTRunner on the CPU: fake TensorRT + fake CUDA memory. Checks the runner protocol,
dynamic batch within the profile, and that engine/GPU mismatches are refused from the manifest
before TensorRT deserialises anything."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from test_trt_fakes import FakeCuda, make_fake_trt, tiny_onnx
from vitdeploy.core.errors import CompatibilityError, InputError, MissingDependencyError, UsageError
from vitdeploy.runners.base import Runner
from vitdeploy.pipeline.engine import build as build_engine
from vitdeploy.engine.config import EngineConfig
from vitdeploy.runners.trt_runner import TensorRTRunner

GPU = {"index": 0, "name": "Orin (fake)", "compute_capability": "8.7"}


@pytest.fixture
def engine(tmp_path):
    trt = make_fake_trt("10.3.0")
    result = build_engine(EngineConfig(model=tiny_onnx(tmp_path)), trt=trt, gpu=GPU, jetson=None)
    return result.engine_path


def runner(engine, version="10.3.0", cc="8.7"):
    cuda = FakeCuda(compute_capability=cc)
    return TensorRTRunner(engine, trt=make_fake_trt(version, cuda=cuda), cuda=cuda), cuda


def expected(x):
    return x.reshape(len(x), -1).sum(1, keepdims=True) * np.arange(1, 11, dtype=np.float32)


def test_runs_batches_within_the_profile(engine):
    r, cuda = runner(engine)
    assert isinstance(r, Runner)
    with r:
        meta = r.input_metadata()
        assert [(m.name, m.shape, m.dtype) for m in meta] == [("input", (None, 3, 4, 4), np.dtype(np.float32))]
        assert r.output_names() == ["logits"] and r.name == "tensorrt[10.3.0]"
        for batch in (1, 8, 3):
            x = np.random.default_rng(batch).standard_normal((batch, 3, 4, 4)).astype(np.float32)
            y = r.infer({"input": x})["logits"]
            assert y.shape == (batch, 10)
            np.testing.assert_allclose(y, expected(x), rtol=1e-5)
        np.testing.assert_allclose(r.infer_one(np.ones((2, 3, 4, 4), np.float64)), expected(np.ones((2, 3, 4, 4), np.float32)))
        with pytest.raises(UsageError, match="batch 9 is outside the engine's profile 1..8"):
            r.infer({"input": np.zeros((9, 3, 4, 4), np.float32)})
        with pytest.raises(UsageError, match="does not fit"):
            r.infer({"input": np.zeros((1, 3, 8, 8), np.float32)})
        with pytest.raises(InputError, match="missing"):
            r.infer({"x": np.zeros((1, 3, 4, 4), np.float32)})
    assert not cuda.mem and len(cuda.freed) == 2  # buffers freed on deactivate


@pytest.mark.parametrize("version", ["8.6.1", "11.4.0.106"])
def test_bench_hooks(tmp_path, version):
    from vitdeploy.bench.hooks import DeviceMemory, DeviceOnlyInfer, TimedInfer

    cuda = FakeCuda()
    trt = make_fake_trt(version, cuda=cuda)
    engine = build_engine(EngineConfig(model=tiny_onnx(tmp_path)), trt=trt, gpu=GPU, jetson=None).engine_path
    r = TensorRTRunner(engine, trt=make_fake_trt(version, cuda=cuda), cuda=cuda)
    assert isinstance(r, TimedInfer) and isinstance(r, DeviceOnlyInfer) and isinstance(r, DeviceMemory)
    with r:
        x = np.ones((4, 3, 4, 4), np.float32)
        out, ms = r.timed_infer({"input": x})
        np.testing.assert_allclose(out["logits"], expected(x))
        assert ms == 0.25
        copies = cuda.copies_in
        feed = {"input": x}
        assert r.infer_device_only(feed) == 0.25 and r.infer_device_only(feed) == 0.25
        assert cuda.copies_in == copies + 1  # staged once, executed twice
        assert r.device_memory_bytes() == (1 << 20) + 8 * 3 * 4 * 4 * 4 + 8 * 10 * 4


def test_other_tensorrt_refused_before_deserialising(engine):
    r, _ = runner(engine, version="10.16.1.11")
    with pytest.raises(CompatibilityError, match="built with TensorRT 10.3.0 but this machine has TensorRT 10.16.1.11"):
        r.activate()
    assert not [c for c in r._trt.calls if c[1] == "deserialize_cuda_engine"]


def test_other_gpu_refused_before_deserialising(engine):
    r, _ = runner(engine, cc="8.9")
    with pytest.raises(CompatibilityError, match="compute capability 8.7"):
        r.activate()
    assert not [c for c in r._trt.calls if c[1] == "deserialize_cuda_engine"]


def test_without_manifest_the_engine_still_runs(engine):
    engine.with_name(engine.stem + ".json").unlink()
    r, _ = runner(engine)
    with r:
        assert "no manifest" in r.notes[0]
        assert r.infer_one(np.ones((1, 3, 4, 4), np.float32)).shape == (1, 10)


def test_unloadable_engine_is_a_compatibility_error(engine):
    engine.write_bytes(b"\x00not an engine")
    r, _ = runner(engine)
    with pytest.raises(CompatibilityError, match="cannot load"):
        r.activate()


def test_missing_engine(tmp_path):
    with pytest.raises(InputError, match="not found"):
        TensorRTRunner(tmp_path / "none.engine").activate()


@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is not None, reason="tensorrt is installed here")
def test_missing_tensorrt_is_exit_7(engine):
    with pytest.raises(MissingDependencyError, match="tensorrt is not installed") as e:
        TensorRTRunner(engine).activate()
    assert e.value.exit_code == 7


def test_release_frees_everything_when_one_free_fails_and_raises_once(engine):
    """A sticky CUDA error fails every release: each buffer, event and the stream is still released,
    and the first failure is raised once at the end."""
    r, cuda = runner(engine)
    r.activate()
    r.infer_one(np.ones((2, 3, 4, 4), np.float32))
    real_free, freed, destroyed = cuda.free, [], []

    def failing_free(ptr):
        freed.append(ptr)
        real_free(ptr)
        raise CompatibilityError("CUDA cudaFree failed: cudaErrorIllegalAddress (an illegal memory access)")

    cuda.free = failing_free
    real_destroy = cuda.destroy_stream
    cuda.destroy_stream = lambda s: (destroyed.append(s), real_destroy(s))
    with pytest.raises(CompatibilityError, match="cudaErrorIllegalAddress"):
        r.deactivate()
    assert len(freed) == len(r.tensors) >= 2 and destroyed and all(t.ptr == 0 for t in r.tensors)
    assert r.stream is None and not r.is_active
