"""Options shared by several commands, defined once."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import click
import typer

from vitdeploy.errors import UsageError

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
Iterations = Annotated[Optional[int], typer.Option("--iterations", "-n", min=1, help="Timed calls per artifact and batch (>= 1).")]
OnError = Annotated[str, typer.Option(
    "--on-error", click_type=click.Choice(["skip", "fail"]),
    help="An image that does not decode: skip it (counted and named in a warning) | fail (exit 3).")]
Warmup = Annotated[int, typer.Option("--warmup", min=0, help="Untimed calls per artifact and batch before timing (>= 0).")]


def check_holdout(holdout: int | None, calib: Path | None) -> None:
    """--holdout must leave calibration samples: at most half of the data is held out."""
    if holdout is None or calib is None or holdout == 0:
        return
    from vitdeploy.calib.data import open_dataset

    available = len(open_dataset(calib))
    if holdout > available // 2:
        raise UsageError(f"invalid --holdout {holdout}: {calib} has {available} samples and at most half "
                         f"({available // 2}) can be held out; give --holdout 0..{available // 2}")
