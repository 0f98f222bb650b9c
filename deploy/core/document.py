"""One document model for every report and console table: a ``Document`` of sections, each with
notes, paragraphs, a ``Table``, list items and an image, rendered to GitHub Markdown (``to_markdown``)
and to a plain dict (``to_json``); the CLI draws the same ``Table`` with rich
(``vitdeploy.cli.tables.render_rich``: rich stays a CLI concern, nothing here imports it).

    doc = Document("Validation against deit.onnx", facts=[("Data", "val/, 500 samples")],
                   sections=[Section(table=Table([Column("artifact"), Column("cosine", "right")],
                                                 [["deit.int8.onnx", "0.99991"]]))])
    to_markdown(doc)   # "# Validation against deit.onnx\\n\\nData: val/, 500 samples\\n\\n| artifact | cosine |\\n..."

A cell is a plain string or a ``Cell`` of styled ``Span``\\ s (styles are meanings: ``muted``, ``good``,
``bad``, ``strong``, ``warn``; each renderer draws them its own way). Paragraphs and list items are
Markdown as written; table cells are text (a ``|`` in one is escaped, a line break is ``<br>``).

The result documents themselves (bench.json, validate.json, report.json) are data, not this model:
this model is only how they are shown.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

Align = Literal["left", "right", "center"]
Style = Literal["", "muted", "good", "bad", "strong", "warn"]


@dataclass(frozen=True)
class Span:
    """A run of text in one style."""

    text: str
    style: Style = ""


@dataclass(frozen=True)
class Cell:
    """A table cell of one or more spans (``"\\n"`` in a span starts a new line)."""

    spans: tuple[Span, ...]

    @classmethod
    def of(cls, *parts: str | Span) -> Cell:
        return cls(tuple(p if isinstance(p, Span) else Span(p) for p in parts if (p.text if isinstance(p, Span) else p)))

    @property
    def text(self) -> str:
        return "".join(s.text for s in self.spans)


Value = str | Cell


@dataclass(frozen=True)
class Column:
    """A column: its header, its alignment and, for the console, how its cells fit the width:
    ``wrap`` (long cells fold onto more lines; otherwise never wrapped), ``cut`` (cells shortened from
    the left, keeping their distinguishing end: to ``max_width`` when given, else to the renderer's
    name width), ``max_width`` (the console column's widest). Markdown uses only the header and alignment."""

    name: str
    align: Align = "left"
    wrap: bool = False
    cut: bool = False
    max_width: int | None = None


@dataclass
class Table:
    """Columns and rows (one value per column), a title, footnotes (below the table: a legend);
    ``section_ends``: rows after which the console draws a rule; ``ruled``: a rule between every row."""

    columns: list[Column]
    rows: list[list[Value]] = field(default_factory=list)
    title: str | None = None
    footnotes: list[str] = field(default_factory=list)
    section_ends: set[int] = field(default_factory=set)
    ruled: bool = False

    def add_row(self, *values: Value) -> None:
        if len(values) != len(self.columns):
            raise ValueError(f"a row of {len(values)} values for {len(self.columns)} columns")
        self.rows.append(list(values))

    def end_section(self) -> None:
        """A rule below the last row (on the console)."""
        if self.rows:
            self.section_ends.add(len(self.rows) - 1)


@dataclass(frozen=True)
class Note:
    """A call-out: ``> **Warning:** text`` (``label`` None: a plain quote)."""

    text: str
    label: str | None = "Note"


@dataclass(frozen=True)
class Image:
    alt: str
    path: str


@dataclass
class Section:
    """In this order: the heading (none: the section continues the one above), notes, paragraphs,
    the table, list items, the image."""

    heading: str | None = None
    notes: list[Note] = field(default_factory=list)
    paragraphs: list[str] = field(default_factory=list)
    table: Table | None = None
    items: list[str] = field(default_factory=list)
    image: Image | None = None


@dataclass
class Document:
    """A title, facts (``label: value`` lines below it) and sections."""

    title: str
    facts: list[tuple[str, str]] = field(default_factory=list)
    sections: list[Section] = field(default_factory=list)


# --------------------------------------------------------------------------------------------
# Markdown
# --------------------------------------------------------------------------------------------
_MD_STYLE = {"strong": "**{}**", "bad": "**{}**"}  # muted, good, warn: plain text


def _md_text(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", "<br>")


def markdown_cell(value: Value) -> str:
    """A cell as GitHub table text: ``|`` escaped, line breaks as ``<br>``, ``bad``/``strong`` in bold."""
    if isinstance(value, str):
        return _md_text(value)
    out = []
    for s in value.spans:
        text = _md_text(s.text)
        out.append(_MD_STYLE[s.style].format(text) if s.style in _MD_STYLE and text.strip() else text)
    return "".join(out)


_MD_RULE = {"left": "---", "right": "---:", "center": ":---:"}


def table_markdown(table: Table) -> list[str]:
    """The table's lines (a header and its rule even without rows; nothing without columns), then its footnotes."""
    if not table.columns:
        return []
    lines = []
    if table.title:
        lines += [f"**{table.title}**", ""]
    lines.append("| " + " | ".join(_md_text(c.name.replace("\n", " ")) for c in table.columns) + " |")
    lines.append("|" + "|".join(_MD_RULE[c.align] for c in table.columns) + "|")
    lines += ["| " + " | ".join(markdown_cell(v) for v in row) + " |" for row in table.rows]
    for f in table.footnotes:
        lines += ["", f]
    return lines


def _blocks(section: Section) -> Iterable[list[str]]:
    if section.heading is not None:
        yield [f"## {section.heading}"]
    for n in section.notes:
        yield [f"> **{n.label}:** {n.text}" if n.label else f"> {n.text}"]
    for p in section.paragraphs:
        yield [p]
    if section.table is not None and section.table.columns:
        yield table_markdown(section.table)
    if section.items:
        yield [f"- {item}" for item in section.items]
    if section.image is not None:
        yield [f"![{section.image.alt}]({section.image.path})"]


def to_markdown(doc: Document) -> str:
    """GitHub Markdown: ``# title``, each fact a ``label: value`` paragraph, then the sections; blocks
    apart by one blank line, one newline at the end."""
    blocks: list[list[str]] = [[f"# {doc.title}"]] + [[f"{label}: {value}"] for label, value in doc.facts]
    for s in doc.sections:
        blocks.extend(_blocks(s))
    return "\n\n".join("\n".join(b) for b in blocks) + "\n"


# --------------------------------------------------------------------------------------------
# JSON
# --------------------------------------------------------------------------------------------
def _json_value(value: Value) -> Any:
    """A plain string, or (styled) a list of ``{"text", "style"}``."""
    if isinstance(value, str):
        return value
    if all(not s.style for s in value.spans):
        return value.text
    return [{"text": s.text, "style": s.style} if s.style else {"text": s.text} for s in value.spans]


def table_json(table: Table) -> dict[str, Any]:
    out: dict[str, Any] = {"columns": [{"name": c.name, "align": c.align} for c in table.columns],
                           "rows": [[_json_value(v) for v in row] for row in table.rows]}
    if table.title:
        out["title"] = table.title
    if table.footnotes:
        out["footnotes"] = list(table.footnotes)
    return out


def _section_json(s: Section) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if s.heading is not None:
        out["heading"] = s.heading
    if s.notes:
        out["notes"] = [{"label": n.label, "text": n.text} for n in s.notes]
    if s.paragraphs:
        out["paragraphs"] = list(s.paragraphs)
    if s.table is not None:
        out["table"] = table_json(s.table)
    if s.items:
        out["items"] = list(s.items)
    if s.image is not None:
        out["image"] = {"alt": s.image.alt, "path": s.image.path}
    return out


def to_json(doc: Document) -> dict[str, Any]:
    """A plain dict (JSON-ready): title, facts as ``[label, value]`` pairs, sections with only what they hold."""
    return {"title": doc.title, "facts": [[label, value] for label, value in doc.facts],
            "sections": [_section_json(s) for s in doc.sections]}


def column_values(table: Table, name: str) -> Sequence[str]:
    """The plain text of a column's cells (tests, and readers of a table)."""
    i = [c.name for c in table.columns].index(name)
    return [v if isinstance(v, str) else v.text for v in (row[i] for row in table.rows)]
