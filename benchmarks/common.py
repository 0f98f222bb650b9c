"""Shared helpers for the benchmark scripts: interleaved timing on one thread."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def interleaved(fns: dict[str, Callable[[], object]], rounds: int = 30, warmup: int = 3) -> dict[str, dict[str, float]]:
    """Time several callables round-robin (A B C A B C ...) so machine load hits all alike.

    Returns per name: median, p90 and mean latency in milliseconds.
    """
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    samples: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            t = time.perf_counter()
            fn()
            samples[name].append((time.perf_counter() - t) * 1e3)
    out = {}
    for name, xs in samples.items():
        xs.sort()
        out[name] = {"p50_ms": statistics.median(xs), "p90_ms": xs[int(0.9 * (len(xs) - 1))], "mean_ms": statistics.fmean(xs)}
    return out
