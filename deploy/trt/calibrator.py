"""The legacy implicit-INT8 path (TensorRT < 10.12): an entropy calibrator that only reads a cache.

The cache is the one `vitdeploy quantize --trt-calibration-cache` writes (vitdeploy.trt.calibration_cache):
scales measured on the CPU by vitdeploy, so no calibration batches ever reach the GPU. TensorRT
checks the cache header against its own version and calibrator name, so the header is rewritten
for the running TensorRT (calibration_cache.header) before it is handed over.
"""

from __future__ import annotations

from pathlib import Path

from vitdeploy.trt import calibration_cache as trtcache
from vitdeploy.core.errors import InputError
from vitdeploy.trt.version import TrtVersion, requires


def cache_header(version: TrtVersion) -> str:
    return trtcache.header(f"{version.major}.{version.minor}.{version.patch}")


def cache_for_version(path: Path, version: TrtVersion) -> bytes:
    """The cache at ``path`` with its header rewritten for ``version``."""
    try:
        text = Path(path).read_text()
        _, scales = trtcache.decode(text)
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise InputError(f"calibration cache {path} is unreadable: {exc}") from exc
    if not scales:
        raise InputError(f"calibration cache {path} holds no tensor scales")
    lines = [ln for ln in text.splitlines() if ln.strip()]
    lines[0] = cache_header(version)
    return ("\n".join(lines) + "\n").encode()


@requires("legacy_calibrator_allowed")
def make_calibrator(trt, cache: bytes, batch_size: int = 1):
    """An IInt8EntropyCalibrator2 that serves ``cache`` and has no batches (the cache is complete)."""

    class CacheCalibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)
            self.cache = cache

        def get_batch_size(self) -> int:
            return batch_size

        def get_batch(self, names):  # noqa: ARG002 - TensorRT asks only when the cache misses a tensor
            return None

        def read_calibration_cache(self):
            return self.cache

        def write_calibration_cache(self, cache) -> None:  # noqa: ARG002 - the input cache is the record
            return None

    return CacheCalibrator()
