"""`vitdeploy validate`: accuracy parity of candidates against a reference; exits 6 when one fails."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape

from vitdeploy.cli import tables
from vitdeploy.cli.console import console, err_console, given, print_json, progress, prose, Tracker
from vitdeploy.cli.options import DataCheck, Force, Json, OnError, Remote, RemotePython, SamplesOrAll, ThresholdSpec, Threads
from vitdeploy.core.errors import ParityError

HELP = """Check that candidates (ONNX at FP32/FP16/INT8, TensorRT engines) still agree with a reference
(a zoo model with its checkpoint, or the FP32 ONNX) on real data. Exits 6 when a candidate fails
its precision's thresholds, so it can gate CI.

Examples:

  vitdeploy validate deit.onnx deit.fp16.onnx deit.int8.onnx \\
      --data imagenet_val/ --samples 500

  vitdeploy validate deit_tiny_patch16_224 --checkpoint deit_tiny.pth \\
      deit.engine --data val.npz --report out/

  vitdeploy validate deit.onnx deit.int8.onnx --data val/ \\
      --thresholds strict
"""


def validate(
    reference: Annotated[str, typer.Argument(help="FP32 ONNX, or a zoo model name (with --checkpoint).")],
    candidates: Annotated[list[str], typer.Argument(help="ONNX files and/or engines to check.")],
    data: Annotated[Path, typer.Option("--data", help="Image folder (class subfolders = labels: by class index 0..N-1, ImageNet WordNet id, or sorted name), .txt list, or .npy/.npz (with 'labels').")],
    checkpoint: Annotated[Optional[Path], typer.Option("--checkpoint", "-c", help="Weights for a zoo-model reference.")] = None,
    samples: SamplesOrAll = 256,
    thresholds: ThresholdSpec = None,
    batch: Annotated[int, typer.Option(min=1, help="Batch size, >= 1 (clamped to each artifact's range).")] = 8,
    threads: Threads = None,
    report: Annotated[Optional[Path], typer.Option(help="Write validate.json and validate.md into this folder.")] = None,
    data_check: DataCheck = True,
    on_error: OnError = "skip",
    remote: Remote = None,
    remote_python: RemotePython = None,
    force: Force = False,
    as_json: Json = False,
) -> None:
    from vitdeploy.core.io import check_output, write_bytes_atomic, write_json_atomic
    from vitdeploy.validate import ValidateConfig, load_thresholds, markdown
    from vitdeploy.validate import validate as run_validate

    limits, drops = load_thresholds(thresholds)
    if report is not None:
        for name in ("validate.json", "validate.md"):
            check_output(report / name, force, create=False)  # created when written: nothing left on failure
    config = ValidateConfig(reference=reference, candidates=tuple(candidates), data=data, checkpoint=checkpoint,
                            samples=samples, thresholds=limits, max_top1_drop=drops, batch_size=batch, threads=threads,
                            data_check=data_check, on_error=on_error)
    if remote is not None:
        from vitdeploy.cli.remote import validate_remote

        doc = validate_remote(remote, remote_python)
    else:
        with progress(transient=True) as bar:  # not a terminal (a log): a line per finished artifact instead
            track = Tracker(bar, log_finished=not err_console.is_terminal)
            doc = run_validate(config, track)
            track.close()
        held = doc["data"]["samples"] + doc["data"]["skipped"]
        if samples is not None and samples > held and given("samples"):  # not for the default
            doc["warnings"].append(f"--samples {samples} but {doc['data']['source']} holds {held}: validated on all of them")
        reused = [c["artifact"] for c in doc["candidates"] if c.get("resumed")]
        if doc["reference"].get("resumed") or reused:
            err_console.print("[dim]resumed an interrupted run: reused the reference's outputs"
                              + (f" and the figures of {', '.join(map(escape, reused))}" if reused else "") + "[/]",
                              highlight=False)
    if report is not None:
        write_json_atomic(report / "validate.json", doc)
        write_bytes_atomic(report / "validate.md", markdown(doc).encode())
    if as_json:
        print_json(doc)
    else:
        _table(doc)
        for w in doc.get("warnings") or ():
            err_console.print(f"[yellow]warning:[/] {escape(w)}")
    failed = [c for c in doc["candidates"] if not c["passed"]]
    if failed:
        raise ParityError(f"{len(failed)} of {len(doc['candidates'])} candidate(s) failed: "
                          + "; ".join(f"{c['artifact']}: {c['failures'][0]}" for c in failed))


def _table(doc: dict) -> None:
    from vitdeploy.validate.document import summary_table

    tables.print_table(summary_table(doc))
    for c in doc["candidates"]:
        if not c["passed"]:
            console.print(f"[red]FAIL[/] {escape(c['artifact'])}: {escape('; '.join(c['failures']))}", highlight=False)


def register(app: typer.Typer) -> None:
    app.command("validate", help=prose(HELP))(validate)
