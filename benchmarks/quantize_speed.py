"""INT8 on the CPU: ONNX Runtime latency of FP32 against both INT8 CPU forms, at batch 1 and 8,
interleaved in one process on one thread, with the form `vitdeploy deploy` would pick here and a
>= 1.6x verdict at batch 8 per model.

The INT8 candidates: `--qdq-form ort-cpu` (UINT8 activations, float-output linear layers) and
`--qdq-form trt` with FP32 float parts (the TensorRT Q/DQ form). The pick is
`vitdeploy.calib.cpu_form.choose`, the function deploy uses, run on the calibrated files.

    python benchmarks/quantize_speed.py                       # each family's smallest official variant
    python benchmarks/quantize_speed.py --models deit_small_patch16_224 --samples 64 --rounds 30
    python benchmarks/quantize_speed.py --methods all         # also calibration time per method (slower)

Random weights are fine for speed; the calibration images are scikit-learn's digits (upscaled),
so the cosine column says the forms stay faithful, not what a trained model's top-1 does.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).parent))

import numpy as np  # noqa: E402
from common import interleaved  # noqa: E402
from PIL import Image  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from vitdeploy.calib import cpu_form  # noqa: E402
from vitdeploy.calib.methods import METHODS  # noqa: E402
from vitdeploy.calib.quantize import QuantizeConfig, quantize  # noqa: E402
from vitdeploy.export import BatchRange, ExportConfig, export  # noqa: E402
from vitdeploy.runners.ort import OnnxRuntimeRunner  # noqa: E402

DEFAULT = ["deit_tiny_patch16_224", "t2t_vit_7", "convit_tiny", "SReT_T", "ceit_tiny_patch16_224"]
TARGET_SPEEDUP = 1.6
FORMS = ("ort-cpu", "trt")


def calibration_folder(root: Path, n: int) -> Path:
    """Real images when scikit-learn is there (its bundled digits, upscaled), else seeded noise images."""
    try:
        from sklearn.datasets import load_digits

        d = load_digits()
        imgs = [Image.fromarray((im / 16 * 255).astype(np.uint8)).convert("RGB").resize((256, 256)) for im in d.images[:n]]
    except ImportError:
        rng = np.random.default_rng(0)
        imgs = [Image.fromarray(rng.integers(0, 255, (256, 256, 3), dtype=np.uint8)) for _ in range(n)]
    root.mkdir(parents=True, exist_ok=True)
    for i, im in enumerate(imgs):
        im.save(root / f"{i:04d}.png")
    return root


def step_seconds(manifest: dict, prefix: str) -> float:
    return sum(s["seconds"] for s in manifest["steps"] if s["name"].startswith(prefix))


def int8_config(fp32: Path, data: Path, target: str, out: Path, samples: int, method: str = "percentile") -> QuantizeConfig:
    # trt: the CPU candidate has FP32 float parts (FP16 ones are slow on ONNX Runtime's CPU provider);
    # no gate: random weights, so report the figures rather than stop on them
    return QuantizeConfig(model=fp32, precision="int8", calib=data, method=method, samples=samples, holdout=16,
                          target=target, high_precision="fp32" if target == "trt" else "fp16", gate=False,
                          output=out, force=True, threads=1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=DEFAULT)
    ap.add_argument("--samples", type=int, default=32, help="calibration images per model (speed does not depend on it)")
    ap.add_argument("--rounds", type=int, default=20, help="interleaved rounds per batch size")
    ap.add_argument("--methods", nargs="*", default=[], help="also time calibration per method ('all' for every method)")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    methods = list(METHODS) if args.methods == ["all"] else args.methods
    console = Console(width=None if sys.stdout.isatty() else 200)
    load_start = os.getloadavg()[0]
    t_start = time.perf_counter()
    latency_rows, choices, calib_rows, verdicts = [], {}, [], {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        os.environ["VITDEPLOY_CACHE"] = str(tmp / "cache")
        data = calibration_folder(tmp / "calib", args.samples + 16)
        for name in args.models:
            t_model = time.perf_counter()
            fp32 = export(ExportConfig(name, output=tmp / f"{name}.onnx", batch=BatchRange(1, 1, 8))).onnx_path
            results = {f: quantize(int8_config(fp32, data, f, tmp / f"{name}.{f}.onnx", args.samples)) for f in FORMS}
            choice = cpu_form.choose({f: r.onnx_path.read_bytes() for f, r in results.items()}, fp32=fp32.read_bytes(),
                                     batch=8, threads=1)
            choices[name] = choice.to_dict()
            paths = {"fp32": fp32} | {f: r.onnx_path for f, r in results.items()}
            runners = {k: OnnxRuntimeRunner(p, threads=1) for k, p in paths.items()}
            for r in runners.values():
                r.activate()
            try:
                for batch in (1, 8):
                    x = np.random.default_rng(batch).standard_normal((batch, 3, 224, 224), dtype=np.float32)
                    t = interleaved({k: (lambda r=r: r.infer_one(x)) for k, r in runners.items()}, rounds=args.rounds)
                    row = {"model": name, "batch": batch, "fp32_p50_ms": t["fp32"]["p50_ms"], "chosen": choice.choice}
                    for f in FORMS:
                        row[f"{f}_p50_ms"] = t[f]["p50_ms"]
                        row[f"{f}_speedup"] = t["fp32"]["p50_ms"] / t[f]["p50_ms"]
                        row[f"{f}_cosine_min"] = results[f].manifest["accuracy"]["vs_fp32"]["cosine_min"]
                    row["chosen_speedup"] = row[f"{choice.choice}_speedup"]
                    latency_rows.append(row)
            finally:
                for r in runners.values():
                    r.deactivate()
            b8 = latency_rows[-1]
            verdicts[name] = b8["chosen_speedup"] >= TARGET_SPEEDUP
            console.print(f"{name}: {time.perf_counter() - t_model:.0f} s; chose {choice.choice} ({choice.reason}); "
                          f"batch 8 {b8['chosen_speedup']:.2f}x")
            for method in methods:
                res = quantize(int8_config(fp32, data, "trt", tmp / f"{name}.{method}.onnx", args.samples, method))
                m = res.manifest
                calib_rows.append({"model": name, "method": method,
                                   "statistics_s": step_seconds(m, "activation statistics"),
                                   "from_cache": m["quantization"]["statistics"]["cached"],
                                   "ranges_s": step_seconds(m, "ranges"),
                                   "cosine": m["accuracy"]["vs_fp32"]["cosine_mean"]})

    table = Table(title=f"ONNX Runtime {_ort_version()} CPU, 1 thread, interleaved p50 ms (speed-up over FP32); "
                        f"{platform.processor() or platform.machine()}, 1-min load {load_start:.2f} at start")
    for col in ("model", "batch", "FP32", "INT8 ort-cpu", "INT8 trt (FP32 parts)", "chosen", "cosine min (chosen)",
                f">= {TARGET_SPEEDUP}x at batch 8"):
        table.add_column(col, justify="left" if col in ("model", "chosen") else "right")
    for r in latency_rows:
        verdict = ""
        if r["batch"] == 8:
            verdict = "PASS" if r["chosen_speedup"] >= TARGET_SPEEDUP else f"FAIL ({r['chosen_speedup']:.2f}x)"
        table.add_row(r["model"], str(r["batch"]), f"{r['fp32_p50_ms']:.1f}",
                      *(f"{r[f'{f}_p50_ms']:.1f} ({r[f'{f}_speedup']:.2f}x)" for f in FORMS),
                      f"{r['chosen']} {r['chosen_speedup']:.2f}x", f"{r[r['chosen'] + '_cosine_min']:.4f}", verdict)
    console.print(table)
    table = Table(title="CPU form pick (vitdeploy.calib.cpu_form.choose: batch 8, 1 thread, a few seconds)")
    for col in ("model", "ort-cpu p50 ms", "trt p50 ms", "FP32 p50 ms", "chosen", "why", "seconds"):
        table.add_column(col, justify="left" if col in ("model", "chosen", "why") else "right")
    for name, c in choices.items():
        table.add_row(name, *(f"{c['timings'][f]['p50_ms']:.1f}" for f in FORMS), f"{c['fp32_p50_ms']:.1f}", c["choice"],
                      c["reason"], f"{c['seconds']:.1f}")
    console.print(table)
    if calib_rows:
        table = Table(title=f"calibration time per method ({args.samples} samples; statistics collected once, then cached)")
        for col in ("model", "method", "statistics s", "ranges s", "cosine vs FP32"):
            table.add_column(col, justify="left" if col in ("model", "method") else "right")
        for r in calib_rows:
            table.add_row(r["model"], r["method"], f"{r['statistics_s']:.2f}" + (" (cache)" if r["from_cache"] else ""),
                          f"{r['ranges_s']:.2f}", f"{r['cosine']:.4f}")
        console.print(table)
    passed = [n for n, ok in verdicts.items() if ok]
    console.print(f"{len(passed)}/{len(verdicts)} models reach {TARGET_SPEEDUP}x at batch 8 with the chosen form"
                  + (f" (below: {', '.join(n for n, ok in verdicts.items() if not ok)})" if len(passed) < len(verdicts) else "")
                  + f"; {time.perf_counter() - t_start:.0f} s in all")
    if load_start > (os.cpu_count() or 1) / 2:
        console.print(f"warning: 1-min load average {load_start:.2f} at the start on {os.cpu_count()} cores: "
                      "other work shares the CPU; interleaving spreads it over all forms but latencies are noisy")
    if args.json:
        args.json.write_text(json.dumps({"latency": latency_rows, "choices": choices, "calibration": calib_rows,
                                         "load_average_start": load_start}, indent=2))


def _ort_version() -> str:
    import onnxruntime

    return onnxruntime.__version__


if __name__ == "__main__":
    main()
