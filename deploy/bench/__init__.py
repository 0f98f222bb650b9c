"""Benchmark artifacts side by side, with the conditions that make two results comparable.

    doc = run_bench(BenchConfig(("deit.onnx", "deit.fp16.onnx"), batches=(1, 8), iterations=200, threads=1))
    validate_result(doc)          # the document follows schemas/bench-1.json ("vitdeploy.bench/1")

Torch-free: artifacts are opened through vitdeploy.runners.factory, which imports each backend
lazily. Several artifacts are timed *interleaved* (one call of each per round, the starting
artifact rotating every round) at each batch size, so a change of machine load hits all of them
alike instead of whichever happened to run last.

What is measured, per artifact and batch:
- host wall-clock latency of one call (``time.perf_counter``), p50/p90/p99/mean/std in ms, and
  throughput = batch / mean latency (images/s). On a GPU this is end to end: host->device copy,
  execution, device->host copy and synchronisation.
- on a runner that exposes CUDA-event timing (the optional hooks): the same calls timed by
  the device ("end to end (with copies)") and, when it can run on inputs kept on the device,
  "device only" (execution alone).
- memory: the growth of the process's peak RSS attributed to the artifact (its loading plus its
  first call at each batch; a high-water mark, so a lower bound when artifacts share the
  process), and the device memory the runner reports, if it does.

The package, one concern a module (each imports only vitdeploy.core/runners and its siblings):
    config        BenchConfig (typed, checked options), parse_batches, defaults
    hooks         the optional runner protocols: TimedInfer, DeviceOnlyInfer, DeviceMemory
    conditions    the machine's conditions, process probes, condition warnings, environment_label
    artifacts     resolving and opening artifacts, batch checks, seeded input feeds
    measure       run_bench: the interleaved timing loop, latency_stats, the results[] records
    document      the vitdeploy.bench/1 document and its schema validation (fastjsonschema)
    formatting    latency and cell formats shared by every rendering
    report        bench.json + bench.md (+ bench.png): write_report, markdown
    plots         the PNG plot (matplotlib, imported lazily)
    fleet_report  the fleet report of vitdeploy.pipeline.fleet: device columns, Markdown, PNG

The names below are re-exported for ``from vitdeploy.bench import X``.
"""

from __future__ import annotations

from vitdeploy.bench.conditions import condition_warnings, conditions_snapshot, environment_label
from vitdeploy.bench.config import DEFAULT_ITERATIONS, DEFAULT_WARMUP, MIN_ITERATIONS, BenchConfig, parse_batches
from vitdeploy.bench.document import SCHEMA_FILE, SCHEMA_ID, load_schema, validate_result, validation_errors
from vitdeploy.bench.hooks import DeviceMemory, DeviceOnlyInfer, TimedInfer
from vitdeploy.bench.measure import Progress, latency_stats, run_bench

__all__ = [
    "DEFAULT_ITERATIONS", "DEFAULT_WARMUP", "MIN_ITERATIONS", "SCHEMA_FILE", "SCHEMA_ID",
    "BenchConfig", "DeviceMemory", "DeviceOnlyInfer", "Progress", "TimedInfer",
    "condition_warnings", "conditions_snapshot", "environment_label", "latency_stats", "load_schema",
    "parse_batches", "run_bench", "validate_result", "validation_errors",
]
