"""The streaming passes of `vitdeploy validate`: the reference over the selected samples (its outputs to
the run cache), then each candidate over the kept samples, compared batch by batch as they come."""

from __future__ import annotations

from typing import Any

import numpy as np

from vitdeploy.core.compare import StreamingComparison, TopKAccuracy
from vitdeploy.core.errors import ShapeMismatchError
from vitdeploy.core.io import atomic_path, write_json_atomic
from vitdeploy.runners.base import infer_batch, static_batch
from vitdeploy.runners.factory import Artifact
from vitdeploy.validate.cache import ReferenceStore, read_rows
from vitdeploy.validate.config import ValidateConfig


def input_shape(runner) -> tuple[tuple[int, ...], int | None]:
    metas = runner.input_metadata()
    return tuple(int(d) if d is not None else -1 for d in metas[0].shape[1:]), static_batch(metas)


def batch_plan(art: Artifact, static: int | None, wanted: int) -> tuple[int, int]:
    """(chunk size, smallest batch the artifact takes): a static batch, or ``wanted`` clamped to
    the manifest's range (an engine's optimisation profile refuses batches outside it)."""
    if static is not None:
        return static, static
    lo, hi = art.batch_range or (1, wanted)
    return max(lo, min(wanted, hi)), lo


def reference_pass(runner, art: Artifact, static: int | None, ds, pre, indices: np.ndarray, config: ValidateConfig,
                    cache: ReferenceStore, advance) -> dict[str, Any]:
    """Run the reference over the selected samples as they are decoded, its outputs streamed to the
    cache; the facts later passes need (kept indices, output shape, undecodable files)."""
    from vitdeploy.data.batches import decode_workers, iter_batches, no_decodable_image

    chunk, min_batch = batch_plan(art, static, config.batch_size)
    workers = config.decode_workers or decode_workers(config.threads)
    kept: list[np.ndarray] = []
    shape: tuple[int, ...] = ()
    with atomic_path(cache.logits) as tmp, open(tmp, "wb") as f:
        for x, idx in iter_batches(ds, pre, indices, chunk, config.on_error, advance, workers):
            out = infer_batch(runner, x, min_batch)
            f.write(out.tobytes())
            kept.append(idx)
            shape = out.shape[1:]
        if not kept:
            raise no_decodable_image(ds)
    meta = {"shape": list(shape), "skipped": ds.skipped, "backend": runner.backend}
    with atomic_path(cache.kept) as tmp, open(tmp, "wb") as f:
        np.save(f, np.concatenate(kept))
    write_json_atomic(cache.meta, meta)  # last: its presence marks the reference as finished
    return {**meta, "kept": np.concatenate(kept)}


def candidate_pass(runner, art: Artifact, static: int | None, ds, pre, ref: dict[str, Any], labels: np.ndarray | None,
                    config: ValidateConfig, cache: ReferenceStore, advance) -> dict[str, Any]:
    """Run a candidate over the kept samples, each batch compared with the reference's outputs read
    back from the cache as it goes (``StreamingComparison``, ``TopKAccuracy``): the reduced figures."""
    from vitdeploy.data.batches import decode_workers, iter_batches

    chunk, min_batch = batch_plan(art, static, config.batch_size)
    workers = config.decode_workers or decode_workers(config.threads)
    shape = tuple(ref["shape"])
    reducer, acc, done = StreamingComparison(worst=5), TopKAccuracy(), 0
    with open(cache.logits, "rb") as f:
        for x, _ in iter_batches(ds, pre, ref["kept"], chunk, "fail", advance, workers):
            out = infer_batch(runner, x, min_batch)
            if out.shape[1:] != shape:
                raise ShapeMismatchError(f"{art.label} outputs {out.shape[1:]}, the reference {shape}")
            reducer.update(read_rows(f, len(out), shape), out)
            if labels is not None:
                acc.update(out, labels[done:done + len(out)])
            done += len(out)
    return {"comparison": reducer.result().to_dict(), "accuracy": acc.result() if labels is not None else None,
            "backend": runner.backend, "fp16_emulated": bool(getattr(runner, "fp16_emulated", False))}


def reference_accuracy(cache: ReferenceStore, ref: dict[str, Any], labels: np.ndarray, rows: int = 1024) -> dict[str, float]:
    """The reference's top-1/top-5 on ``labels``, its outputs read back from the cache in blocks."""
    acc, shape = TopKAccuracy(), tuple(ref["shape"])
    with open(cache.logits, "rb") as f:
        for i in range(0, len(labels), rows):
            n = min(rows, len(labels) - i)
            acc.update(read_rows(f, n, shape).reshape(n, -1), labels[i:i + n])
    return acc.result()
