"""The engine step of `vitdeploy deploy` (vitdeploy.pipeline): build an ONNX whose precision pass already ran."""

from __future__ import annotations

from pathlib import Path

from vitdeploy.errors import EngineBuildError
from vitdeploy.trt.build import BuildResult, build_engine
from vitdeploy.trt.config import EngineConfig, default_output, inspect_onnx


def build_for_deploy(onnx_path: str | Path, engine_path: str | Path | None = None, precision: str | None = None,
                     force: bool = True) -> BuildResult:
    """Build ``onnx_path`` (FP32, the FP16 ONNX or the Q/DQ ONNX) as is; its precision comes from the file.

    ``engine_path`` defaults to vitdeploy.trt.config.default_output (X.fp16.trt.engine): an engine
    named X.fp16.engine beside X.fp16.onnx would share its manifest X.fp16.json and is refused.
    """
    onnx_path = Path(onnx_path)
    found = inspect_onnx(onnx_path).precision
    if precision and found != precision:
        raise EngineBuildError(f"{onnx_path.name} is {found}, expected {precision}: run its precision pass first")
    out = Path(engine_path) if engine_path else default_output(onnx_path, found)
    return build_engine(EngineConfig(model=onnx_path, output=out, force=force))
