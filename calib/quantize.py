"""`vitdeploy quantize`: an FP32 ONNX -> INT8 (Q/DQ) or FP16 ONNX, with its accuracy measured on the CPU.

INT8: calibration images -> activation histograms (cached) -> ranges by the chosen method ->
Q/DQ on MatMul/Gemm/Conv inputs -> accuracy against the FP32 model on held-out images, all in
ONNX Runtime. FP16: FP32 islands for normalisation/softmax/reductions and for nodes whose
calibrated range overflows FP16. Nothing is written unless every step passed.

The steps: ``passes`` (the INT8 and FP16 passes), ``accuracy`` (against FP32 on held-out images, and
the gate: ``core.compare.judge``, as `vitdeploy validate` judges); this module reads the model and
data, runs them in order and writes the file and its manifest.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from vitdeploy.calib import cost, qdq, search, search_plot
from vitdeploy.calib.accuracy import judge_accuracy, measure_accuracy
from vitdeploy.calib.graph import constants_to_initializers, name_unnamed_nodes
from vitdeploy.calib.methods import METHODS
from vitdeploy.calib.passes import QuantizeContext, fp16_pass, int8_pass
from vitdeploy.core import onnx_utils
from vitdeploy.core.errors import UsageError
from vitdeploy.core.precision import QuantPolicy
from vitdeploy.core import manifest as manifests
from vitdeploy.core.io import check_artifact_output, check_output, new_manifest, sha256_file, write_bytes_atomic, write_manifest
from vitdeploy.core.manifest import Manifest
from vitdeploy.core.preprocessing import Preprocessing
from vitdeploy.data.batches import decode_workers, iter_batches, load_samples
from vitdeploy.data.checks import check_array_values, check_shape
from vitdeploy.data.labels import labels_for
from vitdeploy.data.preprocess import resolve_preprocess
from vitdeploy.data.sampling import holdout_split
from vitdeploy.data.sources import Dataset, data_hash, fingerprint, open_dataset
from vitdeploy.trt import calibration_cache as trtcache
from vitdeploy.core.steps import Steps


HIGH_PRECISIONS = ("fp16", "fp32")
# Fewer INT8 calibration images than this are warned about: the range tails that percentile and entropy
# clip at are then set by a handful of images, so the ranges fit their content, not the variety of the data.
MIN_INT8_SAMPLES = 32


@dataclass(frozen=True)
class QuantizeConfig:
    model: Path
    precision: str  # "int8" | "fp16"
    calib: Path | None = None
    method: str = "percentile"
    percentile: float = 99.99
    samples: int = 512
    holdout: int | None = None  # default: samples // 8, at least 8, at most 256
    target: str = "trt"
    # INT8: what the Q/DQ planner quantizes (--exclude, --float-attention, --quantize-depthwise); its
    # ``hints`` are replaced by the export manifest's when ``family_hints`` and the manifest has some
    policy: QuantPolicy = field(default_factory=QuantPolicy)
    keep_fp32: tuple[str, ...] = ()
    output: Path | None = None
    force: bool = False
    seed: int = 0
    batch_size: int = 16
    on_error: str = "skip"
    preprocessing: Preprocessing = field(default_factory=Preprocessing)  # overrides of the manifest's (known entries)
    trt_calibration_cache: bool = False
    threads: int | None = None
    family_hints: bool = True  # apply the quantization hints the export manifest carries (--no-family-hints: False)
    high_precision: str = "fp16"  # INT8 --qdq-form trt: the unquantized float parts in FP16 (with FP32 islands) or FP32
    gate: bool = True  # exit 6 (nothing written) when the result fails the precision's default thresholds
    data_check: bool = True  # refuse .npy/.npz arrays whose dtype or values contradict a normalised input
    # INT8 accuracy budget (--max-drop, points of --metric): search which layers stay float (calib.search)
    max_drop: float | None = None
    metric: str | None = None  # top1 | agreement | cosine; default: top1 with labels, else agreement
    device_profile: str | None = None  # the cost model's device (calib.cost); default by --qdq-form

    def __post_init__(self) -> None:
        if self.precision not in ("int8", "fp16"):
            raise UsageError("choose --int8 or --fp16")
        if self.method not in METHODS:
            raise UsageError(f"unknown method {self.method!r}; choose from {', '.join(METHODS)}")
        if self.target not in qdq.TARGETS:
            raise UsageError(f"unknown --qdq-form {self.target!r}; choose from {', '.join(qdq.TARGETS)}")
        if self.high_precision not in HIGH_PRECISIONS:
            raise UsageError(f"unknown --high-precision {self.high_precision!r}; choose from {', '.join(HIGH_PRECISIONS)}")
        if self.precision == "int8" and self.calib is None:
            raise UsageError("--int8 needs calibration data: --calib DATA (image folder, .txt list, .npy/.npz)")
        if self.samples < 1:
            raise UsageError("--samples must be >= 1")
        if not 50.0 < self.percentile < 100.0:
            raise UsageError("--percentile must be in (50, 100)")
        if not isinstance(self.policy, QuantPolicy):
            raise TypeError(f"QuantizeConfig.policy must be a QuantPolicy, not {type(self.policy).__name__}")
        if self.max_drop is None and (self.metric is not None or self.device_profile is not None):
            raise UsageError(f"{'--metric' if self.metric is not None else '--device-profile'} applies to the "
                             "precision search: give --max-drop too")
        if self.max_drop is not None:
            search.check_budget_options(self.max_drop, self.metric)
            if self.trt_calibration_cache:
                raise UsageError("--trt-calibration-cache is for an implicit INT8 build of the FP32 ONNX, which would not "
                                 "keep the layers --max-drop keeps float: give one of them")
        if self.device_profile is not None and self.device_profile not in cost.PROFILES:
            raise UsageError(f"unknown --device-profile {self.device_profile!r}; choose from {', '.join(cost.PROFILES)}")
        if self.precision == "fp16":
            int8_only = [name for name, used in (("--exclude", self.policy.exclude),
                                                 ("--float-attention", not self.policy.quantize_attention),
                                                 ("--qdq-form ort-cpu", self.target != "trt"),
                                                 ("--trt-calibration-cache", self.trt_calibration_cache),
                                                 ("--quantize-depthwise", self.policy.quantize_depthwise),
                                                 ("--high-precision", self.high_precision != "fp16"),
                                                 ("--max-drop", self.max_drop is not None)) if used]
            if int8_only:
                raise UsageError(f"{', '.join(int8_only)} only appl{'ies' if len(int8_only) == 1 else 'y'} to --int8")
        elif self.keep_fp32:
            raise UsageError("--keep-fp32 only applies to --fp16 (use --exclude to leave INT8 layers in float)")
        elif self.target != "trt" and self.high_precision != "fp16":
            raise UsageError("--high-precision applies to --qdq-form trt (the ort-cpu form keeps its float parts FP32)")


@dataclass
class QuantizeResult:
    onnx_path: Path
    manifest_path: Path
    manifest: dict[str, Any]


def default_output(model: Path, precision: str, target: str) -> Path:
    suffix = precision if target == "trt" or precision == "fp16" else f"{precision}-ort"
    stem = model.stem
    return model.with_name(f"{stem}.{suffix}.onnx")


def effective_policy(config: QuantizeConfig, parent: Manifest | None) -> QuantPolicy:
    """``config.policy`` with the export manifest's quantization hints when ``config.family_hints`` and
    the manifest carries some (otherwise the policy's own hints: none unless the caller set them)."""
    hints = parent.quantization_hints if parent and config.family_hints else None
    return replace(config.policy, hints=hints) if hints is not None else config.policy


def _preprocessing(parent: Manifest | None, ds: Dataset | None, input_shape: list, config: QuantizeConfig) -> Preprocessing:
    """How samples are made: the export manifest, then the options; the input size may also come
    from the ONNX. A preprocessed array needs nothing else (its mean/std may stay unknown)."""
    known = (parent.preprocessing if parent else None) or Preprocessing()
    dims = tuple(input_shape[1:])
    size_from_onnx = known.input_size is None and all(isinstance(d, int) for d in dims)
    if size_from_onnx:
        known = replace(known, input_size=dims)
    known = known.updated(config.preprocessing)
    if ds is not None:
        return resolve_preprocess(known, ds)
    try:
        return known.for_images()
    except UsageError:
        if not (size_from_onnx or config.preprocessing.input_size is not None):
            raise
        return Preprocessing.for_array(known.input_size)  # seeded inputs need only the size


def quantize(config: QuantizeConfig, steps: Steps | None = None, progress=None) -> QuantizeResult:
    """``progress(kind, total)`` returns an advance(n) callback for long loops (or None)."""
    steps = steps or Steps()
    with steps.step("load model"):
        model = onnx_utils.load(config.model)
        constants_to_initializers(model)
        name_unnamed_nodes(model)
        parent = manifests.read(config.model)
        io = onnx_utils.io_summary(model)
        model_input = io["inputs"][0]
        out_dims = io["outputs"][0]["shape"] if io["outputs"] else []
        num_classes = out_dims[-1] if out_dims and isinstance(out_dims[-1], int) else None
        static_batch = model_input["shape"][0] if isinstance(model_input["shape"][0], int) else None
        ds = open_dataset(config.calib) if config.calib is not None else None
        pre = _preprocessing(parent, ds, model_input["shape"], config)
        if parent and (parent.precision or "fp32") != "fp32":
            raise UsageError(f"{config.model} is already {parent.precision}: quantize the FP32 export")
    out = Path(config.output) if config.output else default_output(Path(config.model), config.precision, config.target)
    check_artifact_output(out, config.force)
    cache_out = out.with_suffix(".calib") if config.trt_calibration_cache else None
    plot_out = search_plot.plot_path(out) if config.max_drop is not None else None
    for extra in (cache_out, plot_out):
        if extra is not None:
            check_output(extra, config.force)

    # validate user selections before any heavy work
    policy = effective_policy(config, parent)
    if config.precision == "int8":
        qplan = qdq.plan(model, policy)
    else:
        names = {n.op_type for n in model.graph.node} | {n.name for n in model.graph.node}
        unknown = [k for k in config.keep_fp32 if k not in names]
        if unknown:
            raise UsageError(f"--keep-fp32 {', '.join(unknown)}: neither an op type nor a node name in this model")

    warnings: list[str] = []
    model_bytes = model.SerializeToString()
    ctx = QuantizeContext(model, model_bytes, hashlib.sha256(model_bytes).hexdigest(), model_input["name"], static_batch)
    data_info = hold_labels = None
    hold_idx = np.empty(0, dtype=np.int64)
    data_source, synthetic = config.calib, False
    few: str | None = None  # a calibration set too small for INT8: the likely cause of a failed gate
    if data_source is None and config.precision == "fp16" and pre.normalisation_known:
        # FP16 ranges need image-like data: without --calib, the built-in synthetic sample beats
        # none (T2T-ViT's Performer features underflow FP16 on images, not on random noise).
        from vitdeploy.calib.builtin import cached_sample

        data_source, synthetic = cached_sample(), True
        ds = open_dataset(data_source)
        warnings.append("no --calib: FP16 ranges and accuracy from vitdeploy's built-in synthetic sample; "
                        "give --calib with real images for ranges that match your data")
    if data_source is not None:
        with steps.step("read calibration data"):
            check_shape(ds, pre)
            check_array_values(ds, pre, allow=not config.data_check)
            if ds.kind == "array" and not config.data_check:
                warnings.append("value check of the array skipped (--no-data-check): make sure it is preprocessed")
            calib_idx, hold_idx = holdout_split(len(ds), config.samples, config.holdout, config.seed)
            advance = progress("decode images", len(calib_idx) + len(hold_idx)) if progress else None
            workers = decode_workers(config.threads)
            # decoded once into a spill file and read back a batch per pass: memory does not grow with --samples
            samples = load_samples(ds, pre, calib_idx, config.on_error, advance, workers)
            if static_batch:  # a static-batch model takes whole batches
                samples = samples.whole_batches(static_batch)
            calib_idx = samples.indices
            if len(hold_idx):  # held-out images: decoded, run and reduced batch by batch in the accuracy step
                lmap = labels_for(ds, num_classes)  # wnid folders, out-of-range labels: see vitdeploy.data.labels
                warnings.extend(lmap.warnings)
                hold_labels = lmap.labels if lmap.meaningful else None
            if config.max_drop is not None:  # the search looks at one half; the result is measured on the other
                metric, sel_idx, hold_idx = _search_split(config, hold_idx, hold_labels, parent, out_dims)
            ctx.samples, ctx.data_hash = samples, data_hash(ds, calib_idx, pre)
            if config.precision == "int8" and len(samples) < MIN_INT8_SAMPLES and not synthetic:
                where = " (the data row says where the rest went)" if len(samples) < config.samples else ""
                few = f"only {len(samples)} calibration images{where}: below {MIN_INT8_SAMPLES}"
                warnings.append(f"{few}, INT8 ranges fit those few images rather than your data; give a few hundred")
            elif len(samples) < config.samples and not synthetic:
                warnings.append(f"{len(samples)} calibration samples, fewer than --samples {config.samples} "
                                "(the data row says where the rest went)")
            data_info = {"source": ds.source, "fingerprint": fingerprint(data_source), "kind": ds.kind,
                         "synthetic": synthetic,
                         "available": len(ds), "requested_samples": config.samples, "percentile": config.percentile,
                         "calibration_samples": int(len(samples)),
                         "holdout_samples": len(hold_idx), "hash": ctx.data_hash,
                         "skipped": len(ds.skipped), "skipped_examples": ds.skipped[:5], "seed": config.seed,
                         "labels": ds.labels is not None, "value_check": config.data_check}
            if config.max_drop is not None:
                data_info["selection_samples"] = len(sel_idx)
                resolution = 100.0 / max(len(hold_idx), 1)
                if metric != "cosine" and resolution > config.max_drop:
                    warnings.append(f"the {len(hold_idx)} confirmation images resolve {metric} to {resolution:.2f} pt, "
                                    f"coarser than --max-drop {config.max_drop:g}: one flipped image misses the budget "
                                    "(more held-out images: --holdout)")

    searched = None
    if config.max_drop is not None:
        selection = load_samples(ds, pre, sel_idx, config.on_error, advance, workers)
        sel_labels = hold_labels[selection.indices] if metric == "top1" else None
        searched = search.run(ctx, qplan, config, selection, sel_labels, metric, len(hold_idx), steps, progress)
        full_plan = qplan
        policy = replace(policy, float_nodes=frozenset(searched.float_nodes))
        qplan = qdq.plan(model, policy)
    if config.precision == "int8":
        result_model, precision_info, cache_amax = int8_pass(ctx, qplan, policy, config, steps, progress,
                                                             full_plan if searched else None)
    else:
        result_model, precision_info = fp16_pass(ctx, config, steps, progress)
        cache_amax = None

    result_bytes = result_model.SerializeToString()
    with steps.step("accuracy vs FP32"):
        held_out = None
        if len(hold_idx):  # held-out images: decoded, run and reduced batch by batch
            held_out = ((x, None if hold_labels is None else hold_labels[i]) for x, i in
                        iter_batches(ds, pre, hold_idx, static_batch or 32, config.on_error, advance, workers))
        accuracy = measure_accuracy(model_bytes, result_bytes, held_out, ds, pre, static_batch, config, synthetic, warnings)
        if len(hold_idx):
            data_info.update(holdout_samples=accuracy["samples"], skipped=len(ds.skipped),  # type: ignore[union-attr]
                             skipped_examples=ds.skipped[:5])
        confirmed = _confirmation_drop(accuracy, metric) if searched else None
        # with --max-drop the budget is the gate: the default thresholds are reported (a warning when missed)
        judge_accuracy(accuracy, replace(config, gate=False) if searched else config, parent, num_classes,
                       real_data=len(hold_idx) > 0 and not synthetic, warnings=warnings, few=few)
        if searched:
            searched.confirmation = {"samples": accuracy["samples"], "drop_points": round(confirmed, 6),
                                     "within_budget": confirmed <= config.max_drop + 1e-9}
            precision_info["precision_search"] = searched.to_json()
            _check_budget(searched, confirmed, config, warnings)
            if not searched.int8_macs:
                warnings.append(f"no layer is INT8: every layer is {searched.fallback.upper()} (the budget allows none)")

    keep = ("model", "input", "output", "batch", "preprocessing", "checkpoint", "deploy_form")
    manifest = new_manifest(
        "onnx", out, **(parent.inherited(keep) if parent else {}),
        precision=config.precision,
        parent={"artifact": str(config.model), "sha256": sha256_file(config.model), "precision": "fp32"},
        quantization=precision_info if config.precision == "int8" else None,
        fp16=precision_info if config.precision == "fp16" else None,
        calibration_data=data_info,
        accuracy=accuracy,
        graph={"nodes": onnx_utils.node_count(result_model), "ops": onnx_utils.op_histogram(result_model)},
        warnings=warnings,
    )
    if parent is None:
        manifest["preprocessing"] = {"input_size": list(pre.input_size), "layout": "NCHW"}
        if pre.normalisation_known:
            manifest["preprocessing"].update(mean=list(pre.mean), std=list(pre.std), interpolation=pre.interpolation,
                                             crop_pct=pre.crop_pct)
    with steps.step("write"):
        write_bytes_atomic(out, result_bytes)
        try:
            if cache_out is not None:
                trtcache.write(cache_out, cache_amax)
                manifest["trt_calibration_cache"] = {"path": cache_out.name, "tensors": len(cache_amax),
                                                     "for": "TensorRT < 10.12 implicit INT8 build of the FP32 ONNX"}
            if plot_out is not None:
                drawn = search_plot.write(precision_info["precision_search"], plot_out, title=out.name)
                if drawn is None:
                    plot_out.unlink(missing_ok=True)  # an older plot (--force) would describe another file
                    warnings.append("precision search plot not drawn: matplotlib is not installed (pip install 'vitdeploy[plot]')")
                else:
                    precision_info["precision_search"]["plot"] = drawn.name
            manifest["file_bytes"] = os.path.getsize(out)
            manifest["steps"] = steps.to_list()
            mpath = write_manifest(out, manifest)
        except BaseException:
            out.unlink(missing_ok=True)
            for extra in (cache_out, plot_out):
                if extra is not None:
                    extra.unlink(missing_ok=True)
            raise
    return QuantizeResult(out, mpath, manifest)


def _search_split(config: QuantizeConfig, hold_idx: np.ndarray, labels: np.ndarray | None,
                  parent: Manifest | None, out_dims: list) -> tuple[str, np.ndarray, np.ndarray]:
    """(metric, selection indices, confirmation indices) for --max-drop: the held-out images alternate
    between the set the search looks at and the set its result is measured on."""
    from vitdeploy.core.io import has_random_weights

    if len(hold_idx) < 2:
        raise UsageError("--max-drop needs held-out images to search on and to confirm with: "
                         f"{len(hold_idx)} here (give more images or a larger --holdout)")
    trained = not has_random_weights(parent)
    classes = len(out_dims) == 2 and isinstance(out_dims[1], int) and out_dims[1] >= 2
    metric = config.metric or ("cosine" if not classes else "top1" if labels is not None and trained else "agreement")
    if metric != "cosine" and not classes:
        raise UsageError(f"--metric {metric} needs class scores (an output of N x classes, not {out_dims}): use --metric cosine")
    if metric == "top1" and labels is None:
        raise UsageError("--metric top1 needs labelled images (class folders or an .npz with labels); "
                         "use --metric agreement or cosine")
    if metric == "top1" and not trained:
        raise UsageError("--metric top1 needs trained weights (this export has random ones); use --metric agreement or cosine")
    return metric, hold_idx[0::2], hold_idx[1::2]


def _confirmation_drop(accuracy: dict, metric: str) -> float:
    """The measured drop of the written file on the confirmation set, in points of ``metric``."""
    if metric == "top1":
        return float(accuracy["top1_drop_points"])
    vs = accuracy["vs_fp32"]
    return 100.0 * (1.0 - (vs["top1_agreement"] if metric == "agreement" else vs["cosine_mean"]))


def _check_budget(searched: search.SearchResult, confirmed: float, config: QuantizeConfig, warnings: list[str]) -> None:
    """Exit 6 (nothing written) when the confirmation set says the budget is missed, unless --no-gate."""
    if confirmed <= config.max_drop + 1e-9:
        return
    c = searched.confirmation["samples"]
    every = len(searched.float_nodes) == len(searched.groups)
    what = (f"budget not reachable: even with every layer in {searched.fallback.upper()} the {searched.metric} drop is "
            if every else f"the chosen plan ({len(searched.groups) - len(searched.float_nodes)} of {len(searched.groups)} "
                          f"layers INT8) drops {searched.metric} by ")
    message = (f"{what}{search.points(confirmed)} pt on {c} confirmation images (selection set: "
               f"{search.points(searched.chosen.drop)}, expected {search.points(searched.chosen.expected)}), "
               f"over --max-drop {config.max_drop:g}")
    if config.gate:
        from vitdeploy.core.errors import ValueMismatchError

        raise ValueMismatchError(f"{message}; nothing written (--no-gate writes it anyway)",
                                 figures={"drop_points": confirmed, "samples": c})
    warnings.append(f"written although {message}")
