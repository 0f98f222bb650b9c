"""The fleet report (vitdeploy.pipeline.fleet): a column per device, in Markdown and as a PNG.

``fleet_rows`` is the device-columns table (also shown by `vitdeploy deploy --devices`),
``fleet_document`` the whole report as a ``core.document.Document`` (``fleet_markdown``: its
Markdown), ``write_fleet_plot`` a panel of p50 latency vs batch per precision, one series per device.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from vitdeploy.bench.formatting import cell, ms, num
from vitdeploy.bench.plots import batch_axis, plain_formatter, require_matplotlib
from vitdeploy.core.document import Column, Document, Image, Note, Section, Table, to_markdown
from vitdeploy.core.io import atomic_path

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
        group: Rows = [(f"{p} ms @{b}", [ms(((row.get("latency") or {}).get(str(b)) or {}).get("p50_ms")) for row in rows])
                       for b in r["batches"]]
        if labelled:
            group.append((f"{p} top-1", [num(row.get("top1"), ".1%") for row in rows]))
        group += [(f"{p} cosine", [num(row.get("cosine"), ".5f") for row in rows]),
                  (f"{p} top-1 agree", [num(row.get("top1_agreement"), ".1%") for row in rows]),
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


def fleet_document(r: dict[str, Any]) -> Document:
    """The fleet report as a ``core.document.Document``: the device columns table (labels, then a
    right-aligned column per device), each device's conditions or failure, the warnings, the manifest chains."""
    d = r["validation_data"]
    names, groups = fleet_rows(r)
    table = Table([Column("")] + [Column(n, "right") for n in names])
    for group in groups:
        for label, cells in group:
            table.add_row(label, *cells)
    devices = []
    for dev in r["devices"]:
        if dev["status"] == "failed":
            devices.append(f"**{cell(dev['name'])}** ({dev['host']}): **failed**, exit {dev['error']['exit_code']}: "
                           f"{dev['error']['message']}")
        else:
            devices.append(f"**{cell(dev['name'])}**: {dev['conditions']}" + (" (resumed: unchanged)" if dev.get("resumed") else ""))
    chains = [f"{dev['name']} {row['precision']}: "
              + " <- ".join(f"{x['artifact']} ({(x.get('sha256') or '')[:12]})" for x in row["manifest_chain"])
              for dev in r["devices"] for row in dev["precisions"]]
    sections = [Section(notes=[Note(n) for n in r["notes"]],
                        paragraphs=[f"Checkpoint: {checkpoint_text(r)}; calibration: {r['calibration']}; "
                                    f"verdicts judged on {d['judged_on']} on each device, against the FP32 ONNX run there; "
                                    "latency: p50 per call in ms."],
                        table=table),
                Section("Devices", items=devices)]
    if r["warnings"]:
        sections.append(Section("Warnings", items=list(r["warnings"])))
    sections.append(Section("Manifest chains", items=chains))
    tail = Section(paragraphs=[f"Resumed: {', '.join(r['steps_skipped'])} unchanged and not redone."] if r["steps_skipped"] else [],
                   image=Image("p50 latency vs batch per device", r["files"]["plot"]) if r["files"].get("plot") else None)
    if tail.paragraphs or tail.image:
        sections.append(tail)
    return Document(f"vitdeploy fleet report: {r['model']}", sections=sections)


def fleet_markdown(r: dict[str, Any]) -> str:
    """The fleet report in Markdown (``fleet_document`` rendered by ``core.document.to_markdown``)."""
    return to_markdown(fleet_document(r))


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
        batch_axis(ax, batches)
        ax.yaxis.set_major_formatter(plain_formatter())
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
