"""Options shared by several commands, defined once."""

from __future__ import annotations

from typing import Annotated

import typer

Force = Annotated[bool, typer.Option("--force", "-f", help="Overwrite existing outputs.")]
Json = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON instead of a table.")]
