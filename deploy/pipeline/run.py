"""`vitdeploy deploy`: the whole job in one command, resumable.

export -> precision passes (FP16, INT8) -> TensorRT engines when TensorRT is here (ONNX Runtime
CPU otherwise) -> validate -> bench -> one report (Markdown + JSON + PNG) with accuracy and
latency of every precision side by side and the manifest chain of every artifact.

Each step records the hash of its inputs in OUT/deploy-state.json; a step whose inputs did
not change and whose outputs are still there (same hash) is not redone.

This module: the job's configuration and its orchestration. The resume state is
vitdeploy.pipeline.state, the report document and its Markdown vitdeploy.pipeline.report, the
INT8 form timed on this CPU vitdeploy.pipeline.int8_cpu, the fleet (--devices) vitdeploy.pipeline.fleet.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vitdeploy.core.batch import BatchRange
from vitdeploy.core.errors import UsageError
from vitdeploy.core.precision import PRECISIONS
from vitdeploy.core.preprocessing import KNOWN_LATER, Preprocessing
from vitdeploy.core import manifest as manifests
from vitdeploy.core.io import manifest_path, write_bytes_atomic, write_json_atomic
from vitdeploy.core.steps import Steps
from vitdeploy.pipeline.int8_cpu import ORT_CPU_NOTE, cpu_form_note, quantize_int8_cpu
from vitdeploy.pipeline.report import build_report, gated, report_markdown
from vitdeploy.pipeline.state import STATE_FILE, State, digest

if TYPE_CHECKING:
    from vitdeploy.pipeline.fleet import DeviceSpec

SEED = 0  # quantize's calibration/held-out split and validate's subset of that held-out size: the same images


@dataclass(frozen=True)
class DeployConfig:
    model: str
    out: Path
    checkpoint: Path | None = None
    calib: Path | None = None
    data: Path | None = None  # validation data (default: the calibration images held out from calibration)
    precisions: tuple[str, ...] = PRECISIONS
    batches: tuple[int, ...] = (1, 8)
    dynamic_batch: BatchRange | None = None  # the export's batch range (default: 1:min(batches):max(8, batches))
    int8_target: str = "auto"  # auto: trt when engines are built, else the CPU form measured faster here
    method: str = "percentile"
    samples: int = 512  # calibration samples (quantize's default)
    holdout: int | None = None  # calibration images held out (quantize's default); the verdicts' data without --data
    max_drop: float | None = None  # INT8: quantize's accuracy budget (--max-drop: the precision search)
    metric: str | None = None  # --max-drop's measure (quantize's --metric)
    validate_samples: int = 256  # with --data
    thresholds: str | None = None  # validate's preset or JSON file (None: the default preset)
    on_error: str = "skip"  # an image that does not decode: skip | fail
    iterations: int = 50
    warmup: int = 5
    threads: int | None = 1
    engines: str = "auto"  # auto | always | never
    # --input-size, --mean, --std: on top of a zoo model's own; all of it for package.module:function models
    preprocessing: Preprocessing = field(default_factory=Preprocessing)
    num_classes: int | None = None
    strict_checkpoint: bool = True  # False: --non-strict
    force: bool = False  # redo every step
    devices: tuple[DeviceSpec, ...] = ()  # --devices: engines, validate and bench on each (vitdeploy.pipeline.fleet)

    @property
    def budget(self) -> dict[str, Any]:
        """The INT8 quantize options of --max-drop (none without it)."""
        return {} if self.max_drop is None else {"max_drop": self.max_drop, "metric": self.metric}

    def __post_init__(self) -> None:
        if self.max_drop is not None and "int8" not in self.precisions:
            raise UsageError("--max-drop applies to INT8: add int8 to --precisions")
        if self.metric is not None and self.max_drop is None:
            raise UsageError("--metric applies to the precision search: give --max-drop too")
        if self.max_drop is not None:  # checked before the export, not when the INT8 step comes
            from vitdeploy.calib.search import check_budget_options

            check_budget_options(self.max_drop, self.metric)
        bad = [p for p in self.precisions if p not in PRECISIONS]
        if bad or not self.precisions:
            raise UsageError(f"--precisions takes a comma list of {', '.join(PRECISIONS)}; got {','.join(self.precisions)}")
        if "fp32" not in self.precisions:
            raise UsageError("--precisions must include fp32: it is the reference every other precision is checked against")
        if self.engines not in ("auto", "always", "never"):
            raise UsageError("--engines must be auto, always or never")
        if self.int8_target not in ("auto", "trt", "ort-cpu"):
            raise UsageError("--qdq-form must be auto, trt or ort-cpu")
        if self.devices and (self.engines == "never" or self.int8_target == "ort-cpu"):
            raise UsageError("--devices builds TensorRT engines on the devices: drop --engines never / --qdq-form ort-cpu")
        r = self.dynamic_batch
        outside = [b for b in self.batches if r is not None and not r.min <= b <= r.max]
        if r is not None and outside:
            lo, hi = min(r.min, *outside), max(r.max, *outside)
            raise UsageError(f"--batch {','.join(map(str, outside))} outside --dynamic-batch {r}: give batch sizes in "
                             f"{r.min}..{r.max} or a range that holds them, e.g. --dynamic-batch {lo}:{r.opt}:{hi}")

    @property
    def export_batch(self) -> BatchRange:
        """--dynamic-batch, else dynamic up to the largest --batch and at least 8 (calibration and
        validation run in batches too)."""
        return self.dynamic_batch or BatchRange(1, min(self.batches), max(max(self.batches), 8))


def tensorrt_available() -> bool:
    from vitdeploy.core.deps import is_available

    return is_available("tensorrt")


def run_deploy(config: DeployConfig, steps: Steps | None = None,
               progress: Callable[[str, int], Callable[[int], None]] | None = None) -> dict[str, Any]:
    """Run (or resume) the job; returns the report document (also written to OUT/report.*).

    One data scope for the whole run (``data.cache.run_scope``): each data folder is walked once and
    each image decoded once, however many steps read them (quantize FP16 and INT8, validate)."""
    from vitdeploy.data.cache import run_scope

    with run_scope():
        return _run_deploy(config, steps, progress)


def _run_deploy(config: DeployConfig, steps: Steps | None,
                progress: Callable[[str, int], Callable[[int], None]] | None) -> dict[str, Any]:
    from vitdeploy.validate import load_thresholds

    steps = steps or Steps()
    out = config.out
    limits, drops = load_thresholds(config.thresholds)  # before anything is written, as the checks below
    fleet = bool(config.devices)  # engines on the devices, none here
    if config.engines == "always" and not fleet and not tensorrt_available():
        from vitdeploy.core.deps import require

        require("tensorrt", "--engines always")
    out.mkdir(parents=True, exist_ok=True)
    state = State(out / STATE_FILE, reset=config.force)
    notes: list[str] = []
    skipped: list[str] = []
    base = config.model.split(":")[-1]

    use_engines = fleet or config.engines == "always" or (config.engines == "auto" and tensorrt_available())
    if not use_engines:
        notes.append("TensorRT not found here: no engines built; every precision was measured with ONNX Runtime on the CPU"
                     if config.engines == "auto" else "engines not built (--engines never)")
    int8_target = config.int8_target if config.int8_target != "auto" else ("trt" if use_engines else "ort-cpu")
    # without engines, auto times both INT8 forms on this CPU and keeps the faster (calib/cpu_form.py)
    measure_cpu_form = config.int8_target == "auto" and not use_engines and "int8" in config.precisions
    if not gated(config):
        notes.append("validation verdicts are shown but do not fail the run: no real data (--calib/--data)")
    if "int8" in config.precisions and int8_target == "ort-cpu" and not measure_cpu_form:
        notes.append(ORT_CPU_NOTE)

    calib = config.calib
    if calib is None and ("int8" in config.precisions or config.data is None):
        from vitdeploy.calib.builtin import BUILTIN_COUNT, BUILTIN_NOTE, write_builtin_sample

        calib = out / "builtin-calibration"
        if not any(calib.glob("*.png")):  # written once: rewriting would change mtimes and defeat resuming
            write_builtin_sample(calib)
        notes.insert(0, BUILTIN_NOTE)
        # half calibrates, half is held out: what the defaults came to anyway, said as it is (no "fewer than
        # --samples 512" warning for an option the user did not give)
        config = replace(config, samples=BUILTIN_COUNT // 2, holdout=BUILTIN_COUNT // 2)
    data = config.data or calib

    def run_step(name: str, inputs: str, outputs: list[Path], fn: Callable[[], None]) -> None:
        if state.fresh(name, inputs):
            skipped.append(name)
            with steps.step(f"{name} (unchanged, skipped)"):
                pass
            return
        with steps.step(name):
            fn()
        state.record(name, inputs, outputs)

    # 1. export
    from vitdeploy.export import ExportConfig, export
    from vitdeploy.export.source import definition_files

    fp32 = out / f"{base}.onnx"
    fp32_manifest = manifest_path(fp32)  # the preprocessing quantize and validate read: in their digests
    pre = config.preprocessing
    export_cfg = ExportConfig(config.model, checkpoint=config.checkpoint, output=fp32, batch=config.export_batch,
                              force=True, preprocessing=pre, num_classes=config.num_classes,
                              strict_checkpoint=config.strict_checkpoint)
    asked = {k: pre.to_dict()[k] for k in KNOWN_LATER} | {"num_classes": config.num_classes}  # the digest as before
    run_step("export", digest(config.model, config.checkpoint and Path(config.checkpoint), str(config.export_batch),
                               asked, config.strict_checkpoint, *definition_files(config.model), "export/2"),
             [fp32, fp32_manifest], lambda: export(export_cfg))
    artifacts: dict[str, Path] = {"fp32": fp32}

    # 2. precision passes
    from vitdeploy.calib.quantize import QuantizeConfig, quantize
    from vitdeploy.calib.quantize import default_output as quant_output

    cpu_form: dict[str, Any] | None = None
    for precision in [p for p in config.precisions if p != "fp32"]:
        if precision == "int8" and measure_cpu_form:
            cpu_form = quantize_int8_cpu(config, fp32, calib, run_step, progress, seed=SEED)
            artifacts["int8"] = out / cpu_form["artifact"]
            notes.append(cpu_form_note(cpu_form))
            continue
        target = int8_target if precision == "int8" else "trt"
        path = quant_output(fp32, precision, target)
        budget = config.budget if precision == "int8" else {}
        qcfg = QuantizeConfig(model=fp32, precision=precision, calib=calib, method=config.method, samples=config.samples,
                              holdout=config.holdout, seed=SEED, on_error=config.on_error, target=target, output=path,
                              force=True, threads=config.threads, **budget,
                              gate=False)  # deploy's validation step is the gate (and knows random weights)
        run_step(f"quantize {precision}", digest(fp32, fp32_manifest, calib, precision, target, config.method,
                                                  config.samples, config.holdout, config.on_error, *budget.values(), "q/2"),
                 [path, manifest_path(path)], lambda q=qcfg: quantize(q, progress=progress))
        artifacts[precision] = path
    warnings = [f"{p} quantize: {w}" for p in ("fp16", "int8") if p in artifacts
                for w in getattr(manifests.read(artifacts[p]), "warnings", ())]
    if config.max_drop is not None and "int8" in artifacts:
        from vitdeploy.calib.search import summary

        q = manifests.read(artifacts["int8"]).quantization
        if q is not None and q.raw.get("precision_search"):
            notes.append(f"INT8 precision search: {summary(q.raw['precision_search'])}")
    if fleet:  # 3.-6. on every device of --devices
        from vitdeploy.pipeline.fleet import FleetInputs, run_fleet

        vsamples, which = _validation_data(config, calib)
        return run_fleet(config, FleetInputs(artifacts, data, vsamples, which), notes, skipped, warnings, steps)

    # 3. engines
    engines: dict[str, Path] = {}
    if use_engines:
        from vitdeploy.engine.config import default_output
        from vitdeploy.pipeline.engine import build_for_deploy

        for precision, onnx_path in list(artifacts.items()):
            engine = default_output(onnx_path, precision)  # X.fp16.trt.engine: its manifest stays apart
            run_step(f"engine {precision}", digest(onnx_path, precision, "engine/1"), [engine, manifest_path(engine)],
                     lambda o=onnx_path, e=engine, p=precision: build_for_deploy(o, e, p))
            engines[precision] = engine

    measured = engines or artifacts
    # 4. validate: on --data, else on the calibration images quantize held out
    from vitdeploy.validate import ValidateConfig, accuracy_section, markdown, validate

    vdoc: dict[str, Any] = {}
    candidates = tuple(str(p) for k, p in measured.items() if not (k == "fp32" and not engines))
    vpath = out / "validate.json"
    vsamples, which = _validation_data(config, calib)

    def do_validate() -> None:
        nonlocal vdoc
        vdoc = validate(ValidateConfig(reference=str(fp32), candidates=candidates, data=data, samples=vsamples,
                                       thresholds=limits, max_top1_drop=drops, seed=SEED, threads=config.threads,
                                       on_error=config.on_error), progress)
        write_json_atomic(vpath, vdoc)
        write_bytes_atomic(out / "validate.md", markdown(vdoc).encode())

    run_step("validate", digest(*(Path(c) for c in candidates), fp32, fp32_manifest, data, vsamples,
                                 {k: asdict(v) for k, v in limits.items()}, drops, config.on_error, "v/2"),
             [vpath], do_validate)
    vdoc = vdoc or json.loads(vpath.read_text())
    n = vdoc["data"]["samples"]
    judged_on = f"{n} {which.replace('images', 'image', 1) if n == 1 else which}"
    if n < MIN_VERDICT_SAMPLES:
        warnings.append(f"the verdicts rest on {n} image{'s' * (n != 1)}: too few to tell a real change from chance; "
                        f"give more images (--calib, or --data) for at least {MIN_VERDICT_SAMPLES}")

    # 5. bench
    from vitdeploy.bench import BenchConfig, run_bench

    bpath = out / "bench.json"
    bench_items = tuple(str(p) for p in measured.values())
    bdoc: dict[str, Any] = {}

    def do_bench() -> None:
        nonlocal bdoc
        bdoc = run_bench(BenchConfig(artifacts=bench_items, batches=tuple(config.batches), warmup=config.warmup,
                                     iterations=config.iterations, threads=config.threads), progress)
        write_json_atomic(bpath, bdoc)

    run_step("bench", digest(*(Path(a) for a in bench_items), config.batches, config.iterations, config.threads, "b/1"),
             [bpath], do_bench)
    bdoc = bdoc or json.loads(bpath.read_text())
    bdoc["accuracy"] = accuracy_section(vdoc)

    # 6. report
    report = build_report(config, artifacts, engines, vdoc, bdoc, notes, skipped, judged_on, warnings)
    report["int8_cpu_form"] = cpu_form
    with steps.step("report"):
        from vitdeploy.bench import plots as R
        from vitdeploy.core.errors import MissingDependencyError

        try:  # the plot first: whether it exists goes into the JSON and the Markdown
            report["files"]["plot"] = R.write_plot(bdoc, out / "report.png").name
        except MissingDependencyError as exc:
            report["files"]["plot"] = None
            report["notes"].append(f"plot skipped: {exc}")
        write_json_atomic(out / "report.json", report)
        write_bytes_atomic(out / "report.md", report_markdown(report).encode())
    return report


MIN_VERDICT_SAMPLES = 20  # below this, one flipped image moves agreement by more than 5 points


def _validation_data(config: DeployConfig, calib: Path) -> tuple[int | None, str]:
    """Validate's sample count and what those samples are, in words (after the count). Without --data:
    the calibration images quantize held out and never calibrated on. Validate's seeded subset of n
    (data.sampling.sample_indices) is the first n of the permutation whose first n quantize holds out
    (data.sampling.holdout_split), both seeded with SEED (one ``seeded_order``)."""
    if config.data is not None:
        return config.validate_samples, f"images of {config.data} (--data)"
    from vitdeploy.data.sources import open_dataset
    from vitdeploy.data.sampling import holdout_split

    name = config.calib or "the built-in synthetic sample"
    _, held = holdout_split(len(open_dataset(calib)), config.samples, config.holdout, SEED)
    if len(held):
        return len(held), f"held-out images of {name} not used for calibration"
    why = "--holdout 0" if config.holdout == 0 else "too few to hold any out"
    return config.validate_samples, f"images of {name}, calibration images too ({why})"
