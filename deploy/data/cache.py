"""What one run has read already: folder listings and decoded samples, kept for the length of a run.

`vitdeploy deploy` opens its calibration folder in several steps (quantize FP16 and INT8, the
held-out split, validate, the resume digests) and decodes the same images in each: the held-out
images in both quantize passes and in validate's reference and candidate passes. Inside
``run_scope()`` (``run_deploy`` opens one) each folder is walked once (``files_under``) and each
image decoded once per preprocessing (``iter_batches``, ``load_samples`` in ``batches``):

- folder listings, keyed by (path, mtimes of the folder and of its direct subfolders);
- decoded and preprocessed samples, keyed by (file, size, mtime, preprocessing), or the reason the
  file did not decode; copies of what the batch iterators produced, at most ``cache_bytes()`` in all
  (``VITDEPLOY_DECODE_CACHE_MB``, default 1024 MB: about 1,700 images at 224 px): beyond that a
  sample is decoded again when asked for, as outside a run;
- whole calibration sets (``load_samples``), keyed by (files, preprocessing, on_error): the
  ``SampleSet`` decoded for the first caller (its rows on disk, not in memory), of which every
  caller gets a view; its rows also answer single-sample look-ups.

Outside a run scope nothing is kept: every command on its own reads its data as before.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from vitdeploy.data.sample_set import SampleSet

DEFAULT_CACHE_MB = 1024


def cache_bytes() -> int:
    """The byte cap on decoded samples kept by a run (``VITDEPLOY_DECODE_CACHE_MB``, default 1024)."""
    try:
        return max(0, int(float(os.environ.get("VITDEPLOY_DECODE_CACHE_MB", DEFAULT_CACHE_MB)) * 2**20))
    except ValueError:
        return DEFAULT_CACHE_MB * 2**20


@dataclass
class RunCache:
    limit: int
    listings: dict[tuple[str, tuple[int, ...]], list[Path]] = field(default_factory=dict)
    samples: dict[tuple, np.ndarray | str] = field(default_factory=dict)  # array, or why it did not decode
    sets: dict[str, tuple[SampleSet, list[tuple[str, str]]]] = field(default_factory=dict)  # set, skipped files
    rows: dict[tuple, tuple[SampleSet, int]] = field(default_factory=dict)  # a sample's row in a kept set
    used: int = 0  # bytes of the sample copies held in memory
    lock: threading.Lock = field(default_factory=threading.Lock)


_run: RunCache | None = None
_depth = 0
_scope_lock = threading.Lock()


@contextlib.contextmanager
def run_scope() -> Iterator[RunCache]:
    """Keep folder listings and decoded samples until the outermost scope ends (nested scopes share it);
    then the kept sets' spill files are deleted."""
    global _run, _depth
    with _scope_lock:
        if _run is None:
            _run = RunCache(cache_bytes())
        _depth += 1
        run = _run
    try:
        yield run
    finally:
        with _scope_lock:
            _depth -= 1
            if _depth == 0:
                _run = None
                for samples, _ in run.sets.values():
                    samples.close()


def active() -> RunCache | None:
    return _run


def files_under(p: Path) -> list[Path]:
    """Every file under the folder ``p``, recursively, sorted: walked once per run scope (while the
    folder's and its class folders' mtimes are unchanged), on every call outside one."""
    run = _run
    if run is None:
        return _walk(p)
    try:
        key = (str(p.resolve()), _mtimes(p))
    except OSError:
        return _walk(p)
    with run.lock:
        files = run.listings.get(key)
    if files is None:
        files = _walk(p)
        with run.lock:
            run.listings[key] = files
    return list(files)


def _mtimes(p: Path) -> tuple[int, ...]:
    """The folder's mtime and its direct subfolders' (ImageFolder's class folders): a file added to or
    removed from a class folder changes only that folder's mtime."""
    with os.scandir(p) as entries:
        subs = sorted(e.stat().st_mtime_ns for e in entries if e.is_dir(follow_symlinks=True))
    return (p.stat().st_mtime_ns, *subs)


def _walk(p: Path) -> list[Path]:
    return sorted(f for f in p.rglob("*") if f.is_file())


def sample_key(path: Path, pre_key: str) -> tuple | None:
    """What a decoded sample is kept under: the file's identity and the preprocessing; None when the
    file cannot be stat'ed (decoding it will say why)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (os.path.abspath(path), st.st_size, st.st_mtime_ns, pre_key)


def get_sample(run: RunCache, key: tuple | None) -> np.ndarray | str | None:
    if key is None:
        return None
    with run.lock:
        kept, row = run.samples.get(key), run.rows.get(key)
    if kept is None and row is not None:
        samples, r = row
        kept = samples[r:r + 1][0]
    return kept


def put_sample(run: RunCache, key: tuple | None, value: np.ndarray | str) -> None:
    """Keep a copy of a decoded sample (or the reason it did not decode) while under the byte cap."""
    if key is None:
        return
    size = value.nbytes if isinstance(value, np.ndarray) else 0
    with run.lock:
        if key in run.samples or run.used + size > run.limit:
            return
        if isinstance(value, np.ndarray):
            value = value.copy()
            value.flags.writeable = False
        run.samples[key] = value
        run.used += size


def set_key(files: list[Path], indices: np.ndarray, pre_key: str, on_error: str) -> str:
    h = hashlib.sha256(f"{pre_key}\0{on_error}\0".encode())
    for i in indices:
        h.update(f"{os.path.abspath(files[int(i)])}\n".encode())
    return h.hexdigest()


def get_set(run: RunCache, key: str) -> tuple[SampleSet, list[tuple[str, str]]] | None:
    with run.lock:
        return run.sets.get(key)


def put_set(run: RunCache, key: str, samples: SampleSet, skipped: list[tuple[str, str]],
            row_keys: list[tuple | None]) -> None:
    """Keep a loaded set (its rows stay on disk: no byte cap) with the files it skipped, and answer
    single-sample look-ups with its rows."""
    with run.lock:
        if key in run.sets:
            return
        run.sets[key] = (samples, list(skipped))
        for r, k in enumerate(row_keys):
            if k is not None:
                run.rows.setdefault(k, (samples, r))
