"""Threaded batch iteration: samples decoded and preprocessed by worker threads a batch ahead of the
consumer (``iter_batches``), a set decoded once for several passes (``load_samples``: a
``SampleSet`` spilled to disk, not held in memory), and the undecodable files
counted and named (``ds.skipped``, ``skipped_warning``), never silently dropped. Inside a run scope
(``data.cache.run_scope``) each image is decoded once: what was decoded is kept for the run's
later passes (``data.cache``)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from vitdeploy.core.errors import InputError, UsageError
from vitdeploy.data import cache as run_cache
from vitdeploy.data import decode
from vitdeploy.data.checks import check_shape
from vitdeploy.data.decode import ImageDecodeError
from vitdeploy.core.preprocessing import Preprocessing
from vitdeploy.data.preprocess import preprocess_image
from vitdeploy.data.sample_set import SampleSet
from vitdeploy.data.sources import Dataset


def _load_one(ds: Dataset, pre: Preprocessing, i: int, store: bool = True) -> np.ndarray:
    """Image ``i`` decoded (``decode_image``) and preprocessed; inside a run scope, what an earlier pass
    of the run decoded (and, with ``store``, kept for the later ones: ``data.cache``)."""
    run = run_cache.active()
    if run is None:
        return preprocess_image(decode.decode_image(ds.files[i]), pre)
    key = run_cache.sample_key(ds.files[i], pre.key())
    kept = run_cache.get_sample(run, key)
    if isinstance(kept, str):
        raise ImageDecodeError(ds.files[i], kept)
    if kept is not None:
        return kept
    try:
        x = preprocess_image(decode.decode_image(ds.files[i]), pre)
    except ImageDecodeError as exc:
        run_cache.put_sample(run, key, exc.reason)
        raise
    if store:
        run_cache.put_sample(run, key, x)
    return x


def decode_workers(threads: int | None = None) -> int:
    """Decoder threads by default: the cores the runtime's ``threads`` leave free (half of them when
    unknown), 1 to 4."""
    cores = os.cpu_count() or 1
    return max(1, min(4, cores - threads if threads else cores // 2))


def _loaded(ds: Dataset, pre: Preprocessing, indices: np.ndarray, workers: int,
            ahead: int, store: bool = True) -> Iterator[tuple[int, Callable]]:
    """(index, result()) for each of ``indices`` in order, where result() returns the sample or raises
    ImageDecodeError. Images are decoded by ``workers`` threads (0: in the caller's thread; Pillow
    releases the GIL) at most ``ahead`` samples ahead of the consumer; closing the iterator (an error,
    Ctrl-C) cancels what is queued and leaves the threads to finish one image each."""
    if workers < 1:
        for i in indices:
            yield int(i), lambda i=int(i): _load_one(ds, pre, i, store)
        return
    from collections import deque
    from concurrent.futures import ThreadPoolExecutor

    pool = ThreadPoolExecutor(workers, thread_name_prefix="vitdeploy-decode")
    pending: deque = deque()
    todo = iter(indices)
    try:
        while True:
            while len(pending) < ahead and (i := next(todo, None)) is not None:
                pending.append((int(i), pool.submit(_load_one, ds, pre, int(i), store)))
            if not pending:
                return
            i, future = pending.popleft()
            yield i, future.result
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


def iter_batches(ds: Dataset, pre: Preprocessing, indices: np.ndarray, batch_size: int, on_error: str = "skip",
                 progress: Callable[[int], None] | None = None,
                 workers: int = 1, _store: bool = True) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield (batch, dataset indices) of preprocessed samples, in the order of ``indices``, decoded by
    ``workers`` threads (0: in the caller's thread) up to a batch and a few samples ahead of the consumer
    (``_loaded``): while the consumer runs one batch, the next one is decoded. A file that does not decode
    (``decode_image``) goes to ds.skipped as (file, reason), or raises InputError under on_error "fail".
    A preprocessed array is read a batch of rows at a time (``Dataset.rows``): nothing to decode or skip."""
    check_shape(ds, pre)
    if on_error not in ("skip", "fail"):
        raise UsageError(f"on_error must be skip or fail, not {on_error!r}")
    if ds.kind == "array":
        for start in range(0, len(indices), batch_size):
            rows = np.asarray(indices[start:start + batch_size], dtype=np.int64)
            if progress:
                progress(len(rows))
            yield ds.rows(rows), rows
        return
    buf, idx = [], []
    loaded = _loaded(ds, pre, indices, workers, batch_size + 4 * workers, _store)
    try:
        for i, result in loaded:
            try:
                buf.append(result())
            except ImageDecodeError as exc:
                if on_error == "fail":
                    raise
                ds.skipped.append((exc.path, exc.reason))
            else:
                idx.append(i)
            if progress:
                progress(1)
            if len(buf) == batch_size:
                yield np.stack(buf), np.asarray(idx)
                buf, idx = [], []
        if buf:
            yield np.stack(buf), np.asarray(idx)
    finally:
        loaded.close()


def no_decodable_image(ds: Dataset) -> InputError:
    detail = f"; e.g. {ds.skipped[0][0]}: {ds.skipped[0][1]}" if ds.skipped else ""
    return InputError(f"no decodable image in {ds.source} ({len(ds.skipped)} failed{detail})")


def load_samples(ds: Dataset, pre: Preprocessing, indices: np.ndarray, on_error: str = "skip",
                 progress: Callable[[int], None] | None = None, workers: int = 1) -> SampleSet:
    """The selected samples decoded once into a ``SampleSet`` (on disk, read back in rows; see
    ``data.sample_set``) for callers that pass over them more than once. Raises when none decode.

    Inside a run scope (``data.cache``) of images, the run keeps the set (and closes it when it ends):
    each caller gets a view of it (``view``; closing a view leaves the set open), the next caller asking
    for the same images and preprocessing too, and its rows answer later single-sample look-ups."""
    run = run_cache.active() if ds.kind != "array" else None
    pre_key = pre.key() if run is not None else ""
    key = run_cache.set_key(ds.files, indices, pre_key, on_error) if run is not None else ""
    kept = run_cache.get_set(run, key) if run is not None else None
    if kept is not None:
        samples, skipped = kept
        ds.skipped.extend(skipped)
        if progress:
            progress(len(indices))
        return samples.view()
    skipped_before = len(ds.skipped)
    samples = SampleSet.decode(ds, pre, indices, on_error, progress, workers)
    if run is None:
        return samples
    rows = [run_cache.sample_key(ds.files[int(i)], pre_key) for i in samples.indices]
    run_cache.put_set(run, key, samples, ds.skipped[skipped_before:], rows)
    return samples.view()


def skipped_warning(ds: Dataset, shown: int = 3) -> str | None:
    """One warning line counting and naming the files that did not decode (``ds.skipped``); None if none."""
    if not ds.skipped:
        return None
    root = Path(ds.source)

    def name(f: str) -> str:
        return str(Path(f).relative_to(root)) if root.is_dir() and Path(f).is_relative_to(root) else f

    named = "; ".join(f"{name(f)} ({reason})" for f, reason in ds.skipped[:shown])
    more = f"; and {len(ds.skipped) - shown} more" if len(ds.skipped) > shown else ""
    return f"{len(ds.skipped)} undecodable image(s) skipped: {named}{more}"

