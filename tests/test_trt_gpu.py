"""Real TensorRT on a real GPU: tiny-model engines at FP32/FP16/INT8 against ONNX Runtime.

Skipped cleanly unless ``tensorrt`` imports, ``libcudart`` loads and a CUDA device answers (and,
for the export, torch is installed; trtexec is optional). Thresholds are the per-precision ones
of vitdeploy.core.compare.PRECISION_THRESHOLDS.
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess

import numpy as np
import pytest

pytestmark = [pytest.mark.trt, pytest.mark.gpu]


def _gpu_or_skip():
    if importlib.util.find_spec("tensorrt") is None:
        pytest.skip("tensorrt is not installed")
    try:
        import tensorrt  # noqa: F401
    except Exception as exc:  # installed but unusable (no libnvinfer): a skip, not a failure
        pytest.skip(f"tensorrt does not import: {exc}")
    from vitdeploy.core.errors import VitdeployError
    from vitdeploy.trt.cuda import Cuda

    try:
        return Cuda().device_info()
    except VitdeployError as exc:
        pytest.skip(f"no CUDA device through libcudart: {exc}")


@pytest.fixture(scope="module")
def gpu():
    return _gpu_or_skip()


@pytest.fixture(scope="module")
def exported(gpu, tmp_path_factory):
    pytest.importorskip("torch")
    import tensorrt as trt

    from vitdeploy.export import BatchRange, ExportConfig, export
    from vitdeploy.trt.version import TrtVersion

    folder = tmp_path_factory.mktemp("trt_gpu")
    v = TrtVersion.parse(trt.__version__)
    targets = ("trt8.5",) if v.major < 10 else ("trt10",) if v.major == 10 else ("trt11",)
    result = export(ExportConfig("vit_tiny_test", output=folder / "vit.onnx", batch=BatchRange(1, 2, 8), targets=targets))
    calib = folder / "calib.npy"
    np.save(calib, np.random.default_rng(0).standard_normal((96, 3, 32, 32)).astype(np.float32))
    return result.onnx_path, calib


@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_engine_matches_onnxruntime(exported, precision):
    from vitdeploy.core.compare import PRECISION_THRESHOLDS, assert_close
    from vitdeploy.core.io import read_manifest
    from vitdeploy.runners.ort import OnnxRuntimeRunner
    from vitdeploy.pipeline.engine import build as build_engine
    from vitdeploy.engine.config import EngineConfig
    from vitdeploy.runners.trt_runner import TensorRTRunner

    onnx_path, calib = exported
    config = EngineConfig(model=onnx_path, fp16=precision == "fp16", int8=precision == "int8",
                          calib=calib if precision == "int8" else None, method="minmax", samples=64,
                          output=onnx_path.with_name(f"vit.{precision}.trt.engine"), force=True)
    result = build_engine(config)
    m = read_manifest(result.engine_path, required=True)
    assert m["precision"] == precision and m["tensorrt"]["version"] and m["gpu"]["compute_capability"]
    if precision != "fp32":
        assert m["layers"]["precisions"].get(precision, 0) > 0, m["layers"]["precisions"]
    rng = np.random.default_rng(1)
    with OnnxRuntimeRunner(onnx_path) as ort_runner, TensorRTRunner(result.engine_path) as trt_runner:
        for batch in (1, 8):  # the profile's min and max
            x = rng.standard_normal((batch, 3, 32, 32)).astype(np.float32)
            assert_close(ort_runner.infer_one(x), trt_runner.infer_one(x), PRECISION_THRESHOLDS[precision],
                         f"TensorRT {precision} vs ONNX Runtime at batch {batch}")
        with pytest.raises(Exception, match="outside the engine's profile"):
            trt_runner.infer_one(np.zeros((9, 3, 32, 32), np.float32))


def test_engine_from_another_version_is_refused(exported, tmp_path):
    import json

    from vitdeploy.core.errors import CompatibilityError
    from vitdeploy.pipeline.engine import build as build_engine
    from vitdeploy.engine.config import EngineConfig
    from vitdeploy.runners.trt_runner import TensorRTRunner

    onnx_path, _ = exported
    result = build_engine(EngineConfig(model=onnx_path, output=tmp_path / "v.trt.engine"))
    m = json.loads(result.manifest_path.read_text())
    m["tensorrt"]["version"] = "7.0.0"
    result.manifest_path.write_text(json.dumps(m))
    with pytest.raises(CompatibilityError, match="built with TensorRT 7.0.0"):
        TensorRTRunner(result.engine_path).activate()


@pytest.mark.skipif(shutil.which("trtexec") is None, reason="trtexec not on PATH")
def test_trtexec_loads_the_plain_engine(exported, tmp_path):
    from vitdeploy.pipeline.engine import build as build_engine
    from vitdeploy.engine.config import EngineConfig

    onnx_path, _ = exported
    engine = build_engine(EngineConfig(model=onnx_path, output=tmp_path / "v.trt.engine")).engine_path
    proc = subprocess.run(["trtexec", f"--loadEngine={engine}", "--shapes=input:2x3x32x32", "--iterations=2", "--warmUp=0",
                           "--duration=0"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
