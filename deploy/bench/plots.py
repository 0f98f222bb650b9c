"""The bench document's PNG plot: p50 latency vs batch, and accuracy cost vs speedup.

matplotlib is imported lazily (the `plot` / `dev` extras) and drawn with the Agg canvas directly,
so no GUI backend and no pyplot global state are involved. ``require_matplotlib`` raises
MissingDependencyError when it is missing (the report then skips the plot). The axis helpers
(``batch_axis``, ``plain_formatter``) are shared with the fleet plot.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from vitdeploy.bench.conditions import environment_label
from vitdeploy.bench.formatting import ms
from vitdeploy.core.io import atomic_path


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


def plain_formatter():
    """A tick formatter of plain decimals: no "+1.0" offset, no shared ×10ⁿ multiplier."""
    from matplotlib.ticker import ScalarFormatter

    f = ScalarFormatter(useOffset=False)
    f.set_scientific(False)
    return f


def batch_axis(ax, batches: list[int]) -> None:
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
            labels += [ax.annotate(ms(y), (x, y), textcoords="offset points", xytext=(0, 7), ha="center",
                                   fontsize=8, color=color) for x, y in zip(xs, p50)]
    batch_axis(ax, sorted({int(r["batch"]) for r in doc["results"]}))
    positive = [v for v in all_lat if v > 0]
    if positive and max(positive) / min(positive) > 20:
        ax.set_yscale("log")
        ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))  # 1, 2, 5, 10, 20, 50 ...: plain numbers
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.yaxis.set_minor_formatter(NullFormatter())  # no "3×10²" on the minor ticks
        ax.set_ylabel("latency per call, p50 (ms, log scale)")
    else:
        ax.set_ylim(0, 1.15 * max(all_lat) if all_lat and max(all_lat) > 0 else 1.0)
        ax.yaxis.set_major_formatter(plain_formatter())
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
        ax2.xaxis.set_major_formatter(plain_formatter())
        ax2.yaxis.set_major_formatter(plain_formatter())
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
