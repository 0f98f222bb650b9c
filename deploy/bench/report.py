"""Report writers for a bench document (vitdeploy.bench/1): JSON, Markdown and a PNG plot.

    paths = write_report(doc, "reports/orin-maxn")   # bench.json, bench.md, bench.png
    paths.plot is None when matplotlib is missing: JSON and Markdown are still written and the
    Markdown says the plot was skipped (paths.plot_skipped says why).

The Markdown (a table per batch, accuracy, conditions, artifacts) is rendered here; the plot is
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
from vitdeploy.core.errors import MissingDependencyError, OutputError, OutputExistsError
from vitdeploy.core.io import write_bytes_atomic, write_json_atomic

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
    d = Path(directory)
    if d.exists() and not d.is_dir():
        raise OutputError(f"report folder {d} exists and is not a folder")
    for p in report_paths(d).values():
        if p.exists() and not force:
            raise OutputExistsError(f"{p} exists; pass --force to overwrite the report")
    probe = d
    while not probe.exists():
        probe = probe.parent
    if not os.access(probe, os.W_OK | os.X_OK):
        raise OutputError(f"cannot write the report into {d}: {probe} is not writable")


# --------------------------------------------------------------------------------------------
# JSON
# --------------------------------------------------------------------------------------------
def write_json(doc: dict[str, Any], path: str | os.PathLike) -> Path:
    validate_result(doc)
    write_json_atomic(path, doc)
    return Path(path)


# --------------------------------------------------------------------------------------------
# Markdown
# --------------------------------------------------------------------------------------------
def markdown(doc: dict[str, Any], plot_file: str | None = None, plot_skipped: str | None = None) -> str:
    cfg, cond = doc["config"], doc["conditions"]
    labels = [a["label"] for a in doc["artifacts"]]
    first = labels[0]
    lines = [f"# Benchmark: {', '.join(labels)}", ""]
    count = (f"{cfg['iterations']} timed iterations" if cfg.get("iterations") else f"about {cfg['duration']} s")
    lines.append(f"Measured {cond.get('finished', doc.get('created'))} on {environment_label(doc)}. "
                 f"{cfg['warmup']} warm-up + {count} per artifact and batch, "
                 + ("artifacts interleaved round-robin" if cfg.get("interleave") else "artifacts one after another")
                 + f". Latency is host wall clock per call (end to end, host-device copies included on a GPU); "
                 f"throughput = batch / mean latency; speedup = p50 of {cell(first)} / p50 at the same batch.")
    lines.append("")
    if doc["warnings"]:
        lines += ["**Warnings:**", ""] + [f"- {cell(w)}" for w in doc["warnings"]] + [""]
    any_device = any(r.get("device") for r in doc["results"])
    any_devmem = any((r.get("memory") or {}).get("device_mib") is not None for r in doc["results"])
    for batch, rows in by_batch(doc).items():
        lines += [f"## Batch {batch}", ""]
        head = ["artifact", "backend", "precision", "p50 ms", "p90 ms", "p99 ms", "mean ± std ms", "images/s", "speedup"]
        if any_device:
            head += ["GPU with copies p50 ms", "GPU device-only p50 ms"]
        head += ["peak RSS growth MiB"] + (["device MiB"] if any_devmem else [])
        lines += ["| " + " | ".join(head) + " |", "|" + "|".join("---" if i < 3 else "---:" for i in range(len(head))) + "|"]
        for r in rows:
            lat = r["latency_ms"]
            row = [cell(r["artifact"]), r["backend"], r["precision"], ms(lat["p50"]), ms(lat["p90"]), ms(lat["p99"]),
                   f"{ms(lat['mean'])} ± {ms(lat['std'])}", num(r.get("throughput_ips"), ",.1f"),
                   num(r.get("speedup"), ".2f") + ("×" if r.get("speedup") is not None else "")]
            if any_device:
                dev = r.get("device") or {}
                e2e, only = dev.get("end_to_end_ms"), dev.get("device_only_ms")
                row += [ms(e2e["p50"]) if e2e else "-", ms(only["p50"]) if only else "-"]
            mem = r.get("memory") or {}
            row.append(num(mem.get("host_peak_rss_delta_mib"), ".1f"))
            if any_devmem:
                row.append(num(mem.get("device_mib"), ".1f"))
            lines.append("| " + " | ".join(row) + " |")
        lines.append("")
    acc = doc.get("accuracy")
    if acc:
        lines += ["## Accuracy (from vitdeploy validate)", "",
                  "| artifact | precision | cosine | top-1 agreement | top-1 | top-1 drop (points) |",
                  "|---|---|---:|---:|---:|---:|"]
        for label, a in acc.items():
            lines.append(f"| {cell(label)} | {a.get('precision')} | {num(a.get('cosine'), '.5f')} | "
                         f"{num(a.get('top1_agreement'), '.2%')} | {num(a.get('top1'), '.2%')} | "
                         f"{num(a.get('top1_drop_points'), '+.2f')} |")
        lines.append("")
    lines += ["## Conditions", ""] + [f"- {line}" for line in _condition_lines(doc)] + [""]
    lines += ["## Artifacts", ""]
    for a in doc["artifacts"]:
        shape = "×".join("N" if d is None else str(d) for d in a["input"]["shape"])
        rng = a.get("batch_range")
        lines.append(f"- {cell(a['label'])}: {a['kind']} ({a.get('path') or a['spec']}), {a['precision']}, "
                     f"runner {a.get('runner', a['backend'])}, input {a['input']['name']} {shape} {a['input']['dtype']}"
                     + (f", batches {rng['min']}-{rng['max']}" if rng else "")
                     + (f", sha256 {a['sha256'][:12]}" if a.get("sha256") else ""))
    lines.append("")
    if plot_file:
        lines += [f"![p50 latency vs batch]({plot_file})", ""]
    elif plot_skipped:
        lines += [f"_Plot skipped: {plot_skipped}_", ""]
    return "\n".join(lines)


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
