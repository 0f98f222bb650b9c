"""`vitdeploy deploy`: export -> precisions -> engines (if TensorRT) -> validate -> bench -> report."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer
from rich.markup import escape

from vitdeploy.cli import tables
from vitdeploy.cli.console import prose, console, print_json, print_step, progress, Tracker
from vitdeploy.cli.options import (CALIB_SAMPLES, Devices, DynamicBatch, Holdout, InputSize, Iterations, Json, Mean, Method,
                                   NonStrict, NumClasses, OnError, Samples, Std, ThresholdSpec, Threads, check_holdout,
                                   preprocessing_options)
from vitdeploy.core.errors import ParityError

if TYPE_CHECKING:
    from vitdeploy.core.document import Table as DocTable

HELP = """The whole job in one command: export the model, write FP16 and INT8 ONNX, build TensorRT
engines when TensorRT is installed (ONNX Runtime on the CPU otherwise), validate every precision
against FP32, benchmark them, and write OUT/report.md, report.json and report.png.

Resumable: a step whose inputs did not change is not redone (--force redoes
everything). Without --calib a built-in synthetic sample is used, and the
report says loudly that its INT8 figures mean nothing.

Without --data the verdicts are judged on calibration images held out from
calibration (--holdout). The steps' options keep their names and defaults.

With --devices devices.toml: export and quantize here, then build, validate
and bench on every device listed, in parallel, over ssh; one report with a
column per device. A device that fails does not stop the others; the exit
code is then the first failed device's (11: unreachable).

Examples:

  vitdeploy deploy deit_tiny_patch16_224 --checkpoint deit_tiny.pth \\
      --calib val_images/ --out out/deit_tiny

  vitdeploy deploy t2t_vit_7 --precisions fp32,int8 --batch 1,8,32 \\
      --out out/t2t7

  vitdeploy deploy deit_tiny_patch16_224 --calib val_images/ \\
      --devices devices.toml --out out/fleet

  vitdeploy deploy deit_tiny_patch16_224 --checkpoint deit_tiny.pth \\
      --calib val_images/ --holdout 1000 --max-drop 0.5 --out out/budget

  vitdeploy deploy mypkg.nets:build --input-size 3,224,224 \\
      --mean 0.5,0.5,0.5 --std 0.5,0.5,0.5 --calib calib/ --out out/mine
"""


def deploy(
    model: Annotated[str, typer.Argument(help="Registered name or package.module:function.")],
    checkpoint: Annotated[Optional[Path], typer.Option("--checkpoint", "-c", help="Model weights.")] = None,
    calib: Annotated[Optional[Path], typer.Option("--calib", help="Calibration data: image folder, .txt list or .npy/.npz.")] = None,
    data: Annotated[Optional[Path], typer.Option("--data", help="Validation data (default: the calibration images held out from calibration).")] = None,
    precisions: Annotated[str, typer.Option(help="Comma list of fp32, fp16, int8.")] = "fp32,fp16,int8",
    batch: Annotated[str, typer.Option("--batch", help="Batch sizes to benchmark, e.g. 1,8.")] = "1,8",
    dynamic_batch: DynamicBatch = None,
    out: Annotated[Path, typer.Option("--out", help="Output folder.")] = Path("vitdeploy_out"),
    method: Method = "percentile",
    samples: Samples = CALIB_SAMPLES,
    holdout: Holdout = None,
    max_drop: Annotated[Optional[float], typer.Option("--max-drop", metavar="POINTS", help="INT8: the accuracy budget, in points of --metric: the fewest layers kept float that meet it (quantize --max-drop).")] = None,
    metric: Annotated[Optional[str], typer.Option("--metric", metavar="METRIC", help="--max-drop's measure: top1 | agreement | cosine (as quantize --metric).")] = None,
    thresholds: ThresholdSpec = None,
    on_error: OnError = "skip",
    qdq_form: Annotated[str, typer.Option(
        "--qdq-form", metavar="FORM",
        help="INT8 Q/DQ form: auto (trt when engines are built, else ort-cpu) | trt | ort-cpu (as quantize --qdq-form).")] = "auto",
    int8_target: Annotated[Optional[str], typer.Option("--int8-target", hidden=True, help="Deprecated: --qdq-form.")] = None,
    engines: Annotated[str, typer.Option(help="auto (when TensorRT is installed) | always | never.")] = "auto",
    iterations: Iterations = 50,
    threads: Threads = 1,
    input_size: InputSize = None,
    mean: Mean = None,
    std: Std = None,
    num_classes: NumClasses = None,
    non_strict: NonStrict = False,
    devices: Devices = None,
    force: Annotated[bool, typer.Option("--force", "-f", help="Redo every step, even unchanged ones.")] = False,
    as_json: Json = False,
) -> None:
    from vitdeploy.bench.config import parse_batches
    from vitdeploy.cli.console import renamed
    from vitdeploy.core.batch import BatchRange
    from vitdeploy.pipeline.fleet import check_fleet, load_devices
    from vitdeploy.pipeline.run import DeployConfig, run_deploy
    from vitdeploy.core.steps import Steps

    config = DeployConfig(model=model, out=out, checkpoint=checkpoint, calib=calib, data=data,
                          precisions=tuple(p.strip() for p in precisions.split(",") if p.strip()),
                          batches=parse_batches(batch), dynamic_batch=BatchRange.parse(dynamic_batch) if dynamic_batch else None,
                          int8_target=renamed("--qdq-form", qdq_form, "--int8-target", int8_target),
                          method=method, samples=samples, holdout=holdout, thresholds=thresholds,
                          max_drop=max_drop, metric=metric,
                          on_error=on_error, iterations=iterations, threads=threads, engines=engines,
                          preprocessing=preprocessing_options(input_size, mean, std),
                          num_classes=num_classes, strict_checkpoint=not non_strict,
                          force=force, devices=load_devices(devices) if devices else ())
    from vitdeploy.data.cache import run_scope

    steps = Steps(on_end=print_step)
    with run_scope():  # the holdout check's listing of the folder is the run's one walk
        check_holdout(holdout, calib)
        with progress(transient=True) as bar:
            report = run_deploy(config, steps, Tracker(bar))
    if as_json:
        print_json(report)
    elif devices:
        _fleet_table(report, out)
    else:
        _table(report, out)
    if devices:
        check_fleet(report, out)
        return
    failed = [r for r in report["precisions"] if r["validation"].startswith("FAIL")]
    if failed and report["gated"]:
        raise ParityError(f"{', '.join(r['precision'] for r in failed)} failed validation; see {out / 'report.md'}")


def _table(r: dict, out: Path) -> None:
    from vitdeploy.pipeline.report import summary_table

    _summary(r, out, [summary_table(r)])


def _fleet_table(r: dict, out: Path) -> None:
    """A column per device (three per table), a row per condition and per precision's figures;
    each failed device's message below."""
    from vitdeploy.pipeline.report import fleet_tables

    failed = [f"[red]{escape(d['name'])} failed[/] (exit {d['error']['exit_code']}): {escape(d['error']['message'])}"
              for d in r["devices"] if d["status"] == "failed"]
    _summary(r, out, fleet_tables(r), failed)


def _summary(r: dict, out: Path, shown: Sequence[DocTable], failed: Sequence[str] = ()) -> None:
    """What both summaries print around their tables: the notes and warnings above; the legend
    (the last table's footnote, dimmed), each failed device's line, the images the verdicts were
    judged on and the report's files below."""
    for n in r["notes"]:
        console.print(f"[bold yellow]note:[/] {escape(n)}")
    for w in r["warnings"]:
        console.print(f"[yellow]warning:[/] {escape(w)}")
    for table in shown:
        tables.print_table(table)
    for line in failed:
        console.print(line, soft_wrap=True, highlight=False)
    console.print(f"verdicts judged on {escape(r['validation_data']['judged_on'])}")
    console.print(f"report: {out / 'report.md'}, {out / 'report.json'}, {out / 'report.png'}", soft_wrap=True)


def register(app: typer.Typer) -> None:
    app.command("deploy", help=prose(HELP))(deploy)
