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
- on a runner that exposes CUDA-event timing (the optional hooks below): the same calls timed by
  the device ("end to end (with copies)") and, when it can run on inputs kept on the device,
  "device only" (execution alone).
- memory: the growth of the process's peak RSS attributed to the artifact (its loading plus its
  first call at each batch; a high-water mark, so a lower bound when artifacts share the
  process), and the device memory the runner reports, if it does.
"""

from __future__ import annotations

import datetime as _dt
import gc
import json
import math
import os
import platform
import resource
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from vitdeploy.core.errors import InputError, UsageError
from vitdeploy.runners.base import static_batch

SCHEMA_ID = "vitdeploy.bench/1"
SCHEMA_FILE = Path(__file__).parent / "schemas" / "bench-1.json"
DEFAULT_ITERATIONS = 100
DEFAULT_WARMUP = 10
MIN_ITERATIONS = 20  # fewer give no meaningful p99: warned about

# progress(description, total or None) -> advance(n)
Progress = Callable[[str, "int | None"], Callable[[int], None]]


# --------------------------------------------------------------------------------------------
# Optional runner hooks. A runner (the TensorRT runner, say) may expose any of them; bench checks
# each with isinstance() and uses only what is there. CPU runners expose none.
# --------------------------------------------------------------------------------------------
@runtime_checkable
class TimedInfer(Protocol):
    def timed_infer(self, feed: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], float]:
        """Like infer(), plus the device milliseconds from CUDA events recorded around the whole
        call on the stream: host->device copies, execution and device->host copies."""
        ...


@runtime_checkable
class DeviceOnlyInfer(Protocol):
    def infer_device_only(self, feed: dict[str, np.ndarray]) -> float:
        """Execute on inputs kept on the device and return the device milliseconds of the execution
        alone (CUDA events around the enqueue, no copies). The first call with a feed (or with new
        shapes) may copy it to the device; later calls with the same feed only execute."""
        ...


@runtime_checkable
class DeviceMemory(Protocol):
    def device_memory_bytes(self) -> int | None:
        """Device memory the runner holds (engine, context/activations, I/O buffers), or None."""
        ...


# --------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class BenchConfig:
    artifacts: tuple[str, ...]
    backend: str | None = None  # None: each artifact's default (ort-cpu for .onnx, trt for engines, torch for zoo names)
    batches: tuple[int, ...] = (1,)
    warmup: int = DEFAULT_WARMUP
    iterations: int | None = None  # None and no duration: DEFAULT_ITERATIONS
    duration: float | None = None  # seconds per artifact and batch (interleaved artifacts share the rounds)
    threads: int | None = None  # None: the backend's default
    interleave: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        from vitdeploy.runners.factory import BACKENDS

        object.__setattr__(self, "artifacts", tuple(str(a) for a in self.artifacts))
        object.__setattr__(self, "batches", tuple(self.batches))
        if not self.artifacts:
            raise UsageError("name at least one artifact to benchmark (.onnx, .engine or a zoo model name)")
        if self.backend is not None and self.backend not in BACKENDS:
            raise UsageError(f"unknown backend {self.backend!r}; choose from {', '.join(BACKENDS)}")
        if not self.batches:
            raise UsageError("--batch needs at least one batch size")
        if any(not isinstance(b, int) or isinstance(b, bool) or b < 1 for b in self.batches):
            raise UsageError(f"batch sizes must be positive integers, got {', '.join(map(str, self.batches))}")
        if len(set(self.batches)) != len(self.batches):
            raise UsageError(f"batch sizes repeat: {', '.join(map(str, self.batches))}")
        if self.iterations is not None and self.duration is not None:
            raise UsageError("--iterations and --duration are mutually exclusive: give one")
        if self.iterations is not None and self.iterations < 1:
            raise UsageError("--iterations must be >= 1")
        if self.duration is not None and not (self.duration > 0 and math.isfinite(self.duration)):
            raise UsageError("--duration must be a positive number of seconds")
        if self.warmup < 0:
            raise UsageError("--warmup must be >= 0")
        if self.threads is not None and self.threads < 1:
            raise UsageError("--threads must be >= 1")

    @property
    def mode(self) -> str:
        return "duration" if self.duration is not None else "iterations"

    @property
    def planned_iterations(self) -> int | None:
        return None if self.duration is not None else (self.iterations or DEFAULT_ITERATIONS)


def parse_batches(text: str) -> tuple[int, ...]:
    """'1,8,32' -> (1, 8, 32)."""
    parts = [p.strip() for p in str(text).split(",") if p.strip()]
    if not parts or not all(p.isdigit() and int(p) >= 1 for p in parts):
        raise UsageError(f"invalid --batch {text!r}: expected positive integers separated by commas, e.g. 1,8,32")
    return tuple(int(p) for p in parts)


# --------------------------------------------------------------------------------------------
# Statistics and conditions
# --------------------------------------------------------------------------------------------
def latency_stats(samples_ms: list[float] | np.ndarray) -> dict[str, float]:
    a = np.asarray(samples_ms, dtype=np.float64)
    if a.size == 0:
        raise ValueError("no samples")
    p50, p90, p99 = np.percentile(a, [50, 90, 99])
    std = float(a.std(ddof=1)) if a.size > 1 else 0.0
    stats = {"p50": p50, "p90": p90, "p99": p99, "mean": a.mean(), "std": std, "min": a.min(), "max": a.max()}
    return {k: round(float(v), 6) for k, v in stats.items()}


def _max_rss_bytes() -> int:
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(rss) if sys.platform == "darwin" else int(rss) * 1024  # Linux reports KiB


def _cpu_seconds() -> float:
    """CPU time of this process, all its threads (the backends' worker threads included)."""
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _load1() -> float | None:
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


# --------------------------------------------------------------------------------------------
# One artifact, opened
# --------------------------------------------------------------------------------------------
@dataclass
class _Entry:
    label: str
    artifact: Any  # vitdeploy.runners.factory.Artifact
    runner: Any
    metas: list[Any]
    static_batch: int | None
    batch_range: tuple[int, int] | None
    rss_growth: int = 0  # bytes of peak-RSS growth attributed so far
    timed: bool = False
    device_only: bool = False
    device_memory: bool = False

    def describe(self, backend: str) -> dict[str, Any]:
        art = self.artifact
        man = art.manifest or {}
        m0 = self.metas[0]
        return {
            "label": self.label, "spec": art.spec, "kind": art.kind, "path": str(art.path) if art.path else None,
            "backend": backend, "runner": getattr(self.runner, "name", type(self.runner).__name__),
            "precision": art.precision, "model": (man.get("model") or {}).get("name"),
            "sha256": man.get("sha256"),
            "input": {"name": m0.name, "shape": list(m0.shape), "dtype": str(np.dtype(m0.dtype))},
            "batch_range": ({"min": self.batch_range[0], "max": self.batch_range[1]} if self.batch_range else
                            ({"min": self.static_batch, "max": self.static_batch} if self.static_batch else None)),
            "hooks": {"timed_infer": self.timed, "infer_device_only": self.device_only, "device_memory": self.device_memory},
        }


def _open(artifact, backend: str | None, threads: int | None):
    """Open a runner (a seam for the tests)."""
    from vitdeploy.runners.factory import open_runner

    return open_runner(artifact, backend=backend, threads=threads)


def _labels(arts: list[Any]) -> list[str]:
    """File names (or zoo names); the spec as given when names collide; '#n' when specs do too."""
    names = [a.label for a in arts]
    names = [a.spec if names.count(n) > 1 else n for a, n in zip(arts, names)]
    return [f"{n}#{i + 1}" if names.count(n) > 1 else n for i, n in enumerate(names)]


def _check_batch(entry: _Entry, batch: int) -> None:
    if entry.static_batch is not None and batch != entry.static_batch:
        raise UsageError(f"{entry.label} has a static batch of {entry.static_batch}: batch {batch} is outside it "
                         "(re-export with a dynamic batch range, e.g. vitdeploy export --dynamic-batch 1:8:32)")
    if entry.batch_range is not None and not entry.batch_range[0] <= batch <= entry.batch_range[1]:
        lo, hi = min(entry.batch_range[0], batch), max(entry.batch_range[1], batch)
        raise UsageError(f"{entry.label} serves batches {entry.batch_range[0]} to {entry.batch_range[1]} (its manifest): "
                         f"batch {batch} is outside that range; re-export with --dynamic-batch {lo}:{min(max(8, lo), hi)}:{hi}")


def _feed_spec(entry: _Entry, batch: int) -> list[tuple[str, list[int], np.dtype]]:
    """(name, shape, dtype) of each input at ``batch``; UsageError/InputError for what bench cannot feed."""
    spec = []
    for m in entry.metas:
        dims = list(m.shape)
        if not dims:
            raise InputError(f"{entry.label}: input {m.name!r} is a scalar; bench feeds image batches")
        dims[0] = batch
        if any(d is None for d in dims[1:]):
            raise UsageError(f"{entry.label}: input {m.name!r} has dynamic axes besides the batch ({list(m.shape)}); "
                             "bench needs a fixed image size (re-export with a fixed input size)")
        dtype = np.dtype(m.dtype)
        if dtype.kind not in "fiub":
            raise InputError(f"{entry.label}: input {m.name!r} has dtype {dtype}, which bench cannot generate")
        spec.append((m.name, [int(d) for d in dims], dtype))
    return spec


def _feed(entry: _Entry, batch: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Seeded random inputs: standard normal for floats (then cast: fp16 inputs get fp16), small integers else."""
    feed = {}
    for name, dims, dtype in _feed_spec(entry, batch):
        if dtype.kind == "f":
            x = rng.standard_normal(dims, dtype=np.float32).astype(dtype)
        elif dtype.kind == "b":
            x = rng.integers(0, 2, size=dims).astype(bool)
        else:
            x = rng.integers(0, 10, size=dims).astype(dtype)
        feed[name] = np.ascontiguousarray(x)
    return feed


def _resolve_all(config: BenchConfig) -> list[Any]:
    from vitdeploy.core.deps import require
    from vitdeploy.runners.factory import resolve_artifact

    arts = [resolve_artifact(a) for a in config.artifacts]  # InputError for unknown types / missing files
    for art in arts:  # fail before loading anything heavy
        backend = config.backend or art.default_backend
        if art.kind == "engine" and backend == "trt":
            require("tensorrt", f"running the TensorRT engine {art.label}")
        if backend in ("ort-cpu", "ort-cuda", "ort-trt"):
            require("onnxruntime", f"running {art.label} in ONNX Runtime")
    return arts


def _activate(art, label: str, config: BenchConfig) -> _Entry:
    before = _max_rss_bytes()
    runner = _open(art, config.backend, config.threads)
    runner.activate()  # the Runner protocol: activate/deactivate (not every runner is a context manager)
    try:
        metas = list(runner.input_metadata())
        if not metas:
            raise InputError(f"{label} has no inputs")
        static = static_batch(metas)
        entry = _Entry(label, art, runner, metas, static, art.batch_range if static is None else None,
                       timed=isinstance(runner, TimedInfer), device_only=isinstance(runner, DeviceOnlyInfer),
                       device_memory=isinstance(runner, DeviceMemory))
    except BaseException:
        runner.deactivate()
        raise
    entry.rss_growth = max(0, _max_rss_bytes() - before)
    return entry


def _close(entries: list[_Entry]) -> None:
    for e in entries:
        try:
            e.runner.deactivate()
        except Exception:  # closing must not hide the real error
            pass


# --------------------------------------------------------------------------------------------
# The timing loop
# --------------------------------------------------------------------------------------------
class _Samples:
    def __init__(self) -> None:
        self.host: list[float] = []
        self.gpu: list[float] = []
        self.device_only: list[float] = []


def _call(entry: _Entry, feed: dict[str, np.ndarray], s: _Samples | None) -> None:
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


def _time_group(entries: list[_Entry], feeds: list[dict], config: BenchConfig, advance) -> list[_Samples]:
    samples = [_Samples() for _ in entries]
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
    from vitdeploy import __version__

    started = _now()
    t_start = time.perf_counter()
    cpu_start = _cpu_seconds()
    arts = _resolve_all(config)
    labels = _labels(arts)
    cond = conditions_snapshot(config.threads)
    entries: list[_Entry] = []
    try:
        for art, label in zip(arts, labels):
            entries.append(_activate(art, label, config))
        for e in entries:  # every batch checked before any timing
            for b in config.batches:
                _check_batch(e, b)
                _feed_spec(e, b)
        shapes = {tuple(e.metas[0].shape[1:]) for e in entries}
        warnings: list[str] = []
        if len(shapes) > 1:
            warnings.append("artifacts take different input shapes ("
                            + "; ".join(f"{e.label} {list(e.metas[0].shape)}" for e in entries)
                            + "): speedups compare different work")
        rng = np.random.default_rng(config.seed)
        results: list[dict[str, Any]] = []
        for batch in config.batches:
            feeds = [_feed(e, batch, rng) for e in entries]
            for e, feed in zip(entries, feeds):  # first call of each at this batch: attribute its memory growth
                before = _max_rss_bytes()
                _call(e, feed, None)
                e.rss_growth += max(0, _max_rss_bytes() - before)
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
        _close(entries)
    cond["cpu"]["load_1min_end"] = _load1()
    wall = time.perf_counter() - t_start
    cond["cpu"]["bench_cpu_cores"] = round((_cpu_seconds() - cpu_start) / wall, 3) if wall > 0 else None
    cond["process_max_rss_mib"] = _max_rss_bytes() / 2**20
    cond["started"] = started
    cond["finished"] = _now()
    cond["seconds"] = round(time.perf_counter() - t_start, 3)
    warnings = condition_warnings(cond, [r["iterations"] for r in results]) + warnings
    cfg = asdict(config)
    cfg["artifacts"] = list(config.artifacts)
    cfg["batches"] = list(config.batches)
    cfg["iterations"] = config.planned_iterations
    return {
        "schema": SCHEMA_ID,
        "vitdeploy": __version__,
        "created": cond["finished"],
        "config": cfg,
        "conditions": cond,
        "artifacts": artifacts_doc,
        "results": results,
        "warnings": warnings,
    }


def _result(e: _Entry, batch: int, s: _Samples, config: BenchConfig) -> dict[str, Any]:
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


# --------------------------------------------------------------------------------------------
# Schema validation
# --------------------------------------------------------------------------------------------
@lru_cache(maxsize=1)
def load_schema() -> dict[str, Any]:
    try:
        return json.loads(SCHEMA_FILE.read_text())
    except (OSError, json.JSONDecodeError) as exc:  # a packaging bug: the schema ships with the package
        raise RuntimeError(f"bench schema {SCHEMA_FILE} missing or unreadable: {exc}") from exc


def validation_errors(doc: Any, use_jsonschema: bool | None = None) -> list[str]:
    """Every way ``doc`` departs from schemas/bench-1.json ('path: message'); empty when it conforms.

    Uses jsonschema (the dev extra) when installed, else a minimal checker of the keywords the
    schema uses (type, const, enum, required, properties, additionalProperties, items, minimum,
    maximum, exclusiveMinimum, minItems, anyOf, $ref).
    """
    schema = load_schema()
    if use_jsonschema is None:
        from vitdeploy.core.deps import is_available

        use_jsonschema = is_available("jsonschema")
    if use_jsonschema:
        import jsonschema

        v = jsonschema.Draft202012Validator(schema)
        errs = sorted(v.iter_errors(doc), key=lambda e: list(e.absolute_path))
        return [f"{'/'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}" for e in errs]
    out: list[str] = []
    _mini_check(doc, schema, schema, "", out)
    return out


def validate_result(doc: Any) -> None:
    """Raise InputError when ``doc`` is not a valid vitdeploy.bench/1 document."""
    errs = validation_errors(doc)
    if errs:
        more = f" (and {len(errs) - 1} more)" if len(errs) > 1 else ""
        raise InputError(f"not a valid {SCHEMA_ID} document: {errs[0]}{more}")


_TYPES: dict[str, Callable[[Any], bool]] = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: (isinstance(v, int) and not isinstance(v, bool)) or (isinstance(v, float) and v.is_integer()),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
}


def _mini_check(v: Any, s: dict[str, Any], root: dict[str, Any], path: str, out: list[str]) -> None:
    where = path or "(root)"
    if "$ref" in s:
        ref = s["$ref"]
        if not ref.startswith("#/"):
            raise RuntimeError(f"unsupported $ref {ref}")
        target: Any = root
        for part in ref[2:].split("/"):
            target = target[part]
        _mini_check(v, target, root, path, out)
    if "anyOf" in s:
        if not any(not _sub(v, alt, root, path) for alt in s["anyOf"]):
            out.append(f"{where}: {v!r:.60} matches none of the allowed forms")
    if "type" in s:
        types = s["type"] if isinstance(s["type"], list) else [s["type"]]
        if not any(_TYPES[t](v) for t in types):
            out.append(f"{where}: {v!r:.60} is not of type {' or '.join(types)}")
            return
    if "const" in s and v != s["const"]:
        out.append(f"{where}: {v!r:.60} was expected to be {s['const']!r}")
    if "enum" in s and v not in s["enum"]:
        out.append(f"{where}: {v!r:.60} is not one of {s['enum']}")
    if _TYPES["number"](v):
        if "minimum" in s and v < s["minimum"]:
            out.append(f"{where}: {v} is less than the minimum of {s['minimum']}")
        if "maximum" in s and v > s["maximum"]:
            out.append(f"{where}: {v} is greater than the maximum of {s['maximum']}")
        if "exclusiveMinimum" in s and v <= s["exclusiveMinimum"]:
            out.append(f"{where}: {v} is less than or equal to the minimum of {s['exclusiveMinimum']}")
    if isinstance(v, dict):
        for key in s.get("required", []):
            if key not in v:
                out.append(f"{where}: {key!r} is a required property")
        props = s.get("properties", {})
        extra = s.get("additionalProperties", True)
        for key, val in v.items():
            if key in props:
                _mini_check(val, props[key], root, f"{path}/{key}".lstrip("/"), out)
            elif extra is False:
                out.append(f"{where}: additional property {key!r} is not allowed")
            elif isinstance(extra, dict):
                _mini_check(val, extra, root, f"{path}/{key}".lstrip("/"), out)
    if isinstance(v, list):
        if "minItems" in s and len(v) < s["minItems"]:
            out.append(f"{where}: should have at least {s['minItems']} item(s)")
        if isinstance(s.get("items"), dict):
            for i, item in enumerate(v):
                _mini_check(item, s["items"], root, f"{path}/{i}".lstrip("/"), out)


def _sub(v: Any, s: dict[str, Any], root: dict[str, Any], path: str) -> list[str]:
    errs: list[str] = []
    _mini_check(v, s, root, path, errs)
    return errs


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
