"""Activation statistics: run the FP32 ONNX model in ONNX Runtime on calibration batches and
accumulate per-tensor histograms, cached on disk by model hash + data hash + tensor set."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

from vitdeploy.calib.methods import TensorStats
from vitdeploy.core.deps import require
from vitdeploy.core.io import cache_root


# ONNX Runtime holds every requested intermediate tensor of a run at once (a graph output is kept to
# the end of the run): DeiT-Ti's ~400 float tensors, which the FP16 range pass reads, take ~116 MB a sample.
MAX_OUTPUT_BYTES = 512 * 2**20


def cache_dir() -> Path:
    return cache_root() / "calib-stats"


def stats_key(model_digest: str, data_digest: str, tensors: Iterable[str]) -> str:
    # the chunk budget is part of the key: a histogram's bins start at its first chunk's range
    h = hashlib.sha256(f"{model_digest}:{data_digest}:chunks<={MAX_OUTPUT_BYTES}:".encode())
    for t in sorted(tensors):
        h.update(t.encode() + b"\0")
    return h.hexdigest()[:32]


def with_outputs(model, names: list[str]):
    """A copy of ``model`` that also outputs the named intermediate tensors."""
    onnx = require("onnx")
    m = onnx.ModelProto()
    m.CopyFrom(model)
    existing = {o.name for o in m.graph.output}
    for n in names:
        if n not in existing:
            m.graph.output.append(onnx.helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, None))
    return m


def collect(model, tensors: list[str], batches: Iterable[np.ndarray], input_name: str,
            progress: Callable[[int], None] | None = None, threads: int | None = None,
            static_batch: int | None = None, max_output_bytes: int = MAX_OUTPUT_BYTES) -> dict[str, TensorStats]:
    """Histogram statistics of ``tensors`` over ``batches`` (each an N,C,H,W float32 array).

    Memory: a batch whose requested tensors would take more than ``max_output_bytes`` (their size for
    one sample, measured once on a sample run alone and discarded, times the batch) runs in smaller
    chunks, as few as one sample; a static-batch model (``static_batch``) runs its batches whole.
    Histograms depend on the chunks (their range starts at the first chunk's), so a batch that fits
    runs as it is: the statistics of small models are those of whole batches."""
    from vitdeploy.runners.ort import OnnxRuntimeRunner

    stats = {t: TensorStats() for t in tensors}
    probe = with_outputs(model, tensors)
    chunk = None
    with OnnxRuntimeRunner(probe.SerializeToString(), threads=threads, optimization="basic") as runner:
        for batch in batches:
            if len(batch) == 0:
                continue
            if chunk is None:
                if static_batch:
                    chunk = len(batch)
                else:
                    one = runner.infer({input_name: batch[:1]})
                    per_sample = max(1, sum(np.asarray(one[t]).nbytes for t in tensors))
                    chunk, one = max(1, max_output_bytes // per_sample), None
            for start in range(0, len(batch), chunk):
                part = batch[start:start + chunk]
                outs = runner.infer({input_name: part})
                for t in tensors:
                    stats[t].update(outs[t])
                outs = None
                if progress:
                    progress(part.shape[0])
    return stats


def save_stats(path: Path, stats: dict[str, TensorStats], meta: dict[str, str]) -> None:
    from vitdeploy.core.io import atomic_path

    arrays: dict[str, np.ndarray] = {"__names__": np.array(list(stats), dtype=object).astype(str)}
    for i, (name, s) in enumerate(stats.items()):
        for k, v in s.to_arrays().items():
            arrays[f"{i}.{k}"] = v
    for k, v in meta.items():
        arrays[f"__meta__.{k}"] = np.array(v)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, **arrays)


def load_stats(path: Path) -> dict[str, TensorStats] | None:
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            names = [str(n) for n in z["__names__"]]
            return {n: TensorStats.from_arrays({k: z[f"{i}.{k}"] for k in ("minmax", "pos", "neg")})
                    for i, n in enumerate(names)}
    except (OSError, KeyError, ValueError):
        return None  # a damaged cache entry is recomputed, not trusted
