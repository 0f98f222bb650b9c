"""Report writers for a bench document (vitdeploy.bench/1): JSON, Markdown and a PNG plot.

    paths = write_report(doc, "reports/orin-maxn")   # bench.json, bench.md, bench.png
    paths.plot is None when matplotlib is missing: JSON and Markdown are still written and the
    Markdown says the plot was skipped (paths.plot_skipped says why).

The Markdown (a table per batch, accuracy, conditions, artifacts) is a ``core.document.Document``
built here (``document``; the console's tables: ``summary_tables``); the plot is
drawn by vitdeploy.bench.plots and the fleet report lives in vitdeploy.bench.fleet_report.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vitdeploy.bench.conditions import environment_label
from vitdeploy.bench.document import validate_result
from vitdeploy.bench.formatting import by_batch, cell, ms, num
from vitdeploy.bench.plots import write_plot
from vitdeploy.core.document import Cell, Column, Document, Image, Section, Span, Table, Value, to_markdown
from vitdeploy.core.errors import MissingDependencyError, OutputError
from vitdeploy.core.io import check_output, write_bytes_atomic, write_json_atomic

REPORT_FILES = {"json": "bench.json", "markdown": "bench.md", "plot": "bench.png"}


@dataclass(frozen=True)
class ReportPaths:
    json: Path
    markdown: Path
    plot: Path | None
    plot_skipped: str | None = None

    def written(self) -> list[Path]:
        return [p for p in (self.json, self.markdown, self.plot) if p is not None]


def report_paths(directory: str | os.PathLike) -> dict[str, Path]:
    d = Path(directory)
    return {k: d / v for k, v in REPORT_FILES.items()}


def check_report_dir(directory: str | os.PathLike, force: bool = False) -> None:
    """Fail before benchmarking when the report cannot be written; creates nothing."""
    for p in report_paths(directory).values():
        check_output(p, force, create=False)


# --------------------------------------------------------------------------------------------
# JSON
# --------------------------------------------------------------------------------------------
# --------------------------------------------------------------------------------------------
# Markdown
# --------------------------------------------------------------------------------------------
def document(doc: dict[str, Any], plot_file: str | None = None, plot_skipped: str | None = None) -> Document:
    """bench.md as a ``Document``: how it was measured, warnings, a table per batch, accuracy (when
    the document has it), conditions, artifacts and the plot (or why it was skipped)."""
    cfg, cond = doc["config"], doc["conditions"]
    labels = [a["label"] for a in doc["artifacts"]]
    first = labels[0]
    count = (f"{cfg['iterations']} timed iterations" if cfg.get("iterations") else f"about {cfg['duration']} s")
    intro = Section(paragraphs=[
        f"Measured {cond.get('finished', doc.get('created'))} on {environment_label(doc)}. "
        f"{cfg['warmup']} warm-up + {count} per artifact and batch, "
        + ("artifacts interleaved round-robin" if cfg.get("interleave") else "artifacts one after another")
        + f". Latency is host wall clock per call (end to end, host-device copies included on a GPU); "
        f"throughput = batch / mean latency; speedup = p50 of {cell(first)} / p50 at the same batch."])
    sections = [intro]
    if doc["warnings"]:
        sections.append(Section(paragraphs=["**Warnings:**"], items=[cell(w) for w in doc["warnings"]]))
    any_device = any(r.get("device") for r in doc["results"])
    any_devmem = any((r.get("memory") or {}).get("device_mib") is not None for r in doc["results"])
    for batch, rows in by_batch(doc).items():
        columns = [Column("artifact"), Column("backend"), Column("precision")] + [
            Column(n, "right") for n in ("p50 ms", "p90 ms", "p99 ms", "mean ± std ms", "images/s", "speedup")]
        if any_device:
            columns += [Column("GPU with copies p50 ms", "right"), Column("GPU device-only p50 ms", "right")]
        columns += [Column("peak RSS growth MiB", "right")] + ([Column("device MiB", "right")] if any_devmem else [])
        table = Table(columns)
        for r in rows:
            lat = r["latency_ms"]
            row = [r["artifact"], r["backend"], r["precision"], ms(lat["p50"]), ms(lat["p90"]), ms(lat["p99"]),
                   f"{ms(lat['mean'])} ± {ms(lat['std'])}", num(r.get("throughput_ips"), ",.1f"),
                   num(r.get("speedup"), ".2f", "×")]
            if any_device:
                dev = r.get("device") or {}
                e2e, only = dev.get("end_to_end_ms"), dev.get("device_only_ms")
                row += [ms(e2e["p50"]) if e2e else "-", ms(only["p50"]) if only else "-"]
            mem = r.get("memory") or {}
            row.append(num(mem.get("host_peak_rss_delta_mib"), ".1f"))
            if any_devmem:
                row.append(num(mem.get("device_mib"), ".1f"))
            table.add_row(*row)
        sections.append(Section(f"Batch {batch}", table=table))
    acc = doc.get("accuracy")
    if acc:
        table = Table([Column("artifact"), Column("precision"), Column("cosine", "right"), Column("top-1 agreement", "right"),
                       Column("top-1", "right"), Column("top-1 drop (points)", "right")])
        for label, a in acc.items():
            table.add_row(label, str(a.get("precision")), num(a.get("cosine"), ".5f"), num(a.get("top1_agreement"), ".2%"),
                          num(a.get("top1"), ".2%"), num(a.get("top1_drop_points"), "+.2f"))
        sections.append(Section("Accuracy (from vitdeploy validate)", table=table))
    sections.append(Section("Conditions", items=_condition_lines(doc)))
    items = []
    for a in doc["artifacts"]:
        shape = "×".join("N" if d is None else str(d) for d in a["input"]["shape"])
        rng = a.get("batch_range")
        items.append(f"{cell(a['label'])}: {a['kind']} ({a.get('path') or a['spec']}), {a['precision']}, "
                     f"runner {a.get('runner', a['backend'])}, input {a['input']['name']} {shape} {a['input']['dtype']}"
                     + (f", batches {rng['min']}-{rng['max']}" if rng else "")
                     + (f", sha256 {a['sha256'][:12]}" if a.get("sha256") else ""))
    sections.append(Section("Artifacts", items=items))
    if plot_file:
        sections.append(Section(image=Image("p50 latency vs batch", plot_file)))
    elif plot_skipped:
        sections.append(Section(paragraphs=[f"_Plot skipped: {plot_skipped}_"]))
    return Document(f"Benchmark: {', '.join(labels)}", sections=sections)


def markdown(doc: dict[str, Any], plot_file: str | None = None, plot_skipped: str | None = None) -> str:
    """bench.md."""
    return to_markdown(document(doc, plot_file, plot_skipped))


def summary_tables(doc: dict[str, Any], wide: bool = False) -> list[Table]:
    """The console's tables (80 columns), one per batch: each artifact's name over its backend and
    precision, p50 and p99 (``wide``: p90, mean, std and RSS growth too), images/s and the speedup
    (green from 1.05x, red to 0.95x), GPU p50s when measured; the speedup's legend below the last."""
    first = doc["artifacts"][0]["label"]
    any_device = any(r.get("device") for r in doc["results"])
    stats = ("p50", "p90", "p99", "mean", "std") if wide else ("p50", "p99")
    out = []
    for b, rows in by_batch(doc).items():
        columns = [Column("artifact", wrap=True, cut=True)] + [Column(n, "right") for n in (*stats, "img/s", "speedup")]
        if any_device:
            columns += [Column("GPU p50\n+copies", "right"), Column("GPU p50\ndevice", "right")]
        if wide:
            columns.append(Column("RSS growth\nMiB", "right"))
        table = Table(columns, title=f"batch {b} (latency in ms)")
        for r in rows:
            lat = r["latency_ms"]
            sp = r.get("speedup")
            speedup = Span("-" if sp is None else f"{sp:.2f}×")
            if sp is not None and r["artifact"] != first:
                speedup = Span(speedup.text, "good" if sp >= 1.05 else "bad" if sp <= 0.95 else "")
            ips = r.get("throughput_ips")
            cells: list[Value] = [Cell.of(r["artifact"], "\n", Span(f"{r['backend']} · {r['precision']}", "muted")),
                                  *(ms(lat[k]) for k in stats),
                                  "-" if ips is None else f"{ips:,.0f}" if ips >= 100 else f"{ips:.1f}", Cell.of(speedup)]
            if any_device:
                dev = r.get("device") or {}
                cells += [ms((dev.get("end_to_end_ms") or {}).get("p50")), ms((dev.get("device_only_ms") or {}).get("p50"))]
            if wide:
                rss = (r.get("memory") or {}).get("host_peak_rss_delta_mib")
                cells.append("-" if rss is None else f"{rss:.1f}")
            table.add_row(*cells)
        out.append(table)
    if out:
        out[-1].footnotes.append(f"speedup = p50 of {first} / p50 at the same batch")
    return out


def _condition_lines(doc: dict[str, Any]) -> list[str]:
    c = doc["conditions"]
    cpu, pk = c["cpu"], c["packages"]
    load = " / ".join(num(cpu.get(k), ".2f") for k in ("load_1min_start", "load_1min_end"))
    own = cpu.get("bench_cpu_cores")
    out = [f"CPU: {cpu.get('model')} ({cpu.get('cores')} cores, {cpu.get('machine') or '?'}); 1-min load average start / end: {load}"
           + (f" (the bench itself used {own:.2f} cores on average)" if own is not None else ""),
           f"Threads: {c['threads'] if c.get('threads') else 'backend default'}"]
    ort = f"onnxruntime {pk['onnxruntime']} ({', '.join(pk.get('onnxruntime_providers') or [])})" if pk.get("onnxruntime") else "onnxruntime not installed"
    out.append(f"Software: vitdeploy {c.get('vitdeploy', doc.get('vitdeploy'))}, Python {c.get('python', '?')}, {ort}, "
               f"TensorRT {pk.get('tensorrt') or 'not installed'}, torch {pk.get('torch') or 'not installed'}, numpy {pk.get('numpy') or '?'}")
    if c.get("platform"):
        out.append(f"Platform: {c['platform']}")
    if c.get("gpus"):
        for i, g in enumerate(c["gpus"]):
            out.append(f"GPU {i}: {g.get('name')} (sm {g.get('compute_capability')}, {num(g.get('memory_mib'), '.0f')} MiB, "
                       f"driver {g.get('driver')}); SM clock {num(g.get('sm_clock_mhz'), '.0f')} / max "
                       f"{num(g.get('sm_clock_max_mhz'), '.0f')} MHz, memory clock {num(g.get('mem_clock_mhz'), '.0f')} MHz")
    else:
        out.append("GPU: none found (nvidia-smi absent or no device)")
    j = c.get("jetson")
    if j:
        locked = {True: "locked", False: "not locked"}.get(j.get("clocks_locked"), "unknown")
        out.append(f"Jetson: {j.get('module') or '?'}, L4T {j.get('l4t')} (JetPack {j.get('jetpack') or '?'}), "
                   f"power mode {j.get('power_mode') or 'unknown'}, clocks {locked}")
    else:
        out.append("Jetson: no (no /etc/nv_tegra_release)")
    if c.get("process_max_rss_mib") is not None:
        out.append(f"Process peak RSS: {c['process_max_rss_mib']:.0f} MiB")
    out.append(f"Run: {c.get('started')} to {c.get('finished')} ({num(c.get('seconds'), '.1f')} s)")
    return out


def write_markdown(doc: dict[str, Any], path: str | os.PathLike, plot_file: str | None = None,
                   plot_skipped: str | None = None) -> Path:
    write_bytes_atomic(path, markdown(doc, plot_file, plot_skipped).encode())
    return Path(path)


# --------------------------------------------------------------------------------------------
# All three
# --------------------------------------------------------------------------------------------
def write_report(doc: dict[str, Any], directory: str | os.PathLike, force: bool = False) -> ReportPaths:
    """bench.json, bench.md and bench.png in ``directory`` (created if needed).

    Without matplotlib the plot is skipped (ReportPaths.plot is None, plot_skipped says why) and
    the Markdown says so. The document is validated against the schema before anything is written.
    """
    validate_result(doc)
    check_report_dir(directory, force)
    paths = report_paths(directory)
    try:
        Path(directory).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create report folder {directory}: {exc.strerror or exc}") from exc
    plot: Path | None = None
    skipped: str | None = None
    try:
        plot = write_plot(doc, paths["plot"])
    except MissingDependencyError as exc:
        skipped = str(exc)
    write_json_atomic(paths["json"], doc)  # validated above
    write_markdown(doc, paths["markdown"], plot.name if plot else None, skipped)
    return ReportPaths(paths["json"], paths["markdown"], plot, skipped)
