"""Tables designed for 80 columns: one style for every command, long names shortened from the left.

Rules: short headers with the unit in them, numbers in no-wrap columns, artifact names cut from the
left so their distinguishing end stays (``…tiny_patch16_224.int8.onnx``), details in the JSON and
Markdown reports.

Every result table is a ``vitdeploy.core.document.Table`` (the model the Markdown reports are
rendered from too) drawn by ``render_rich``; ``print_table`` fits it to the terminal and prints its
footnotes; a two-column ``what``/``value`` model is drawn by ``render_kv``/``print_kv``. ``table`` and
``kv_table`` remain for the commands' own small tables.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text
from vitdeploy.cli.console import console
from vitdeploy.core import document as D

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


RICH_STYLES = {"": "", "muted": "dim", "good": "green", "bad": "red", "strong": "bold", "warn": "yellow"}


def rich_cell(value: D.Value, cut: int | None = None) -> Text:
    """A model cell as rich text, each span in its style (no markup: brackets in names stay text);
    ``cut``: each span shortened from the left to that many characters."""
    spans = (D.Span(value),) if isinstance(value, str) else value.spans
    return Text.assemble(*((left_cut(s.text, cut) if cut else s.text, RICH_STYLES[s.style]) for s in spans))


def render_rich(model: D.Table, name_width: int = NAME_WIDTH) -> Table:
    """The one rich rendering of a ``vitdeploy.core.document.Table``, in this module's style: a
    ``wrap`` column folds, any other never wraps; a ``cut`` column's cells are shortened from the left
    to its ``max_width``, else to ``name_width``. Footnotes are not part of it: ``print_table``."""
    t = table(escape(model.title) if model.title else None)  # text, never markup
    t.show_lines = model.ruled
    cuts = [(c.max_width or name_width) if c.cut else None for c in model.columns]
    for c, cut in zip(model.columns, cuts):
        t.add_column(Text(left_cut(c.name, cut) if cut else c.name), justify=c.align, no_wrap=not c.wrap,
                     overflow="fold" if c.wrap else "ellipsis", max_width=c.max_width)
    for i, row in enumerate(model.rows):
        t.add_row(*(rich_cell(v, cut) for v, cut in zip(row, cuts)), end_section=i in model.section_ends)
    return t


def print_table(model: D.Table) -> None:
    """The table fitted to the terminal (``fitted``: its cut columns as wide as the spare columns
    allow), then its footnotes dimmed."""
    console.print(fitted(lambda width: render_rich(model, width)))
    for line in model.footnotes:
        console.print(Text(line, style="dim"))


def render_kv(model: D.Table) -> Table:
    """A two-column ``what``/``value`` ``vitdeploy.core.document.Table`` drawn as ``kv_table``: no
    header, the first column bold, long values folded onto more lines (never cut)."""
    t = kv_table(escape(model.title) if model.title else None)  # text, never markup
    for row in model.rows:
        t.add_row(*(rich_cell(v) for v in row))
    return t


def kv_model(title: str | None = None) -> D.Table:
    """An empty two-column model for ``render_kv``/``print_kv`` (add rows with ``add_row(what, value)``)."""
    return D.Table([D.Column("what"), D.Column("value", wrap=True)], title=title)


def print_kv(model: D.Table) -> None:
    """``render_kv``'s table, then its footnotes dimmed."""
    console.print(render_kv(model))
    for line in model.footnotes:
        console.print(Text(line, style="dim"))


def print_paths(*items: tuple[str, str | Path]) -> None:
    """``label: path`` lines below a table, never wrapped (a path split over lines cannot be copied)."""
    for label, path in items:
        console.print(f"{label}: {escape(str(path))}", soft_wrap=True, highlight=False)
