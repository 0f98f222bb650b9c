"""Timed steps of a long job, with optional callbacks the CLI uses to show progress."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field


@dataclass
class StepRecord:
    name: str
    seconds: float
    status: str  # "ok" | "failed" | "skipped"
    detail: str = ""
    raised: bool = False  # failed by an exception: the CLI prints its message as the error line


@dataclass
class Steps:
    on_start: Callable[[str], None] | None = None
    on_end: Callable[[StepRecord], None] | None = None
    records: list[StepRecord] = field(default_factory=list)

    @contextlib.contextmanager
    def step(self, name: str) -> Iterator[StepRecord]:
        if self.on_start:
            self.on_start(name)
        rec = StepRecord(name, 0.0, "ok")
        start = time.perf_counter()
        try:
            yield rec
        except BaseException as exc:
            rec.status, rec.raised = "failed", True
            rec.detail = rec.detail or (str(exc).splitlines() or [""])[0][:200] or type(exc).__name__
            raise
        finally:
            rec.seconds = time.perf_counter() - start
            self.records.append(rec)
            if self.on_end:
                self.on_end(rec)

    def to_list(self) -> list[dict]:
        return [{"name": r.name, "seconds": round(r.seconds, 3), "status": r.status, "detail": r.detail} for r in self.records]
