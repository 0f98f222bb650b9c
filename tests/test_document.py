"""The one document model (vitdeploy.core.document) and its renderers: Markdown, JSON, rich."""

from __future__ import annotations

import io
import json
import subprocess
import sys

import pytest
from rich.console import Console
from vitdeploy.core.document import (Cell, Column, Document, Image, Note, Section, Span, Table, column_values, to_json,
                                     to_markdown)


def small() -> Document:
    table = Table([Column("artifact"), Column("p50 ms", "right"), Column("mid", "center"), Column("result")],
                  footnotes=["p50: median latency"])
    table.add_row("deit.onnx", "1.234", "x", "pass")
    table.add_row("a|b.int8.onnx", "12.5", "y", Cell.of(Span("FAIL", "bad"), ": cosine 0.97 < 0.98"))
    return Document("Report: deit", facts=[("Data", "val/, 16 samples")], sections=[
        Section(notes=[Note("calibrated on noise"), Note("random weights", "Warning"), Note("a plain quote", None)],
                paragraphs=["Reference top-1: 90.00%"], table=table),
        Section("Conditions", items=["CPU: x86", "GPU: none"]),
        Section(image=Image("p50 latency", "bench.png")),
    ])


def test_markdown_of_a_small_document():
    assert to_markdown(small()) == """# Report: deit

Data: val/, 16 samples

> **Note:** calibrated on noise

> **Warning:** random weights

> a plain quote

Reference top-1: 90.00%

| artifact | p50 ms | mid | result |
|---|---:|:---:|---|
| deit.onnx | 1.234 | x | pass |
| a\\|b.int8.onnx | 12.5 | y | **FAIL**: cosine 0.97 < 0.98 |

p50: median latency

## Conditions

- CPU: x86
- GPU: none

![p50 latency](bench.png)
"""


def test_markdown_escapes_pipes_and_line_breaks_in_cells_and_headers():
    table = Table([Column("a|b"), Column("drop\npt", "right")], rows=[["x | y", Cell.of("top", "\n", Span("sub", "muted"))]])
    md = to_markdown(Document("t", sections=[Section(table=table)]))
    assert "| a\\|b | drop pt |" in md and "| x \\| y | top<br>sub |" in md
    for line in md.splitlines():  # every table line has as many unescaped pipes as the header
        if line.startswith("|"):
            assert line.replace("\\|", "").count("|") == 3, line


def test_empty_tables():
    no_rows = Table([Column("artifact"), Column("cosine", "right")])
    md = to_markdown(Document("t", sections=[Section(table=no_rows)]))
    assert md == "# t\n\n| artifact | cosine |\n|---|---:|\n"  # a header alone is still a table
    no_columns = to_markdown(Document("t", sections=[Section(paragraphs=["p"], table=Table([]))]))
    assert no_columns == "# t\n\np\n"
    assert to_json(Document("t", sections=[Section(table=no_rows)]))["sections"][0]["table"]["rows"] == []
    with pytest.raises(ValueError, match="2 columns"):
        no_rows.add_row("only one")


def test_json_is_plain_and_keeps_styles():
    out = to_json(small())
    assert json.loads(json.dumps(out)) == out
    assert out["title"] == "Report: deit" and out["facts"] == [["Data", "val/, 16 samples"]]
    table = out["sections"][0]["table"]
    assert table["columns"][1] == {"name": "p50 ms", "align": "right"}
    assert table["rows"][0] == ["deit.onnx", "1.234", "x", "pass"]
    assert table["rows"][1][3] == [{"text": "FAIL", "style": "bad"}, {"text": ": cosine 0.97 < 0.98"}]
    assert out["sections"][0]["notes"][1] == {"label": "Warning", "text": "random weights"}
    assert out["sections"][1] == {"heading": "Conditions", "items": ["CPU: x86", "GPU: none"]}
    assert out["sections"][2] == {"image": {"alt": "p50 latency", "path": "bench.png"}}
    assert column_values(small().sections[0].table, "result") == ["pass", "FAIL: cosine 0.97 < 0.98"]


def _draw(table, width=80, name_width=30) -> str:
    from vitdeploy.cli.tables import render_rich

    buf = io.StringIO()
    Console(file=buf, width=width, color_system=None).print(render_rich(table, name_width))
    return buf.getvalue()


def test_rich_rendering_alignment_styles_and_cut_names():
    from vitdeploy.cli.tables import render_rich

    long = "a_very_long_model_name_patch16_224.int8.onnx"
    table = Table([Column("artifact", wrap=True, cut=True), Column("p50", "right"), Column("result")], title="batch 1")
    table.add_row(Cell.of(long, "\n", Span("ort-cpu · int8", "muted")), "1.5", Cell.of(Span("pass", "good")))
    table.add_row("[bold]x[/]", "12.25", Cell.of(Span("FAIL", "bad")))
    t = render_rich(table, name_width=20)
    assert [c.justify for c in t.columns] == ["left", "right", "left"] and [c.no_wrap for c in t.columns] == [False, True, True]
    out = _draw(table, name_width=20)
    assert "…" + long[-19:] in out and long not in out  # cut from the left: the distinguishing end stays
    assert "[bold]x[/]" in out  # cells are text, never markup
    p50 = [line for line in out.splitlines() if "1.5" in line or "12.25" in line]
    assert p50[0].index("1.5") + 3 == p50[1].index("12.25") + 5  # right-aligned
    cell = t.columns[2]._cells[1]
    assert cell.plain == "FAIL" and str(cell.spans[0].style) == "red"
    assert "dim" in str(t.columns[0]._cells[0].spans[-1].style)


def test_rich_rendering_of_empty_and_sectioned_tables():
    empty = Table([Column("artifact"), Column("cosine", "right")])
    assert "artifact" in _draw(empty) and "cosine" in _draw(empty)
    fleet = Table([Column(""), Column("xavier-nx-very-long-devkit", "right", cut=True, max_width=18)])
    fleet.add_row("status", "ok")
    fleet.end_section()
    fleet.add_row("fp32 ms @1", "1.000")
    out = _draw(fleet)
    lines = [line.strip() for line in out.splitlines()]
    assert "…" + "xavier-nx-very-long-devkit"[-17:] in lines  # the header cut to 18 characters too
    row = {line.split()[0]: i for i, line in enumerate(lines) if line}
    assert row["fp32"] == row["status"] + 2 and lines[row["status"] + 1] == ""  # the section's rule between them


def test_print_table_fits_the_terminal_and_prints_footnotes(monkeypatch):
    from vitdeploy.cli import tables

    buf = io.StringIO()
    monkeypatch.setattr(tables, "console", Console(file=buf, width=80, color_system=None))
    long = "x" * 100 + ".int8.onnx"
    table = Table([Column("artifact", wrap=True, cut=True), Column("p50", "right")], footnotes=["p50: median"])
    table.add_row(long, "1.0")
    tables.print_table(table)
    lines = buf.getvalue().splitlines()
    assert max(map(len, lines)) <= 80 and lines[-1] == "p50: median"
    assert any(line.lstrip().startswith("…") and ".int8.onnx" in line for line in lines)


def test_core_document_does_not_import_rich():
    code = "import sys, vitdeploy.core.document; print(any(m == 'rich' or m.startswith('rich.') for m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_print_kv_draws_a_two_column_model_as_kv_table(monkeypatch):
    from vitdeploy.cli import tables

    def drawn(print_it) -> str:
        buf = io.StringIO()
        monkeypatch.setattr(tables, "console", Console(file=buf, width=60, color_system=None))
        print_it()
        return buf.getvalue()

    model = tables.kv_model("exported [deit]")
    model.add_row("size", "1.23 MB")
    model.add_row("note", Cell.of(Span("a [bold]long[/] note " * 6, "warn")))
    by_hand = tables.kv_table("exported \\[deit]")
    by_hand.add_row("size", "1.23 MB")
    by_hand.add_row("note", "a \\[bold]long\\[/] note " * 6)
    assert drawn(lambda: tables.print_kv(model)) == drawn(lambda: tables.console.print(by_hand))
    t = tables.render_kv(model)
    assert not t.show_header and str(t.columns[1]._cells[1].spans[0].style) == "yellow"


def _fleet_report() -> dict:
    def row(p: str, p50: float, verdict: str) -> dict:
        return {"precision": p, "latency": {"1": {"p50_ms": p50}}, "top1": None, "cosine": 0.99991, "top1_agreement": 1.0,
                "validation": verdict, "manifest_chain": [{"artifact": f"m.{p}.engine", "sha256": "ab" * 32},
                                                          {"artifact": "m.onnx", "sha256": None}]}

    return {"model": "deit", "notes": ["random weights"], "validation_data": {"judged_on": "noise"}, "checkpoint": None,
            "calibration": "noise", "precisions": ["fp16"], "batches": [1], "warnings": [], "steps_skipped": ["export"],
            "files": {"plot": "report.png"}, "failed": ["gone"],
            "devices": [{"name": "orin|1", "host": "h", "status": "ok", "tensorrt": "10.3.0", "conditions": "MAXN",
                         "precisions": [row("fp16", 1.5, "FAIL: cosine | low")]},
                        {"name": "gone", "host": "offline", "status": "failed", "precisions": [],
                         "error": {"exit_code": 11, "message": "cannot reach offline"}}]}


def test_fleet_markdown_is_the_fleet_document():
    from vitdeploy.bench.fleet_report import fleet_document, fleet_markdown

    r = _fleet_report()
    doc = fleet_document(r)
    assert fleet_markdown(r) == to_markdown(doc)
    table = doc.sections[0].table
    assert [(c.name, c.align) for c in table.columns] == [("", "left"), ("orin|1", "right"), ("gone", "right")]
    assert column_values(table, "")[:2] == ["status", "TensorRT"]
    md = fleet_markdown(r)
    assert md.startswith("# vitdeploy fleet report: deit\n\n> **Note:** random weights\n\nCheckpoint: none (random weights);")
    assert "|  | orin\\|1 | gone |\n|---|---:|---:|\n| status | ok | FAILED exit 11 |" in md
    assert "| fp16 verdict | FAIL: cosine \\| low | - |" in md  # a '|' in a cell is escaped
    assert "## Devices\n\n- **orin\\|1**: MAXN\n- **gone** (offline): **failed**, exit 11: cannot reach offline\n" in md
    assert f"## Manifest chains\n\n- orin|1 fp16: m.fp16.engine ({'ab' * 6}) <- m.onnx ()\n" in md
    assert md.endswith("\n\nResumed: export unchanged and not redone.\n\n![p50 latency vs batch per device](report.png)\n")
    assert "## Warnings" not in md
