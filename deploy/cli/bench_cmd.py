"""`vitdeploy bench`: latency and throughput of artifacts side by side, with their conditions."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape

from vitdeploy.cli import tables
from vitdeploy.cli.console import prose, console, err_console, print_json, progress
from vitdeploy.cli.options import Force, Iterations, Json, Remote, RemotePython, Threads, Warmup
from vitdeploy.core.errors import UsageError

HELP = """Time ONNX files, TensorRT engines or zoo models side by side at several batch sizes:
p50/p90/p99/mean/std latency, throughput (images/s) and the speedup over the first artifact,
with the machine's conditions (CPU, threads, load, versions, GPU clocks, Jetson power mode)
recorded beside every result.

Artifacts are timed interleaved (one call of each per round) so machine load hits all alike. """ \
    """On a GPU runner that exposes CUDA-event timing, both "with copies" and "device only" times are reported. """ \
    """Inputs are seeded random arrays of each artifact's input shape.

Examples:

  vitdeploy bench deit_tiny.onnx deit_tiny.int8.onnx --batch 1,8,32 \\
      --threads 1

  vitdeploy bench deit_tiny.trt.engine deit_tiny.int8.trt.engine \\
      --batch 1,8 --duration 10 --report reports/orin

  vitdeploy bench deit.onnx deit.int8.onnx --accuracy out/validate.json \\
      --report reports/cpu

  vitdeploy bench deit_tiny_patch16_224 deit_tiny.onnx --iterations 50 \\
      --json > bench.json
"""


def bench(
    artifacts: Annotated[list[str], typer.Argument(help="One or more .onnx / .engine files or zoo model names; the first is the speedup baseline.", show_default=False)],
    backend: Annotated[Optional[str], typer.Option(help="torch | torch-cuda | ort-cpu | ort-cuda | ort-trt | trt.", show_default="ort-cpu for .onnx, trt for engines, torch for zoo names")] = None,
    batch: Annotated[str, typer.Option("--batch", "-b", help="Batch sizes, comma-separated.")] = "1",
    warmup: Warmup = 10,
    iterations: Iterations = None,
    duration: Annotated[Optional[float], typer.Option(help="Instead of --iterations: time about S seconds per artifact and batch.", show_default=False)] = None,
    threads: Threads = None,
    interleave: Annotated[bool, typer.Option("--interleave/--no-interleave", help="Round-robin the artifacts per call (default) or time them one after another.")] = True,
    seed: Annotated[int, typer.Option(help="Seed of the random inputs.")] = 0,
    report: Annotated[Optional[Path], typer.Option("--report", help="Folder for bench.json, bench.md and bench.png.", show_default=False)] = None,
    accuracy: Annotated[Optional[Path], typer.Option("--accuracy", help="validate.json from `vitdeploy validate --report`: adds accuracy to the report and the accuracy-vs-speedup plot.", show_default=False)] = None,
    remote: Remote = None,
    remote_python: RemotePython = None,
    force: Force = False,
    as_json: Json = False,
) -> None:
    from vitdeploy.bench import BenchConfig, parse_batches, run_bench

    if iterations is not None and duration is not None:
        raise UsageError("--iterations and --duration are mutually exclusive: give one")
    config = BenchConfig(artifacts=tuple(artifacts), backend=backend, batches=parse_batches(batch), warmup=warmup,
                         iterations=iterations, duration=duration, threads=threads, interleave=interleave, seed=seed)
    if report is not None:
        from vitdeploy.bench.report import check_report_dir

        check_report_dir(report, force)  # fail now, not after minutes of timing

    bars = []  # the progress display starts with the first timed batch: errors before it stay one clean line

    def track(description: str, total: int | None):
        if not bars:
            bars.append(progress(transient=True))
            bars[0].start()
        task = bars[0].add_task(description, total=total)
        return lambda n: bars[0].advance(task, n)

    accuracy_block = None
    if accuracy is not None:  # read before timing: a bad file fails now
        import json

        from vitdeploy.core.errors import InputError
        from vitdeploy.validate import VALIDATE_SCHEMA, accuracy_section

        try:
            vdoc = json.loads(accuracy.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise InputError(f"--accuracy {accuracy}: cannot read it ({exc})") from exc
        if not isinstance(vdoc, dict) or vdoc.get("schema") != VALIDATE_SCHEMA:
            raise InputError(f"--accuracy {accuracy} is not a `vitdeploy validate` result ({VALIDATE_SCHEMA})")
        accuracy_block = accuracy_section(vdoc)
    try:
        if remote is not None:
            from vitdeploy.cli.remote import bench_remote

            doc = bench_remote(remote, remote_python)
        else:
            doc = run_bench(config, track)
    finally:
        if bars:
            bars[0].stop()

    if accuracy_block is not None:
        doc["accuracy"] = accuracy_block
    written = None
    if report is not None:
        from vitdeploy.bench.report import write_report

        written = write_report(doc, report, force=force)
    if as_json:
        print_json(doc)
    else:
        show(doc)
    if written is not None:
        files = ", ".join(str(p) for p in written.written())
        err_console.print(f"report: {files}" + (f" [yellow](plot skipped: {written.plot_skipped})[/]" if written.plot_skipped else ""),
                          highlight=False, soft_wrap=True)  # one line, whatever the width: scripts grep it


def show(doc: dict) -> None:
    """The rich view: one table per batch, then conditions and warnings."""
    from vitdeploy.bench.conditions import environment_label
    from vitdeploy.bench.report import summary_tables

    cfg = doc["config"]
    for table in summary_tables(doc, wide=console.width >= 110):  # narrower: p90, mean, std, RSS in the Markdown
        tables.print_table(table)
    count = f"{cfg['iterations']} iterations" if cfg.get("iterations") else f"~{cfg['duration']} s"
    c = doc["conditions"]
    load = c["cpu"].get("load_1min_start")
    console.print(f"[dim]{environment_label(doc)}; {cfg['warmup']} warm-up + {count}; "
                  f"{'interleaved' if cfg.get('interleave') else 'sequential'}; load {'-' if load is None else f'{load:.2f}'} "
                  f"on {c['cpu'].get('cores')} cores; {c.get('seconds', 0):.1f} s[/]", highlight=False)
    for w in doc["warnings"]:
        console.print(f"[yellow]warning:[/] {escape(w)}", highlight=False)


def register(app: typer.Typer) -> None:
    app.command("bench", help=prose(HELP), no_args_is_help=True)(bench)
