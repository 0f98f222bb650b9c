"""`vitdeploy validate` at dataset scale (issue 16): peak RSS and images/s per artifact at N = 500 and
N = 5,000 generated JPEGs, against ONNX Runtime's own rate for the same model, batch and threads.

Each measurement runs in a fresh subprocess (clean peak RSS, ru_maxrss): validate of the model against
itself (reference pass + one candidate pass, each timed on its own), and ONNX Runtime alone on one
preprocessed batch fed over and over. Verdicts: peak RSS at 5,000 within 1.25x of the one at 500, and
each artifact's images/s >= 90% of ONNX Runtime's.

    python benchmarks/validate_scale.py                                  # vit_tiny_test, 32 px
    python benchmarks/validate_scale.py --model deit_tiny_patch16_224    # 224 px, random weights
    python benchmarks/validate_scale.py --sizes 500 5000 --batch 8 --threads 1

Decoding runs in threads beside inference: leave it a core (on a 2-core machine: --threads 1).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

VALIDATE = """
import json, resource, sys, time
from pathlib import Path
import vitdeploy.validate as V
model, data, n, batch, threads, cache = sys.argv[1:7]
times = {}
def timed(name, fn):
    def run(*args, **kw):
        t = time.perf_counter()
        try:
            return fn(*args, **kw)
        finally:
            times[name] = time.perf_counter() - t
    return run
V._reference_pass = timed("reference", V._reference_pass)
V._candidate_pass = timed("candidate", V._candidate_pass)
t = time.perf_counter()
doc = V.validate(V.ValidateConfig(model, (model,), Path(data), samples=int(n), batch_size=int(batch),
                                  threads=int(threads), cache_dir=Path(cache)))
wall = time.perf_counter() - t
samples = doc["data"]["samples"]
print(json.dumps({"samples": samples, "wall_s": wall, "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  **{f"{k}_ips": samples / v for k, v in times.items()}}))
"""

ORT = """
import json, resource, sys, time
import numpy as np
from vitdeploy.runners.ort import OnnxRuntimeRunner
model, batch, threads, shape, seconds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), json.loads(sys.argv[4]), float(sys.argv[5])
x = np.random.default_rng(0).normal(size=(batch, *shape)).astype(np.float32)
with OnnxRuntimeRunner(model, threads=threads) as r:
    for _ in range(3):
        r.infer_one(x)
    n, t = 0, time.perf_counter()
    while time.perf_counter() - t < seconds:
        r.infer_one(x)
        n += batch
    ips = n / (time.perf_counter() - t)
print(json.dumps({"ort_ips": ips, "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def _run(script: str, *args: object) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", script, *map(str, args)], check=False, capture_output=True, text=True, env=env)
    if out.returncode:
        sys.exit(f"benchmark subprocess failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _images(folder: Path, n: int, side: int) -> Path:
    """n random-content JPEGs of side x side*1.2 pixels (a little larger than the model's input)."""
    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    base = rng.integers(0, 255, (side, int(side * 1.2), 3), dtype=np.uint8)
    for i in range(n):  # a shifted, noisy copy: realistic JPEG sizes without generating n random images
        img = np.roll(base, i, axis=1) ^ rng.integers(0, 16, base.shape, dtype=np.uint8)
        Image.fromarray(img).save(folder / f"{i:05d}.jpg", quality=90)
    return folder


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="vit_tiny_test", help="zoo model, exported with random weights")
    ap.add_argument("--sizes", type=int, nargs="+", default=[500, 5000])
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--ort-seconds", type=float, default=10.0)
    args = ap.parse_args()

    from vitdeploy.export import ExportConfig, export

    with tempfile.TemporaryDirectory(prefix="validate_scale_") as tmp:
        root = Path(tmp)
        os.environ["VITDEPLOY_CACHE"] = str(root / "cache")
        onnx = export(ExportConfig(args.model, output=root / "model.onnx")).onnx_path
        shape = json.loads(onnx.with_suffix(".json").read_text())["preprocessing"]["input_size"]
        data = _images(root / "images", max(args.sizes), max(40, int(shape[-1] * 256 / 224)))
        print(f"{args.model} ({shape[-1]} px, random weights), batch {args.batch}, {args.threads} runtime thread(s), "
              f"{os.cpu_count()} cores; {max(args.sizes)} JPEGs of {data.joinpath('00000.jpg').stat().st_size} bytes")
        rows = []
        for n in args.sizes:
            v = _run(VALIDATE, onnx, data, n, args.batch, args.threads, root / "vcache")
            o = _run(ORT, onnx, args.batch, args.threads, json.dumps(shape), args.ort_seconds)
            rows.append((n, v, o))
        print(f"{'N':>6} | {'peak RSS MB':>11} | {'ref img/s':>9} | {'cand img/s':>10} | {'ORT img/s':>9} | "
              f"{'ref/ORT':>7} | {'cand/ORT':>8} | {'wall s':>6}")
        for n, v, o in rows:
            print(f"{n:>6} | {v['rss_mb']:>11.0f} | {v['reference_ips']:>9.0f} | {v['candidate_ips']:>10.0f} | "
                  f"{o['ort_ips']:>9.0f} | {v['reference_ips'] / o['ort_ips']:>7.2f} | "
                  f"{v['candidate_ips'] / o['ort_ips']:>8.2f} | {v['wall_s']:>6.1f}")
        growth = rows[-1][1]["rss_mb"] / rows[0][1]["rss_mb"]
        worst = min(min(v["reference_ips"], v["candidate_ips"]) / o["ort_ips"] for _, v, o in rows)
        print(f"peak RSS {rows[-1][0]} / {rows[0][0]}: {growth:.3f}x ({'ok' if growth <= 1.25 else 'FAIL'}, <= 1.25x); "
              f"slowest artifact {worst:.2f}x ONNX Runtime ({'ok' if worst >= 0.9 else 'FAIL'}, >= 0.90x)")


if __name__ == "__main__":
    main()
