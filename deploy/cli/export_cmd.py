"""`vitdeploy export` and `vitdeploy check`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from vitdeploy.cli import tables
from vitdeploy.cli.console import prose, print_step, err_console, print_json, renamed
from vitdeploy.cli.options import (DynamicBatch, Force, InputSize, Json, Mean, NonStrict, NumClasses, Std,
                                   preprocessing_options)
from vitdeploy.core import document as D
from vitdeploy.core.errors import CompatibilityError, UsageError

EXPORT_HELP = """Export a model to ONNX (dynamic batch, opset 17), validate it against PyTorch, simplify it
and check that TensorRT can parse it. Writes OUT.onnx and OUT.json (the manifest) beside it.

MODEL is a registered name (see `vitdeploy models`), `package.module:function` returning an
nn.Module (give --input-size), or a saved torch.export program (.pt2).

Examples:

  vitdeploy export t2t_vit_14 --checkpoint 81.5_T2T_ViT_14.pth.tar

  vitdeploy export deit_tiny_patch16_224 --dynamic-batch 1:4:16 \\
      -o deit_tiny.onnx --force

  vitdeploy export mypkg.nets:build_vit --input-size 3,224,224 \\
      --mean 0.5,0.5,0.5 --std 0.5,0.5,0.5
"""

CHECK_HELP = """Check an ONNX file against the ONNX parsers of TensorRT versions (ops, opset, types, dynamic shapes).

Example:

  vitdeploy check deit_tiny.onnx --trt-version trt8.5 \\
      --trt-version trt11 --strict
"""

DEFAULT_TRT_VERSIONS = ("trt8.5", "trt10", "trt11")
# --trt-version: the TensorRT releases whose ONNX parser the file is checked against. Was --target,
# kept as a hidden deprecated alias (quantize's --target, the Q/DQ form, is now --qdq-form).
TrtVersion = Annotated[Optional[list[str]], typer.Option(
    "--trt-version", metavar="VERSION",
    help="TensorRT ONNX parser to check against: trt8.5 | trt10 | trt10.16 | trt11, or ort (ONNX Runtime only, "
    "no TensorRT check); repeatable (default: trt8.5, trt10, trt11).")]
TargetAlias = Annotated[Optional[list[str]], typer.Option("--target", hidden=True, help="Deprecated: --trt-version.")]


def _findings_table(findings: dict) -> D.Table:
    from vitdeploy.trt.check import shown

    style = {"error": "bad", "warning": "warn"}
    table = D.Table([D.Column("parser"), D.Column("severity"), D.Column("kind"), D.Column("finding", wrap=True)],
                    title="TensorRT readiness")
    for target, fs in findings.items():
        if not fs:
            table.add_row(target, D.Cell.of(D.Span("ok", "good")), "", "no findings")
        for f in shown(fs):
            table.add_row(target, D.Cell.of(D.Span(f.severity, style.get(f.severity, "muted"))), f.kind, f.message)
    return table


def export(
    model: Annotated[str, typer.Argument(help="Registered name, package.module:function, or a .pt2 program.")],
    checkpoint: Annotated[Optional[Path], typer.Option("--checkpoint", "-c", help=".pth/.pth.tar/.safetensors weights.")] = None,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Output .onnx (default: MODEL.onnx).")] = None,
    batch: Annotated[Optional[int], typer.Option("--batch", help="Static batch size (no dynamic axis).")] = None,
    dynamic_batch: DynamicBatch = None,
    opset: Annotated[int, typer.Option(help="ONNX opset (17 is what TensorRT 8.5 / JetPack 5 parses).")] = 17,
    exporter: Annotated[str, typer.Option(help="auto | legacy | dynamo (auto: the family's preferred one, the other as fallback).")] = "auto",
    simplify: Annotated[str, typer.Option(help="onnxsim | onnxslim | none (the other simplifier is the fallback).")] = "onnxsim",
    trt_version: TrtVersion = None,
    target: TargetAlias = None,
    strict: Annotated[bool, typer.Option("--strict", help="Fail on any TensorRT readiness finding (not on 'info': what build-engine handles).")] = False,
    decompose_layernorm: Annotated[bool, typer.Option("--decompose-layernorm", help="Write LayerNorm as primitive ops, for trtexec on TensorRT 8.5 (build-engine does it itself).")] = False,
    non_strict: NonStrict = False,
    atol: Annotated[float, typer.Option(min=0.0, help="Max abs error allowed between ONNX Runtime and PyTorch (>= 0).")] = 1e-4,
    input_size: InputSize = None,
    mean: Mean = None,
    std: Std = None,
    num_classes: NumClasses = None,
    force: Force = False,
    as_json: Json = False,
) -> None:
    from vitdeploy.core.compare import Thresholds
    from vitdeploy.export.config import BatchRange, ExportConfig
    from vitdeploy.core.io import refuse_overwriting_inputs

    versions = renamed("--trt-version", trt_version, "--target", target) or DEFAULT_TRT_VERSIONS
    if batch is not None and dynamic_batch is not None:
        raise UsageError("give either --batch (static) or --dynamic-batch, not both")
    if batch is not None and batch < 1:
        raise UsageError(f"invalid --batch {batch}: must be >= 1")
    refuse_overwriting_inputs(output, **{"--checkpoint": checkpoint, "MODEL": model if Path(model).is_file() else None})
    batch_range = (BatchRange(batch, batch, batch) if batch is not None
                   else BatchRange.parse(dynamic_batch) if dynamic_batch is not None else None)
    config = ExportConfig(
        model=model, checkpoint=checkpoint, output=output, batch=batch_range, opset=opset, exporter=exporter,
        simplify=simplify, targets=tuple(versions), strict_check=strict,
        decompose_layernorm=decompose_layernorm,
        strict_checkpoint=not non_strict, force=force, thresholds=Thresholds(max_abs=atol),
        preprocessing=preprocessing_options(input_size, mean, std), num_classes=num_classes,
    )
    from vitdeploy.export.pipeline import export as run_export
    from vitdeploy.core.steps import Steps

    status = err_console.status("exporting")
    steps = Steps(on_start=lambda name: status.update(f"[bold]{model}[/]: {name}"),
                  on_end=print_step)
    with status:
        result = run_export(config, steps)
    m = result.manifest
    if as_json:
        print_json(m)
        return
    table = tables.kv_model(f"exported {m['model']['name']}")
    table.add_row("exporter / opset", f"{m['export']['exporter']} / {m['export']['opset']}")
    table.add_row("nodes", f"{m['graph']['nodes_raw']} raw -> {m['graph']['nodes']} ({m['simplify']['used'] or 'not simplified'})")
    table.add_row("batch", f"{m['batch']['min']}:{m['batch']['opt']}:{m['batch']['max']}")
    for b, c in m["parity"]["final"].items():
        table.add_row(f"parity batch {b}", f"max abs {c['max_abs']:.2e}  cosine {c['cosine_min']:.7f}  top-1 {c['top1_agreement']:.0%}")
    table.add_row("size", f"{m['file_bytes'] / 1e6:.2f} MB")
    for note in m["notes"]:
        table.add_row("note", D.Cell.of(D.Span(note, "warn")))
    tables.print_kv(table)
    tables.print_table(_findings_table(result.findings))
    tables.print_paths(("onnx", result.onnx_path), ("manifest", result.manifest_path))


def check(
    onnx_file: Annotated[Path, typer.Argument(help="ONNX model to check.")],
    trt_version: TrtVersion = None,
    target: TargetAlias = None,
    strict: Annotated[bool, typer.Option("--strict", help="Exit 10 on any finding but 'info' (default: only on errors).")] = False,
    as_json: Json = False,
) -> None:
    from vitdeploy.core import onnx_utils
    from vitdeploy.trt import check as trtcheck

    versions = renamed("--trt-version", trt_version, "--target", target) or DEFAULT_TRT_VERSIONS
    model = onnx_utils.load(onnx_file)
    findings = trtcheck.check(model, tuple(versions))
    if as_json:
        print_json(trtcheck.summarize(findings))
    else:
        tables.print_table(_findings_table(findings))
    errors = [f for fs in findings.values() for f in fs if f.severity == "error" or (strict and f.severity != "info")]
    if errors:
        raise CompatibilityError(f"{len(errors)} finding(s) that block TensorRT, e.g. [{errors[0].target}] {errors[0].message}")


def register(app: typer.Typer) -> None:
    app.command("export", help=prose(EXPORT_HELP))(export)
    app.command("check", help=prose(CHECK_HELP))(check)
