"""INT8 on the CPU: ONNX Runtime latency FP32 vs INT8 (--target ort-cpu) at batch 1 and 8,
interleaved in one process on one thread, and calibration time per method.

    python benchmarks/quantize_speed.py                       # DeiT-small and T2T-ViT-14
    python benchmarks/quantize_speed.py --models deit_tiny_patch16_224 --samples 64
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).parent))

import numpy as np  # noqa: E402
from common import interleaved  # noqa: E402
from PIL import Image  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from vitdeploy.calib.methods import METHODS  # noqa: E402
from vitdeploy.calib.quantize import QuantizeConfig, quantize  # noqa: E402
from vitdeploy.export import BatchRange, ExportConfig, export  # noqa: E402
from vitdeploy.runners.ort import OnnxRuntimeRunner  # noqa: E402


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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["deit_small_patch16_224", "t2t_vit_14"])
    ap.add_argument("--samples", type=int, default=128)
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    console = Console(width=None if sys.stdout.isatty() else 160)
    latency_rows, calib_rows = [], []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        os.environ["VITDEPLOY_CACHE"] = str(tmp / "cache")
        data = calibration_folder(tmp / "calib", args.samples + 16)
        for name in args.models:
            fp32 = export(ExportConfig(name, output=tmp / f"{name}.onnx", batch=BatchRange(1, 1, 8), targets=("trt10",))).onnx_path
            for method in METHODS:
                res = quantize(QuantizeConfig(model=fp32, precision="int8", calib=data, method=method, samples=args.samples,
                                              holdout=16, target="trt", output=tmp / f"{name}.{method}.onnx", force=True))
                m = res.manifest
                calib_rows.append({"model": name, "method": method,
                                   "statistics_s": step_seconds(m, "activation statistics"),
                                   "from_cache": m["quantization"]["statistics"]["cached"],
                                   "ranges_s": step_seconds(m, "ranges"),
                                   "cosine": m["accuracy"]["vs_fp32"]["cosine_mean"]})
            int8 = quantize(QuantizeConfig(model=fp32, precision="int8", calib=data, method="percentile",
                                           samples=args.samples, holdout=16, target="ort-cpu",
                                           output=tmp / f"{name}.ort.onnx", force=True))
            with OnnxRuntimeRunner(fp32, threads=1) as a, OnnxRuntimeRunner(int8.onnx_path, threads=1) as b:
                for batch in (1, 8):
                    x = np.random.default_rng(batch).standard_normal((batch, 3, 224, 224), dtype=np.float32)
                    t = interleaved({"fp32": lambda: a.infer_one(x), "int8": lambda: b.infer_one(x)}, rounds=args.rounds)
                    latency_rows.append({"model": name, "batch": batch, "fp32_p50_ms": t["fp32"]["p50_ms"],
                                         "int8_p50_ms": t["int8"]["p50_ms"],
                                         "speedup": t["fp32"]["p50_ms"] / t["int8"]["p50_ms"],
                                         "int8_cosine": int8.manifest["accuracy"]["vs_fp32"]["cosine_mean"]})
    table = Table(title="ONNX Runtime CPU, 1 thread, FP32 vs INT8 (ort-cpu: uint8 activations), interleaved")
    for col in ("model", "batch", "FP32 p50 ms", "INT8 p50 ms", "speedup", "INT8 cosine"):
        table.add_column(col, justify="left" if col == "model" else "right")
    for r in latency_rows:
        table.add_row(r["model"], str(r["batch"]), f"{r['fp32_p50_ms']:.1f}", f"{r['int8_p50_ms']:.1f}",
                      f"{r['speedup']:.2f}x", f"{r['int8_cosine']:.4f}")
    console.print(table)
    table = Table(title=f"calibration time per method ({args.samples} samples; statistics collected once, then cached)")
    for col in ("model", "method", "statistics s", "ranges s", "cosine vs FP32"):
        table.add_column(col, justify="left" if col in ("model", "method") else "right")
    for r in calib_rows:
        table.add_row(r["model"], r["method"], f"{r['statistics_s']:.2f}" + (" (cache)" if r["from_cache"] else ""),
                      f"{r['ranges_s']:.2f}", f"{r['cosine']:.4f}")
    console.print(table)
    if args.json:
        args.json.write_text(json.dumps({"latency": latency_rows, "calibration": calib_rows}, indent=2))


if __name__ == "__main__":
    main()
