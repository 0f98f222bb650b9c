"""The precision search's PNG (`vitdeploy quantize --max-drop`): per-layer sensitivity bars, and the
search's path of accuracy against estimated speed with the chosen plan marked.

matplotlib is imported lazily (the ``plot`` extra) and drawn on the Agg canvas; ``write`` returns None
when it is missing, and the caller says so in one warning line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vitdeploy.core.deps import is_available
from vitdeploy.core.io import atomic_path

MAX_BARS = 40


def plot_path(onnx_path: Path) -> Path:
    """``x.int8.onnx`` -> ``x.int8.search.png``."""
    return onnx_path.with_suffix(".search.png")


def write(block: dict[str, Any], out: Path, title: str = "") -> Path | None:
    """Draw the manifest's ``precision_search`` block to ``out`` (atomically); None without matplotlib."""
    if not is_available("matplotlib"):
        return None
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    metric, budget, fallback = block["metric"], block["max_drop_points"], block["fallback"].upper()
    groups = block["layers"]
    fig = Figure(figsize=(14, 6), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    fig.suptitle(f"{title}: precision search, --max-drop {budget:g} pt of {metric}  "
                 f"({block['layers_int8']} of {block['layers_total']} layers INT8, "
                 f"{block['int8_mac_share']:.0%} of the model's MACs)", fontsize=11)

    ax = fig.add_subplot(1, 2, 1)
    shown = sorted(groups, key=lambda g: -g["harm_int8_alone_1_minus_cos"])[:MAX_BARS]
    shown.reverse()  # most sensitive at the top
    harm = [max(g["harm_int8_alone_1_minus_cos"], 1e-12) for g in shown]
    colors = ["tab:orange" if g["precision"] != "int8" else "tab:blue" for g in shown]
    ax.barh(range(len(shown)), harm, color=colors)
    ax.set_yticks(range(len(shown)), [g["layer"] for g in shown], fontsize=7)
    ax.set_xscale("log")
    ax.set_xlabel("1 − mean cosine vs FP32 when this layer alone is INT8 (log scale)")
    more = f", top {MAX_BARS} of {len(groups)}" if len(groups) > MAX_BARS else ""
    ax.set_title(f"Sensitivity per layer{more}")
    ax.legend(handles=[Patch(color="tab:blue", label="INT8"), Patch(color="tab:orange", label=f"kept {fallback}")],
              fontsize=8, loc="lower right")
    ax.grid(True, axis="x", alpha=0.3)

    ax2 = fig.add_subplot(1, 2, 2)
    points = sorted(block["path"], key=lambda p: -p["float_layers"])
    xs = [p["estimated_speedup"] for p in points]
    ys = [p["drop_points"] for p in points]
    ax2.plot(xs, ys, color="tab:blue", linewidth=0.8, alpha=0.8)
    done = [p for p in points if p.get("evaluated", True)]
    ax2.scatter([p["estimated_speedup"] for p in done], [p["drop_points"] for p in done], color="tab:blue", zorder=3,
                label="evaluated plans, by number of float layers (selection set)")
    ends = [p for p in points if not p.get("evaluated", True)]
    if ends:
        ax2.scatter([p["estimated_speedup"] for p in ends], [p["drop_points"] for p in ends], facecolors="none",
                    edgecolors="tab:blue", zorder=3,
                    label=f"every layer {fallback}: not evaluated (the search runs float layers in FP32: drop 0)")
    n = block["layers_total"]
    chosen = next(p for p in points if p["float_layers"] == n - block["layers_int8"])
    ax2.scatter([chosen["estimated_speedup"]], [chosen["drop_points"]], s=160, facecolors="none", edgecolors="tab:red",
                linewidths=2, zorder=4, label=f"chosen plan: {chosen['float_layers']} of {n} layers {fallback} (selection set)")
    conf = block.get("confirmation") or {}
    if "drop_points" in conf:
        ax2.scatter([chosen["estimated_speedup"]], [conf["drop_points"]], marker="*", s=160, color="tab:green", zorder=5,
                    label=f"chosen plan, confirmation set ({conf['samples']} images)")
    ax2.axhline(budget, color="tab:red", linestyle="--", linewidth=1, label=f"budget {budget:g} pt")
    prof = block["device_profile"]
    ax2.set_xlabel(f"estimated speed-up over all-{fallback} ({prof['name']}: {'timed here' if prof['measured'] else 'published throughput'}; an estimate)")
    ax2.set_ylabel("100 × (1 − mean cosine) vs FP32" if metric == "cosine" else f"{metric} drop vs FP32 (percentage points)")
    ax2.margins(x=0.08, y=0.12)
    ax2.set_title("Search path: accuracy vs estimated speed")
    ax2.grid(True, alpha=0.3)
    ax2.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=2, frameon=False)  # off the points
    out = Path(out)
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png")
    return out
