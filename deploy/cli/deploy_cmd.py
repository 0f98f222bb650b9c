"""`vitdeploy deploy`: export -> precisions -> engines (if TensorRT) -> validate -> bench -> report."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape
from rich.table import Table

from vitdeploy.cli.console import console, print_json, print_step, progress, tracker
from vitdeploy.cli.options import Iterations, Json, Threads
from vitdeploy.errors import ParityError

HELP = """The whole job in one command: export the model, write FP16 and INT8 ONNX, build TensorRT
engines when TensorRT is installed (ONNX Runtime on the CPU otherwise), validate every precision
against FP32, benchmark them, and write OUT/report.md, report.json and report.png.

Resumable: a step whose inputs did not change is not redone (--force redoes everything).
Without --calib a built-in synthetic sample is used, and the report says loudly that its INT8
figures mean nothing.

Examples:

  vitdeploy deploy deit_tiny_patch16_224 --checkpoint deit_tiny.pth --calib val_images/ --out out/deit_tiny

  vitdeploy deploy t2t_vit_7 --precisions fp32,int8 --batch 1,8,32 --out out/t2t7

  vitdeploy deploy mypkg.nets:build --input-size 3,224,224 --calib calib.npz --out out/mine
"""


def deploy(
    model: Annotated[str, typer.Argument(help="Registered name or package.module:function.")],
    checkpoint: Annotated[Optional[Path], typer.Option("--checkpoint", "-c", help="Model weights.")] = None,
    calib: Annotated[Optional[Path], typer.Option("--calib", help="Calibration data: image folder, .txt list or .npy/.npz.")] = None,
    data: Annotated[Optional[Path], typer.Option("--data", help="Validation data (default: the calibration data).")] = None,
    precisions: Annotated[str, typer.Option(help="Comma list of fp32, fp16, int8.")] = "fp32,fp16,int8",
    batch: Annotated[str, typer.Option("--batch", help="Batch sizes to benchmark, e.g. 1,8.")] = "1,8",
    out: Annotated[Path, typer.Option("--out", help="Output folder.")] = Path("vitdeploy_out"),
    method: Annotated[str, typer.Option(help="INT8 calibration method.")] = "percentile",
    int8_target: Annotated[str, typer.Option(help="auto (trt when engines are built, else ort-cpu) | trt | ort-cpu.")] = "auto",
    engines: Annotated[str, typer.Option(help="auto (when TensorRT is installed) | always | never.")] = "auto",
    iterations: Iterations = 50,
    threads: Threads = 1,
    input_size: Annotated[Optional[str], typer.Option(help="C,H,W for models outside the zoo.")] = None,
    force: Annotated[bool, typer.Option("--force", "-f", help="Redo every step, even unchanged ones.")] = False,
    as_json: Json = False,
) -> None:
    from vitdeploy.bench import parse_batches
    from vitdeploy.cli.export_cmd import _floats
    from vitdeploy.pipeline import DeployConfig, run_deploy
    from vitdeploy.steps import Steps

    size = _floats(input_size, 3, "--input-size")
    config = DeployConfig(model=model, out=out, checkpoint=checkpoint, calib=calib, data=data,
                          precisions=tuple(p.strip() for p in precisions.split(",") if p.strip()),
                          batches=parse_batches(batch), int8_target=int8_target, method=method, iterations=iterations,
                          threads=threads, engines=engines, input_size=tuple(int(v) for v in size) if size else None,
                          force=force)
    steps = Steps(on_end=print_step)
    with progress(transient=True) as bar:
        report = run_deploy(config, steps, tracker(bar))
    if as_json:
        print_json(report)
    else:
        _table(report, out)
    failed = [r for r in report["precisions"] if r["validation"].startswith("FAIL")]
    if failed and report["gated"]:
        raise ParityError(f"{', '.join(r['precision'] for r in failed)} failed validation; see {out / 'report.md'}")


def _table(r: dict, out: Path) -> None:
    for n in r["notes"]:
        console.print(f"[bold yellow]note:[/] {escape(n)}")
    backends = sorted({row["backend"] for row in r["precisions"]})
    table = Table(title=f"{r['model']} on {', '.join(backends)}: accuracy and latency", header_style="bold")
    cols = ["precision", "top-1", "drop", "cosine"] + [f"p50 ms @{b}" for b in r["batches"]] + ["validation"]
    for c in cols:
        table.add_column(c, justify="left" if c in ("precision", "validation") else "right", no_wrap=c != "validation")
    for row in r["precisions"]:
        cells = [row["precision"], "-" if row["top1"] is None else f"{row['top1']:.2%}",
                 "-" if row["top1_drop_points"] is None else f"{row['top1_drop_points']:+.2f}", f"{row['cosine']:.4f}"]
        for b in r["batches"]:
            lat = row["latency"].get(str(b), {})
            cells.append(f"{lat.get('p50_ms', float('nan')):.1f} ({lat.get('speedup') or 1.0:.2f}x)")
        cells.append(row["validation"] if row["validation"] != "reference" else "[dim]reference[/]")
        table.add_row(*cells)
    console.print(table)
    console.print(f"report: {out / 'report.md'}, {out / 'report.json'}, {out / 'report.png'}")


def register(app: typer.Typer) -> None:
    app.command("deploy", help=HELP)(deploy)
