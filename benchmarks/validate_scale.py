"""`vitdeploy validate` at dataset scale (issue 16): peak RSS and images/s per artifact at N = 500 and
N = 5,000 generated JPEGs, against ONNX Runtime's own rate for the same model, batch and threads.

Each N runs in a fresh subprocess (clean peak RSS, ru_maxrss): validate of the model against itself,
the reference pass and the candidate pass each timed on its own (an artifact's images/s = images /
seconds of its pass, decoding included), and ONNX Runtime alone (session.run on the same preprocessed
batches, a session of its own) before and after each pass, in the same process. Verdicts: per N, each
artifact's images/s >= 90% of ONNX Runtime's; peak RSS at the largest N within 1.25x of the smallest's.

    python benchmarks/validate_scale.py                                  # deit_tiny_patch16_224, random weights
    python benchmarks/validate_scale.py --model vit_tiny_test            # 32 px: decoding sets the rate
    python benchmarks/validate_scale.py --sizes 500 5000 --batch 8 --threads 1

Decoding runs in threads beside inference: leave it a core (on a 2-core machine: --threads 1). Where
decoding an image costs more than inferring it (32 px), decoding sets the rate, not the runtime.
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
from vitdeploy.core.preprocessing import Preprocessing
from vitdeploy.data.batches import iter_batches
from vitdeploy.data.preprocess import resolve_preprocess
from vitdeploy.data.sampling import sample_indices
from vitdeploy.data.sources import open_dataset
from vitdeploy.runners.ort import OnnxRuntimeRunner
model, data, n, batch, threads, cache, seconds = sys.argv[1:8]
n, batch, threads, seconds = int(n), int(batch), int(threads), float(seconds)
ds = open_dataset(data)
pre = resolve_preprocess(Preprocessing.from_manifest(json.loads(Path(model).with_suffix(".json").read_text())), ds)
first = sample_indices(len(ds), n, 0)[:2 * batch]  # the validated images' first two batches (validate's seed 0)
batches = [x for x, _ in iter_batches(ds, pre, first, batch)]
ort = {"images": 0, "seconds": 0.0}
times = {}

def ort_alone():  # session.run alone on the same preprocessed batches for `seconds` (a session of its own, closed after)
    with OnnxRuntimeRunner(model, threads=threads) as r:
        name = r.session.get_inputs()[0].name
        for x in batches:  # warm-up, not timed
            r.session.run(None, {name: x})
        t = time.perf_counter()
        while time.perf_counter() - t < seconds:
            for x in batches:
                r.session.run(None, {name: x})
                ort["images"] += len(x)
        ort["seconds"] += time.perf_counter() - t

def timed(name, fn):  # a pass, between two stretches of ONNX Runtime alone
    def run(*args, **kw):
        ort_alone()
        t = time.perf_counter()
        try:
            return fn(*args, **kw)
        finally:
            times[name] = time.perf_counter() - t
            ort_alone()
    return run

V.reference_pass = timed("reference", V.reference_pass)
V.candidate_pass = timed("candidate", V.candidate_pass)
doc = V.validate(V.ValidateConfig(model, (model,), Path(data), samples=n, batch_size=batch, threads=threads,
                                  cache_dir=Path(cache)))
samples = doc["data"]["samples"]
print(json.dumps({"samples": samples, "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "ort_ips": ort["images"] / ort["seconds"], **{f"{k}_ips": samples / v for k, v in times.items()}}))
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
    ap.add_argument("--model", default="deit_tiny_patch16_224", help="zoo model, exported with random weights")
    ap.add_argument("--sizes", type=int, nargs="+", default=[500, 5000])
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--ort-seconds", type=float, default=5.0, help="each of the 4 stretches of ONNX Runtime alone")
    args = ap.parse_args()

    from vitdeploy.export import ExportConfig, export

    with tempfile.TemporaryDirectory(prefix="validate_scale_") as tmp:
        root = Path(tmp)
        os.environ["VITDEPLOY_CACHE"] = str(root / "cache")
        onnx = export(ExportConfig(args.model, output=root / "model.onnx")).onnx_path
        shape = json.loads(onnx.with_suffix(".json").read_text())["preprocessing"]["input_size"]
        data = _images(root / "images", max(args.sizes), max(40, int(shape[-1] * 256 / 224)))
        os.sync()  # the JPEGs' writeback not in the measured passes
        print(f"{args.model} ({shape[-1]} px, random weights), batch {args.batch}, {args.threads} runtime thread(s), "
              f"{os.cpu_count()} cores; {max(args.sizes)} JPEGs of {data.joinpath('00000.jpg').stat().st_size} bytes")
        print("img/s per artifact = images / seconds of its pass; ORT alone = session.run on the same preprocessed "
              "batches, same process, before and after each pass")
        rows = [(n, _run(VALIDATE, onnx, data, n, args.batch, args.threads, root / "vcache", args.ort_seconds))
                for n in args.sizes]
        print(f"{'N':>6} | {'peak RSS MB':>11} | {'ORT alone':>9} | {'reference':>15} | {'candidate':>15} | verdict")
        for n, v in rows:
            ratios = [v[f"{k}_ips"] / v["ort_ips"] for k in ("reference", "candidate")]
            cells = " | ".join(f"{v[f'{k}_ips']:>6.0f} ({r:.3f}x)" for k, r in zip(("reference", "candidate"), ratios))
            print(f"{n:>6} | {v['rss_mb']:>11.0f} | {v['ort_ips']:>9.0f} | {cells} | "
                  f"{'ok' if min(ratios) >= 0.9 else 'FAIL'} (>= 0.90x)")
        growth = rows[-1][1]["rss_mb"] / rows[0][1]["rss_mb"]
        print(f"peak RSS {rows[-1][0]} / {rows[0][0]}: {growth:.3f}x ({'ok' if growth <= 1.25 else 'FAIL'}, <= 1.25x)")


if __name__ == "__main__":
    main()
