"""Report writers for a bench document (vitdeploy.bench/1): JSON, Markdown and a PNG plot.

    paths = write_report(doc, "reports/orin-maxn")   # bench.json, bench.md, bench.png
    paths.plot is None when matplotlib is missing: JSON and Markdown are still written and the
    Markdown says the plot was skipped (paths.plot_skipped says why).

matplotlib is imported lazily (the `plot` / `dev` extras) and drawn with the Agg canvas directly,
so no GUI backend and no pyplot global state are involved.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vitdeploy.bench import environment_label, validate_result
from vitdeploy.core.errors import MissingDependencyError, OutputError, OutputExistsError
from vitdeploy.core.io import atomic_path, write_bytes_atomic, write_json_atomic

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
def _cell(v: Any) -> str:
    return str(v).replace("|", "\\|")


def _ms(v: float | None) -> str:
    if v is None:
        return "-"
    return f"{v:.3f}" if v < 10 else f"{v:.1f}" if v < 1000 else f"{v:,.0f}"


def _num(v: float | None, fmt: str) -> str:
    return "-" if v is None else format(v, fmt)


def _by_batch(doc: dict[str, Any]) -> dict[int, list[dict[str, Any]]]:
    out: dict[int, list[dict[str, Any]]] = {}
    for r in doc["results"]:
        out.setdefault(int(r["batch"]), []).append(r)
    return dict(sorted(out.items()))


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
                 f"throughput = batch / mean latency; speedup = p50 of {_cell(first)} / p50 at the same batch.")
    lines.append("")
    if doc["warnings"]:
        lines += ["**Warnings:**", ""] + [f"- {_cell(w)}" for w in doc["warnings"]] + [""]
    any_device = any(r.get("device") for r in doc["results"])
    any_devmem = any((r.get("memory") or {}).get("device_mib") is not None for r in doc["results"])
    for batch, rows in _by_batch(doc).items():
        lines += [f"## Batch {batch}", ""]
        head = ["artifact", "backend", "precision", "p50 ms", "p90 ms", "p99 ms", "mean ± std ms", "images/s", "speedup"]
        if any_device:
            head += ["GPU with copies p50 ms", "GPU device-only p50 ms"]
        head += ["peak RSS growth MiB"] + (["device MiB"] if any_devmem else [])
        lines += ["| " + " | ".join(head) + " |", "|" + "|".join("---" if i < 3 else "---:" for i in range(len(head))) + "|"]
        for r in rows:
            lat = r["latency_ms"]
            row = [_cell(r["artifact"]), r["backend"], r["precision"], _ms(lat["p50"]), _ms(lat["p90"]), _ms(lat["p99"]),
                   f"{_ms(lat['mean'])} ± {_ms(lat['std'])}", _num(r.get("throughput_ips"), ",.1f"),
                   _num(r.get("speedup"), ".2f") + ("×" if r.get("speedup") is not None else "")]
            if any_device:
                dev = r.get("device") or {}
                e2e, only = dev.get("end_to_end_ms"), dev.get("device_only_ms")
                row += [_ms(e2e["p50"]) if e2e else "-", _ms(only["p50"]) if only else "-"]
            mem = r.get("memory") or {}
            row.append(_num(mem.get("host_peak_rss_delta_mib"), ".1f"))
            if any_devmem:
                row.append(_num(mem.get("device_mib"), ".1f"))
            lines.append("| " + " | ".join(row) + " |")
        lines.append("")
    acc = doc.get("accuracy")
    if acc:
        lines += ["## Accuracy (from vitdeploy validate)", "",
                  "| artifact | precision | cosine | top-1 agreement | top-1 | top-1 drop (points) |",
                  "|---|---|---:|---:|---:|---:|"]
        for label, a in acc.items():
            lines.append(f"| {_cell(label)} | {a.get('precision')} | {_num(a.get('cosine'), '.5f')} | "
                         f"{_num(a.get('top1_agreement'), '.2%')} | {_num(a.get('top1'), '.2%')} | "
                         f"{_num(a.get('top1_drop_points'), '+.2f')} |")
        lines.append("")
    lines += ["## Conditions", ""] + [f"- {line}" for line in _condition_lines(doc)] + [""]
    lines += ["## Artifacts", ""]
    for a in doc["artifacts"]:
        shape = "×".join("N" if d is None else str(d) for d in a["input"]["shape"])
        rng = a.get("batch_range")
        lines.append(f"- {_cell(a['label'])}: {a['kind']} ({a.get('path') or a['spec']}), {a['precision']}, "
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
    load = " / ".join(_num(cpu.get(k), ".2f") for k in ("load_1min_start", "load_1min_end"))
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
            out.append(f"GPU {i}: {g.get('name')} (sm {g.get('compute_capability')}, {_num(g.get('memory_mib'), '.0f')} MiB, "
                       f"driver {g.get('driver')}); SM clock {_num(g.get('sm_clock_mhz'), '.0f')} / max "
                       f"{_num(g.get('sm_clock_max_mhz'), '.0f')} MHz, memory clock {_num(g.get('mem_clock_mhz'), '.0f')} MHz")
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
    out.append(f"Run: {c.get('started')} to {c.get('finished')} ({_num(c.get('seconds'), '.1f')} s)")
    return out


def write_markdown(doc: dict[str, Any], path: str | os.PathLike, plot_file: str | None = None,
                   plot_skipped: str | None = None) -> Path:
    write_bytes_atomic(path, markdown(doc, plot_file, plot_skipped).encode())
    return Path(path)


# --------------------------------------------------------------------------------------------
# Plot
# --------------------------------------------------------------------------------------------
def _accuracy_points(doc: dict[str, Any]) -> tuple[list[dict[str, Any]], str, int | None]:
    """(points, y-axis label, batch the speedups come from) for the accuracy-vs-speedup panel."""
    acc = doc.get("accuracy") or {}
    if not acc or not doc["results"]:
        return [], "", None
    batch = max(int(r["batch"]) for r in doc["results"])
    speedups = {r["artifact"]: r.get("speedup") for r in doc["results"] if int(r["batch"]) == batch}
    entries = [(label, a) for label, a in acc.items() if speedups.get(label) is not None]
    use_top1 = bool(entries) and all(a.get("top1_drop_points") is not None for _, a in entries)
    points = []
    for label, a in entries:
        if use_top1:
            y = float(a["top1_drop_points"])
        elif a.get("cosine") is not None:
            y = 1.0 - float(a["cosine"])
        else:
            continue
        points.append({"label": label, "precision": a.get("precision", "?"), "speedup": float(speedups[label]), "y": y})
    ylabel = "top-1 drop vs reference (percentage points)" if use_top1 else "1 − cosine similarity vs reference (no labels)"
    return points, ylabel, batch


def write_plot(doc: dict[str, Any], path: str | os.PathLike) -> Path:
    """PNG of ``plot_figure(doc)``."""
    fig = plot_figure(doc)
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    return path


def _plain():
    """A tick formatter of plain decimals: no "+1.0" offset, no shared ×10ⁿ multiplier."""
    from matplotlib.ticker import ScalarFormatter

    f = ScalarFormatter(useOffset=False)
    f.set_scientific(False)
    return f


def _batch_axis(ax, batches: list[int]) -> None:
    """A log2 x axis with a tick and a label at each benchmarked batch size, and room around a single one."""
    from matplotlib.ticker import FixedLocator, NullLocator

    ax.set_xscale("log", base=2)
    ax.xaxis.set_major_locator(FixedLocator(batches))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xticklabels([str(b) for b in batches])
    if len(batches) == 1:
        ax.set_xlim(batches[0] / 2, batches[0] * 2)


def plot_figure(doc: dict[str, Any]):
    """Figure: p50 latency vs batch per artifact (log x); with an accuracy section, a second panel of
    accuracy drop (or 1 - cosine) vs speedup per precision, each point labelled. Labels are moved
    apart until none overlap; tick labels never use an offset or a shared ×10ⁿ multiplier."""
    matplotlib = require_matplotlib()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    points, ylabel, acc_batch = _accuracy_points(doc)
    two = bool(points)
    fig = Figure(figsize=(13.5 if two else 8, 5.4), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 2, 1) if two else fig.add_subplot(1, 1, 1)
    colors = matplotlib.colormaps["tab10"]
    labels = []
    by_art: dict[str, list[dict[str, Any]]] = {}
    for r in doc["results"]:
        by_art.setdefault(r["artifact"], []).append(r)
    meta = {a["label"]: a for a in doc["artifacts"]}
    all_lat: list[float] = []
    for i, (label, rows) in enumerate(by_art.items()):
        rows = sorted(rows, key=lambda r: r["batch"])
        xs = [r["batch"] for r in rows]
        p50 = [r["latency_ms"]["p50"] for r in rows]
        p90 = [r["latency_ms"]["p90"] for r in rows]
        all_lat += p50 + p90
        a = meta.get(label, {})
        color = colors(i % 10)
        ax.plot(xs, p50, marker="o", color=color, linewidth=2,
                label=f"{label} ({a.get('precision', rows[0]['precision'])}, {a.get('backend', rows[0]['backend'])})")
        ax.fill_between(xs, p50, p90, color=color, alpha=0.15, linewidth=0)
        if len(by_art) == 1:  # value labels for one line only: several lines meet at small batches, where
            # labels pile onto each other and onto the markers (the figures are in the table and report.md)
            labels += [ax.annotate(_ms(y), (x, y), textcoords="offset points", xytext=(0, 7), ha="center",
                                   fontsize=8, color=color) for x, y in zip(xs, p50)]
    _batch_axis(ax, sorted({int(r["batch"]) for r in doc["results"]}))
    positive = [v for v in all_lat if v > 0]
    if positive and max(positive) / min(positive) > 20:
        ax.set_yscale("log")
        ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))  # 1, 2, 5, 10, 20, 50 ...: plain numbers
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.yaxis.set_minor_formatter(NullFormatter())  # no "3×10²" on the minor ticks
        ax.set_ylabel("latency per call, p50 (ms, log scale)")
    else:
        ax.set_ylim(0, 1.15 * max(all_lat) if all_lat and max(all_lat) > 0 else 1.0)
        ax.yaxis.set_major_formatter(_plain())
        ax.set_ylabel("latency per call, p50 (ms)")
    ax.set_xlabel("batch size (images per call, log scale)")
    ax.set_title("Latency vs batch (line: p50, band: p50 to p90)")
    ax.grid(True, which="major", alpha=0.3)
    # below the axes: inside, it hid the value labels of the slowest artifact at the smallest batch
    ax.legend(fontsize=9, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=1 if two else 2, frameon=False)

    if two:
        ax2 = fig.add_subplot(1, 2, 2)
        precisions = list(dict.fromkeys(p["precision"] for p in points))
        markers = "osD^vP*X"
        for k, prec in enumerate(precisions):
            pts = [p for p in points if p["precision"] == prec]
            ax2.scatter([p["speedup"] for p in pts], [p["y"] for p in pts], s=70, color=colors(k % 10),
                        marker=markers[k % len(markers)], label=prec, zorder=3)
            labels += [ax2.annotate(p["label"], (p["speedup"], p["y"]), textcoords="offset points", xytext=(6, 6),
                                    fontsize=8) for p in pts]
        ax2.axhline(0, color="grey", linewidth=0.8, linestyle=":")
        ax2.axvline(1, color="grey", linewidth=0.8, linestyle=":")
        first = doc["artifacts"][0]["label"]
        ax2.set_xlabel(f"speedup vs {first} at batch {acc_batch} (ratio of p50 latencies, ×)")
        ax2.set_ylabel(ylabel)
        ax2.set_title("Accuracy cost vs speedup per precision")
        ax2.grid(True, alpha=0.3)
        ax2.legend(title="precision", fontsize=9)
        ax2.margins(0.2)
        _widen_flat(ax2.set_xlim, [p["speedup"] for p in points], 0.1)
        _widen_flat(ax2.set_ylim, [p["y"] for p in points], 1.0 if ylabel.startswith("top-1") else 1e-6)
        ax2.xaxis.set_major_formatter(_plain())
        ax2.yaxis.set_major_formatter(_plain())
    fig.suptitle(f"vitdeploy bench: {environment_label(doc)}", fontsize=10)
    _spread_labels(fig, labels)
    return fig


def _widen_flat(set_lim, values: list[float], floor: float) -> None:
    """Limits centred on values whose range is ~0 (all equal, or rounding noise such as 1e-17):
    half-width the larger of ``floor`` and half their magnitude, instead of a range of ~1e-16."""
    lo, hi = min(values), max(values)
    if hi - lo <= 1e-9 * max(abs(lo), abs(hi), floor):
        half = max(floor, abs(hi) / 2)
        set_lim((lo + hi) / 2 - half, (lo + hi) / 2 + half)


def _spread_labels(fig, labels: list) -> None:
    """Move annotations apart vertically, away from their points, until no two overlap. The layout
    is fixed first (constrained layout would move the axes again when saving)."""
    if len(labels) < 2:
        return
    fig.canvas.draw()
    fig.set_layout_engine("none")
    renderer = fig.canvas.get_renderer()
    placed = []
    for ann in labels:
        for _ in range(len(placed) + 1):
            box = ann.get_window_extent(renderer)
            hit = next((b for b in placed if box.overlaps(b)), None)
            if hit is None:
                break
            dx, dy = ann.xyann
            shift = (hit.y0 - box.y1 - 1) if dy < 0 else (hit.y1 - box.y0 + 1)  # pixels
            ann.xyann = (dx, dy + shift * 72 / fig.dpi)
        placed.append(ann.get_window_extent(renderer))


def require_matplotlib():
    from vitdeploy.core.deps import require

    return require("matplotlib", "the PNG plot")


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


# --------------------------------------------------------------------------------------------
# Fleet report (vitdeploy.pipeline.fleet): a column per device
# --------------------------------------------------------------------------------------------
Rows = list[tuple[str, list[str]]]


def fleet_rows(r: dict[str, Any]) -> tuple[list[str], list[Rows]]:
    """(device names, groups of rows): the devices' conditions, then per precision its p50 latency per
    batch, top-1 (with labels), cosine, top-1 agreement and full verdict; each row one cell per device."""
    devices = r["devices"]

    def status(d: dict[str, Any]) -> str:
        if d["status"] == "failed":
            return f"FAILED exit {d['error']['exit_code']}"
        return "ok (resumed)" if d.get("resumed") else "ok"

    def power(d: dict[str, Any]) -> str:  # the match is the fleet's own (fleet.power_mode_warning)
        got = d.get("power_mode") or "-"
        return got if d.get("power_mode_ok", True) else f"{got} (want {d.get('expected_power_mode')})"

    groups: list[Rows] = [[("status", [status(d) for d in devices]),
                           ("TensorRT", [d.get("tensorrt") or "-" for d in devices]),
                           ("JetPack", [d.get("jetpack") or "-" for d in devices]),
                           ("power mode", [power(d) if d["status"] == "ok" else "-" for d in devices]),
                           ("GPU", [d.get("gpu") or "-" for d in devices])]]
    labelled = any(row.get("top1") is not None for d in devices for row in d["precisions"])
    for p in r["precisions"]:
        rows = [{row["precision"]: row for row in d["precisions"]}.get(p, {}) for d in devices]
        group: Rows = [(f"{p} ms @{b}", [_ms(((row.get("latency") or {}).get(str(b)) or {}).get("p50_ms")) for row in rows])
                       for b in r["batches"]]
        if labelled:
            group.append((f"{p} top-1", [_num(row.get("top1"), ".1%") for row in rows]))
        group += [(f"{p} cosine", [_num(row.get("cosine"), ".5f") for row in rows]),
                  (f"{p} top-1 agree", [_num(row.get("top1_agreement"), ".1%") for row in rows]),
                  (f"{p} verdict", [row.get("validation", "-") for row in rows])]
        groups.append(group)
    return [d["name"] for d in devices], groups


def checkpoint_text(r: dict[str, Any]) -> str:
    """The report's checkpoint line: the file, or what the weights are without one (a zoo model's are
    random; a `package.module:function` factory or a .pt2 program carries its own)."""
    if r["checkpoint"]:
        return str(r["checkpoint"])
    own = ":" in str(r["model"]) or str(r["model"]).endswith(".pt2")
    return "none (the model's own weights)" if own else "none (random weights)"


def fleet_markdown(r: dict[str, Any]) -> str:
    """The fleet report: the device columns table, each device's conditions or failure, the manifest chains."""
    lines = [f"# vitdeploy fleet report: {r['model']}", ""]
    lines += [f"> **Note:** {n}\n" for n in r["notes"]]
    d = r["validation_data"]
    lines += [(f"Checkpoint: {checkpoint_text(r)}; calibration: {r['calibration']}; "
               f"verdicts judged on {d['judged_on']} on each device, against the FP32 ONNX run there; "
               "latency: p50 per call in ms."), ""]
    names, groups = fleet_rows(r)
    lines += ["| | " + " | ".join(_cell(n) for n in names) + " |", "|---|" + "---:|" * len(names)]
    lines += [f"| {_cell(label)} | " + " | ".join(_cell(c) for c in cells) + " |" for group in groups for label, cells in group]
    lines += ["", "## Devices", ""]
    for dev in r["devices"]:
        if dev["status"] == "failed":
            lines.append(f"- **{_cell(dev['name'])}** ({dev['host']}): **failed**, exit {dev['error']['exit_code']}: "
                         f"{dev['error']['message']}")
        else:
            lines.append(f"- **{_cell(dev['name'])}**: {dev['conditions']}" + (" (resumed: unchanged)" if dev.get("resumed") else ""))
    if r["warnings"]:
        lines += ["", "## Warnings", ""] + [f"- {w}" for w in r["warnings"]]
    lines += ["", "## Manifest chains", ""]
    for dev in r["devices"]:
        for row in dev["precisions"]:
            chain = " <- ".join(f"{x['artifact']} ({(x.get('sha256') or '')[:12]})" for x in row["manifest_chain"])
            lines.append(f"- {dev['name']} {row['precision']}: {chain}")
    if r["steps_skipped"]:
        lines += ["", f"Resumed: {', '.join(r['steps_skipped'])} unchanged and not redone."]
    if r["files"].get("plot"):
        lines += ["", f"![p50 latency vs batch per device]({r['files']['plot']})"]
    return "\n".join(lines + [""])


def write_fleet_plot(r: dict[str, Any], path: str | os.PathLike) -> Path:
    """PNG: a panel per precision, p50 latency vs batch, one series per device that ran (failed ones named in the title)."""
    matplotlib = require_matplotlib()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    precisions, batches = r["precisions"], r["batches"]
    fig = Figure(figsize=(4.5 * len(precisions) + 1, 4.6), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    colors = matplotlib.colormaps["tab10"]
    axes = [fig.add_subplot(1, len(precisions), 1)]
    axes += [fig.add_subplot(1, len(precisions), i + 1, sharey=axes[0]) for i in range(1, len(precisions))]
    top = 0.0
    for ax, p in zip(axes, precisions):
        for k, dev in enumerate(r["devices"]):
            row = next((x for x in dev["precisions"] if x["precision"] == p), None)
            points = [(b, row["latency"][str(b)]["p50_ms"]) for b in batches if row and str(b) in row["latency"]]
            if points:
                ax.plot(*zip(*points), marker="o", color=colors(k % 10), linewidth=2,
                        label=f"{dev['name']} (TensorRT {dev.get('tensorrt') or '?'})")
                top = max(top, *(y for _, y in points))
        _batch_axis(ax, batches)
        ax.yaxis.set_major_formatter(_plain())
        ax.set_title(p)
        ax.set_xlabel("batch size (log scale)")
        ax.grid(True, alpha=0.3)
    axes[0].set_ylim(0, 1.15 * top if top > 0 else 1.0)  # shared: the panels compare
    axes[0].set_ylabel("latency per call, p50 (ms)")
    handles, labels = axes[0].get_legend_handles_labels()
    if handles:  # below the panels, never over a line
        fig.legend(handles, labels, loc="outside lower center", ncol=min(len(labels), 4), fontsize=9)
    failed = f"; failed: {', '.join(r['failed'])}" if r["failed"] else ""
    fig.suptitle(f"vitdeploy fleet: {r['model']}, p50 latency per device{failed}", fontsize=10)
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    return path
