"""Tables designed for 80 columns: one style for every command, long names shortened from the left.

Rules: short headers with the unit in them, numbers in no-wrap columns, artifact names cut from the
left so their distinguishing end stays (``…tiny_patch16_224.int8.onnx``), details in the JSON and
Markdown reports.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from vitdeploy.cli.console import console

NAME_WIDTH = 30  # an artifact name's share of an 80-column table


def left_cut(name: str, width: int = NAME_WIDTH) -> str:
    """``name`` in at most ``width`` characters, keeping its end: ``…tiny_patch16_224.int8.onnx``."""
    return name if len(name) <= width else "…" + name[len(name) - width + 1:]


def fitted(build: Callable[[int], Table]) -> Table:
    """``build(name_width)``'s table, its artifact names given the terminal's spare columns: shortened
    (from the left) only as far as the table must be to fit, never below NAME_WIDTH."""
    first = build(NAME_WIDTH)
    spare = console.width - Console(width=10_000).measure(first).maximum
    return build(NAME_WIDTH + spare) if spare > 0 else first


def table(title: str | None = None) -> Table:
    """A column table: bold headers, no side borders (two spaces between columns)."""
    return Table(title=title, title_justify="left", header_style="bold", box=box.SIMPLE_HEAD, pad_edge=False)


def kv_table(title: str | None = None) -> Table:
    """A two-column ``what: value`` table; long values (paths) fold onto more lines, never cut."""
    t = Table(title=title, title_justify="left", show_header=False, box=box.SIMPLE, pad_edge=False)
    t.add_column("what", style="bold", no_wrap=True)
    t.add_column("value", overflow="fold")
    return t


def print_paths(*items: tuple[str, str | Path]) -> None:
    """``label: path`` lines below a table, never wrapped (a path split over lines cannot be copied)."""
    for label, path in items:
        console.print(f"{label}: {escape(str(path))}", soft_wrap=True, highlight=False)
