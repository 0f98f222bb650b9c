"""The timing loop: ``run_bench`` times every artifact at every batch and returns the document.

Several artifacts are timed *interleaved* (one call of each per round, the starting artifact
rotating every round) at each batch size, so a change of machine load hits all of them alike
instead of whichever happened to run last. Warm-up rounds come first; the garbage collector is off
while timing. Each call is timed by the host clock (``time.perf_counter_ns``) and, where the runner
has the hooks of vitdeploy.bench.hooks, by CUDA events too; ``latency_stats`` turns the samples
into p50/p90/p99/mean/std/min/max in ms.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from vitdeploy.bench import artifacts as A
from vitdeploy.bench.conditions import condition_warnings, conditions_snapshot, cpu_seconds, load1, max_rss_bytes, now
from vitdeploy.bench.config import BenchConfig
from vitdeploy.bench.document import build_document

# progress(description, total or None) -> advance(n)
Progress = Callable[[str, "int | None"], Callable[[int], None]]


def latency_stats(samples_ms: list[float] | np.ndarray) -> dict[str, float]:
    a = np.asarray(samples_ms, dtype=np.float64)
    if a.size == 0:
        raise ValueError("no samples")
    p50, p90, p99 = np.percentile(a, [50, 90, 99])
    std = float(a.std(ddof=1)) if a.size > 1 else 0.0
    stats = {"p50": p50, "p90": p90, "p99": p99, "mean": a.mean(), "std": std, "min": a.min(), "max": a.max()}
    return {k: round(float(v), 6) for k, v in stats.items()}


class Samples:
    def __init__(self) -> None:
        self.host: list[float] = []
        self.gpu: list[float] = []
        self.device_only: list[float] = []


def _call(entry: A.Entry, feed: dict[str, np.ndarray], s: Samples | None) -> None:
    if entry.timed:
        t0 = time.perf_counter_ns()
        _, gpu_ms = entry.runner.timed_infer(feed)
        t1 = time.perf_counter_ns()
    else:
        t0 = time.perf_counter_ns()
        entry.runner.infer(feed)
        t1 = time.perf_counter_ns()
        gpu_ms = None
    dev_ms = entry.runner.infer_device_only(feed) if entry.device_only else None
    if s is not None:
        s.host.append((t1 - t0) / 1e6)
        if gpu_ms is not None:
            s.gpu.append(float(gpu_ms))
        if dev_ms is not None:
            s.device_only.append(float(dev_ms))


def _order(n: int, round_: int) -> list[int]:
    start = round_ % n  # rotate the starting artifact so none always runs right after another
    return [(start + i) % n for i in range(n)]


def _time_group(entries: list[A.Entry], feeds: list[dict], config: BenchConfig, advance) -> list[Samples]:
    samples = [Samples() for _ in entries]
    groups = [list(range(len(entries)))] if config.interleave else [[i] for i in range(len(entries))]
    for group in groups:
        for r in range(config.warmup):
            for j in _order(len(group), r):
                _call(entries[group[j]], feeds[group[j]], None)
        gc_was = gc.isenabled()
        gc.disable()
        try:
            start = time.perf_counter()
            budget = config.duration * len(group) if config.duration is not None else None
            r = 0
            while True:
                if budget is None and r >= config.planned_iterations:
                    break
                if budget is not None and r > 0 and time.perf_counter() - start >= budget:
                    break
                for j in _order(len(group), r):
                    i = group[j]
                    _call(entries[i], feeds[i], samples[i])
                r += 1
                if advance:
                    advance(len(group))
        finally:
            if gc_was:
                gc.enable()
    return samples


def run_bench(config: BenchConfig, progress: Progress | None = None) -> dict[str, Any]:
    """Benchmark every artifact at every batch; return the result document (vitdeploy.bench/1)."""
    started = now()
    t_start = time.perf_counter()
    cpu_start = cpu_seconds()
    arts = A.resolve_all(config)
    labels = A.labels(arts)
    cond = conditions_snapshot(config.threads)
    entries: list[A.Entry] = []
    try:
        for art, label in zip(arts, labels):
            entries.append(A.activate(art, label, config))
        for e in entries:  # every batch checked before any timing
            for b in config.batches:
                A.check_batch(e, b)
                A.feed_spec(e, b)
        shapes = {tuple(e.metas[0].shape[1:]) for e in entries}
        warnings: list[str] = []
        if len(shapes) > 1:
            warnings.append("artifacts take different input shapes ("
                            + "; ".join(f"{e.label} {list(e.metas[0].shape)}" for e in entries)
                            + "): speedups compare different work")
        rng = np.random.default_rng(config.seed)
        results: list[dict[str, Any]] = []
        for batch in config.batches:
            feeds = [A.make_feed(e, batch, rng) for e in entries]
            for e, feed in zip(entries, feeds):  # first call of each at this batch: attribute its memory growth
                before = max_rss_bytes()
                _call(e, feed, None)
                e.rss_growth += max(0, max_rss_bytes() - before)
            total = None if config.duration is not None else config.planned_iterations * len(entries)
            advance = progress(f"batch {batch}", total) if progress else None
            samples = _time_group(entries, feeds, config, advance)
            for e, s in zip(entries, samples):
                results.append(_result(e, batch, s, config))
        base: dict[int, float] = {}
        for r in results:
            base.setdefault(r["batch"], r["latency_ms"]["p50"])
            r["speedup"] = base[r["batch"]] / r["latency_ms"]["p50"] if r["latency_ms"]["p50"] > 0 else None
        artifacts_doc = [e.describe(config.backend or e.artifact.default_backend) for e in entries]
    finally:
        A.close_all(entries)
    cond["cpu"]["load_1min_end"] = load1()
    wall = time.perf_counter() - t_start
    cond["cpu"]["bench_cpu_cores"] = round((cpu_seconds() - cpu_start) / wall, 3) if wall > 0 else None
    cond["process_max_rss_mib"] = max_rss_bytes() / 2**20
    cond["started"] = started
    cond["finished"] = now()
    cond["seconds"] = round(time.perf_counter() - t_start, 3)
    warnings = condition_warnings(cond, [r["iterations"] for r in results]) + warnings
    return build_document(config, cond, artifacts_doc, results, warnings)


def _result(e: A.Entry, batch: int, s: Samples, config: BenchConfig) -> dict[str, Any]:
    """One results[] record: host and device latency statistics, throughput and memory."""
    lat = latency_stats(s.host)
    device = None
    if s.gpu or s.device_only:
        e2e = latency_stats(s.gpu) if s.gpu else None
        dev = latency_stats(s.device_only) if s.device_only else None
        device = {"timing": "CUDA events", "end_to_end_ms": e2e, "device_only_ms": dev,
                  "throughput_ips_device_only": batch / (dev["mean"] / 1e3) if dev and dev["mean"] > 0 else None}
    dev_mem = None
    if e.device_memory:
        try:
            got = e.runner.device_memory_bytes()
            dev_mem = got / 2**20 if got is not None else None
        except Exception:  # a hook that fails only loses the figure
            dev_mem = None
    return {
        "artifact": e.label,
        "backend": config.backend or e.artifact.default_backend,
        "precision": e.artifact.precision,
        "batch": batch,
        "input_shape": [batch, *e.metas[0].shape[1:]],
        "warmup": config.warmup,
        "iterations": len(s.host),
        "timing": "host wall clock per call" + (" (end to end: with host-device copies)" if e.timed else ""),
        "latency_ms": lat,
        "throughput_ips": batch / (lat["mean"] / 1e3) if lat["mean"] > 0 else None,
        "device": device,
        "memory": {"host_peak_rss_delta_mib": e.rss_growth / 2**20, "device_mib": dev_mem},
        "speedup": None,
    }
