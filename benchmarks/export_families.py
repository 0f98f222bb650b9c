"""Per family: export time, node counts raw/simplified, and ORT-CPU vs PyTorch eager latency
at batch 1 on one thread, interleaved in one process.

    python benchmarks/export_families.py                 # smallest official variant of each family
    python benchmarks/export_families.py --models t2t_vit_14 convit_small --rounds 50
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
import torch  # noqa: E402
from common import interleaved  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from vitdeploy.export import BatchRange, ExportConfig, export  # noqa: E402
from vitdeploy.runners.ort import OnnxRuntimeRunner  # noqa: E402

DEFAULT = ["deit_tiny_patch16_224", "t2t_vit_7", "convit_tiny", "SReT_T", "ceit_tiny_patch16_224"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=DEFAULT)
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args()
    torch.set_num_threads(1)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models:
            res = export(ExportConfig(name, output=Path(tmp) / f"{name}.onnx", batch=BatchRange(1, 1, 8)))
            m = res.manifest
            export_s = next(s["seconds"] for s in m["steps"] if s["name"].startswith("export (") and s["status"] == "ok")
            total_s = sum(s["seconds"] for s in m["steps"])
            from vitdeploy.models import create_model

            model = create_model(name)
            x = np.random.default_rng(0).standard_normal((1, *m["input"]["shape"][1:]), dtype=np.float32)
            xt = torch.from_numpy(x)
            with OnnxRuntimeRunner(res.onnx_path, threads=1) as ort_runner, torch.inference_mode():
                t = interleaved({"torch": lambda: model(xt), "ort": lambda: ort_runner.infer_one(x)}, rounds=args.rounds)
            rows.append({"model": name, "exporter": m["export"]["exporter"], "export_s": export_s, "pipeline_s": total_s,
                         "nodes_raw": m["graph"]["nodes_raw"], "nodes": m["graph"]["nodes"],
                         "torch_p50_ms": t["torch"]["p50_ms"], "ort_p50_ms": t["ort"]["p50_ms"],
                         "speedup": t["torch"]["p50_ms"] / t["ort"]["p50_ms"]})
    table = Table(title="export per family (batch 1, 1 thread, interleaved)")
    for col in ("model", "exporter", "export s", "all steps s", "nodes raw", "nodes", "torch p50 ms", "ORT p50 ms", "ORT speedup"):
        table.add_column(col, justify="left" if col in ("model", "exporter") else "right")
    for r in rows:
        table.add_row(r["model"], r["exporter"], f"{r['export_s']:.1f}", f"{r['pipeline_s']:.1f}", str(r["nodes_raw"]),
                      str(r["nodes"]), f"{r['torch_p50_ms']:.1f}", f"{r['ort_p50_ms']:.1f}", f"{r['speedup']:.2f}x")
    Console(width=None if sys.stdout.isatty() else 160).print(table)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
