"""`vitdeploy build-engine`: ONNX -> TensorRT engine + manifest, the same way on TensorRT 8.6 to 11.

Order (nothing is written unless every step passes):
1. Without TensorRT: options, the ONNX graph (Q/DQ? FP16?) and its manifest, the output paths.
2. ``import tensorrt``; its version decides the plan (config.plan): strongly typed or flags.
3. The precision pass, on the CPU, when the plan needs one: the FP16 ONNX (TensorRT >= 10) or the
   Q/DQ ONNX from --calib data (every version), via vitdeploy.calib.quantize.
4. Parse (errors name the ONNX node), profile, memory pool, timing cache, DLA, compatibility,
   optimisation level, progress monitor, FP32 islands on the FP16-flag path; build.
5. Deserialise the plan, read every layer's precision with the engine inspector and fail when the
   requested precision is absent; write the plain engine (trtexec loads it) and OUT.json.

The TensorRT calls live in vitdeploy.engine.builder, the manifest in vitdeploy.engine.manifest; this
module is the stage: the order of the steps. ``trt`` is a parameter of everything below ``build_engine``:
tests pass fake modules per version.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from vitdeploy.core.deps import require
from vitdeploy.core.errors import EngineBuildError, UsageError
from vitdeploy.core.io import check_artifact_output, write_bytes_atomic, write_manifest
from vitdeploy.core.onnx_info import OnnxInfo, inspect_onnx
from vitdeploy.core.steps import Steps
from vitdeploy.engine.builder import (BuildCallbacks, configure, graph_for_parser, inspect_engine, make_logger,
                                      network_flags, parse_onnx, save_timing_cache)
from vitdeploy.engine.config import BuildPlan, EngineConfig, Request, check_output_name, default_output, plan, resolve
from vitdeploy.engine.manifest import EngineRecord, engine_manifest
from vitdeploy.trt import layers as L
from vitdeploy.trt.version import version_of

__all__ = ["BuildCallbacks", "BuildResult", "PrecisionPass", "build_engine"]


class PrecisionPass(Protocol):
    """Makes the ONNX TensorRT builds when the plan asks for a CPU precision pass first (FP16 casts or
    Q/DQ from --calib data): returns (the ONNX to build, the legacy calibration cache or None, what
    the pass did or None). The pass belongs to the calibration stage; vitdeploy.pipeline.engine wires
    it in, so this stage never imports vitdeploy.calib."""

    def __call__(self, config: EngineConfig, request: Request, bplan: BuildPlan, info: OnnxInfo, steps: Steps,
                 progress: Callable | None) -> tuple[OnnxInfo, Path | None, dict | None]: ...


@dataclass
class BuildResult:
    engine_path: Path
    manifest_path: Path
    manifest: dict[str, Any]


_UNSET: Any = object()


def build_engine(config: EngineConfig, steps: Steps | None = None, callbacks: BuildCallbacks | None = None,
                 progress: Callable | None = None, trt=None, gpu: Any = _UNSET, jetson: Any = _UNSET,
                 precision_pass: PrecisionPass | None = None) -> BuildResult:
    """Build ``config.model`` into an engine. ``trt``/``gpu``/``jetson`` default to the real ones.

    Raises UsageError when the plan needs a precision pass and none is given (use
    vitdeploy.pipeline.engine.build, which brings the calibration stage's pass).
    """
    steps = steps or Steps()
    start = time.perf_counter()
    with steps.step("read ONNX"):
        info = inspect_onnx(config.model)
        request = resolve(config, info)
    out = Path(config.output) if config.output else default_output(config.model, request.precision)
    check_output_name(out, config.model)
    check_artifact_output(out, config.force)

    trt = trt if trt is not None else require("tensorrt", "building TensorRT engines")
    version = version_of(trt)
    if jetson is _UNSET:
        from vitdeploy.core.sysinfo import jetson_info

        jetson = jetson_info()
    if gpu is _UNSET:
        from vitdeploy.trt.cuda import gpu_info

        gpu = gpu_info()
    bplan = plan(config, request, version, on_jetson=bool(jetson))

    if bplan.precision_pass is None:
        source_info, calib_cache, pass_record = info, request.calib_cache, None
    elif precision_pass is None:
        raise UsageError(f"{Path(config.model).name} needs a {bplan.precision_pass} pass before TensorRT builds it: "
                         "build through vitdeploy.pipeline.engine.build (as `vitdeploy build-engine` does)")
    else:
        source_info, calib_cache, pass_record = precision_pass(config, request, bplan, info, steps, progress)
    logger = make_logger(trt, config.verbose)
    with tempfile.TemporaryDirectory(prefix="vitdeploy-parse-") as scratch:
        parse_info, rewrites = graph_for_parser(source_info, version, Path(scratch))
        with steps.step("parse ONNX") as rec:
            builder = trt.Builder(logger)
            network = builder.create_network(network_flags(trt, bplan, version))
            parser = parse_onnx(trt, network, logger, parse_info, version)
            rec.detail = f"{network.num_layers} layers"
    with steps.step("configure"):
        built = configure(trt, builder, network, bplan, config, request, version, parse_info, calib_cache, callbacks)
        cfg, options, notes = built.cfg, built.options, built.notes
        options["graph_rewrites"] = rewrites
    with steps.step("build") as rec:
        t0 = time.perf_counter()
        serialized = builder.build_serialized_network(network, cfg)
        build_seconds = round(time.perf_counter() - t0, 3)
        if built.monitor is not None and built.monitor.interrupted:
            raise KeyboardInterrupt
        if serialized is None:
            raise EngineBuildError(f"TensorRT {version} could not build {source_info.path.name}: "
                                   + (logger.errors[-1] if logger.errors else "no error message (rerun with --verbose)"))
        engine_bytes = bytes(serialized)
        rec.detail = f"{len(engine_bytes) / 2**20:.1f} MiB"
    with steps.step("inspect layers") as rec:
        summary, io = inspect_engine(trt, logger, engine_bytes, config.version_compatible)
        note = L.check_precision_present(summary, bplan.precision)
        if note:
            notes.append(note)
        rec.detail = ", ".join(f"{k} {v}" for k, v in summary.counts.items())
    timing_cache = save_timing_cache(cfg, config.timing_cache) if config.timing_cache else None
    del parser, built  # the parser owns the weights and the config the calibrator: both lived through the build

    manifest = engine_manifest(EngineRecord(
        out=out, request=request, bplan=bplan, version=version, onnx=info, built_onnx=source_info,
        calib_cache=calib_cache, precision_pass=pass_record, gpu=gpu, jetson=jetson, options=options, notes=notes,
        layers=summary, io=io, engine_bytes=len(engine_bytes), timing_cache=timing_cache, build_seconds=build_seconds))
    manifest["total_seconds"] = round(time.perf_counter() - start, 3)
    with steps.step("write"):
        write_bytes_atomic(out, engine_bytes)
        try:
            manifest["steps"] = steps.to_list()
            mpath = write_manifest(out, manifest)
        except BaseException:
            out.unlink(missing_ok=True)
            raise
    return BuildResult(out, mpath, manifest)

