"""The typed options of one bench run (:class:`BenchConfig`) and their validation.

A config is checked when it is built, before any artifact is opened, so a bad option costs
nothing: UsageError names the flag to fix. ``parse_batches`` reads the CLI's ``--batch 1,8,32``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from vitdeploy.core.errors import UsageError

DEFAULT_ITERATIONS = 100
DEFAULT_WARMUP = 10
MIN_ITERATIONS = 20  # fewer give no meaningful p99: warned about


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
