"""`vitdeploy build-engine` options, and every check that needs no TensorRT.

Three layers, each a pure function of its inputs (tested on the CPU):

1. ``EngineConfig.__post_init__``: the options on their own (sizes, ranges, combinations).
2. ``resolve(config, onnx_info)``: the options against the ONNX file (Q/DQ or not, FP16 or not,
   its manifest): the precision asked for and where its precision comes from.
3. ``plan(request, version, on_jetson)``: the request against the running TensorRT version: network
   flags, builder flags, which precision pass runs first, which options the version lacks.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from vitdeploy.core.batch import BatchRange
from vitdeploy.core.errors import CompatibilityError, InputError, UsageError
from vitdeploy.core.onnx_info import OnnxInfo
from vitdeploy.trt.version import TrtVersion

# --hardware-compat value -> HardwareCompatibilityLevel member
HARDWARE_COMPAT = {"none": "NONE", "ampere+": "AMPERE_PLUS", "same-cc": "SAME_COMPUTE_CAPABILITY"}

_SIZE_UNITS = {"": 1, "b": 1, "k": 1000, "kb": 1000, "kib": 1 << 10, "m": 1000**2, "mb": 1000**2, "mib": 1 << 20,
               "g": 1000**3, "gb": 1000**3, "gib": 1 << 30}


def parse_size(text: str) -> int:
    """'1GiB' -> 1073741824, '512MiB', '1.5GB', '4096' (bytes). Binary (KiB/MiB/GiB) or decimal units."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*", str(text))
    unit = m.group(2).lower() if m else None
    if not m or unit not in _SIZE_UNITS:
        raise UsageError(f"invalid size {text!r}: give a number with a unit, e.g. 1GiB, 512MiB, 2GB")
    value = int(float(m.group(1)) * _SIZE_UNITS[unit])
    if value <= 0:
        raise UsageError(f"invalid size {text!r}: must be positive")
    return value


@dataclass(frozen=True)
class EngineConfig:
    model: Path
    output: Path | None = None
    fp16: bool = False
    int8: bool = False
    high_precision: str = "fp16"  # INT8: the unquantized float parts in fp16 (INT8+FP16) or fp32
    calib: Path | None = None  # data for the Q/DQ pass (or a TensorRT .calib cache with --legacy-calibrator)
    method: str = "percentile"  # vitdeploy quantize's default
    samples: int = 512
    legacy_calibrator: bool = False
    workspace: int | None = None  # bytes
    batch: BatchRange | None = None  # None: the manifest's batch range
    timing_cache: Path | None = None
    dla_core: int | None = None
    gpu_fallback: bool = True
    hardware_compat: str = "none"
    version_compatible: bool = False
    builder_opt_level: int | None = None
    force: bool = False
    verbose: bool = False

    def __post_init__(self) -> None:
        if self.high_precision not in ("fp16", "fp32"):
            raise UsageError(f"unknown --high-precision {self.high_precision!r}; choose fp16 or fp32")
        if self.high_precision != "fp16" and not self.int8:
            raise UsageError("--high-precision is an --int8 option (the precision of the unquantized float parts)")
        if self.fp16 and self.int8 and self.high_precision == "fp32":
            raise UsageError("--int8 --fp16 asks for FP16 float parts, --high-precision fp32 for FP32: choose one")
        if self.calib is not None and not (self.int8 or self.fp16):
            raise UsageError("--calib is calibration data for --int8 (or for the FP16 overflow check with --fp16)")
        from vitdeploy.core.precision import METHODS

        if self.method not in METHODS:
            raise UsageError(f"unknown --method {self.method!r}; choose from {', '.join(METHODS)}")
        if self.samples < 1:
            raise UsageError("--samples must be >= 1")
        if self.legacy_calibrator and not self.int8:
            raise UsageError("--legacy-calibrator is an --int8 option")
        if self.legacy_calibrator and self.calib is None:
            raise UsageError("--legacy-calibrator needs --calib: calibration data, or the .calib cache "
                             "`vitdeploy quantize --trt-calibration-cache` wrote")
        if self.dla_core is not None and self.dla_core < 0:
            raise UsageError("--dla must be a DLA core index >= 0")
        if self.dla_core is None and not self.gpu_fallback:
            raise UsageError("--no-gpu-fallback only applies with --dla N")
        if self.hardware_compat not in HARDWARE_COMPAT:
            raise UsageError(f"unknown --hardware-compat {self.hardware_compat!r}; choose from {', '.join(HARDWARE_COMPAT)}")
        if self.hardware_compat != "none" and self.dla_core is not None:
            raise UsageError("--hardware-compat cannot be combined with --dla (DLA engines are tied to their module)")
        if self.builder_opt_level is not None and not 0 <= self.builder_opt_level <= 5:
            raise UsageError("--builder-opt-level must be 0-5 (TensorRT's default is 3)")
        if self.workspace is not None and self.workspace <= 0:
            raise UsageError("--workspace must be positive")
        if self.timing_cache is not None and self.timing_cache.is_dir():
            raise UsageError(f"--timing-cache {self.timing_cache} is a directory; give a file path")




@dataclass(frozen=True)
class Request:
    """What the user asked for, resolved against the ONNX file (no TensorRT version yet)."""

    precision: str  # fp32 | fp16 | int8
    source: str  # "onnx": the file's own types | "fp16-pass" | "qdq-pass" | "legacy-calibrator"
    batch: BatchRange | None  # None: static batch
    calib_cache: Path | None = None  # legacy path: a .calib given directly
    float_parts: str = "fp32"  # INT8: the precision of what is not quantized (fp16: INT8+FP16)
    onnx_has_fp16: bool = False  # the file itself types its float parts FP16


def resolve(config: EngineConfig, info: OnnxInfo) -> Request:
    """The precision asked for and where it comes from; refuses impossible combinations."""
    onnx_precision = info.precision
    cache_path = None
    float_parts = "fp32"
    if info.has_qdq:
        if info.qdq_target not in (None, "trt"):
            raise UsageError(f"{info.path} is quantized for {info.qdq_target} (UINT8 activations), which TensorRT "
                             "cannot build: quantize with --qdq-form trt")
        if config.calib is not None or config.legacy_calibrator:
            raise UsageError(f"{info.path} is already INT8 (Q/DQ); --calib/--legacy-calibrator are for an FP32 ONNX")
        if info.has_fp16 and config.high_precision == "fp32":
            raise UsageError(f"{info.path} is INT8+FP16 (its float parts are FP16); --high-precision fp32 applies to "
                             "the quantize pass: requantize the FP32 ONNX with --high-precision fp32")
        precision, source = "int8", "onnx"
        float_parts = "fp16" if info.has_fp16 or config.fp16 else "fp32"
    elif config.int8:
        if config.calib is None:
            raise UsageError(f"--int8: {info.path} has no Q/DQ nodes; give --calib DATA to quantize it first, or build "
                             "the Q/DQ ONNX from `vitdeploy quantize --int8`")
        if onnx_precision != "fp32":
            raise UsageError(f"{info.path} is {onnx_precision}; INT8 calibration starts from the FP32 export")
        precision = "int8"
        source = "legacy-calibrator" if config.legacy_calibrator else "qdq-pass"
        float_parts = config.high_precision
        if config.legacy_calibrator and Path(config.calib).suffix == ".calib":
            cache_path = Path(config.calib)
            if not cache_path.exists():
                raise InputError(f"calibration cache {cache_path} not found")
    elif config.fp16 or onnx_precision == "fp16":
        precision, source = "fp16", ("onnx" if onnx_precision == "fp16" else "fp16-pass")
    else:
        precision, source = "fp32", "onnx"
    if config.dla_core is not None and precision == "fp32":
        raise UsageError("--dla needs --fp16 or --int8: DLA cores run only FP16/INT8 layers")
    return Request(precision, source, _batch_profile(config, info), cache_path, float_parts, info.has_fp16)


def _batch_profile(config: EngineConfig, info: OnnxInfo) -> BatchRange | None:
    if not info.inputs:
        raise InputError(f"{info.path} has no graph inputs")
    dynamic = [(name, [i for i, d in enumerate(dims) if not isinstance(d, int) or d <= 0]) for name, dims in info.inputs]
    for name, axes in dynamic:
        if any(a != 0 for a in axes):
            raise UsageError(f"input {name!r} has dynamic axes {axes}: only the batch axis (0) may be dynamic; "
                             "re-export with a fixed input size")
    is_dynamic = any(axes for _, axes in dynamic)
    if not is_dynamic:
        if config.batch is not None and (config.batch.min, config.batch.max) != (info.inputs[0][1][0],) * 2:
            raise UsageError(f"{info.path} has a static batch of {info.inputs[0][1][0]}: --dynamic-batch needs an ONNX "
                             "exported with a dynamic batch (vitdeploy export --dynamic-batch)")
        return None
    if config.batch is not None:
        return config.batch
    batch = info.manifest.batch if info.manifest else None
    if batch is not None and all(isinstance(v, int) for v in (batch.min, batch.opt, batch.max)):
        return BatchRange(batch.min, batch.opt, batch.max)
    raise UsageError(f"{info.path} has a dynamic batch but no manifest batch range; give --dynamic-batch MIN:OPT:MAX")


@dataclass(frozen=True)
class BuildPlan:
    """How this TensorRT version builds the request."""

    precision: str
    strongly_typed: bool
    network_flags: tuple[str, ...]  # NetworkDefinitionCreationFlag members
    builder_flags: tuple[str, ...]  # BuilderFlag members to set
    fp32_islands: bool  # FP16 flag path: LayerNorm/Softmax/statistics layers constrained to FP32
    precision_pass: str | None  # None | "fp16" | "int8" (Q/DQ) | "int8-cache" (legacy: only the .calib)
    use_calibrator: bool
    progress_monitor: bool
    hardware_level: str | None  # HardwareCompatibilityLevel member
    notes: tuple[str, ...] = field(default=())


def plan(config: EngineConfig, request: Request, version: TrtVersion, on_jetson: bool = False) -> BuildPlan:
    notes: list[str] = []
    legacy = request.source == "legacy-calibrator"
    if legacy and not version.legacy_calibrator_allowed:
        why = "has no implicit-INT8 calibrator" if not version.has_int8_calibrator else "deprecates the implicit calibrator (10.12)"
        raise UsageError(f"--legacy-calibrator: TensorRT {version} {why}; drop the option to build INT8 from Q/DQ "
                         "(same --calib data), the path every TensorRT version supports")
    level = None
    if config.hardware_compat != "none":
        if not version.has_hardware_compat or (config.hardware_compat == "same-cc" and not version.has_same_cc_compat):
            raise UsageError(f"--hardware-compat {config.hardware_compat}: TensorRT {version} does not have this level")
        if on_jetson:
            raise CompatibilityError("--hardware-compat: TensorRT does not support hardware compatibility on JetPack; "
                                     "build on the module the engine will run on")
        level = HARDWARE_COMPAT[config.hardware_compat]
    if config.version_compatible and not version.has_version_compat:
        raise UsageError(f"--version-compatible: TensorRT {version} has no version-compatible engines (8.6 and newer)")
    if config.builder_opt_level is not None and not version.has_builder_optimization_level:
        raise UsageError(f"--builder-opt-level: TensorRT {version} has no builder optimisation level (8.6 and newer)")

    # Strongly typed wherever the version has it, except for the implicit calibrator (which
    # needs the INT8 flag on an untyped network).
    strongly_typed = version.has_strongly_typed and not legacy
    network_flags: list[str] = []
    if version.needs_explicit_batch_flag:
        network_flags.append("EXPLICIT_BATCH")
    if strongly_typed and not version.strongly_typed_only:
        network_flags.append("STRONGLY_TYPED")
    builder_flags: list[str] = []
    fp32_islands = False
    precision_pass = None
    if request.precision == "fp16":
        if strongly_typed:
            precision_pass = "fp16" if request.source == "fp16-pass" else None
        else:
            builder_flags.append("FP16")
            fp32_islands = True
            if request.source == "fp16-pass":
                notes.append(f"TensorRT {version}: FP16 builder flag on the FP32 ONNX, with LayerNorm/Softmax layers kept FP32")
            if config.calib is not None:
                notes.append(f"--calib is not used for FP16 on TensorRT {version} (no FP16 ONNX pass on the flag path)")
    elif request.precision == "int8":
        if request.source == "qdq-pass":
            precision_pass = "int8"
        elif legacy:
            precision_pass = None if request.calib_cache else "int8-cache"
        if not strongly_typed:
            builder_flags.append("INT8")
            if request.float_parts == "fp16":  # trtexec --int8 --fp16: the rest in FP16, islands kept FP32
                builder_flags.append("FP16")
                fp32_islands = True
        elif request.source == "onnx" and request.float_parts == "fp16" and not request.onnx_has_fp16:
            raise UsageError(f"--fp16: this Q/DQ ONNX keeps its float parts FP32 and TensorRT {version} builds it "
                             "strongly typed, as written; requantize without --high-precision fp32 for INT8+FP16")
    if config.version_compatible:
        builder_flags.append("VERSION_COMPATIBLE")
    if config.dla_core is not None and config.gpu_fallback:
        builder_flags.append("GPU_FALLBACK")
    if fp32_islands:
        builder_flags.append("OBEY_PRECISION_CONSTRAINTS")
    return BuildPlan(
        precision=request.precision, strongly_typed=strongly_typed, network_flags=tuple(network_flags),
        builder_flags=tuple(builder_flags), fp32_islands=fp32_islands, precision_pass=precision_pass,
        use_calibrator=legacy, progress_monitor=version.has_progress_monitor, hardware_level=level, notes=tuple(notes),
    )


def default_output(model: Path, precision: str) -> Path:
    """v.onnx -> v.trt.engine (FP32) / v.fp16.trt.engine; v.int8.onnx -> v.int8.trt.engine.

    The ``.trt`` keeps the engine's manifest (v.fp16.trt.json) apart from the ONNX's (v.fp16.json).
    """
    stem = Path(model).stem
    if precision != "fp32" and not stem.endswith(f".{precision}"):
        stem = f"{stem}.{precision}"
    return Path(model).with_name(f"{stem}.trt.engine")


def check_output_name(out: Path, model: Path) -> None:
    """Refuse an engine path whose manifest would overwrite the manifest of the ONNX files involved."""
    from vitdeploy.core.io import manifest_path

    model = Path(model)
    onnx_files = [model] + [model.with_name(f"{model.stem}.{p}.onnx") for p in ("fp16", "int8")]
    if Path(out).suffix.lower() in (".onnx", ".json"):
        raise UsageError(f"--output {out}: give an engine path, e.g. {default_output(model, 'fp32').name}")
    clash = [f for f in onnx_files if manifest_path(f).resolve() == manifest_path(out).resolve()]
    if clash:
        raise UsageError(f"--output {out}: its manifest {manifest_path(out).name} would overwrite the one of "
                         f"{clash[0].name}; name the engine differently, e.g. {Path(out).stem}.trt{Path(out).suffix}")
