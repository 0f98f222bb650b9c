"""The report of `vitdeploy deploy` (OUT/report.json and report.md): accuracy and latency of every
precision side by side, the conditions they were measured in, and each artifact's manifest chain
(the artifact, its parent ONNX, ..., the checkpoint)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from vitdeploy.bench.formatting import num
from vitdeploy.core import manifest as manifests
from vitdeploy.core.document import Cell, Column, Document, Image, Note, Section, Span, Table, Value, to_markdown
from vitdeploy.core.io import sha256_file
from vitdeploy.core.manifest import Manifest

if TYPE_CHECKING:
    from vitdeploy.pipeline.run import DeployConfig

REPORT_SCHEMA = "vitdeploy.deploy-report/1"


def gated(config: DeployConfig) -> bool:
    """Validation failures fail the run (exit 6, as `vitdeploy validate`) when judged on real data. With
    random weights (a zoo model without --checkpoint) validate itself judges only what still means
    something there (cosine, max abs; not top-1 agreement), so those verdicts gate too."""
    return config.calib is not None or config.data is not None


def manifest_chain(path: Path) -> list[dict[str, Any]]:
    """The manifest chain of an artifact: itself, its parent ONNX, ..., up to the checkpoint."""
    chain = []
    current: Path | None = path
    while current is not None and current.exists():
        m = manifests.read(current) or Manifest()
        chain.append({"artifact": current.name, "kind": m.kind, "precision": m.precision,
                      "sha256": m.sha256 or sha256_file(current)})
        parent = m.parent.artifact if m.parent else None
        if parent is None and m.raw.get("checkpoint"):
            chain.append({"artifact": Path(m.checkpoint.path).name, "kind": "checkpoint",
                          "sha256": m.checkpoint.sha256})
        current = Path(parent) if parent else None
        if current is not None and not current.is_absolute() and not current.exists():
            current = path.parent / current.name
    return chain


def build_report(config: DeployConfig, artifacts: dict[str, Path], engines: dict[str, Path], vdoc: dict[str, Any],
                 bdoc: dict[str, Any], notes: list[str], skipped: list[str], judged_on: str,
                 warnings: list[str]) -> dict[str, Any]:
    """``judged_on``: the images that judged the verdicts, in words; ``warnings``: the steps' own."""
    from vitdeploy import __version__

    measured = engines or artifacts
    acc = {c["artifact"]: c for c in vdoc["candidates"]}
    rows = []
    for precision, path in measured.items():
        label = path.name
        lat = {str(r["batch"]): {"p50_ms": r["latency_ms"]["p50"], "p99_ms": r["latency_ms"]["p99"],
                                 "throughput_ips": r["throughput_ips"], "speedup": r.get("speedup")}
               for r in bdoc["results"] if r["artifact"] == label}
        a = acc.get(label)
        ref = vdoc["reference"]
        rows.append({
            "precision": precision, "artifact": label, "backend": "trt" if engines else "ort-cpu",
            "top1": (a or {}).get("top1", ref.get("top1") if precision == "fp32" else None),
            "top1_drop_points": (a or {}).get("top1_drop_points",
                                              0.0 if precision == "fp32" and ref.get("top1") is not None else None),
            "cosine": a["comparison"]["cosine_mean"] if a else 1.0,
            "top1_agreement": a["comparison"]["top1_agreement"] if a else 1.0,
            "validation": "reference" if a is None else ("pass" if a["passed"] else "FAIL: " + "; ".join(a["failures"])),
            "latency": lat,
            "manifest_chain": manifest_chain(path),
        })
    return {
        "schema": REPORT_SCHEMA, "vitdeploy": __version__, "model": config.model,
        "checkpoint": str(config.checkpoint) if config.checkpoint else None,
        "calibration": str(config.calib) if config.calib else "built-in synthetic sample",
        "validation_data": {**vdoc["data"], "judged_on": judged_on}, "precisions": rows, "batches": list(config.batches),
        "conditions": bdoc.get("conditions"), "warnings": warnings + bdoc.get("warnings", []), "notes": notes,
        "steps_skipped": skipped, "passed": vdoc.get("passed", True), "gated": gated(config),
        "files": {"validate": "validate.json", "bench": "bench.json", "markdown": "report.md"},
    }


def document(r: dict[str, Any]) -> Document:
    """report.md as a ``Document``: the notes, one table of every precision's figures, the conditions,
    the manifest chains."""
    from vitdeploy.bench.fleet_report import checkpoint_text

    d = r["validation_data"]
    columns = [Column("precision"), Column("artifact"), Column("backend"), Column("top-1", "right"),
               Column("drop (pt)", "right"), Column("cosine", "right"), Column("top-1 agree", "right")]
    for b in r["batches"]:
        columns += [Column(f"p50 ms @{b}", "right"), Column(f"img/s @{b}", "right"), Column(f"speedup @{b}", "right")]
    table = Table(columns + [Column("validation")])
    for row in r["precisions"]:
        cells = [row["precision"], row["artifact"], row["backend"], num(row["top1"], ".2%"),
                 num(row["top1_drop_points"], "+.2f"), f"{row['cosine']:.5f}", f"{row['top1_agreement']:.2%}"]
        for b in r["batches"]:
            lat = row["latency"].get(str(b), {})
            cells += [num(lat.get("p50_ms"), ".2f"), num(lat.get("throughput_ips"), ",.0f"), num(lat.get("speedup"), ".2f", "x")]
        table.add_row(*cells, row["validation"])
    head = Section(notes=[Note(n) for n in r["notes"]], table=table,
                   paragraphs=[f"Checkpoint: {checkpoint_text(r)}; calibration: {r['calibration']}; "
                               f"verdicts judged on {d['judged_on']}" + (" (labelled)" if d["labels"] else " (no labels)")])
    c = r.get("conditions") or {}
    cpu = c.get("cpu") or {}
    conditions = [f"CPU: {cpu.get('model')} ({cpu.get('cores')} cores), threads: {c.get('threads')}"]
    conditions += [f"GPU: {g.get('name')} (sm {g.get('compute_capability')})" for g in c.get("gpus") or []]
    if c.get("jetson"):
        j = c["jetson"]
        conditions.append(f"Jetson: L4T {j.get('l4t')} (JetPack {j.get('jetpack')}), power mode {j.get('power_mode')}, "
                          f"clocks locked: {j.get('clocks_locked')}")
    conditions += [f"warning: {w}" for w in r["warnings"]]
    chains = [f"{row['precision']}: " + " <- ".join(f"{x['artifact']} ({(x.get('sha256') or '')[:12]})" for x in row["manifest_chain"])
              for row in r["precisions"]]
    sections = [head, Section("Conditions", items=conditions), Section("Manifest chains", items=chains)]
    if r["steps_skipped"]:
        sections.append(Section(paragraphs=[f"Resumed: {', '.join(r['steps_skipped'])} unchanged and not redone."]))
    sections.append(Section(image=Image("latency and accuracy", "report.png")))
    return Document(f"vitdeploy report: {r['model']}", sections=sections)


def report_markdown(r: dict[str, Any]) -> str:
    """report.md."""
    return to_markdown(document(r))


# What a failed check is called in the console's tables (its full figures are in report.md / report.json).
SHORT_FAILURES = {"max_abs": "max abs", "cosine": "cosine", "top-1 agreement": "top-1 agree",
                  "top-5 agreement": "top-5 agree", "top-1 drop": "top-1 drop"}


def verdict_cell(validation: str) -> Cell:
    """'FAIL: cosine 0.97 < 0.98; top-1 agreement ...' -> 'FAIL cosine +1' (the first check failed, and
    how many more); 'reference' muted; anything else as it is."""
    if validation == "reference":
        return Cell.of(Span("reference", "muted"))
    if not validation.startswith("FAIL"):
        return Cell.of(validation)
    failures = validation.removeprefix("FAIL").lstrip(": ").split("; ")
    first = next((short for name, short in SHORT_FAILURES.items() if failures[0].startswith(name)),
                 failures[0].split(" ")[0])
    more = f" +{len(failures) - 1}" if len(failures) > 1 else ""
    return Cell.of(Span("FAIL", "bad"), f" {first}{more}")


def summary_table(r: dict[str, Any]) -> Table:
    """The console's table, for 80 columns with three batch sizes: short headers, each speedup under
    its latency, top-1's drop under it, one short reason per verdict (the full one is in report.md)."""
    backends = sorted({row["backend"] for row in r["precisions"]})
    table = Table([Column("prec"), Column("top-1", "right"), Column("cosine", "right"),
                   *(Column(f"ms @{b}", "right") for b in r["batches"]), Column("verdict")],
                  title=f"{r['model']} on {', '.join(backends)}", ruled=True,  # a rule between the two-line rows
                  footnotes=["ms: p50 latency, speedup vs fp32 below it; below top-1: points vs fp32"])
    for row in r["precisions"]:
        ref = row["validation"] == "reference"
        top1 = Cell.of("-" if row["top1"] is None else f"{row['top1']:.1%}")
        if row["top1_drop_points"] is not None and not ref:
            top1 = Cell.of(*top1.spans, "\n", Span(f"{-row['top1_drop_points']:+.2f} pt", "muted"))
        cells: list[Value] = [row["precision"], top1, f"{row['cosine']:.4f}"]
        for b in r["batches"]:
            lat = row["latency"].get(str(b), {})
            p50 = f"{lat.get('p50_ms', float('nan')):.1f}"
            cells.append(p50 if ref or not lat.get("speedup") else Cell.of(p50, "\n", Span(f"{lat['speedup']:.2f}x", "muted")))
        cells.append(verdict_cell(row["validation"]))
        table.add_row(*cells)
    return table


FLEET_COLUMNS = 3  # devices per table: three 18-character columns beside the labels fit 80 columns


def fleet_tables(r: dict[str, Any]) -> list[Table]:
    """The console's fleet tables: a column per device (three per table, names and cells cut to 18
    characters), a row per condition and per precision's figures, a rule after each group."""
    from vitdeploy.bench.fleet_report import fleet_rows

    names, groups = fleet_rows(r)
    out = []
    for start in range(0, len(names), FLEET_COLUMNS):
        cols = range(start, min(start + FLEET_COLUMNS, len(names)))
        table = Table([Column("")] + [Column(names[i], "right", cut=True, max_width=18) for i in cols],
                      title=f"{r['model']} on {len(names)} devices" if start == 0 else None)
        for group in groups:
            for label, cells in group:
                table.add_row(label, *(verdict_cell(cells[i]) if label.endswith("verdict") else cells[i] for i in cols))
            table.end_section()
        out.append(table)
    if out:
        out[-1].footnotes.append("ms: p50 per call; cosine, top-1 agree: vs the FP32 ONNX on each device")
    return out
