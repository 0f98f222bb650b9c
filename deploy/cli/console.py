"""Rich consoles: results to stdout, progress and messages to stderr (so --json output stays clean)."""

from __future__ import annotations

import json
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

console = Console()
err_console = Console(stderr=True)


def print_json(obj: Any) -> None:
    from vitdeploy.io import _json_default

    # plain print: rich would re-wrap long lines and break the JSON for pipes
    print(json.dumps(obj, indent=2, default=_json_default))


def progress(transient: bool = False) -> Progress:
    return Progress(
        SpinnerColumn(),
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err_console,
        transient=transient,
    )
