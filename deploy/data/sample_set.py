"""A selected set of samples that several passes read, without holding it in memory.

Calibration runs over its samples more than once (activation statistics, the FP16 range statistics
on the first 64, the precision search's statistics), and ``quantize --max-drop`` evaluates its
selection images dozens of times. ``SampleSet`` decodes each image once (``decode``: threaded, as
``iter_batches``) into a spill file on disk (an unlinked temporary file under ``$VITDEPLOY_CACHE/spill``,
or the system's temporary folder when the cache folder cannot be written; gone when the set is
closed or the process ends) and reads rows back on demand, so a pass holds one
batch: 5,000 ImageNet samples at 224 px are 3 GB of float32 on disk, not in memory. A preprocessed
array dataset needs no spill: its rows are read from the array (memory-mapped for ``.npy``).

Slicing returns float32 arrays, as h5py's datasets do: ``s[a:b]`` is rows a..b-1 (N, C, H, W);
``s.head(n)`` is a view of the first n rows (no copy, and closing it leaves the file open);
``s.batches(size)`` iterates the rows in order.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from vitdeploy.core.io import cache_root, cannot_write
from vitdeploy.core.preprocessing import Preprocessing
from vitdeploy.data.sources import Dataset


def spill_dir() -> Path:
    """Where decoded sets are spilled: ``$VITDEPLOY_CACHE/spill`` (a disk, unlike a tmpfs /tmp)."""
    return cache_root() / "spill"


class _Spill:
    """Rows of one shape appended (by one thread) to an unlinked temporary file and read back by offset
    (``os.pread``: no shared file position, so threads may read at once). Closed with the set that owns
    it, or when no set reads it any more."""

    def __init__(self, row_shape: tuple[int, ...]) -> None:
        try:  # the cache's disk, else the system's temporary folder (a read-only or broken cache folder)
            folder = spill_dir()
            folder.mkdir(parents=True, exist_ok=True)
            self.file = tempfile.TemporaryFile(dir=folder, prefix="samples-")
        except OSError:
            folder = Path(tempfile.gettempdir())
            try:
                self.file = tempfile.TemporaryFile(dir=folder, prefix="vitdeploy-samples-")
            except OSError as exc:
                raise cannot_write(f"the decoded samples in {spill_dir()} or {folder}", exc) from exc
        self.folder = folder
        weakref.finalize(self, self.file.close)  # closed (the file deleted) when the last set reading it goes
        self.row_shape, self.row_bytes, self.rows = row_shape, int(np.prod(row_shape)) * 4, 0

    @contextlib.contextmanager
    def _writing(self) -> Iterator[None]:
        try:
            yield
        except OSError as exc:  # a full disk (or worse) while spilling: one line, exit 5
            raise cannot_write(f"the decoded samples in {self.folder} (set VITDEPLOY_CACHE to a larger disk, or fewer "
                               "--samples)", exc) from exc

    def append(self, x: np.ndarray) -> None:
        with self._writing():
            self.file.write(np.ascontiguousarray(x, dtype=np.float32).data)
        self.rows += len(x)

    def finish(self) -> None:
        with self._writing():  # small rows may fail only here, when the buffer is written
            self.file.flush()

    def read(self, start: int, stop: int) -> np.ndarray:
        out = np.empty((stop - start, *self.row_shape), dtype=np.float32)
        if not out.size:
            return out
        view, offset, done = memoryview(out.reshape(-1)).cast("B"), start * self.row_bytes, 0
        while done < len(view):
            chunk = os.pread(self.file.fileno(), min(len(view) - done, 1 << 30), offset + done)
            if not chunk:
                raise EOFError(f"spill file ended at row {start + done // self.row_bytes} of {self.rows}")
            view[done:done + len(chunk)] = chunk
            done += len(chunk)
        return out

    def close(self) -> None:
        self.file.close()


class SampleSet:
    """Preprocessed samples of a dataset, in selection order, read in rows (float32, (N, C, H, W)).

    ``indices``: the dataset indices of the samples (undecodable images left out, see ``decode``);
    ``sample_shape``: (C, H, W). Build one with ``SampleSet.decode``; the set that decoded owns the
    spill file (``close``), its ``head`` views do not."""

    def __init__(self, indices: np.ndarray, sample_shape: tuple[int, ...],
                 read: Callable[[int, int], np.ndarray], owner: _Spill | None = None) -> None:
        self.indices = np.asarray(indices, dtype=np.int64)
        self.sample_shape = tuple(int(d) for d in sample_shape)
        self._read, self._owner = read, owner

    @classmethod
    def decode(cls, ds: Dataset, pre: Preprocessing, indices: np.ndarray, on_error: str = "skip",
               progress: Callable[[int], None] | None = None, workers: int = 1) -> SampleSet:
        """The samples ``indices`` of ``ds``: an array dataset's rows as they are (read on demand);
        images decoded once, by ``workers`` threads (``iter_batches``: skipped files go to ds.skipped,
        or raise under on_error "fail"), into a spill file. Raises InputError when no image decodes,
        OutputError when the spill file cannot be written (a full disk says so)."""
        from vitdeploy.data.batches import iter_batches, no_decodable_image

        if ds.kind == "array":
            if progress:
                progress(len(indices))
            idx = np.asarray(indices, dtype=np.int64)
            return cls(idx, ds.array.shape[1:], lambda a, b: ds.rows(idx[a:b]))  # type: ignore[union-attr]
        spill: _Spill | None = None
        kept: list[np.ndarray] = []
        try:
            for x, i in iter_batches(ds, pre, indices, 64, on_error, progress, workers, _store=False):
                spill = spill or _Spill(x.shape[1:])
                spill.append(x)
                kept.append(i)
            if spill is None:
                raise no_decodable_image(ds)
            spill.finish()
        except BaseException:
            if spill is not None:
                spill.close()
            raise
        return cls(np.concatenate(kept), spill.row_shape, spill.read, spill)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, key: slice) -> np.ndarray:
        """Rows ``key`` (a slice with step 1) as a float32 array read from the set's storage."""
        if not isinstance(key, slice) or key.step not in (None, 1):
            raise TypeError("a SampleSet is read in contiguous row ranges: s[a:b]")
        start, stop, _ = key.indices(len(self))
        return self._read(start, max(start, stop))

    def head(self, n: int) -> SampleSet:
        """The first ``n`` samples, sharing this set's storage (no copy)."""
        n = min(n, len(self))
        return SampleSet(self.indices[:n], self.sample_shape, self._read, None)

    def view(self) -> SampleSet:
        """All the samples, sharing this set's storage; closing the view leaves the file open."""
        return self.head(len(self))

    def whole_batches(self, batch: int) -> SampleSet:
        """The first samples that fill whole batches of ``batch`` (a static-batch model's); the set itself
        when it holds fewer than one batch (its caller repeats them) or divides evenly."""
        return self.head(len(self) - len(self) % batch) if len(self) >= batch else self

    def batches(self, size: int) -> Iterator[np.ndarray]:
        """The rows in order, ``size`` at a time (the last batch may be smaller)."""
        for start in range(0, len(self), size):
            yield self[start:start + size]

    def close(self) -> None:
        """Delete the spill file (a set made by ``head`` leaves it to the set it came from)."""
        if self._owner is not None:
            self._owner.close()

    def __enter__(self) -> SampleSet:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
