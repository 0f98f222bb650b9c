"""`vitdeploy validate`: is each candidate (ONNX at any precision, engine) still as right as the reference?

Runs the reference (a zoo model with its checkpoint, or the FP32 ONNX) and every candidate on
the same preprocessed samples. With labels: top-1/top-5 accuracy and the drop against the
reference. Always: top-1/top-5 agreement, cosine, max abs/rel error, the worst samples.
Labels that cannot be the reference's classes (``vitdeploy.data.labels.labels_for``: out of range, ImageNet
wnid folders for a model without 1000 outputs, ...) or on which the reference scores at chance
are warned about (``doc["warnings"]``, which the CLI prints) and not used: no top-1 figures, no
top-1 drop gate; their reference figures stay in ``doc["data"]["unusable_labels"]`` for diagnosis.
Each candidate passes or fails against the thresholds of its precision; the CLI exits 6 when
one fails, so this can gate CI.

The package: ``config`` (options, thresholds), ``run`` (the streaming passes), ``cache`` (the
resumable run cache), ``document`` (the result document, judged by ``core.compare.judge``); this
module runs them in order. The passes are called through this module's names (tests and
benchmarks/validate_scale.py wrap ``reference_pass`` / ``candidate_pass`` here).
"""

from __future__ import annotations

import json
import math
import shutil
from typing import Any

from vitdeploy.core.errors import ShapeMismatchError, UsageError
from vitdeploy.core.io import write_json_atomic
from vitdeploy.runners.factory import open_runner, resolve_artifact
from vitdeploy.validate.cache import ReferenceStore, artifact_digest, digest
from vitdeploy.validate.config import (PRESETS, THRESHOLD_RANGES, VALIDATE_SCHEMA, ValidateConfig,
                                       load_thresholds)
from vitdeploy.validate.document import accuracy_section, candidate_entry, markdown, new_document, usable_labels
from vitdeploy.validate.run import batch_plan, candidate_pass, input_shape, reference_accuracy, reference_pass

__all__ = ["PRESETS", "THRESHOLD_RANGES", "VALIDATE_SCHEMA", "ValidateConfig", "accuracy_section", "batch_plan",
           "load_thresholds", "markdown", "validate"]


def validate(config: ValidateConfig, progress=None) -> dict[str, Any]:
    """The validation document; ``progress(label, total)`` returns an advance(n) callback.

    Streams: images are decoded by a pool of threads ahead of inference, one batch at a time, and
    each artifact's outputs are reduced as they come, so memory does not grow with the samples. The
    reference runs first, its outputs kept on disk (``ReferenceStore``), then each candidate in turn; a
    finished artifact's figures are kept so that an interrupted run, started again, resumes."""
    from vitdeploy.core.preprocessing import Preprocessing
    from vitdeploy.data.checks import check_array_values, check_shape, fits
    from vitdeploy.data.preprocess import resolve_preprocess
    from vitdeploy.data.sampling import sample_indices
    from vitdeploy.data.sources import open_dataset

    ref_art = resolve_artifact(config.reference, config.checkpoint)
    if ref_art.kind == "torch" and config.checkpoint is None:
        raise UsageError(f"the reference {config.reference} is a zoo model: give its weights with --checkpoint "
                         "(without them it is a random network)")
    ds = open_dataset(config.data)
    # A preprocessed .npy/.npz needs no preprocessing options: without a manifest its sample shape
    # stands for the input size (checked against the reference's input below) and mean/std are unknown.
    pre = resolve_preprocess((ref_art.manifest.preprocessing if ref_art.manifest else None) or Preprocessing(), ds)
    written = (ref_art.manifest.raw.get("preprocessing") or {}) if ref_art.manifest else {}
    shape_from_data = "input_size" not in written  # no manifest, or one without an input size
    check_shape(ds, pre)
    check_array_values(ds, pre, allow=not config.data_check)
    indices = sample_indices(len(ds), config.samples, config.seed)
    cache = ReferenceStore(config, ref_art, pre, indices)
    with cache.locked():  # another validate of the same run waits, then finds its own files
        try:
            with open_runner(ref_art, config.backends.get(config.reference), config.threads) as ref_runner:
                ref_shape, ref_static = input_shape(ref_runner)
                check_shape(ds, pre, ref_shape)  # a layout mismatch (N,H,W,C model) named before anything runs
                if not fits(ref_shape, tuple(pre.input_size)):
                    said = f"the samples of {ds.source} are" if shape_from_data else "its preprocessing says"
                    raise ShapeMismatchError(f"reference {ref_art.label} takes {ref_shape}, {said} {tuple(pre.input_size)}")
                ref = cache.reference()
                resumed = ref is not None
                if ref is None:
                    advance = progress(f"reference {ref_art.label}", len(indices)) if progress else None
                    ref = reference_pass(ref_runner, ref_art, ref_static, ds, pre, indices, config, cache, advance)
            ds.skipped = [(str(f), str(why)) for f, why in ref["skipped"]]
            kept = ref["kept"]

            doc = new_document(config, ref_art, ref_runner.backend, resumed, ds, kept)
            random_weights = doc["data"]["random_weights"]
            labels = None
            if not random_weights:  # the reference's outputs read once: which labels are usable, and its accuracy
                labels, ref_acc = usable_labels(doc, ds, kept, int(math.prod(ref["shape"])),
                                                lambda lab: reference_accuracy(cache, ref, lab))
                if labels is not None:
                    doc["reference"].update(ref_acc)

            for spec in config.candidates:
                art = resolve_artifact(spec)
                done = cache.candidate(digest(artifact_digest(art), config.backends.get(spec), labels is not None))
                try:
                    figures = json.loads(done.read_text())
                except (OSError, ValueError):
                    with open_runner(art, config.backends.get(spec), config.threads, fp16_rounding=True) as runner:
                        shape, static = input_shape(runner)
                        if shape != ref_shape:
                            raise ShapeMismatchError(f"{art.label} takes input {shape} but the reference {ref_art.label} takes {ref_shape}")
                        advance = progress(art.label, len(kept)) if progress else None
                        figures = candidate_pass(runner, art, static, ds, pre, ref, labels, config, cache, advance)
                    write_json_atomic(done, figures)
                else:
                    figures["resumed"] = True
                doc["candidates"].append(candidate_entry(doc, art, figures, config, random_weights,
                                                         None if labels is None else len(labels), ds, kept))
            doc["passed"] = all(c["passed"] for c in doc["candidates"])
        except Exception:  # a run that failed for good (not an interruption, which resumes) leaves no files
            shutil.rmtree(cache.dir, ignore_errors=True)
            raise
        shutil.rmtree(cache.dir, ignore_errors=True)
        return doc
