"""Number and cell formats shared by every rendering of bench results.

The Markdown report, the fleet report, the plot labels and the CLI's rich table all format a
latency with ``ms`` (3 decimals below 10 ms, 1 below 1000, then thousands), so the same figure
reads the same everywhere. Table cells of a ``core.document.Table`` need no ``cell``: its
Markdown renderer escapes them; ``cell`` is for Markdown written by hand (the fleet table, text).
"""

from __future__ import annotations

from typing import Any


def cell(v: Any) -> str:
    return str(v).replace("|", "\\|")


def ms(v: float | None) -> str:
    if v is None:
        return "-"
    return f"{v:.3f}" if v < 10 else f"{v:.1f}" if v < 1000 else f"{v:,.0f}"


def num(v: float | None, fmt: str, suffix: str = "") -> str:
    """``v`` formatted (with ``suffix``), or "-" when there is none."""
    return "-" if v is None else format(v, fmt) + suffix


def by_batch(doc: dict[str, Any]) -> dict[int, list[dict[str, Any]]]:
    out: dict[int, list[dict[str, Any]]] = {}
    for r in doc["results"]:
        out.setdefault(int(r["batch"]), []).append(r)
    return dict(sorted(out.items()))
