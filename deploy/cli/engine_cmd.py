"""`vitdeploy build-engine`: a TensorRT engine (+ manifest) from a vitdeploy ONNX file."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from vitdeploy.cli import tables
from vitdeploy.cli.console import prose, console, print_json, print_step, progress, Tracker
from vitdeploy.cli.options import Force, HighPrecision, Json, Remote, RemotePython, Samples

HELP = """Build a TensorRT engine from an ONNX file (FP32, FP16 or INT8) and write OUT.json beside it.

The same precision path on every TensorRT version: FP16 and INT8 live in the ONNX (the FP16
precision pass, or Q/DQ from --calib data, run on the CPU first) and TensorRT >= 10 builds it
strongly typed; TensorRT 8.x sets its FP16/INT8 flags (LayerNorm/Softmax kept FP32). After the
build the engine inspector must show the requested precision, or nothing is written.

Examples:

  vitdeploy build-engine deit_tiny.onnx --fp16

  vitdeploy build-engine deit_tiny.onnx --int8 --calib imagenet_val/ \\
      --samples 512   # INT8+FP16

  vitdeploy build-engine deit_tiny.int8.onnx --dynamic-batch 1:8:32 \\
      --workspace 2GiB --timing-cache trt.cache

  vitdeploy build-engine deit_tiny.onnx --fp16 --dla 0   # Jetson DLA core 0

Exit codes: 2 bad option combination, 3 input missing, 5 output exists (--force), 6 the CPU
precision pass failed its accuracy check (as vitdeploy quantize), 7 TensorRT or the CUDA
runtime (libcudart) missing, 9 build failed (parser error, requested precision absent), 10 not possible on this
TensorRT/device (no DLA, hardware compatibility on JetPack).
"""


class _RichMonitor:
    """TensorRT progress-monitor callbacks -> rich progress tasks (one per phase)."""

    def __init__(self, bar) -> None:
        self.bar = bar
        self.tasks: dict[str, int] = {}

    def phase_start(self, name: str, parent: str | None, steps: int) -> None:
        indent = "  " if parent else ""
        self.tasks[name] = self.bar.add_task(f"{indent}{name}", total=max(int(steps), 1))

    def step(self, name: str, step: int) -> None:
        if name in self.tasks:
            self.bar.update(self.tasks[name], completed=int(step) + 1)

    def phase_finish(self, name: str) -> None:
        task = self.tasks.pop(name, None)
        if task is not None:
            self.bar.remove_task(task)


def build_engine(
    model: Annotated[Path, typer.Argument(help="ONNX from `vitdeploy export` or `vitdeploy quantize` (its manifest gives the batch range).")],
    fp16: Annotated[bool, typer.Option("--fp16", help="FP16 (TensorRT >= 10: runs the FP16 precision pass, builds strongly typed).")] = False,
    int8: Annotated[bool, typer.Option("--int8", help="INT8+FP16: a Q/DQ ONNX builds as is; an FP32 ONNX needs --calib. With --fp16 too (trtexec's habit): the same.")] = False,
    high_precision: HighPrecision = "fp16",
    calib: Annotated[Optional[Path], typer.Option("--calib", help="Calibration data for the Q/DQ pass (image folder, .txt list, .npy/.npz); with --legacy-calibrator also a .calib cache.")] = None,
    method: Annotated[str, typer.Option(help="Calibration: percentile | entropy | minmax | mse (as vitdeploy quantize).")] = "percentile",
    samples: Samples = 512,
    legacy_calibrator: Annotated[bool, typer.Option("--legacy-calibrator", help="TensorRT < 10.12 only: implicit INT8 from a calibration cache instead of Q/DQ.")] = False,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Engine path (default: MODEL.trt.engine, MODEL.fp16.trt.engine or MODEL.int8.trt.engine; manifest beside it as .trt.json).")] = None,
    workspace: Annotated[Optional[str], typer.Option(help="Workspace memory pool limit, e.g. 1GiB, 512MiB (default: TensorRT's).")] = None,
    dynamic_batch: Annotated[Optional[str], typer.Option("--dynamic-batch", help="MIN:OPT:MAX optimisation profile (default: the manifest's batch range).")] = None,
    timing_cache: Annotated[Optional[Path], typer.Option("--timing-cache", help="Timing cache file: loaded when present, saved after the build.")] = None,
    dla: Annotated[Optional[int], typer.Option("--dla", help="DLA core to build for (FP16/INT8 only).")] = None,
    no_gpu_fallback: Annotated[bool, typer.Option("--no-gpu-fallback", help="With --dla: fail instead of running unsupported layers on the GPU.")] = False,
    hardware_compat: Annotated[str, typer.Option("--hardware-compat", help="none | ampere+ | same-cc (desktop GPUs; not on JetPack).")] = "none",
    version_compatible: Annotated[bool, typer.Option("--version-compatible", help="Engine also runs on newer TensorRT (>= 8.6; embeds the lean runtime).")] = False,
    builder_opt_level: Annotated[Optional[int], typer.Option("--builder-opt-level", help="0-5: build time vs engine speed [TensorRT default 3].")] = None,
    verbose: Annotated[bool, typer.Option("--verbose", help="Show TensorRT's log.")] = False,
    remote: Remote = None,
    remote_python: RemotePython = None,
    force: Force = False,
    as_json: Json = False,
) -> None:
    from vitdeploy.core.io import refuse_overwriting_inputs
    from vitdeploy.core.steps import Steps
    from vitdeploy.pipeline.engine import build as run_build
    from vitdeploy.engine.config import BatchRange, EngineConfig, parse_size

    refuse_overwriting_inputs(output, MODEL=model, **{"--calib": calib, "--timing-cache": timing_cache})
    config = EngineConfig(
        model=model, output=output, fp16=fp16, int8=int8, high_precision=high_precision, calib=calib, method=method, samples=samples,
        legacy_calibrator=legacy_calibrator, workspace=parse_size(workspace) if workspace else None,
        batch=BatchRange.parse(dynamic_batch) if dynamic_batch else None, timing_cache=timing_cache,
        dla_core=dla, gpu_fallback=not no_gpu_fallback, hardware_compat=hardware_compat,
        version_compatible=version_compatible, builder_opt_level=builder_opt_level, force=force, verbose=verbose,
    )
    if remote is not None:
        from vitdeploy.cli.remote import build_remote

        result = build_remote(remote, remote_python, config)
    else:
        with progress(transient=True) as bar:
            result = run_build(config, Steps(on_end=print_step), callbacks=_RichMonitor(bar), progress=Tracker(bar))
    m = result.manifest
    if as_json:
        print_json(m)
        return
    table = tables.kv_table(f"{m['precision'].upper()} engine")
    trt_info = m["tensorrt"]
    table.add_row("TensorRT", f"{trt_info['version']} ({'strongly typed' if trt_info['strongly_typed'] else 'precision flags'})")
    gpu = m.get("gpu") or {}
    jetson = m.get("jetson") or {}
    table.add_row("GPU", f"{gpu.get('name', '?')} (compute {gpu.get('compute_capability', '?')})"
                  + (f", JetPack {jetson.get('jetpack')} / L4T {jetson.get('l4t')}" if jetson else ""))
    layers = m["layers"]
    table.add_row("layers", f"{layers['count']}: " + ", ".join(f"{k} {v}" for k, v in layers["precisions"].items()))
    for name, s in (m.get("profile") or {}).items():
        table.add_row(f"profile {name}", f"min {s['min']}  opt {s['opt']}  max {s['max']}")
    table.add_row("size", f"{m['engine_bytes'] / 2**20:.2f} MiB, built in {m['build_seconds']:.1f}s")
    for note in m.get("notes") or []:
        table.add_row("note", f"[yellow]{note}[/]")
    console.print(table)
    tables.print_paths(("engine", result.engine_path))


def register(app: typer.Typer) -> None:
    app.command("build-engine", help=prose(HELP))(build_engine)
