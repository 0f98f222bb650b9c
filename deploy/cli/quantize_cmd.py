"""`vitdeploy quantize`: INT8 (Q/DQ) or FP16 ONNX from an FP32 export."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape

from vitdeploy.cli import tables
from vitdeploy.cli.console import prose, console, print_json, print_step, progress, renamed, Tracker
from vitdeploy.cli.options import (CALIB_SAMPLES, DataCheck, Force, HighPrecision, Holdout, Json, Mean, Method, OnError,
                                   Samples, Std, Threads, check_holdout, preprocessing_options)
from vitdeploy.core.errors import UsageError

HELP = """Write an INT8 (explicit Q/DQ) or FP16 ONNX from an FP32 export, and measure its accuracy
against the FP32 model in ONNX Runtime on held-out calibration images.

Precision lives in the ONNX itself: TensorRT 10/11 builds it strongly typed, TensorRT 8.5 builds
it with its INT8/FP16 flags; ONNX Runtime runs it on the CPU.

Examples:

  vitdeploy quantize deit_tiny.onnx --int8 --calib imagenet_val/ \\
      --method entropy --samples 512

  vitdeploy quantize deit_tiny.onnx --int8 --calib calib.npz \\
      --qdq-form ort-cpu -o deit_tiny.ort.onnx

  vitdeploy quantize deit_tiny.onnx --fp16 --calib imagenet_val/ \\
      --keep-fp32 Softmax

  vitdeploy quantize deit_tiny.onnx --int8 --calib imagenet_val/ \\
      --holdout 1000 --max-drop 0.5 --metric top1 --device-profile orin

INT8 --qdq-form trt writes INT8+FP16 by default: Q/DQ on MatMul/Gemm/Conv inputs, every other float
op in FP16 except the FP32 islands (LayerNorm, Softmax, reductions, and nodes whose calibrated
range does not fit FP16); --high-precision fp32 keeps the float parts FP32.

Checks: a .npy/.npz must be preprocessed (raw 0-255 pixels or unnormalised arrays are refused,
exit 3); the result is compared with the FP32 model on held-out images and nothing is written
(exit 6) when its outputs are not finite or fail the precision's default thresholds of
`vitdeploy validate` (fp16: minimum cosine >= 0.999, top-1 agreement >= 98%, drop <= 0.3 pt;
int8: 0.98, 95%, 1.5 pt; top-1 only counts with trained weights), unless --no-gate.

--max-drop D searches which layers to keep in float (FP16 for --qdq-form trt, FP32 for ort-cpu) so
that the INT8 file stays within D points of --metric (top1 with labels, else agreement; cosine:
100 x (1 - mean cosine)) for the most estimated INT8 time saved (--device-profile's cost model).
The held-out images are split: the search looks at one half, the written file is measured on the
other, and that figure is the result: over the budget is exit 6 (nothing written) unless --no-gate.
It writes OUT.search.png too (OUT: the output's name without .onnx): per-layer sensitivity and the search's path.
"""


def quantize(
    model: Annotated[Path, typer.Argument(help="FP32 ONNX from `vitdeploy export` (its manifest gives the preprocessing).")],
    int8: Annotated[bool, typer.Option("--int8", help="INT8 post-training quantization (needs --calib).")] = False,
    fp16: Annotated[bool, typer.Option("--fp16", help="FP16 with FP32 islands.")] = False,
    calib: Annotated[Optional[Path], typer.Option("--calib", help="Image folder (recursive, class subfolders allowed), .txt list of image paths, or preprocessed .npy/.npz.")] = None,
    method: Method = "percentile",
    percentile: Annotated[float, typer.Option(help="Percentile for --method percentile.")] = 99.99,
    samples: Samples = CALIB_SAMPLES,
    holdout: Holdout = None,
    qdq_form: Annotated[str, typer.Option(
        "--qdq-form", metavar="FORM",
        help="INT8 Q/DQ form: trt (symmetric INT8, TensorRT explicit quantization) | ort-cpu (UINT8 activations, fast in ONNX Runtime CPU).")] = "trt",
    target: Annotated[Optional[str], typer.Option("--target", hidden=True, help="Deprecated: --qdq-form.")] = None,
    exclude: Annotated[Optional[list[str]], typer.Option("--exclude", help="Op type, node name or node-name glob ('*/attn/MatMul_1') to leave in float (repeatable).")] = None,
    float_attention: Annotated[bool, typer.Option("--float-attention", help="Leave the attention MatMuls (QK^T, AV) unquantized (--qdq-form ort-cpu always does: no faster in INT8 there).")] = False,
    quantize_depthwise: Annotated[bool, typer.Option("--quantize-depthwise", help="Also quantize depthwise convs (left float by default: per-tensor scales hurt them).")] = False,
    no_family_hints: Annotated[bool, typer.Option("--no-family-hints", help="Ignore the model family's quantization hints from the export manifest.")] = False,
    keep_fp32: Annotated[Optional[list[str]], typer.Option("--keep-fp32", help="FP16: op type or node name to keep FP32 (repeatable).")] = None,
    high_precision: HighPrecision = "fp16",
    data_check: DataCheck = True,
    no_gate: Annotated[bool, typer.Option("--no-gate", help="Write the file even when it fails its precision's default thresholds (non-finite outputs are never written).")] = False,
    max_drop: Annotated[Optional[float], typer.Option("--max-drop", metavar="POINTS", help="INT8: the accuracy budget, in points of --metric: keep the fewest layers float that meet it (precision search).")] = None,
    metric: Annotated[Optional[str], typer.Option("--metric", metavar="METRIC", help="--max-drop's measure: top1 (needs labels) | agreement | cosine (default: top1 with labels, else agreement).")] = None,
    device_profile: Annotated[Optional[str], typer.Option("--device-profile", metavar="NAME", help="--max-drop's cost model: orin | xavier | ampere | ada (published throughput) | ort-cpu (timed here); default orin, ort-cpu for --qdq-form ort-cpu.")] = None,
    trt_calibration_cache: Annotated[bool, typer.Option("--trt-calibration-cache", help="Also write OUT.calib, TensorRT's calibration cache for implicit INT8 on TensorRT < 10.12.")] = False,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Output .onnx (default: MODEL.int8.onnx, MODEL.int8-ort.onnx for --qdq-form ort-cpu, MODEL.fp16.onnx).")] = None,
    on_error: OnError = "skip",
    input_size: Annotated[Optional[str], typer.Option(help="C,H,W when the model has no manifest.")] = None,
    mean: Mean = None,
    std: Std = None,
    seed: Annotated[int, typer.Option(help="Sampling seed.")] = 0,
    threads: Threads = None,
    force: Force = False,
    as_json: Json = False,
) -> None:
    from vitdeploy.calib.quantize import QuantizeConfig
    from vitdeploy.core.precision import QuantPolicy
    from vitdeploy.calib.quantize import quantize as run_quantize
    from vitdeploy.core.io import refuse_overwriting_inputs
    from vitdeploy.core.steps import Steps

    form = renamed("--qdq-form", qdq_form, "--target", target)
    if int8 == fp16:
        raise UsageError("choose exactly one of --int8 and --fp16")
    refuse_overwriting_inputs(output, MODEL=model, **{"--calib": calib})
    config = QuantizeConfig(
        model=model, precision="int8" if int8 else "fp16", calib=calib, method=method, percentile=percentile,
        samples=samples, holdout=holdout, target=form, keep_fp32=tuple(keep_fp32 or ()),
        policy=QuantPolicy(exclude=tuple(exclude or ()), quantize_attention=not float_attention,
                           quantize_depthwise=quantize_depthwise),
        output=output, force=force, seed=seed, on_error=on_error,
        preprocessing=preprocessing_options(input_size, mean, std), trt_calibration_cache=trt_calibration_cache,
        threads=threads, family_hints=not no_family_hints,
        high_precision=high_precision, gate=not no_gate, data_check=data_check,
        max_drop=max_drop, metric=metric, device_profile=device_profile,
    )
    check_holdout(holdout, calib)
    steps = Steps(on_end=print_step)
    with progress(transient=True) as bar:
        result = run_quantize(config, steps, Tracker(bar))
    m = result.manifest
    if as_json:
        print_json(m)
        return
    acc = m["accuracy"]
    c = acc["vs_fp32"]
    table = tables.kv_table(f"{m['precision'].upper()} ONNX")
    if m.get("quantization"):
        q = m["quantization"]
        table.add_row("method / form", f"{q['method']} / {q['target']} ({q['activations']}; float parts {q['high_precision'].upper()})")
        table.add_row("quantized", f"{_n(q['quantized_nodes'], 'node')}, {_n(q['quantized_activations'], 'activation')}, "
                      f"{_n(q['quantized_weights'], 'weight')}"
                      + (" [dim](statistics from cache)[/]" if q["statistics"]["cached"] else ""))
    islands = m.get("fp16") or (m.get("quantization") or {}).get("fp16")
    if islands:
        reasons = ", ".join(f"{n} {why}" for why, n in (islands.get("fp32_range_reasons") or {}).items())
        table.add_row("kept FP32", f"ops {', '.join(islands['fp32_ops']) or 'none'}"
                      + (f"; {len(islands['fp32_nodes'])} named nodes" if islands["fp32_nodes"] else "")
                      + (f"; nodes by range: {reasons}" if reasons else ""))
    d = m.get("calibration_data")
    if d:
        held = (f"{d['selection_samples'] + d['holdout_samples']} held-out ({d['selection_samples']} searched + "
                f"{d['holdout_samples']} confirming)" if "selection_samples" in d else f"{d['holdout_samples']} held-out")
        table.add_row("data", f"{d['calibration_samples']} calibration + {held} of {d['available']}"
                      + (f", [yellow]{d['skipped']} undecodable skipped[/]" if d["skipped"] else ""))
    table.add_row("vs FP32", f"{acc['samples']} {acc['data']}: cosine {c['cosine_mean']:.5f} (min {c['cosine_min']:.5f})  top-1 agreement {c['top1_agreement']:.2%}  max abs {c['max_abs']:.3g}")
    if "top1" in acc:
        table.add_row("top-1", f"{acc['top1']:.2%} vs FP32 {acc['top1_fp32']:.2%} ({acc['top1_drop_points']:+.2f} points drop; labels)")
    gate = acc.get("gate") or {}
    if gate:
        verdict = "pass" if gate["passed"] else "[red]FAIL[/] " + "; ".join(gate["failures"])
        table.add_row("thresholds", verdict + (f" [dim]({gate['note']})[/]" if gate.get("note") else ""))
    search = (m.get("quantization") or {}).get("precision_search")
    if search:
        tables.print_table(search_table(search))
        from vitdeploy.calib.search import summary

        table.add_row("precision search", summary(search))
    console.print(table)
    for w in m.get("warnings") or ():
        console.print(f"[yellow]warning:[/] {escape(w)}")
    tables.print_paths(("output", result.onnx_path))


def search_table(s: dict, rows: int = 12):
    """The most sensitive layers (1 - cosine when alone in INT8, the PNG's order): alone in INT8, alone in
    float, the choice."""
    from vitdeploy.core import document as D

    groups = sorted(s["layers"], key=lambda g: -g["harm_int8_alone_1_minus_cos"])
    t = D.Table([D.Column("layer", cut=True), D.Column("MACs", "right"), D.Column("INT8 alone", "right"),
                 D.Column("float alone", "right"), D.Column("kept")],
                title=f"The {min(rows, len(groups))} most sensitive of {len(groups)} layers",
                footnotes=[f"On {s['selection']['sensitivity_samples']} searched images, as 1 - mean cosine vs FP32. "
                           "INT8 alone: with only this layer INT8. Float alone: the gain from keeping only this layer "
                           "float, all others INT8. MACs per image."])
    for g in groups[:rows]:
        t.add_row(g["layer"], _si(g["macs"]), f"{g['harm_int8_alone_1_minus_cos']:.2g}",
                  f"{g['recovery_float_alone_1_minus_cos']:.2g}",
                  D.Cell.of(D.Span(g["precision"].upper(), "warn" if g["precision"] != "int8" else "")))
    return t


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _si(n: int) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= scale:
            return f"{n / scale:.3g}{unit}"
    return str(n)


def register(app: typer.Typer) -> None:
    app.command("quantize", help=prose(HELP))(quantize)
