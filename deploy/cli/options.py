"""Options shared by several commands, defined once."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import click
import typer

from vitdeploy.core.errors import UsageError
from vitdeploy.core.preprocessing import Preprocessing

Force = Annotated[bool, typer.Option("--force", "-f", help="Overwrite existing outputs.")]
Json = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON instead of a table.")]
HighPrecision = Annotated[str, typer.Option(
    "--high-precision", help="INT8: the unquantized float parts in fp16 (INT8+FP16, what TensorRT 10/11 builds fast) or fp32.")]
DataCheck = Annotated[bool, typer.Option(
    "--data-check/--no-data-check",
    help="Refuse a .npy/.npz whose dtype or values are not normalised model inputs (raw 0-255 pixels, 0..1 not normalised).")]

# Range-checked options: the parser refuses an out-of-range value (exit 2, one line) before any work.
Threads = Annotated[Optional[int], typer.Option(
    "--threads", min=1, help="CPU threads for ONNX Runtime / PyTorch (>= 1; default: the backend's own).")]
Samples = Annotated[int, typer.Option("--samples", min=1, help="Samples to use, a seeded subset (>= 1).")]


def _samples_or_all(value: str | int | None) -> int | None:
    """--samples N (>= 1) or all (None)."""
    if value is None or str(value).lower() == "all":
        return None
    try:
        n = int(value)
    except ValueError:
        raise typer.BadParameter(f"{value!r} is neither a number nor 'all'") from None
    if n < 1:
        raise typer.BadParameter(f"{n} is not >= 1")
    return n


SamplesOrAll = Annotated[int | None, typer.Option(
    "--samples", parser=_samples_or_all, metavar="N|all", help="Samples to use, a seeded subset (>= 1), or all.")]
Iterations = Annotated[Optional[int], typer.Option("--iterations", "-n", min=1, help="Timed calls per artifact and batch (>= 1).")]
OnError = Annotated[str, typer.Option(
    "--on-error", click_type=click.Choice(["skip", "fail"]),
    help="An image that does not decode: skip it (counted and named in a warning) | fail (exit 3).")]
Warmup = Annotated[int, typer.Option("--warmup", min=0, help="Untimed calls per artifact and batch before timing (>= 0).")]

# Options of the steps that `deploy` chains, defined once for the step command and for deploy.
CALIB_SAMPLES = 512  # --samples of quantize and deploy: calibration images, a seeded subset
InputSize = Annotated[str | None, typer.Option("--input-size", help="C,H,W for models outside the zoo.")]
Mean = Annotated[str | None, typer.Option(
    "--mean", help="Normalisation mean R,G,B (default: the zoo model's, the export manifest's, else ImageNet's).")]
Std = Annotated[str | None, typer.Option(
    "--std", help="Normalisation std R,G,B (default: the zoo model's, the export manifest's, else ImageNet's).")]
NumClasses = Annotated[int | None, typer.Option("--num-classes", help="Classifier size (e.g. a fine-tuned checkpoint).")]


def _numbers(text: str | None, n: int, option: str) -> tuple[float, ...] | None:
    """``n`` comma-separated numbers (x also separates: 3x224x224), or None when the option was not given."""
    if text is None:
        return None
    try:
        values = tuple(float(v) for v in text.replace("x", ",").split(","))
    except ValueError:
        raise UsageError(f"invalid {option} {text!r}: expected {n} comma-separated numbers") from None
    if len(values) != n:
        raise UsageError(f"invalid {option} {text!r}: expected {n} comma-separated numbers")
    return values


def preprocessing_options(input_size: str | None = None, mean: str | None = None,
                          std: str | None = None) -> Preprocessing:
    """--input-size C,H,W, --mean R,G,B and --std R,G,B as one Preprocessing: what was given, the rest
    None (to go on top of a spec's or a manifest's with ``Preprocessing.updated``). UsageError (exit 2)
    for what does not parse."""
    size = _numbers(input_size, 3, "--input-size")
    return Preprocessing(input_size=tuple(int(v) for v in size) if size else None,  # type: ignore[arg-type]
                         mean=_numbers(mean, 3, "--mean"), std=_numbers(std, 3, "--std"))
NonStrict = Annotated[bool, typer.Option(
    "--non-strict", help="Load a checkpoint with missing/unexpected keys (shape mismatches still fail).")]
DynamicBatch = Annotated[str | None, typer.Option(
    "--dynamic-batch", help="MIN:OPT:MAX batch sizes the ONNX serves (default: 1:1:8; deploy: up to its largest --batch).")]
Holdout = Annotated[int | None, typer.Option(
    "--holdout", min=0, help="Calibration images held out, never calibrated on, to check accuracy "
    "(default: samples/8 within 8-256, at most half the data).")]
Method = Annotated[str, typer.Option(
    "--method", help="INT8 calibration: percentile | entropy | minmax | mse (percentile was the most faithful on every seed family).")]
ThresholdSpec = Annotated[str | None, typer.Option(
    "--thresholds", help="Preset (default, strict, loose) or a JSON file of per-precision thresholds.")]


def check_holdout(holdout: int | None, calib: Path | None) -> None:
    """--holdout must leave calibration samples: at most half of the data is held out (``max_holdout``,
    which ``holdout_split`` applies to the default too)."""
    if holdout is None or calib is None or holdout == 0:
        return
    from vitdeploy.data.sampling import max_holdout
    from vitdeploy.data.sources import open_dataset

    available = len(open_dataset(calib))
    most = max_holdout(available)
    if holdout > most:
        raise UsageError(f"invalid --holdout {holdout}: {calib} has {available} samples and at most half "
                         f"({most}) can be held out; give --holdout 0..{most}")

# --remote: run the command on a device over ssh (vitdeploy.pipeline.remote); README, Jetson > Remote.
Remote = Annotated[str | None, typer.Option(
    "--remote", metavar="[USER@]HOST", show_default=False,
    help="Run on this device over ssh (a ~/.ssh/config alias works): inputs are sent, results come back.")]
RemotePython = Annotated[str | None, typer.Option(
    "--remote-python", metavar="PATH", show_default=False,
    help="With --remote: the Python to run on the device, one with this package installed [python3].")]
Devices = Annotated[Path | None, typer.Option(
    "--devices", metavar="TOML", show_default=False,
    help="Build, validate and bench on every device of this file, in parallel (README, Jetson > Remote).")]
