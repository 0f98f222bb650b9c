"""Engine builds that need an earlier stage: build-engine's CPU precision pass (vitdeploy.calib) wired
into vitdeploy.engine.build, and the engine step of `vitdeploy deploy` (vitdeploy.pipeline.run)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from vitdeploy.core.errors import EngineBuildError
from vitdeploy.core import manifest as manifests
from vitdeploy.core.io import sha256_file
from vitdeploy.core.manifest import CalibrationData, Quantization, thaw
from vitdeploy.core.onnx_info import OnnxInfo, inspect_onnx
from vitdeploy.core.steps import Steps
from vitdeploy.engine.build import BuildResult, build_engine
from vitdeploy.engine.config import BuildPlan, EngineConfig, Request, default_output


def build(config: EngineConfig, steps: Steps | None = None, **kwargs: Any) -> BuildResult:
    """vitdeploy.engine.build.build_engine with the calibration stage's precision pass (FP16 casts,
    Q/DQ or a legacy calibration cache from --calib) run first when the plan asks for one."""
    return build_engine(config, steps, precision_pass=precision_pass, **kwargs)


def build_for_deploy(onnx_path: str | Path, engine_path: str | Path | None = None,
                     precision: str | None = None) -> BuildResult:
    """Build ``onnx_path`` (FP32, the FP16 ONNX or the Q/DQ ONNX) as is; its precision comes from the file.

    ``engine_path`` defaults to vitdeploy.engine.config.default_output (X.fp16.trt.engine): an engine
    named X.fp16.engine beside X.fp16.onnx would share its manifest X.fp16.json and is refused.
    """
    onnx_path = Path(onnx_path)
    found = inspect_onnx(onnx_path).precision
    if precision and found != precision:
        raise EngineBuildError(f"{onnx_path.name} is {found}, expected {precision}: run its precision pass first")
    out = Path(engine_path) if engine_path else default_output(onnx_path, found)
    return build_engine(EngineConfig(model=onnx_path, output=out, force=True))  # deploy's own outputs



def precision_pass(config: EngineConfig, request: Request, bplan: BuildPlan, info: OnnxInfo, steps: Steps,
                   progress: Callable | None) -> tuple[OnnxInfo, Path | None, dict | None]:
    """The FP16 or INT8 (Q/DQ, or a legacy calibration cache) pass build-engine runs on the CPU first
    (vitdeploy.engine.build.PrecisionPass): (the ONNX to build, the legacy cache or None, the record)."""
    from vitdeploy.calib.quantize import QuantizeConfig, default_output as quant_output, quantize

    precision = "fp16" if bplan.precision_pass == "fp16" else "int8"
    qc = QuantizeConfig(model=Path(config.model), precision=precision, calib=config.calib, method=config.method,
                        samples=config.samples, target="trt", force=config.force,
                        high_precision=config.high_precision if precision == "int8" else "fp16",
                        trt_calibration_cache=bplan.precision_pass == "int8-cache")
    out = quant_output(Path(config.model), precision, "trt")
    record: dict[str, Any] = {"pass": bplan.precision_pass, "onnx": str(out)}
    if not config.force and _reusable(out, config, bplan):
        record["reused"] = True
        with steps.step(f"{precision} pass") as rec:
            rec.detail = f"reusing {out.name} (same model, data and method)"
    else:
        record["reused"] = False
        with steps.step(f"{precision} pass"):
            result = quantize(qc, steps, progress)
        out = result.onnx_path
    qm = manifests.read(out)
    record["accuracy_vs_fp32"] = thaw(qm.accuracy.vs_fp32) if qm and qm.accuracy else None
    if bplan.precision_pass == "int8-cache":
        cache = out.with_suffix(".calib")
        record["calibration_cache"] = str(cache)
        return info, cache, record
    return inspect_onnx(out), None, record


def _reusable(path: Path, config: EngineConfig, bplan: BuildPlan) -> bool:
    """An earlier pass output made from this very model (and data/method for INT8)."""
    m = manifests.read(path) if path.exists() else None
    if m is None or m.parent is None or m.parent.sha256 != sha256_file(config.model):
        return False
    if bplan.precision_pass == "fp16":
        return m.precision == "fp16" and config.calib is None
    data = m.calibration_data or CalibrationData()
    q = m.quantization or Quantization()
    from vitdeploy.data.sources import fingerprint

    same = (m.precision == "int8" and q.method == config.method and q.target == "trt"
            and ("fp32" if "high_precision" not in q.raw else q.high_precision) == config.high_precision
            and data.requested_samples == config.samples and ("seed" not in data.raw or data.seed == 0)
            and config.calib is not None and data.fingerprint == fingerprint(config.calib))
    if bplan.precision_pass == "int8-cache":
        same = same and path.with_suffix(".calib").exists()
    return same
