"""`vitdeploy validate`: is each candidate (ONNX at any precision, engine) still as right as the reference?

Runs the reference (a zoo model with its checkpoint, or the FP32 ONNX) and every candidate on
the same preprocessed samples. With labels: top-1/top-5 accuracy and the drop against the
reference. Always: top-1/top-5 agreement, cosine, max abs/rel error, the worst samples.
Labels that cannot be the reference's classes (``calib.data.labels_for``: out of range, ImageNet
wnid folders for a model without 1000 outputs, ...) or on which the reference scores at chance
are warned about (``doc["warnings"]``, which the CLI prints) and not used: no top-1 figures, no
top-1 drop gate; their reference figures stay in ``doc["data"]["unusable_labels"]`` for diagnosis.
Each candidate passes or fails against the thresholds of its precision; the CLI exits 6 when
one fails, so this can gate CI.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import math
import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from vitdeploy.core.compare import (MAX_TOP1_DROP, PRECISION_THRESHOLDS, Comparison, StreamingComparison, Thresholds,
                               TopKAccuracy, resolvable_agreement, resolvable_drop)
from vitdeploy.core.errors import InputError, ShapeMismatchError, UsageError
from vitdeploy.core.io import atomic_path, cannot_write, has_random_weights, sha256_file, write_json_atomic
from vitdeploy.runners.base import static_batch, infer_batch
from vitdeploy.runners.factory import Artifact, open_runner, resolve_artifact

VALIDATE_SCHEMA = "vitdeploy.validate/1"


PRESETS: dict[str, dict[str, Thresholds]] = {
    "default": PRECISION_THRESHOLDS,
    "strict": {
        "fp32": Thresholds(max_abs=1e-4, cosine_min=0.99999, top1_agreement=1.0),
        "fp16": Thresholds(max_abs=None, cosine_min=0.9999, top1_agreement=0.99),
        "int8": Thresholds(max_abs=None, cosine_min=0.99, top1_agreement=0.97),
    },
    "loose": {
        "fp32": Thresholds(max_abs=1e-3, cosine_min=0.9999, top1_agreement=0.99),
        "fp16": Thresholds(max_abs=None, cosine_min=0.995, top1_agreement=0.95),
        "int8": Thresholds(max_abs=None, cosine_min=0.95, top1_agreement=0.90),
    },
}


@dataclass(frozen=True)
class ValidateConfig:
    reference: str
    candidates: tuple[str, ...]
    data: Path
    checkpoint: Path | None = None  # for a zoo-model reference
    samples: int | None = 256  # None: all of the data
    thresholds: dict[str, Thresholds] = field(default_factory=lambda: dict(PRECISION_THRESHOLDS))
    max_top1_drop: dict[str, float] = field(default_factory=lambda: dict(MAX_TOP1_DROP))
    batch_size: int = 8
    seed: int = 0
    threads: int | None = None
    backends: dict[str, str] = field(default_factory=dict)  # artifact -> backend override
    on_error: str = "skip"
    data_check: bool = True  # refuse .npy/.npz data whose values are not normalised inputs (calib.data.check_array_values)
    decode_workers: int | None = None  # image decoder threads (default: calib.data.decode_workers)
    cache_dir: Path | None = None  # per-artifact partial results, to resume (default: $VITDEPLOY_CACHE/validate)

    def __post_init__(self) -> None:
        if not self.candidates:
            raise UsageError("give at least one candidate to validate against the reference")
        if self.samples is not None and self.samples < 1:
            raise UsageError("--samples must be >= 1")


# Each key of a thresholds file and the values it may take: (low, high), both included.
THRESHOLD_RANGES: dict[str, tuple[float, float]] = {
    "max_abs": (0.0, math.inf), "cosine_min": (0.0, 1.0), "top1_agreement": (0.0, 1.0), "top5_agreement": (0.0, 1.0),
    "max_top1_drop": (0.0, 100.0),
}


def _check_threshold(path: Path, precision: str, key: str, value: object) -> None:
    """UsageError naming the key and its allowed range for an unknown key or an out-of-range value."""
    if key not in THRESHOLD_RANGES:
        raise UsageError(f"{path}: unknown threshold {precision}.{key}; allowed: {', '.join(THRESHOLD_RANGES)}")
    lo, hi = THRESHOLD_RANGES[key]
    if value is None:
        return
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not lo <= value <= hi:
        where = f"[{lo:g}, {hi:g}]" if math.isfinite(hi) else f">= {lo:g}"
        raise UsageError(f"{path}: {precision}.{key} is {json.dumps(value)}; it must be a number in {where} or null")


def load_thresholds(spec: str | None) -> tuple[dict[str, Thresholds], dict[str, float]]:
    """A preset name (default, strict, loose) or a JSON file {"int8": {"cosine_min": 0.99, "max_top1_drop": 1.0}, ...}."""
    if spec is None or spec in PRESETS:
        return dict(PRESETS[spec or "default"]), dict(MAX_TOP1_DROP)
    path = Path(spec)
    if not path.is_file():
        raise UsageError(f"--thresholds {spec!r} is neither a preset ({', '.join(PRESETS)}) nor a JSON file")
    try:
        raw = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: invalid JSON ({exc})") from exc
    thresholds, drops = dict(PRECISION_THRESHOLDS), dict(MAX_TOP1_DROP)
    shape = f"{path}: expected {{precision: {{{', '.join(THRESHOLD_RANGES)}: number or null}}}} with precision in fp32/fp16/int8"
    if not isinstance(raw, dict):
        raise UsageError(shape)
    for precision, values in raw.items():
        if precision not in thresholds or not isinstance(values, dict):
            raise UsageError(shape)
        for key, value in values.items():
            _check_threshold(path, precision, key, value)
        values = dict(values)
        if "max_top1_drop" in values:
            drop = values.pop("max_top1_drop")
            if drop is None:  # null: no drop limit
                drops.pop(precision, None)
            else:
                drops[precision] = float(drop)
        thresholds[precision] = replace(thresholds[precision], **values)
    return thresholds, drops


def _input_shape(runner) -> tuple[tuple[int, ...], int | None]:
    metas = runner.input_metadata()
    return tuple(int(d) if d is not None else -1 for d in metas[0].shape[1:]), static_batch(metas)


def batch_plan(art: Artifact, static: int | None, wanted: int) -> tuple[int, int]:
    """(chunk size, smallest batch the artifact takes): a static batch, or ``wanted`` clamped to
    the manifest's range (an engine's optimisation profile refuses batches outside it)."""
    if static is not None:
        return static, static
    lo, hi = art.batch_range or (1, wanted)
    return max(lo, min(wanted, hi)), lo


class _RunCache:
    """One validation run's files: the reference's outputs (float32 rows, read back batch by batch by
    each candidate), the kept sample indices and the reference's facts, then one JSON of reduced
    figures per finished candidate, each written atomically. The folder is named by what decides the
    figures (artifact digest, data fingerprint, sample selection, preprocessing, batch, backend): an
    interrupted run started again resumes after its last finished artifact. Removed once the run ends."""

    def __init__(self, config: ValidateConfig, ref_art: Artifact, pre, indices: np.ndarray) -> None:
        from vitdeploy.data import datasets as D

        root = config.cache_dir or Path(os.environ.get("VITDEPLOY_CACHE") or Path.home() / ".cache" / "vitdeploy") / "validate"
        key = _digest(VALIDATE_SCHEMA, _artifact_digest(ref_art), config.backends.get(config.reference),
                      D.source_fingerprint(config.data), hashlib.sha256(np.asarray(indices, np.int64).tobytes()).hexdigest(),
                      pre.key(), config.on_error, config.batch_size)
        self.dir = root / key[:32]
        self.logits, self.kept, self.meta = self.dir / "reference.f32", self.dir / "reference.kept.npy", self.dir / "reference.json"

    def reference(self) -> dict[str, Any] | None:
        """The finished reference pass's facts (with ``kept``), or None."""
        try:
            meta = json.loads(self.meta.read_text())
            meta["kept"] = np.load(self.kept)
            complete = self.logits.stat().st_size == 4 * len(meta["kept"]) * math.prod(meta["shape"])
        except (OSError, ValueError, KeyError, TypeError):
            return None
        return meta if complete else None

    def candidate(self, key: str) -> Path:
        return self.dir / f"candidate-{key[:32]}.json"

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the run's lock: two processes validating the same run (same key) on one machine would
        otherwise write and delete each other's files. The second waits for the first, which removes
        the folder when it ends, and then computes its own."""
        lock = self.dir.parent / f"{self.dir.name}.lock"
        try:
            self.dir.parent.mkdir(parents=True, exist_ok=True)
            f = open(lock, "a")  # noqa: SIM115 - closed below, after the lock is released
        except OSError as exc:
            raise cannot_write(lock, exc) from exc
        with f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)


def _digest(*parts: object) -> str:
    return hashlib.sha256(json.dumps(parts, default=str).encode()).hexdigest()


def _artifact_digest(art: Artifact) -> str:
    """What identifies an artifact's outputs: its file's content (and a checkpoint's), or a zoo name."""
    return _digest(art.spec, art.kind, *(sha256_file(p) for p in (art.path, art.checkpoint) if p is not None))


def _read_rows(f, n: int, shape: tuple[int, ...]) -> np.ndarray:
    rows = np.fromfile(f, dtype=np.float32, count=n * math.prod(shape))
    if rows.size != n * math.prod(shape):
        raise InputError(f"{f.name}: the cached reference outputs are shorter than the samples: remove it and rerun")
    return rows.reshape(n, *shape)


def _reference_pass(runner, art: Artifact, static: int | None, ds, pre, indices: np.ndarray, config: ValidateConfig,
                    cache: _RunCache, advance) -> dict[str, Any]:
    """Run the reference over the selected samples as they are decoded, its outputs streamed to the
    cache; the facts later passes need (kept indices, output shape, undecodable files)."""
    from vitdeploy.data import datasets as D

    chunk, min_batch = batch_plan(art, static, config.batch_size)
    workers = config.decode_workers or D.decode_workers(config.threads)
    kept: list[np.ndarray] = []
    shape: tuple[int, ...] = ()
    with atomic_path(cache.logits) as tmp, open(tmp, "wb") as f:
        for x, idx in D.iter_batches(ds, pre, indices, chunk, config.on_error, advance, workers):
            out = infer_batch(runner, x, min_batch)
            f.write(out.tobytes())
            kept.append(idx)
            shape = out.shape[1:]
        if not kept:
            raise D.no_decodable_image(ds)
    meta = {"shape": list(shape), "skipped": ds.skipped, "backend": runner.backend}
    with atomic_path(cache.kept) as tmp, open(tmp, "wb") as f:
        np.save(f, np.concatenate(kept))
    write_json_atomic(cache.meta, meta)  # last: its presence marks the reference as finished
    return {**meta, "kept": np.concatenate(kept)}


def _candidate_pass(runner, art: Artifact, static: int | None, ds, pre, ref: dict[str, Any], labels: np.ndarray | None,
                    config: ValidateConfig, cache: _RunCache, advance) -> dict[str, Any]:
    """Run a candidate over the kept samples, each batch compared with the reference's outputs read
    back from the cache as it goes (``StreamingComparison``, ``TopKAccuracy``): the reduced figures."""
    from vitdeploy.data import datasets as D

    chunk, min_batch = batch_plan(art, static, config.batch_size)
    workers = config.decode_workers or D.decode_workers(config.threads)
    shape = tuple(ref["shape"])
    reducer, acc, done = StreamingComparison(worst=5), TopKAccuracy(), 0
    with open(cache.logits, "rb") as f:
        for x, _ in D.iter_batches(ds, pre, ref["kept"], chunk, "fail", advance, workers):
            out = infer_batch(runner, x, min_batch)
            if out.shape[1:] != shape:
                raise ShapeMismatchError(f"{art.label} outputs {out.shape[1:]}, the reference {shape}")
            reducer.update(_read_rows(f, len(out), shape), out)
            if labels is not None:
                acc.update(out, labels[done:done + len(out)])
            done += len(out)
    return {"comparison": reducer.result().to_dict(), "accuracy": acc.result() if labels is not None else None,
            "backend": runner.backend, "fp16_emulated": bool(getattr(runner, "fp16_emulated", False))}


def _reference_accuracy(cache: _RunCache, ref: dict[str, Any], labels: np.ndarray, rows: int = 1024) -> dict[str, float]:
    """The reference's top-1/top-5 on ``labels``, its outputs read back from the cache in blocks."""
    acc, shape = TopKAccuracy(), tuple(ref["shape"])
    with open(cache.logits, "rb") as f:
        for i in range(0, len(labels), rows):
            n = min(rows, len(labels) - i)
            acc.update(_read_rows(f, n, shape).reshape(n, -1), labels[i:i + n])
    return acc.result()


def validate(config: ValidateConfig, progress=None) -> dict[str, Any]:
    """The validation document; ``progress(label, total)`` returns an advance(n) callback.

    Streams: images are decoded by a pool of threads ahead of inference, one batch at a time, and
    each artifact's outputs are reduced as they come, so memory does not grow with the samples. The
    reference runs first, its outputs kept on disk (``_RunCache``), then each candidate in turn; a
    finished artifact's figures are kept so that an interrupted run, started again, resumes."""
    from vitdeploy.data import datasets as D

    ref_art = resolve_artifact(config.reference, config.checkpoint)
    if ref_art.kind == "torch" and config.checkpoint is None:
        raise UsageError(f"the reference {config.reference} is a zoo model: give its weights with --checkpoint "
                         "(without them it is a random network)")
    ds = D.open_dataset(config.data)
    # A preprocessed .npy/.npz needs no preprocessing options: without a manifest its sample shape
    # stands for the input size (checked against the reference's input below) and mean/std are unknown.
    pre = D.resolve_preprocess(ref_art.manifest, ds)
    shape_from_data = "input_size" not in ((ref_art.manifest or {}).get("preprocessing") or {})
    D.check_shape(ds, pre)
    D.check_array_values(ds, pre, allow=not config.data_check)
    indices = D.sample_indices(len(ds), config.samples, config.seed)
    cache = _RunCache(config, ref_art, pre, indices)
    with cache.locked():  # another validate of the same run waits, then finds its own files
        try:
            with open_runner(ref_art, config.backends.get(config.reference), config.threads) as ref_runner:
                ref_shape, ref_static = _input_shape(ref_runner)
                D.check_shape(ds, pre, ref_shape)  # a layout mismatch (N,H,W,C model) named before anything runs
                if not D.fits(ref_shape, tuple(pre.input_size)):
                    said = f"the samples of {ds.source} are" if shape_from_data else "its preprocessing says"
                    raise ShapeMismatchError(f"reference {ref_art.label} takes {ref_shape}, {said} {tuple(pre.input_size)}")
                ref = cache.reference()
                resumed = ref is not None
                if ref is None:
                    advance = progress(f"reference {ref_art.label}", len(indices)) if progress else None
                    ref = _reference_pass(ref_runner, ref_art, ref_static, ds, pre, indices, config, cache, advance)
            ds.skipped = [(str(f), str(why)) for f, why in ref["skipped"]]
            kept = ref["kept"]

            doc: dict[str, Any] = {
                "schema": VALIDATE_SCHEMA,
                "reference": {"artifact": ref_art.label, "kind": ref_art.kind, "precision": ref_art.precision,
                              "backend": ref_runner.backend, "resumed": resumed},
                "data": {"source": ds.source, "samples": len(kept), "labels": False,
                         "skipped": len(ds.skipped), "seed": config.seed, "value_check": config.data_check},
                "candidates": [],
                "warnings": [w for w in [D.skipped_warning(ds)] if w],
            }
            random_weights = ref_art.kind != "torch" and has_random_weights(ref_art.manifest)  # torch: --checkpoint required
            doc["data"]["random_weights"] = random_weights
            if random_weights:  # near-ties everywhere: which class wins is noise, how close the outputs are is not
                doc["warnings"].append("the reference has random weights (exported without --checkpoint): top-1 agreement "
                                       "and accuracy are not meaningful and do not gate; cosine and max abs still do")
            labels = None if random_weights else _usable_labels(doc, ds, kept, int(math.prod(ref["shape"])),
                                                                lambda lab: _reference_accuracy(cache, ref, lab))
            if labels is not None:
                doc["reference"].update(_reference_accuracy(cache, ref, labels))

            for spec in config.candidates:
                art = resolve_artifact(spec)
                done = cache.candidate(_digest(_artifact_digest(art), config.backends.get(spec), labels is not None))
                try:
                    figures = json.loads(done.read_text())
                except (OSError, ValueError):
                    with open_runner(art, config.backends.get(spec), config.threads, fp16_rounding=True) as runner:
                        shape, static = _input_shape(runner)
                        if shape != ref_shape:
                            raise ShapeMismatchError(f"{art.label} takes input {shape} but the reference {ref_art.label} takes {ref_shape}")
                        advance = progress(art.label, len(kept)) if progress else None
                        figures = _candidate_pass(runner, art, static, ds, pre, ref, labels, config, cache, advance)
                    write_json_atomic(done, figures)
                else:
                    figures["resumed"] = True
                doc["candidates"].append(_candidate_entry(doc, art, figures, config, random_weights,
                                                          None if labels is None else len(labels), ds, kept))
            doc["passed"] = all(c["passed"] for c in doc["candidates"])
        except Exception:  # a run that failed for good (not an interruption, which resumes) leaves no files
            shutil.rmtree(cache.dir, ignore_errors=True)
            raise
        shutil.rmtree(cache.dir, ignore_errors=True)
        return doc


def _candidate_entry(doc: dict[str, Any], art: Artifact, figures: dict[str, Any], config: ValidateConfig,
                     random_weights: bool, labelled: int | None, ds, kept: np.ndarray) -> dict[str, Any]:
    """A candidate's entry of the document: its reduced figures judged against its precision's thresholds."""
    comparison = Comparison(**figures["comparison"])
    precision = art.precision if art.precision in config.thresholds else "fp32"
    limits = config.thresholds[precision]
    if random_weights:
        limits = replace(limits, top1_agreement=None, top5_agreement=None)
    elif limits.top1_agreement is not None:  # two flipped samples are below what n samples resolve (as in quantize)
        limits = replace(limits, top1_agreement=resolvable_agreement(limits.top1_agreement, comparison.samples))
    failures = limits.failures(comparison)
    names = [str(ds.files[kept[i]]) if ds.kind == "images" else f"{ds.source}[{int(kept[i])}]" for i in comparison.worst]
    entry: dict[str, Any] = {"artifact": art.label, "kind": art.kind, "backend": figures["backend"], "precision": art.precision,
                             "fp16_emulated": figures["fp16_emulated"], "resumed": bool(figures.get("resumed")),
                             "comparison": comparison.to_dict(), "worst_samples": names,
                             "thresholds": {**limits.__dict__, "max_top1_drop": config.max_top1_drop.get(precision)}}
    if labelled is not None and figures["accuracy"] is not None:
        acc = figures["accuracy"]
        drop = 100.0 * (doc["reference"]["top1"] - acc["top1"])
        entry.update(acc, top1_drop_points=drop)
        limit = config.max_top1_drop.get(precision)
        if limit is not None:
            limit = resolvable_drop(limit, labelled)  # as in quantize's own check
            entry["thresholds"]["max_top1_drop_effective"] = round(limit, 3)
            if drop > limit + 1e-9:
                failures.append(f"top-1 drop {drop:.2f} points > {limit:.2f}")
    entry["passed"] = not failures
    entry["failures"] = failures
    return entry


def _usable_labels(doc: dict[str, Any], ds, kept: np.ndarray, num_classes: int,
                   accuracy: Callable[[np.ndarray], dict[str, float]]) -> np.ndarray | None:
    """The labels of the kept samples for the reference's outputs, or None when there are none or
    they cannot be its classes (``labels_for``) or the reference scores at chance on them; fills
    ``doc["data"]`` (labels, labels_present, label_scheme, num_classes, unusable_labels) and warns.
    ``accuracy(labels)``: the reference's top-1/top-5 on labels of the kept samples."""
    from vitdeploy.data import datasets as D

    lmap = D.labels_for(ds, num_classes)
    doc["data"].update(labels_present=lmap.labels is not None, label_scheme=lmap.scheme, num_classes=num_classes)
    if lmap.labels is None:
        return None
    labels = lmap.labels[kept]
    found = list(lmap.warnings)
    usable = lmap.meaningful
    in_range = (labels >= 0) & (labels < num_classes)
    acc = accuracy(np.where(in_range, labels, -1))
    if usable and D.chance_level(acc["top1"], len(labels), num_classes):
        usable = False
        found.append(D.chance_warning(acc["top1"], len(labels), num_classes))
    doc["warnings"].extend(found)
    if not usable:
        doc["data"]["unusable_labels"] = {"reference_top1": acc["top1"], "reference_top5": acc["top5"],
                                          "note": "labels that cannot be the model's classes: not accuracy"}
        return None
    doc["data"]["labels"] = True
    return labels


def accuracy_section(doc: dict[str, Any]) -> dict[str, Any]:
    """The per-artifact accuracy block a bench document takes (see vitdeploy.bench)."""
    out = {doc["reference"]["artifact"]: {"precision": doc["reference"]["precision"], "cosine": 1.0, "top1_agreement": 1.0,
                                          "top1": doc["reference"].get("top1"), "top1_drop_points": 0.0 if "top1" in doc["reference"] else None}}
    for c in doc["candidates"]:
        out[c["artifact"]] = {"precision": c["precision"], "cosine": c["comparison"]["cosine_mean"],
                              "top1_agreement": c["comparison"]["top1_agreement"], "top1": c.get("top1"),
                              "top1_drop_points": c.get("top1_drop_points")}
    return out


def markdown(doc: dict[str, Any]) -> str:
    ref = doc["reference"]
    lines = [f"# Validation against {ref['artifact']} ({ref['precision']}, {ref['backend']})", "",
             f"Data: {doc['data']['source']}, {doc['data']['samples']} samples"
             + (" with labels" if doc["data"]["labels"] else
                " (labels that cannot be the model's classes: agreement only)" if doc["data"].get("labels_present")
                else " (no labels: agreement only)")
             + (f", {doc['data']['skipped']} undecodable skipped" if doc["data"]["skipped"] else ""), ""]
    for w in doc.get("warnings", []):
        lines += [f"> **Warning:** {w}", ""]
    unusable = doc["data"].get("unusable_labels")
    if unusable:
        lines += [f"> Top-1 not reported and not gated: the reference scores {unusable['reference_top1']:.2%} on "
                  "these labels, a figure about the labels, not the model.", ""]
    head = "| artifact | precision | backend | cosine (min) | top-1 agree | max abs |"
    sep = "|---|---|---|---|---|---|"
    if doc["data"]["labels"]:
        head += " top-1 | drop (pt) |"
        sep += "---|---|"
        lines += [f"Reference top-1: {ref['top1']:.2%}, top-5: {ref['top5']:.2%}", ""]
    lines += [head + " result |", sep + "---|"]
    for c in doc["candidates"]:
        cmp_ = c["comparison"]
        row = (f"| {c['artifact']} | {c['precision']} | {c['backend']} | {cmp_['cosine_mean']:.5f} ({cmp_['cosine_min']:.5f}) | "
               f"{cmp_['top1_agreement']:.2%} | {cmp_['max_abs']:.3g} |")
        if doc["data"]["labels"]:
            row += f" {c['top1']:.2%} | {c['top1_drop_points']:+.2f} |"
        row += " pass |" if c["passed"] else f" **FAIL**: {'; '.join(c['failures'])} |"
        lines.append(row)
    worst = [c for c in doc["candidates"] if c["worst_samples"]]
    if worst:
        lines += ["", "Worst samples (lowest cosine first):", ""]
        lines += [f"- {c['artifact']}: {', '.join(Path(s).name for s in c['worst_samples'][:5])}" for c in worst]
    return "\n".join(lines) + "\n"
