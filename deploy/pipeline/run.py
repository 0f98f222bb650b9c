"""`vitdeploy deploy`: the whole job in one command, resumable.

export -> precision passes (FP16, INT8) -> TensorRT engines when TensorRT is here (ONNX Runtime
CPU otherwise) -> validate -> bench -> one report (Markdown + JSON + PNG) with accuracy and
latency of every precision side by side and the manifest chain of every artifact.

Each step records the hash of its inputs in OUT/deploy-state.json; a step whose inputs did
not change and whose outputs are still there (same hash) is not redone.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vitdeploy.core.batch import BatchRange
from vitdeploy.core.errors import UsageError
from vitdeploy.core.precision import PRECISIONS
from vitdeploy.core.io import read_manifest, sha256_file, write_bytes_atomic, write_json_atomic
from vitdeploy.core.steps import Steps

if TYPE_CHECKING:
    from vitdeploy.pipeline.fleet import DeviceSpec

STATE_FILE = "deploy-state.json"
CPU_FORM_FILE = "int8-cpu-form.json"  # which INT8 form ran faster on this CPU, with the figures
REPORT_SCHEMA = "vitdeploy.deploy-report/1"
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
    validate_samples: int = 256  # with --data
    thresholds: str | None = None  # validate's preset or JSON file (None: the default preset)
    on_error: str = "skip"  # an image that does not decode: skip | fail
    iterations: int = 50
    warmup: int = 5
    threads: int | None = 1
    engines: str = "auto"  # auto | always | never
    input_size: tuple[int, int, int] | None = None  # for package.module:function models
    mean: tuple[float, float, float] | None = None
    std: tuple[float, float, float] | None = None
    num_classes: int | None = None
    strict_checkpoint: bool = True  # False: --non-strict
    force: bool = False  # redo every step
    devices: tuple[DeviceSpec, ...] = ()  # --devices: engines, validate and bench on each (vitdeploy.pipeline.fleet)

    def __post_init__(self) -> None:
        bad = [p for p in self.precisions if p not in PRECISIONS]
        if bad or not self.precisions:
            raise UsageError(f"--precisions takes a comma list of {', '.join(PRECISIONS)}; got {','.join(self.precisions)}")
        if "fp32" not in self.precisions:
            raise UsageError("--precisions must include fp32: it is the reference every other precision is checked against")
        if self.engines not in ("auto", "always", "never"):
            raise UsageError("--engines must be auto, always or never")
        if self.int8_target not in ("auto", "trt", "ort-cpu"):
            raise UsageError("--int8-target must be auto, trt or ort-cpu")
        if self.devices and (self.engines == "never" or self.int8_target == "ort-cpu"):
            raise UsageError("--devices builds TensorRT engines on the devices: drop --engines never / --int8-target ort-cpu")
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


@dataclass
class StepState:
    inputs: str
    outputs: dict[str, str] = field(default_factory=dict)  # path -> sha256


class State:
    """The resumability record: step name -> hash of its inputs and its outputs' hashes."""

    def __init__(self, path: Path, reset: bool):
        self.path = path
        self.steps: dict[str, StepState] = {}
        if path.exists() and not reset:
            try:
                self.steps = {k: StepState(**v) for k, v in json.loads(path.read_text()).get("steps", {}).items()}
            except (json.JSONDecodeError, TypeError):
                self.steps = {}

    def fresh(self, name: str, inputs: str) -> bool:
        s = self.steps.get(name)
        return bool(s and s.inputs == inputs and s.outputs and all(
            Path(p).exists() and sha256_file(p) == h for p, h in s.outputs.items()))

    def record(self, name: str, inputs: str, outputs: list[Path]) -> None:
        self.steps[name] = StepState(inputs, {str(p): sha256_file(p) for p in outputs if Path(p).exists()})
        write_json_atomic(self.path, {"steps": {k: asdict(v) for k, v in self.steps.items()}})


def _digest(*parts: Any) -> str:
    h = hashlib.sha256()
    for p in parts:
        if isinstance(p, Path) and p.is_file():
            h.update(sha256_file(p).encode())
        elif isinstance(p, Path) and p.is_dir():
            for f in sorted(p.rglob("*")):
                if f.is_file():
                    h.update(str(f.relative_to(p)).encode())
                    h.update(str(f.stat().st_size).encode())
                    h.update(str(int(f.stat().st_mtime)).encode())
        else:
            h.update(json.dumps(p, sort_keys=True, default=str).encode())
    return h.hexdigest()


def tensorrt_available() -> bool:
    from vitdeploy.core.deps import is_available

    return is_available("tensorrt")


def run_deploy(config: DeployConfig, steps: Steps | None = None,
               progress: Callable[[str, int], Callable[[int], None]] | None = None) -> dict[str, Any]:
    """Run (or resume) the job; returns the report document (also written to OUT/report.*)."""
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
        from vitdeploy.calib.builtin import BUILTIN_NOTE, write_builtin_sample

        calib = out / "builtin-calibration"
        if not any(calib.glob("*.png")):  # written once: rewriting would change mtimes and defeat resuming
            write_builtin_sample(calib)
        notes.insert(0, BUILTIN_NOTE)
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
    from vitdeploy.export import ExportConfig, Preprocessing, export
    from vitdeploy.export.source import definition_files

    fp32 = out / f"{base}.onnx"
    fp32_manifest = fp32.with_suffix(".json")  # the preprocessing quantize and validate read: in their digests
    pre = Preprocessing(input_size=config.input_size, mean=config.mean, std=config.std, num_classes=config.num_classes)
    export_cfg = ExportConfig(config.model, checkpoint=config.checkpoint, output=fp32, batch=config.export_batch,
                              force=True, preprocessing=pre, strict_checkpoint=config.strict_checkpoint)
    run_step("export", _digest(config.model, config.checkpoint and Path(config.checkpoint), str(config.export_batch),
                               asdict(pre), config.strict_checkpoint, *definition_files(config.model), "export/2"),
             [fp32, fp32_manifest], lambda: export(export_cfg))
    artifacts: dict[str, Path] = {"fp32": fp32}

    # 2. precision passes
    from vitdeploy.calib.quantize import QuantizeConfig, quantize
    from vitdeploy.calib.quantize import default_output as quant_output

    cpu_form: dict[str, Any] | None = None
    for precision in [p for p in config.precisions if p != "fp32"]:
        if precision == "int8" and measure_cpu_form:
            cpu_form = _quantize_int8_cpu(config, fp32, calib, run_step, progress)
            artifacts["int8"] = out / cpu_form["artifact"]
            notes.append(cpu_form_note(cpu_form))
            continue
        target = int8_target if precision == "int8" else "trt"
        path = quant_output(fp32, precision, target)
        qcfg = QuantizeConfig(model=fp32, precision=precision, calib=calib, method=config.method, samples=config.samples,
                              holdout=config.holdout, seed=SEED, on_error=config.on_error, target=target, output=path,
                              force=True, threads=config.threads,
                              gate=False)  # deploy's validation step is the gate (and knows random weights)
        run_step(f"quantize {precision}", _digest(fp32, fp32_manifest, calib, precision, target, config.method,
                                                  config.samples, config.holdout, config.on_error, "q/2"),
                 [path, path.with_suffix(".json")], lambda q=qcfg: quantize(q, progress=progress))
        artifacts[precision] = path
    warnings = [f"{p} quantize: {w}" for p in ("fp16", "int8") if p in artifacts
                for w in (read_manifest(artifacts[p]) or {}).get("warnings") or ()]
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
            run_step(f"engine {precision}", _digest(onnx_path, precision, "engine/1"), [engine, engine.with_suffix(".json")],
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

    run_step("validate", _digest(*(Path(c) for c in candidates), fp32, fp32_manifest, data, vsamples,
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

    run_step("bench", _digest(*(Path(a) for a in bench_items), config.batches, config.iterations, config.threads, "b/1"),
             [bpath], do_bench)
    bdoc = bdoc or json.loads(bpath.read_text())
    bdoc["accuracy"] = accuracy_section(vdoc)

    # 6. report
    report = build_report(config, artifacts, engines, vdoc, bdoc, notes, skipped, judged_on, warnings)
    report["int8_cpu_form"] = cpu_form
    with steps.step("report"):
        from vitdeploy.bench import report as R
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
    (calib.data.sample_indices) is the first n of the permutation whose first n quantize holds out
    (calib.quantize.holdout_split), both seeded with SEED."""
    if config.data is not None:
        return config.validate_samples, f"images of {config.data} (--data)"
    from vitdeploy.data.datasets import open_dataset
    from vitdeploy.calib.quantize import holdout_split

    name = config.calib or "the built-in synthetic sample"
    _, held = holdout_split(len(open_dataset(calib)), config.samples, config.holdout, SEED)
    if len(held):
        return len(held), f"held-out images of {name} not used for calibration"
    why = "--holdout 0" if config.holdout == 0 else "too few to hold any out"
    return config.validate_samples, f"images of {name}, calibration images too ({why})"


TRT_INT8_HINT = "For TensorRT run `vitdeploy quantize MODEL.onnx --int8 --target trt` (or deploy with --int8-target trt)"
ORT_CPU_NOTE = f"INT8 ONNX written for ONNX Runtime CPU (uint8 activations). {TRT_INT8_HINT}"


def _quantize_int8_cpu(config: DeployConfig, fp32: Path, calib: Path, run_step, progress) -> dict[str, Any]:
    """INT8 for ONNX Runtime on this CPU: both Q/DQ forms timed (placeholder ranges, batch 8, a few
    seconds), the faster one calibrated and written. The choice and its figures go to CPU_FORM_FILE,
    an output of the step, so a resumed run keeps the same artifact instead of re-timing."""
    from vitdeploy.calib.quantize import QuantizeConfig, quantize
    from vitdeploy.calib.quantize import default_output as quant_output

    choice_path = config.out / CPU_FORM_FILE
    outputs: list[Path] = [choice_path]  # the artifact is added once chosen; run_step records the list after

    def do() -> None:
        from vitdeploy.core import onnx_utils
        from vitdeploy.calib import cpu_form

        model = onnx_utils.load(fp32)
        hints = ((read_manifest(fp32) or {}).get("quantization_hints") or {})
        choice = cpu_form.choose(cpu_form.placeholder_forms(model, hints), fp32=model.SerializeToString(),
                                 threads=config.threads)
        path = quant_output(fp32, "int8", choice.choice)
        # the trt form as timed: FP32 float parts (FP16 ones run slower on ONNX Runtime's CPU provider)
        quantize(QuantizeConfig(model=fp32, precision="int8", calib=calib, method=config.method, samples=config.samples,
                                holdout=config.holdout, seed=SEED, on_error=config.on_error,
                                target=choice.choice, output=path, force=True,
                                high_precision="fp32" if choice.choice == "trt" else "fp16",
                                threads=config.threads, gate=False), progress=progress)
        outputs.extend([path, path.with_suffix(".json")])
        write_json_atomic(choice_path, {"artifact": path.name, "target": choice.choice, **choice.to_dict()})

    run_step("quantize int8", _digest(fp32, fp32.with_suffix(".json"), calib, "int8", "auto-cpu", config.method,
                                      config.samples, config.holdout, config.on_error, config.threads, "q/3"), outputs, do)
    return json.loads(choice_path.read_text())


def cpu_form_note(form: dict[str, Any]) -> str:
    t = form["timings"]
    figures = ", ".join(f"{k} {v['p50_ms']:.1f} ms" for k, v in t.items())
    if form.get("fp32_p50_ms"):
        figures += f", FP32 {form['fp32_p50_ms']:.1f} ms"
    what = ("ONNX Runtime CPU form (uint8 activations)" if form["target"] == "ort-cpu"
            else "TensorRT Q/DQ form with FP32 float parts")
    return (f"INT8 written in the {what}, the faster here: timed at batch {form['batch']}, "
            f"{form['threads'] or 'default'} thread(s), p50 {figures}; {form['reason']}. {TRT_INT8_HINT}")


def _chain(path: Path) -> list[dict[str, Any]]:
    """The manifest chain of an artifact: itself, its parent ONNX, ..., up to the checkpoint."""
    chain = []
    current: Path | None = path
    while current is not None and current.exists():
        m = read_manifest(current) or {}
        chain.append({"artifact": current.name, "kind": m.get("kind"), "precision": m.get("precision"),
                      "sha256": m.get("sha256") or sha256_file(current)})
        parent = (m.get("parent") or {}).get("artifact")
        if parent is None and m.get("checkpoint"):
            chain.append({"artifact": Path(m["checkpoint"]["path"]).name, "kind": "checkpoint",
                          "sha256": m["checkpoint"]["sha256"]})
        current = Path(parent) if parent else None
        if current is not None and not current.is_absolute() and not current.exists():
            current = path.parent / current.name
    return chain


def gated(config: DeployConfig) -> bool:
    """Validation failures fail the run (exit 6, as `vitdeploy validate`) when judged on real data. With
    random weights (a zoo model without --checkpoint) validate itself judges only what still means
    something there (cosine, max abs; not top-1 agreement), so those verdicts gate too."""
    return config.calib is not None or config.data is not None


def build_report(config: DeployConfig, artifacts: dict[str, Path], engines: dict[str, Path], vdoc: dict[str, Any],
                 bdoc: dict[str, Any], notes: list[str], skipped: list[str], judged_on: str,
                 warnings: list[str]) -> dict[str, Any]:
    """``judged_on``: the images that judged the verdicts, in words; ``warnings``: the steps' own."""
    from vitdeploy import __version__

    measured = engines or artifacts
    acc = {c["artifact"]: c for c in vdoc["candidates"]}
    rows = []
    for precision, path in measured.items():
        label = path.name
        lat = {str(r["batch"]): {"p50_ms": r["latency_ms"]["p50"], "p99_ms": r["latency_ms"]["p99"],
                                 "throughput_ips": r["throughput_ips"], "speedup": r.get("speedup")}
               for r in bdoc["results"] if r["artifact"] == label}
        a = acc.get(label)
        ref = vdoc["reference"]
        rows.append({
            "precision": precision, "artifact": label, "backend": "trt" if engines else "ort-cpu",
            "top1": (a or {}).get("top1", ref.get("top1") if precision == "fp32" else None),
            "top1_drop_points": (a or {}).get("top1_drop_points",
                                              0.0 if precision == "fp32" and ref.get("top1") is not None else None),
            "cosine": a["comparison"]["cosine_mean"] if a else 1.0,
            "top1_agreement": a["comparison"]["top1_agreement"] if a else 1.0,
            "validation": "reference" if a is None else ("pass" if a["passed"] else "FAIL: " + "; ".join(a["failures"])),
            "latency": lat,
            "manifest_chain": _chain(path),
        })
    return {
        "schema": REPORT_SCHEMA, "vitdeploy": __version__, "model": config.model,
        "checkpoint": str(config.checkpoint) if config.checkpoint else None,
        "calibration": str(config.calib) if config.calib else "built-in synthetic sample",
        "validation_data": {**vdoc["data"], "judged_on": judged_on}, "precisions": rows, "batches": list(config.batches),
        "conditions": bdoc.get("conditions"), "warnings": warnings + bdoc.get("warnings", []), "notes": notes,
        "steps_skipped": skipped, "passed": vdoc.get("passed", True), "gated": gated(config),
        "files": {"validate": "validate.json", "bench": "bench.json", "markdown": "report.md"},
    }


def report_markdown(r: dict[str, Any]) -> str:
    lines = [f"# vitdeploy report: {r['model']}", ""]
    for n in r["notes"]:
        lines += [f"> **Note:** {n}", ""]
    d = r["validation_data"]
    from vitdeploy.bench.report import checkpoint_text

    lines += [f"Checkpoint: {checkpoint_text(r)}; calibration: {r['calibration']}; "
              f"verdicts judged on {d['judged_on']}" + (" (labelled)" if d["labels"] else " (no labels)"), ""]
    head = "| precision | artifact | backend | top-1 | drop (pt) | cosine | top-1 agree |"
    sep = "|---|---|---|---|---|---|---|"
    for b in r["batches"]:
        head += f" p50 ms @{b} | img/s @{b} | speedup @{b} |"
        sep += "---|---|---|"
    lines += [head + " validation |", sep + "---|"]

    def fmt(v, spec):
        return "-" if v is None else format(v, spec)

    for row in r["precisions"]:
        line = (f"| {row['precision']} | {row['artifact']} | {row['backend']} | {fmt(row['top1'], '.2%')} | "
                f"{fmt(row['top1_drop_points'], '+.2f')} | {row['cosine']:.5f} | {row['top1_agreement']:.2%} |")
        for b in r["batches"]:
            lat = row["latency"].get(str(b), {})
            line += f" {fmt(lat.get('p50_ms'), '.2f')} | {fmt(lat.get('throughput_ips'), ',.0f')} | {fmt(lat.get('speedup'), '.2f')}x |"
        lines.append(line + f" {row['validation']} |")
    c = r.get("conditions") or {}
    cpu = c.get("cpu") or {}
    lines += ["", "## Conditions", "", f"- CPU: {cpu.get('model')} ({cpu.get('cores')} cores), threads: {c.get('threads')}"]
    for g in c.get("gpus") or []:
        lines.append(f"- GPU: {g.get('name')} (sm {g.get('compute_capability')})")
    if c.get("jetson"):
        j = c["jetson"]
        lines.append(f"- Jetson: L4T {j.get('l4t')} (JetPack {j.get('jetpack')}), power mode {j.get('power_mode')}, clocks locked: {j.get('clocks_locked')}")
    for w in r["warnings"]:
        lines.append(f"- warning: {w}")
    lines += ["", "## Manifest chains", ""]
    for row in r["precisions"]:
        chain = " <- ".join(f"{x['artifact']} ({(x.get('sha256') or '')[:12]})" for x in row["manifest_chain"])
        lines.append(f"- {row['precision']}: {chain}")
    if r["steps_skipped"]:
        lines += ["", f"Resumed: {', '.join(r['steps_skipped'])} unchanged and not redone."]
    lines += ["", "![latency and accuracy](report.png)", ""]
    return "\n".join(lines)
