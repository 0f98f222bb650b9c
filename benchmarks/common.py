"""Shared helpers for the benchmark scripts: interleaved timing on one thread."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def interleaved(fns: dict[str, Callable[[], object]], rounds: int = 30, warmup: int = 3) -> dict[str, dict[str, float]]:
    """Time several callables round-robin (A B C, B C A, C A B ...: the first one rotates each round,
    so neither a change of machine load nor cache warmth favours one) so machine load hits all alike.

    Returns per name: median, p90, min and mean latency in milliseconds, and the raw samples.
    """
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    names = list(fns)
    samples: dict[str, list[float]] = {k: [] for k in fns}
    for r in range(rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            t = time.perf_counter()
            fns[name]()
            samples[name].append((time.perf_counter() - t) * 1e3)
    out = {}
    for name, raw in samples.items():
        xs = sorted(raw)
        out[name] = {"p50_ms": statistics.median(xs), "p90_ms": xs[int(0.9 * (len(xs) - 1))], "min_ms": xs[0],
                     "mean_ms": statistics.fmean(xs), "samples_ms": raw}
    return out
