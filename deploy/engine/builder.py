"""TensorRT plumbing of the build stage: the logger, network flags, parsing (errors name the ONNX node),
the builder config (precision flags, FP32 islands, profile, memory pool, calibrator, compatibility, DLA,
optimisation level, timing cache, progress monitor) and the inspection of the built plan.

Nothing here decides what to build: vitdeploy.engine.config plans it, vitdeploy.engine.build runs the
steps in order and vitdeploy.engine.manifest records the result. ``trt`` is a parameter of everything
(tests pass fake modules per version); tensorrt is never imported here.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from vitdeploy.core.errors import CompatibilityError, EngineBuildError, UsageError
from vitdeploy.core.io import write_bytes_atomic
from vitdeploy.core.onnx_info import OnnxInfo
from vitdeploy.core.precision import KEEP_FP32_OPS
from vitdeploy.engine.config import BuildPlan, EngineConfig, Request
from vitdeploy.trt import layers as L
from vitdeploy.trt.version import TrtVersion, requires

# ONNX ops kept FP32 on the FP16-flag path: the same list the FP16 ONNX pass keeps.


class BuildCallbacks(Protocol):
    """Where the build reports its phases and steps (TensorRT >= 10's IProgressMonitor; see make_progress_monitor)."""

    def phase_start(self, name: str, parent: str | None, steps: int) -> None: ...
    def step(self, name: str, step: int) -> None: ...
    def phase_finish(self, name: str) -> None: ...


# --------------------------------------------------------------------------------------------
# TensorRT objects. Variable names follow one convention the API-surface test relies on
# (tests/test_trt_api_surface.py scans deploy/engine/*.py):
# builder, network, parser, cfg, profile, layer, runtime, engine, inspector, cache, logger.
# --------------------------------------------------------------------------------------------

def make_logger(trt, verbose: bool = False):
    """An ILogger that keeps errors/warnings (for messages) and prints them with --verbose."""

    class Logger(trt.ILogger):
        def __init__(self) -> None:
            trt.ILogger.__init__(self)
            self.errors: list[str] = []
            self.warnings: list[str] = []

        def log(self, severity, msg) -> None:
            if severity in (trt.ILogger.ERROR, trt.ILogger.INTERNAL_ERROR):
                self.errors.append(str(msg))
            elif severity == trt.ILogger.WARNING:
                self.warnings.append(str(msg))
            elif not verbose:
                return
            if verbose or severity != trt.ILogger.WARNING:
                print(f"[TensorRT] {msg}", file=sys.stderr)

    return Logger()


def network_flags(trt, bplan: BuildPlan, version: TrtVersion) -> int:
    flags = 0
    if version.needs_explicit_batch_flag:
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    if bplan.strongly_typed and version.has_strongly_typed and not version.strongly_typed_only:
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    return flags


def graph_for_parser(info: OnnxInfo, version: TrtVersion, scratch: Path) -> tuple[OnnxInfo, list[str]]:
    """The ONNX the parser reads: the file itself, or (TensorRT < 8.6, which has no LayerNormalization
    importer) a copy in ``scratch`` with LayerNorm decomposed; the rewrites done, for the manifest."""
    if version.has_layernorm_importer or "LayerNormalization" not in info.node_ops:
        return info, []
    import dataclasses

    from vitdeploy.core import onnx_utils
    from vitdeploy.trt.rewrite import decompose_layernorm  # onnx only, no torch

    model = onnx_utils.load(info.path)
    n = decompose_layernorm(model)
    path = scratch / info.path.name
    onnx_utils.save(model, path)
    names = tuple(node.name for node in model.graph.node)
    ops = tuple(node.op_type for node in model.graph.node)
    return (dataclasses.replace(info, path=path, node_names=names, node_ops=ops),
            [f"decompose_layernorm: {n} LayerNormalization node(s) (TensorRT {version} has no importer)"])


def parse_onnx(trt, network, logger, info: OnnxInfo, version: TrtVersion):
    parser = trt.OnnxParser(network, logger)
    if parser.parse_from_file(str(info.path)):
        return parser
    errors = [describe_parser_error(parser.get_error(i), info, version) for i in range(parser.num_errors)]
    target = {8: "trt8.5", 10: "trt10.16" if version.at_least(10, 16) else "trt10", 11: "trt11"}.get(version.major, "trt11")
    raise EngineBuildError(
        f"TensorRT {version}'s ONNX parser rejected {info.path.name}: " + "; ".join(errors[:5])
        + (f" (+{len(errors) - 5} more)" if len(errors) > 5 else "")
        + f". `vitdeploy check {info.path.name} --trt-version {target}` lists what this parser does not take")


def describe_parser_error(err, info: OnnxInfo, version: TrtVersion) -> str:
    """'node /blocks.0/attn/Einsum (Einsum): <desc>'; TensorRT 8 gives only the node's index."""
    index = int(err.node())
    if version.has_parser_node_name:
        name, op = err.node_name(), err.node_operator()
    elif 0 <= index < len(info.node_names):
        name, op = info.node_names[index], info.node_ops[index]
    else:
        name = op = ""
    where = f"node {name or index} ({op})" if (name or index >= 0) else "model"
    return f"{where}: {err.desc()}"


@dataclass
class Configured:
    cfg: Any  # IBuilderConfig
    options: dict[str, Any]  # recorded in the manifest
    notes: list[str]
    monitor: Any = None  # the progress monitor (Ctrl-C flag), kept alive through the build
    calibrator: Any = None  # kept alive through the build (TensorRT holds only a raw pointer)


def configure(trt, builder, network, bplan: BuildPlan, config: EngineConfig, request: Request, version: TrtVersion,
              info: OnnxInfo, calib_cache: Path | None, callbacks: BuildCallbacks | None) -> Configured:
    """The IBuilderConfig for the plan."""
    cfg = builder.create_builder_config()
    result = Configured(cfg, {}, [])
    notes = result.notes
    notes += bplan.notes
    options = result.options
    options.update(strongly_typed=bplan.strongly_typed, flags=list(bplan.builder_flags))
    cfg.profiling_verbosity = trt.ProfilingVerbosity.DETAILED  # per-layer formats for the inspector
    if config.workspace:
        cfg.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(config.workspace))
    options["workspace_bytes"] = config.workspace
    profile, options["profile"] = add_profile(trt, builder, network, cfg, request)

    if "FP16" in bplan.builder_flags or "INT8" in bplan.builder_flags:
        if not version.has_builder_precision_flags:  # plan() never asks for them there
            raise EngineBuildError(f"internal: precision flags requested on TensorRT {version}")
        set_precision_flags(trt, builder, cfg, bplan, notes)
    if bplan.fp32_islands and version.has_builder_precision_flags:
        options["fp32_layers"] = keep_fp32(trt, network, info.fp32_keep_names(KEEP_FP32_OPS))
    if bplan.use_calibrator and version.legacy_calibrator_allowed:
        from vitdeploy.trt.calibrator import cache_for_version, make_calibrator

        result.calibrator = make_calibrator(trt, cache_for_version(calib_cache, version))
        cfg.int8_calibrator = result.calibrator
        if profile is not None:  # dynamic shapes: TensorRT wants a calibration profile with an implicit calibrator
            cfg.set_calibration_profile(profile)
        options["calibration_cache"] = str(calib_cache)
    if "VERSION_COMPATIBLE" in bplan.builder_flags and version.has_version_compat:
        cfg.set_flag(trt.BuilderFlag.VERSION_COMPATIBLE)
    options["version_compatible"] = config.version_compatible
    if bplan.hardware_level and version.has_hardware_compat:
        set_hardware_level(trt, cfg, bplan.hardware_level, version)
    options["hardware_compat"] = config.hardware_compat
    if config.builder_opt_level is not None and version.has_builder_optimization_level:
        cfg.builder_optimization_level = int(config.builder_opt_level)
    options["builder_opt_level"] = config.builder_opt_level
    options["dla_core"] = config.dla_core
    options["gpu_fallback"] = config.gpu_fallback if config.dla_core is not None else None
    if config.dla_core is not None:
        use_dla(trt, builder, cfg, config.dla_core, "GPU_FALLBACK" in bplan.builder_flags)
    options["timing_cache"] = str(config.timing_cache) if config.timing_cache else None
    if config.timing_cache:
        notes += load_timing_cache(cfg, config.timing_cache)
    if callbacks is not None and version.has_progress_monitor:
        result.monitor = make_progress_monitor(trt, callbacks)
        cfg.progress_monitor = result.monitor
    return result


@requires("has_builder_precision_flags")
def set_precision_flags(trt, builder, cfg, bplan: BuildPlan, notes: list[str]) -> None:
    """The FP16 / INT8 builder flags of the untyped (TensorRT 8.x, legacy-calibrator) path."""
    if "FP16" in bplan.builder_flags:
        cfg.set_flag(trt.BuilderFlag.FP16)
        if not builder.platform_has_fast_fp16:
            notes.append("this GPU has no fast FP16: TensorRT may keep layers in FP32")
    if "INT8" in bplan.builder_flags:
        cfg.set_flag(trt.BuilderFlag.INT8)
        if not builder.platform_has_fast_int8:
            notes.append("this GPU has no fast INT8: TensorRT may keep layers in a float type")
    if "OBEY_PRECISION_CONSTRAINTS" in bplan.builder_flags:
        cfg.set_flag(trt.BuilderFlag.OBEY_PRECISION_CONSTRAINTS)


@requires("has_builder_precision_flags")
def keep_fp32(trt, network, names: frozenset[str]) -> list[str]:
    """Constrain normalisation/softmax/reduction layers (by type, or by their ONNX node's op) to FP32."""
    island_types = (trt.LayerType.NORMALIZATION, trt.LayerType.SOFTMAX, trt.LayerType.REDUCE)
    kept = []
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        base = re.sub(r"_\d+$", "", layer.name)
        if layer.type not in island_types and layer.name not in names and base not in names:
            continue
        outputs = [layer.get_output(j) for j in range(layer.num_outputs)]
        if not outputs or any(t.dtype != trt.float32 for t in outputs):
            continue  # shape arithmetic (INT32/INT64/BOOL): not a float island
        layer.precision = trt.float32
        for j in range(layer.num_outputs):
            layer.set_output_type(j, trt.float32)
        kept.append(layer.name)
    return kept


def set_hardware_level(trt, cfg, level: str, version: TrtVersion) -> None:
    if level == "AMPERE_PLUS":
        cfg.hardware_compatibility_level = trt.HardwareCompatibilityLevel.AMPERE_PLUS
    elif level == "SAME_COMPUTE_CAPABILITY" and version.has_same_cc_compat:
        cfg.hardware_compatibility_level = trt.HardwareCompatibilityLevel.SAME_COMPUTE_CAPABILITY
    else:
        raise UsageError(f"hardware compatibility level {level} is not available in TensorRT {version}")


def use_dla(trt, builder, cfg, core: int, gpu_fallback: bool) -> None:
    cores = int(builder.num_DLA_cores)
    if cores == 0:
        raise CompatibilityError(f"--dla {core}: this device has no DLA cores (Xavier, AGX Orin and Orin NX have them; "
                                 "Orin Nano, Thor and desktop GPUs do not); build without --dla")
    if core >= cores:
        raise CompatibilityError(f"--dla {core}: this device has {cores} DLA core(s): use 0..{cores - 1}")
    cfg.default_device_type = trt.DeviceType.DLA
    cfg.DLA_core = int(core)
    if gpu_fallback:
        cfg.set_flag(trt.BuilderFlag.GPU_FALLBACK)


def add_profile(trt, builder, network, cfg, request: Request):
    """One optimisation profile over the batch axis: (the profile or None when all static, shapes per input)."""
    profile = builder.create_optimization_profile()
    shapes: dict[str, dict[str, list[int]]] = {}
    dynamic = False
    for i in range(network.num_inputs):
        tensor = network.get_input(i)
        dims = [int(d) for d in tensor.shape]
        if all(d >= 0 for d in dims):
            shapes[tensor.name] = {"min": dims, "opt": dims, "max": dims}
            continue
        if request.batch is None or any(d < 0 for d in dims[1:]):
            raise EngineBuildError(f"input {tensor.name} has dynamic dims {dims}: only a dynamic batch axis is supported")
        b = request.batch
        mn, opt, mx = ([n, *dims[1:]] for n in (b.min, b.opt, b.max))
        profile.set_shape(tensor.name, mn, opt, mx)
        shapes[tensor.name] = {"min": mn, "opt": opt, "max": mx}
        dynamic = True
    if not dynamic:
        return None, shapes
    cfg.add_optimization_profile(profile)
    return profile, shapes


def load_timing_cache(cfg, path: Path) -> list[str]:
    """Attach the timing cache at ``path`` (a fresh one when absent or from another GPU/TensorRT)."""
    data = Path(path).read_bytes() if Path(path).exists() else b""
    cache = cfg.create_timing_cache(data)
    if cfg.set_timing_cache(cache, False):
        return [f"timing cache {path}: {'loaded' if data else 'new'}"]
    cache = cfg.create_timing_cache(b"")
    cfg.set_timing_cache(cache, False)
    return [f"timing cache {path} was made by another GPU or TensorRT: started a new one"]


def save_timing_cache(cfg, path: Path) -> dict[str, Any]:
    cache = cfg.get_timing_cache()
    data = bytes(cache.serialize())
    write_bytes_atomic(path, data)
    return {"path": str(path), "bytes": len(data)}


@requires("has_progress_monitor")
def make_progress_monitor(trt, callbacks: BuildCallbacks):
    """An IProgressMonitor forwarding to ``callbacks``; Ctrl-C cancels the build cleanly."""

    class Monitor(trt.IProgressMonitor):
        def __init__(self) -> None:
            trt.IProgressMonitor.__init__(self)
            self.interrupted = False

        def phase_start(self, phase_name, parent_phase, num_steps) -> None:
            try:
                callbacks.phase_start(phase_name, parent_phase, num_steps)
            except KeyboardInterrupt:
                self.interrupted = True

        def step_complete(self, phase_name, step) -> bool:
            try:
                callbacks.step(phase_name, step)
            except KeyboardInterrupt:
                self.interrupted = True
            return not self.interrupted  # False asks TensorRT to stop building

        def phase_finish(self, phase_name) -> None:
            try:
                callbacks.phase_finish(phase_name)
            except KeyboardInterrupt:
                self.interrupted = True

    return Monitor()


def inspect_engine(trt, logger, engine_bytes: bytes, host_code: bool) -> tuple[L.LayerSummary, list[dict]]:
    """Deserialise the plan just built: per-layer precisions and the I/O tensors."""
    runtime = trt.Runtime(logger)
    if host_code:  # version-compatible plans carry the lean runtime
        runtime.engine_host_code_allowed = True
    engine = runtime.deserialize_cuda_engine(engine_bytes)
    if engine is None:
        raise EngineBuildError("the built engine could not be deserialised for inspection: "
                               + (logger.errors[-1] if logger.errors else "no message"))
    inspector = engine.create_engine_inspector()
    summary = L.summarize(inspector.get_engine_information(trt.LayerInformationFormat.JSON))
    return summary, engine_io(trt, engine)


def engine_io(trt, engine) -> list[dict[str, Any]]:
    io = []
    for i in range(engine.num_io_tensors):
        name = engine.get_tensor_name(i)
        mode = engine.get_tensor_mode(name)
        entry = {"name": name, "mode": "input" if mode == trt.TensorIOMode.INPUT else "output",
                 "dtype": _np_name(trt, engine.get_tensor_dtype(name)),
                 "shape": [int(d) for d in engine.get_tensor_shape(name)]}
        if mode == trt.TensorIOMode.INPUT and -1 in entry["shape"]:
            entry["profile"] = [[int(d) for d in s] for s in engine.get_tensor_profile_shape(name, 0)]
        io.append(entry)
    return io


def _np_name(trt, dtype) -> str:
    try:
        return np.dtype(trt.nptype(dtype)).name
    except TypeError:
        return str(dtype).split(".")[-1].lower()

