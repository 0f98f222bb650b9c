"""The conditions a bench run measures under, and the warnings they call for.

``conditions_snapshot`` records the machine once per run (CPU, load, versions, providers, GPUs,
Jetson power mode and clocks); the process probes (peak RSS, CPU time, load average, UTC time) are
what the timing loop reads around the run. ``condition_warnings`` says when the results are not
trustworthy (a loaded machine, a Jetson below MAXN or with unlocked clocks, too few iterations),
and ``environment_label`` is the one line that names where a document was measured.
"""

from __future__ import annotations

import datetime as _dt
import os
import platform
import resource
import sys
from typing import Any

from vitdeploy.bench.config import MIN_ITERATIONS


def max_rss_bytes() -> int:
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(rss) if sys.platform == "darwin" else int(rss) * 1024  # Linux reports KiB


def cpu_seconds() -> float:
    """CPU time of this process, all its threads (the backends' worker threads included)."""
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def load1() -> float | None:
    try:
        return float(os.getloadavg()[0])
    except (AttributeError, OSError):
        return None


def conditions_snapshot(threads: int | None) -> dict[str, Any]:
    """The machine's state recorded once per run: CPU, load, versions, providers, GPUs, Jetson."""
    from vitdeploy.core import sysinfo

    env = sysinfo.environment()
    pk = env["packages"]
    cpu = env["cpu"]
    return {
        "vitdeploy": env["vitdeploy"],
        "python": env["python"],
        "platform": env["platform"],
        "cpu": {"model": cpu.get("model"), "cores": cpu.get("cores"), "machine": cpu.get("machine"),
                "load_1min_start": cpu.get("load_1min"), "load_1min_end": None},
        "threads": threads,
        "packages": {
            "numpy": pk["numpy"].get("version"),
            "onnxruntime": pk["onnxruntime"].get("version") if pk["onnxruntime"].get("installed") else None,
            "onnxruntime_providers": pk["onnxruntime"].get("providers", []),
            "tensorrt": pk["tensorrt"].get("version") if pk["tensorrt"].get("installed") and not pk["tensorrt"].get("error") else None,
            "torch": pk["torch"].get("version") if pk["torch"].get("installed") else None,
        },
        "gpus": env["gpus"],
        "jetson": env["jetson"],
    }


def _is_max_power_mode(mode: str | None) -> bool:
    text = (mode or "").strip().lower()
    return "maxn" in text or text in ("mode 0", "0")


def condition_warnings(cond: dict[str, Any], iterations: list[int]) -> list[str]:
    warnings: list[str] = []
    cores = cond["cpu"].get("cores") or 1
    own = cond["cpu"].get("bench_cpu_cores") or 0.0  # the bench's own threads count in the load at the end
    loads = {when: cond["cpu"].get(f"load_1min_{when}") for when in ("start", "end")}
    others = {"start": loads["start"], "end": None if loads["end"] is None else loads["end"] - own}
    high = {w: v for w, v in others.items() if v is not None and v > 0.5 * cores}
    if high:
        at = ", ".join(f"{loads[w]:.2f} at the {w}" + (f" ({v:.2f} without the bench's own {own:.2f})" if w == "end" and own else "")
                       for w, v in high.items())
        warnings.append(f"machine loaded: 1-min load average {at} > half of its {cores} cores; latencies are "
                        "inflated and noisy (interleaving spreads the effect over all artifacts, it does not remove it)")
    jetson = cond.get("jetson")
    if jetson:
        mode = jetson.get("power_mode")
        if mode is None:
            warnings.append("Jetson power mode unknown (nvpmodel not readable): results may not be at maximum clocks")
        elif not _is_max_power_mode(mode):
            warnings.append(f"Jetson power mode is {mode}, not MAXN (mode 0 on most modules): `sudo nvpmodel -m 0`")
        if jetson.get("clocks_locked") is not True:
            state = "not locked" if jetson.get("clocks_locked") is False else "of unknown state"
            warnings.append(f"Jetson clocks {state}: run `sudo jetson_clocks` so frequency scaling does not skew latency")
    few = sorted({n for n in iterations if n < MIN_ITERATIONS})
    if few:
        warnings.append(f"only {few[0]} timed iteration(s) in some results (< {MIN_ITERATIONS}): p90/p99 are not meaningful")
    return warnings


def environment_label(doc: dict[str, Any]) -> str:
    """One line describing where a document was measured (for titles and headers)."""
    c = doc["conditions"]
    parts = [f"{c['cpu'].get('model') or platform.machine()}"]
    threads = c.get("threads")
    parts.append(f"{threads} thread{'s' if threads != 1 else ''}" if threads else "default threads")
    if c.get("gpus"):
        parts.append(", ".join(g.get("name", "?") for g in c["gpus"]))
    j = c.get("jetson")
    if j:
        parts.append(f"{j.get('module') or 'Jetson'} L4T {j.get('l4t')} (JetPack {j.get('jetpack') or '?'}), "
                     f"{j.get('power_mode') or 'power mode ?'}, clocks {'locked' if j.get('clocks_locked') else 'not locked'}")
    return "; ".join(parts)
