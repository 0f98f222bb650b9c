"""The artifacts of a bench run, opened: resolution, runners, batch checks and seeded input feeds.

Artifacts are resolved (and their backends' packages required) before anything heavy is loaded;
each is then opened as an :class:`Entry` that records the runner, its inputs, the batches it can
serve, which optional hooks (vitdeploy.bench.hooks) it has, and the peak-RSS growth attributed to it.
``open_artifact`` is the seam the tests replace with a fake runner.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from vitdeploy.bench.conditions import max_rss_bytes
from vitdeploy.bench.config import BenchConfig
from vitdeploy.bench.hooks import DeviceMemory, DeviceOnlyInfer, TimedInfer
from vitdeploy.core.errors import InputError, UsageError
from vitdeploy.runners.base import static_batch


@dataclass
class Entry:
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
        man = art.manifest
        m0 = self.metas[0]
        return {
            "label": self.label, "spec": art.spec, "kind": art.kind, "path": str(art.path) if art.path else None,
            "backend": backend, "runner": getattr(self.runner, "name", type(self.runner).__name__),
            "precision": art.precision, "model": man.model.name if man and man.model else None,
            "sha256": man.sha256 if man else None,
            "input": {"name": m0.name, "shape": list(m0.shape), "dtype": str(np.dtype(m0.dtype))},
            "batch_range": ({"min": self.batch_range[0], "max": self.batch_range[1]} if self.batch_range else
                            ({"min": self.static_batch, "max": self.static_batch} if self.static_batch else None)),
            "hooks": {"timed_infer": self.timed, "infer_device_only": self.device_only, "device_memory": self.device_memory},
        }


def open_artifact(artifact, backend: str | None, threads: int | None):
    """Open a runner (a seam for the tests)."""
    from vitdeploy.runners.factory import open_runner

    return open_runner(artifact, backend=backend, threads=threads)


def labels(arts: list[Any]) -> list[str]:
    """File names (or zoo names); the spec as given when names collide; '#n' when specs do too."""
    names = [a.label for a in arts]
    names = [a.spec if names.count(n) > 1 else n for a, n in zip(arts, names)]
    return [f"{n}#{i + 1}" if names.count(n) > 1 else n for i, n in enumerate(names)]


def check_batch(entry: Entry, batch: int) -> None:
    if entry.static_batch is not None and batch != entry.static_batch:
        raise UsageError(f"{entry.label} has a static batch of {entry.static_batch}: batch {batch} is outside it "
                         "(re-export with a dynamic batch range, e.g. vitdeploy export --dynamic-batch 1:8:32)")
    if entry.batch_range is not None and not entry.batch_range[0] <= batch <= entry.batch_range[1]:
        lo, hi = min(entry.batch_range[0], batch), max(entry.batch_range[1], batch)
        raise UsageError(f"{entry.label} serves batches {entry.batch_range[0]} to {entry.batch_range[1]} (its manifest): "
                         f"batch {batch} is outside that range; re-export with --dynamic-batch {lo}:{min(max(8, lo), hi)}:{hi}")


def feed_spec(entry: Entry, batch: int) -> list[tuple[str, list[int], np.dtype]]:
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


def make_feed(entry: Entry, batch: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Seeded random inputs: standard normal for floats (then cast: fp16 inputs get fp16), small integers else."""
    feed = {}
    for name, dims, dtype in feed_spec(entry, batch):
        if dtype.kind == "f":
            x = rng.standard_normal(dims, dtype=np.float32).astype(dtype)
        elif dtype.kind == "b":
            x = rng.integers(0, 2, size=dims).astype(bool)
        else:
            x = rng.integers(0, 10, size=dims).astype(dtype)
        feed[name] = np.ascontiguousarray(x)
    return feed


def resolve_all(config: BenchConfig) -> list[Any]:
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


def activate(art, label: str, config: BenchConfig) -> Entry:
    before = max_rss_bytes()
    runner = open_artifact(art, config.backend, config.threads)
    runner.activate()  # the Runner protocol: activate/deactivate (not every runner is a context manager)
    try:
        metas = list(runner.input_metadata())
        if not metas:
            raise InputError(f"{label} has no inputs")
        static = static_batch(metas)
        entry = Entry(label, art, runner, metas, static, art.batch_range if static is None else None,
                      timed=isinstance(runner, TimedInfer), device_only=isinstance(runner, DeviceOnlyInfer),
                      device_memory=isinstance(runner, DeviceMemory))
    except BaseException:
        runner.deactivate()
        raise
    entry.rss_growth = max(0, max_rss_bytes() - before)
    return entry


def close_all(entries: list[Entry]) -> None:
    for e in entries:
        try:
            e.runner.deactivate()
        except Exception:  # closing must not hide the real error
            pass
