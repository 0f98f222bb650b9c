"""The runner protocol: activate / infer / deactivate, plus input metadata."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np


@dataclass(frozen=True)
class TensorMeta:
    name: str
    dtype: np.dtype
    shape: tuple[int | None, ...]  # None marks a dynamic axis


def static_batch(metas: list[TensorMeta]) -> int | None:
    """The fixed batch of the first input, or None when its batch axis is dynamic."""
    first = metas[0].shape[0] if metas and metas[0].shape else None
    return int(first) if isinstance(first, int) and first > 0 else None


@runtime_checkable
class Runner(Protocol):
    name: str

    def activate(self) -> None: ...

    def deactivate(self) -> None: ...

    def input_metadata(self) -> list[TensorMeta]: ...

    def infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]: ...


class BaseRunner:
    """Context-manager plumbing shared by the runners."""

    name = "runner"

    def __init__(self) -> None:
        self.is_active = False

    def activate(self) -> None:
        raise NotImplementedError

    def deactivate(self) -> None:
        self.is_active = False

    def __enter__(self):
        if not self.is_active:
            self.activate()
            self.is_active = True
        return self

    def __exit__(self, *exc) -> None:
        self.deactivate()

    def input_metadata(self) -> list[TensorMeta]:
        raise NotImplementedError

    def infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def infer_one(self, x: np.ndarray) -> np.ndarray:
        """Single-input, first-output convenience used by validation and bench."""
        meta = self.input_metadata()
        out = self.infer({meta[0].name: x})
        return next(iter(out.values()))


def pad_batch(chunk: np.ndarray, min_batch: int = 1) -> np.ndarray:
    """``chunk`` (contiguous), padded to ``min_batch`` samples with copies of its last one."""
    n = len(chunk)
    if n < min_batch:
        chunk = np.concatenate([chunk, np.repeat(chunk[-1:], min_batch - n, axis=0)])
    return np.ascontiguousarray(chunk)


def infer_batch(runner, chunk: np.ndarray, min_batch: int = 1) -> np.ndarray:
    """Float32 outputs of one chunk; a chunk smaller than ``min_batch`` is padded with copies of its
    last sample (and the padding's outputs dropped)."""
    return np.asarray(runner.infer_one(pad_batch(chunk, min_batch))[:len(chunk)], dtype=np.float32)

