"""Optional runner hooks that bench uses when a runner has them.

A runner (the TensorRT runner, say) may expose any of these; bench checks each with isinstance()
and uses only what is there. CPU runners expose none, and are timed by the host clock alone.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np


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
