"""Options shared by several commands, defined once."""

from __future__ import annotations

from typing import Annotated

import typer

Force = Annotated[bool, typer.Option("--force", "-f", help="Overwrite existing outputs.")]
Json = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON instead of a table.")]
HighPrecision = Annotated[str, typer.Option(
    "--high-precision", help="INT8: the unquantized float parts in fp16 (INT8+FP16, what TensorRT 10/11 builds fast) or fp32.")]
DataCheck = Annotated[bool, typer.Option(
    "--data-check/--no-data-check",
    help="Refuse a .npy/.npz whose dtype or values are not normalised model inputs (raw 0-255 pixels, 0..1 not normalised).")]
