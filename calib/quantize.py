"""`vitdeploy quantize`: an FP32 ONNX -> INT8 (Q/DQ) or FP16 ONNX, with its accuracy measured on the CPU.

INT8: calibration images -> activation histograms (cached) -> ranges by the chosen method ->
Q/DQ on MatMul/Gemm/Conv inputs -> accuracy against the FP32 model on held-out images, all in
ONNX Runtime. FP16: FP32 islands for normalisation/softmax/reductions and for nodes whose
calibrated range overflows FP16. Nothing is written unless every step passed.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from vitdeploy.core import onnx_utils
from vitdeploy.data import datasets as D
from vitdeploy.calib import fp16 as F16
from vitdeploy.calib import qdq, stats
from vitdeploy.trt import calibration_cache as trtcache
from vitdeploy.calib.graph import constants_to_initializers, name_unnamed_nodes
from vitdeploy.calib.methods import METHODS, asymmetric_range, symmetric_amax
from vitdeploy.core.compare import (MAX_TOP1_DROP, PRECISION_THRESHOLDS, Comparison, StreamingComparison, TopKAccuracy,
                               resolvable_agreement, resolvable_drop)
from vitdeploy.core.errors import UsageError, ValueMismatchError
from vitdeploy.core.io import check_artifact_output, check_output, has_random_weights, new_manifest, read_manifest, sha256_file, write_bytes_atomic, write_manifest
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
    exclude: tuple[str, ...] = ()
    keep_fp32: tuple[str, ...] = ()
    quantize_attention: bool = True
    output: Path | None = None
    force: bool = False
    seed: int = 0
    batch_size: int = 16
    on_error: str = "skip"
    preprocessing: dict[str, Any] = field(default_factory=dict)  # overrides: input_size, mean, std, interpolation, crop_pct
    trt_calibration_cache: bool = False
    threads: int | None = None
    family_hints: bool = True  # apply the quantization hints the export manifest carries
    quantize_depthwise: bool = False
    high_precision: str = "fp16"  # INT8 --target trt: the unquantized float parts in FP16 (with FP32 islands) or FP32
    gate: bool = True  # exit 6 (nothing written) when the result fails the precision's default thresholds
    data_check: bool = True  # refuse .npy/.npz arrays whose dtype or values contradict a normalised input

    def __post_init__(self) -> None:
        if self.precision not in ("int8", "fp16"):
            raise UsageError("choose --int8 or --fp16")
        if self.method not in METHODS:
            raise UsageError(f"unknown method {self.method!r}; choose from {', '.join(METHODS)}")
        if self.target not in qdq.TARGETS:
            raise UsageError(f"unknown --target {self.target!r}; choose from {', '.join(qdq.TARGETS)}")
        if self.high_precision not in HIGH_PRECISIONS:
            raise UsageError(f"unknown --high-precision {self.high_precision!r}; choose from {', '.join(HIGH_PRECISIONS)}")
        if self.precision == "int8" and self.calib is None:
            raise UsageError("--int8 needs calibration data: --calib DATA (image folder, .txt list, .npy/.npz)")
        if self.samples < 1:
            raise UsageError("--samples must be >= 1")
        if not 50.0 < self.percentile < 100.0:
            raise UsageError("--percentile must be in (50, 100)")
        if self.precision == "fp16":
            int8_only = [name for name, used in (("--exclude", self.exclude), ("--float-attention", not self.quantize_attention),
                                                 ("--target ort-cpu", self.target != "trt"),
                                                 ("--trt-calibration-cache", self.trt_calibration_cache),
                                                 ("--quantize-depthwise", self.quantize_depthwise),
                                                 ("--high-precision", self.high_precision != "fp16")) if used]
            if int8_only:
                raise UsageError(f"{', '.join(int8_only)} only appl{'ies' if len(int8_only) == 1 else 'y'} to --int8")
        elif self.keep_fp32:
            raise UsageError("--keep-fp32 only applies to --fp16 (use --exclude to leave INT8 layers in float)")
        elif self.target != "trt" and self.high_precision != "fp16":
            raise UsageError("--high-precision applies to --target trt (the ort-cpu form keeps its float parts FP32)")


@dataclass
class QuantizeResult:
    onnx_path: Path
    manifest_path: Path
    manifest: dict[str, Any]


def default_output(model: Path, precision: str, target: str) -> Path:
    suffix = precision if target == "trt" or precision == "fp16" else f"{precision}-ort"
    stem = model.stem
    return model.with_name(f"{stem}.{suffix}.onnx")


def _preprocessing(parent: dict | None, ds: D.Dataset | None, input_shape: list, config: QuantizeConfig) -> D.Preprocess:
    """How samples are made: the export manifest, then the options; the input size may also come
    from the ONNX. A preprocessed array needs nothing else (its mean/std may stay unknown)."""
    overrides = dict(config.preprocessing)
    dims = input_shape[1:]
    if "input_size" not in ((parent or {}).get("preprocessing") or {}) and all(isinstance(d, int) for d in dims):
        overrides.setdefault("input_size", tuple(dims))
    if ds is not None:
        return D.resolve_preprocess(parent, ds, **overrides)
    try:
        return D.Preprocess.from_manifest(parent, **overrides)
    except UsageError:
        if "input_size" not in overrides:
            raise
        return D.Preprocess.for_array(overrides["input_size"])  # seeded inputs need only the size


def holdout_split(n: int, samples: int, holdout: int | None, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Disjoint calibration and held-out indices, deterministic in ``seed``."""
    order = np.random.default_rng(seed).permutation(n)
    hold = holdout if holdout is not None else int(np.clip(samples // 8, 8, 256))
    hold = min(hold, n // 2)  # at most half: what --holdout may ask (deploy/cli/options.check_holdout)
    return np.sort(order[hold: hold + samples]), np.sort(order[:hold])


def _evaluate(ref_model: bytes, cand_model: bytes, batches: Iterable[tuple[np.ndarray, np.ndarray | None]],
              threads: int | None, static_batch: int | None = None) -> dict[str, Any] | None:
    """Both models on each (inputs, labels or None) batch in turn, reduced as they come (validate's
    ``StreamingComparison``, ``TopKAccuracy``): nothing is kept per sample. None when no batch came."""
    from vitdeploy.runners.ort import OnnxRuntimeRunner
    from vitdeploy.runners.base import infer_batch

    reducer, ref_acc, acc = StreamingComparison(), TopKAccuracy(), TopKAccuracy()
    # FP16 parts rounded as FP16 stores them: the CPU provider would silently compute them in FP32
    with OnnxRuntimeRunner(ref_model, threads=threads) as r, \
            OnnxRuntimeRunner(cand_model, threads=threads, fp16_rounding=True) as c:
        for x, labels in batches:
            ref, cand = infer_batch(r, x, static_batch or 1), infer_batch(c, x, static_batch or 1)
            reducer.update(ref, cand)
            if labels is not None:
                ref_acc.update(ref, labels)
                acc.update(cand, labels)
    if not reducer.n:
        return None
    result: dict[str, Any] = {"samples": reducer.n, "vs_fp32": reducer.result().to_dict(), "fp16_emulated": c.fp16_emulated}
    if acc.n:
        result["top1_fp32"] = ref_acc.result()["top1"]
        result["top1"] = acc.result()["top1"]
        result["top1_drop_points"] = 100.0 * (result["top1_fp32"] - result["top1"])
    return result


@dataclass
class _Context:
    """What both precision passes read: the model, once serialized, and the calibration samples."""

    model: Any
    model_bytes: bytes
    model_digest: str
    input_name: str
    static_batch: int | None
    samples: np.ndarray | None = None  # calibration samples (None without --calib)
    data_hash: str | None = None


def quantize(config: QuantizeConfig, steps: Steps | None = None, progress=None) -> QuantizeResult:
    """``progress(kind, total)`` returns an advance(n) callback for long loops (or None)."""
    steps = steps or Steps()
    with steps.step("load model"):
        model = onnx_utils.load(config.model)
        constants_to_initializers(model)
        name_unnamed_nodes(model)
        parent = read_manifest(config.model)
        io = onnx_utils.io_summary(model)
        model_input = io["inputs"][0]
        out_dims = io["outputs"][0]["shape"] if io["outputs"] else []
        num_classes = out_dims[-1] if out_dims and isinstance(out_dims[-1], int) else None
        static_batch = model_input["shape"][0] if isinstance(model_input["shape"][0], int) else None
        ds = D.open_dataset(config.calib) if config.calib is not None else None
        pre = _preprocessing(parent, ds, model_input["shape"], config)
        if parent and parent.get("precision", "fp32") != "fp32":
            raise UsageError(f"{config.model} is already {parent['precision']}: quantize the FP32 export")
    out = Path(config.output) if config.output else default_output(Path(config.model), config.precision, config.target)
    check_artifact_output(out, config.force)
    cache_out = out.with_suffix(".calib") if config.trt_calibration_cache else None
    if cache_out is not None:
        check_output(cache_out, config.force)

    # validate user selections before any heavy work
    hints = dict((parent or {}).get("quantization_hints") or {}) if config.family_hints else {}
    if config.precision == "int8":
        qplan = qdq.plan(model, config.exclude, config.quantize_attention, config.quantize_depthwise,
                         float_mixed_attention=bool(hints.get("float_mixed_attention")),
                         float_input_layer=bool(hints.get("float_input_layer")),
                         float_kernel_attention=bool(hints.get("float_kernel_attention")))
    else:
        names = {n.op_type for n in model.graph.node} | {n.name for n in model.graph.node}
        unknown = [k for k in config.keep_fp32 if k not in names]
        if unknown:
            raise UsageError(f"--keep-fp32 {', '.join(unknown)}: neither an op type nor a node name in this model")

    warnings: list[str] = []
    model_bytes = model.SerializeToString()
    ctx = _Context(model, model_bytes, hashlib.sha256(model_bytes).hexdigest(), model_input["name"], static_batch)
    data_info = hold_labels = None
    hold_idx = np.empty(0, dtype=np.int64)
    data_source, synthetic = config.calib, False
    few: str | None = None  # a calibration set too small for INT8: the likely cause of a failed gate
    if data_source is None and config.precision == "fp16" and pre.normalisation_known:
        # FP16 ranges need image-like data: without --calib, the built-in synthetic sample beats
        # none (T2T-ViT's Performer features underflow FP16 on images, not on random noise).
        from vitdeploy.calib.builtin import cached_sample

        data_source, synthetic = cached_sample(), True
        ds = D.open_dataset(data_source)
        warnings.append("no --calib: FP16 ranges and accuracy from vitdeploy's built-in synthetic sample; "
                        "give --calib with real images for ranges that match your data")
    if data_source is not None:
        with steps.step("read calibration data"):
            D.check_shape(ds, pre)
            D.check_array_values(ds, pre, allow=not config.data_check)
            if ds.kind == "array" and not config.data_check:
                warnings.append("value check of the array skipped (--no-data-check): make sure it is preprocessed")
            calib_idx, hold_idx = holdout_split(len(ds), config.samples, config.holdout, config.seed)
            advance = progress("decode images", len(calib_idx) + len(hold_idx)) if progress else None
            workers = D.decode_workers(config.threads)
            samples, calib_idx = D.load_samples(ds, pre, calib_idx, config.on_error, advance, workers)
            if static_batch and len(samples) >= static_batch and len(samples) % static_batch:
                keep = len(samples) - len(samples) % static_batch  # a static-batch model takes whole batches
                samples, calib_idx = samples[:keep], calib_idx[:keep]
            if len(hold_idx):  # held-out images: decoded, run and reduced batch by batch in the accuracy step
                lmap = D.labels_for(ds, num_classes)  # wnid folders, out-of-range labels: see calib.data
                warnings.extend(lmap.warnings)
                hold_labels = lmap.labels if lmap.meaningful else None
            ctx.samples, ctx.data_hash = samples, D.data_hash(ds, calib_idx, pre)
            if config.precision == "int8" and len(samples) < MIN_INT8_SAMPLES and not synthetic:
                few = (f"only {len(samples)} calibration images ({len(ds)} available, {len(hold_idx)} held out): "
                       f"below {MIN_INT8_SAMPLES}")
                warnings.append(f"{few}, INT8 ranges fit those few images rather than your data; give a few hundred")
            elif len(samples) < config.samples and not synthetic:
                warnings.append(f"{len(samples)} calibration samples, fewer than --samples {config.samples} "
                                f"({len(ds)} available, {len(hold_idx)} held out, "
                                f"{len(ds.skipped)} undecodable)")
            data_info = {"source": ds.source, "fingerprint": D.source_fingerprint(data_source), "kind": ds.kind,
                         "synthetic": synthetic,
                         "available": len(ds), "requested_samples": config.samples, "percentile": config.percentile,
                         "calibration_samples": int(len(samples)),
                         "holdout_samples": len(hold_idx), "hash": ctx.data_hash,
                         "skipped": len(ds.skipped), "skipped_examples": ds.skipped[:5], "seed": config.seed,
                         "labels": ds.labels is not None, "value_check": config.data_check}

    if config.precision == "int8":
        result_model, precision_info, cache_amax = _int8_pass(ctx, qplan, hints, config, steps, progress)
    else:
        result_model, precision_info = _fp16_pass(ctx, config, steps, progress)
        cache_amax = None

    result_bytes = result_model.SerializeToString()
    with steps.step("accuracy vs FP32"):
        if len(hold_idx):
            batches = ((x, None if hold_labels is None else hold_labels[i]) for x, i in
                       D.iter_batches(ds, pre, hold_idx, static_batch or 32, config.on_error, advance, workers))
            accuracy = _evaluate(model_bytes, result_bytes, batches, config.threads, static_batch)
            if accuracy is None:
                raise D.no_decodable_image(ds)
            data_info.update(holdout_samples=accuracy["samples"], skipped=len(ds.skipped),  # type: ignore[union-attr]
                             skipped_examples=ds.skipped[:5])
            accuracy["data"] = ("held-out images of the built-in synthetic sample (no --calib)" if synthetic
                                else "held-out calibration images")
        else:
            from vitdeploy.core.compare import seeded_inputs

            x = seeded_inputs(static_batch or 8, tuple(pre.input_size), config.seed)
            accuracy = _evaluate(model_bytes, result_bytes, [(x, None)], config.threads, static_batch)
            accuracy["data"] = ("seeded random inputs (no calibration data given)" if config.calib is None
                                else "seeded random inputs (no held-out images: --holdout 0 or too few images)")
            if config.calib is not None:
                warnings.append("no held-out images: accuracy measured on seeded random inputs, not on your data")
        if ds is not None and (skipped := D.skipped_warning(ds)) is not None:  # calibration and held-out images
            warnings.append(skipped)
        vs = accuracy["vs_fp32"]
        if not np.isfinite([vs["max_abs"], vs["cosine_min"]]).all():
            raise ValueMismatchError(f"{config.precision.upper()} outputs are not finite on {accuracy['samples']} "
                                     f"{accuracy['data'].split(' (')[0]} (max abs {vs['max_abs']:.3g}); nothing written",
                                     figures=vs)
        _judge(accuracy, config, parent, num_classes, real_data=len(hold_idx) > 0 and not synthetic,
               warnings=warnings, few=few)

    keep = ("model", "input", "output", "batch", "preprocessing", "checkpoint", "deploy_form")
    manifest = new_manifest(
        "onnx", out, **{k: parent[k] for k in keep if parent and k in parent},
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
            manifest["file_bytes"] = os.path.getsize(out)
            manifest["steps"] = steps.to_list()
            mpath = write_manifest(out, manifest)
        except BaseException:
            out.unlink(missing_ok=True)
            if cache_out is not None:
                cache_out.unlink(missing_ok=True)
            raise
    return QuantizeResult(out, mpath, manifest)


def _int8_pass(ctx: _Context, qplan: qdq.QuantPlan, hints: dict, config: QuantizeConfig, steps: Steps, progress):
    """Statistics -> ranges -> Q/DQ (-> FP16 float parts). Returns the model, its manifest block, and
    the symmetric thresholds of every collected tensor for TensorRT's calibration cache (None when not asked)."""
    model = ctx.model
    outputs = qplan.node_outputs(model) if config.target == "ort-cpu" else []
    tensors = list(dict.fromkeys(qplan.activations + outputs))
    if config.trt_calibration_cache:
        from vitdeploy.calib.graph import float_tensor_names

        tensors = list(dict.fromkeys([ctx.input_name] + tensors + float_tensor_names(model)))
    collected, stats_path, cached = _statistics(ctx, ctx.data_hash, tensors, ctx.samples, config, steps, progress)
    with steps.step(f"ranges ({config.method})"):
        symmetric = ({t: symmetric_amax(collected[t], config.method, config.percentile) for t in tensors}
                     if config.target == "trt" or config.trt_calibration_cache else {})
        if config.target == "trt":
            ranges = {t: symmetric[t] for t in qplan.activations}
        else:
            ranges = {t: asymmetric_range(collected[t], config.method, config.percentile) for t in qplan.activations}
        # Attention probabilities are never clipped: the few large weights of a Softmax row are
        # what attention is about, and clipping them (entropy does) costs DeiT-Tiny 0.03 cosine.
        probabilities = qdq.softmax_outputs(model, qplan.activations)
        for t in probabilities:
            ranges[t] = collected[t].amax if config.target == "trt" else (0.0, max(collected[t].max, 0.0))
            if t in symmetric:
                symmetric[t] = collected[t].amax
    with steps.step("write Q/DQ"):
        output_ranges = {t: asymmetric_range(collected[t], config.method, config.percentile) for t in outputs}
        result_model = qdq.write(model, qplan, ranges, config.target, output_ranges)
        onnx_utils.check_model(result_model)
    high_precision = config.high_precision if config.target == "trt" else "fp32"
    islands = None
    if high_precision == "fp16":
        # INT8 + FP16 (trtexec --int8 --fp16, ModelOpt's default): what TensorRT 10/11 builds strongly
        # typed runs LayerNorm, GELU, residual adds and the unquantized matmuls in FP16, not FP32.
        islands = _fp32_islands(ctx, (), config, steps, progress)
        with steps.step("float parts to FP16"):
            result_model = F16.convert(result_model, (), islands["fp32_nodes"] + islands["fp32_overflow_nodes"])
            onnx_utils.check_model(result_model)
    info = {
        "method": config.method, "percentile": config.percentile if config.method == "percentile" else None,
        "target": config.target, "high_precision": high_precision,
        "activations": "int8 symmetric per-tensor" if config.target == "trt" else "uint8 asymmetric per-tensor",
        "weights": "int8 symmetric per-output-channel" + (" (Q->DQ on float weights)" if config.target == "trt" else " (pre-quantized, DQ only)"),
        "quantized_ops": list(qdq.QUANTIZABLE_OPS), "exclude": list(config.exclude),
        "attention_matmuls": "quantized" if config.quantize_attention and config.target == "trt" else "float",
        "depthwise_convs": "quantized" if config.quantize_depthwise else "float",
        "family_hints": hints,
        "quantized_nodes": len({q.node for q in qplan.inputs}), "quantized_activations": len(qplan.activations),
        "quantized_outputs": len(outputs),
        "unclipped_probabilities": len(probabilities),
        "quantized_weights": len(qplan.weights), "skipped_nodes": qplan.skipped_nodes[:50],
        "statistics": {"path": str(stats_path), "cached": cached, "tensors": len(tensors)},
        "fp16": islands,
        "ranges": {t: (list(r) if isinstance(r, tuple) else r) for t, r in list(ranges.items())[:2000]},
    }
    return result_model, info, (symmetric if config.trt_calibration_cache else None)


def _fp16_pass(ctx: _Context, config: QuantizeConfig, steps: Steps, progress):
    """FP32 islands (ops, named nodes, nodes reading or writing a tensor beyond the FP16 range) -> FP16 model."""
    model = ctx.model
    op_types = {n.op_type for n in model.graph.node}
    keep_ops = tuple(k for k in config.keep_fp32 if k in op_types)
    keep_nodes = tuple(k for k in config.keep_fp32 if k not in op_types)
    info = _fp32_islands(ctx, keep_ops, config, steps, progress)
    info["fp32_nodes"] = list(keep_nodes)
    with steps.step("convert FP16"):
        result_model = F16.convert(model, keep_ops, keep_nodes + tuple(info["fp32_overflow_nodes"]))
        onnx_utils.check_model(result_model)
    info["io"] = "float32"
    return result_model, info


def _fp32_islands(ctx: _Context, keep_ops: tuple[str, ...], config: QuantizeConfig, steps: Steps, progress) -> dict:
    """What stays FP32 in an FP16 (or INT8+FP16) file: the op types, and the nodes whose calibrated
    ranges do not suit FP16 (every float tensor measured on up to 64 calibration samples; see
    ``fp16.range_fp32_nodes``). The manifest lists those under ``fp32_overflow_nodes`` (its first
    reason; the counts per reason are in ``fp32_range_reasons``)."""
    model = ctx.model
    overflow: list[str] = []
    why: dict[str, int] = {}
    stats_info = None
    if ctx.samples is not None:
        from vitdeploy.calib.graph import float_tensor_names

        tensors = float_tensor_names(model)
        subset = ctx.samples[: min(len(ctx.samples), 64)]
        collected, stats_path, cached = _statistics(ctx, ctx.data_hash + ":fp16", tensors, subset, config, steps,
                                                    progress, label="FP16 range statistics")
        reasons = F16.range_fp32_nodes(model, {t: s.amax for t, s in collected.items()},
                                       {t: s.tiny_fraction for t, s in collected.items()})
        overflow = list(reasons)
        why = {r: sum(v == r for v in reasons.values()) for r in sorted(set(reasons.values()))}
        stats_info = {"path": str(stats_path), "cached": cached, "tensors": len(tensors)}
    return {"fp32_ops": F16.kept_fp32_op_types(model, keep_ops),  # only those this graph has on float data
            "fp32_nodes": [], "fp32_overflow_nodes": overflow, "fp32_range_reasons": why, "statistics": stats_info}


def _judge(accuracy: dict, config: QuantizeConfig, parent: dict | None, num_classes: int | None, real_data: bool,
           warnings: list[str], few: str | None = None) -> None:
    """Set ``accuracy["gate"]``; raise ValueMismatchError (exit 6, nothing written) when the result
    fails it and ``config.gate``. Labels on which the FP32 model scores at chance are moved to
    ``accuracy["unusable_labels"]``; top-1 counts only with trained weights on real held-out images."""
    random_weights = has_random_weights(parent)
    chance = ("top1_fp32" in accuracy and num_classes is not None
              and D.chance_level(accuracy["top1_fp32"], accuracy["samples"], num_classes))
    if chance:  # labels that are not the model's classes: kept for diagnosis, not shown as accuracy
        if not random_weights:
            warnings.append(D.chance_warning(accuracy["top1_fp32"], accuracy["samples"], num_classes))
        accuracy["unusable_labels"] = {k: accuracy.pop(k) for k in ("top1_fp32", "top1", "top1_drop_points")}
    gate = accuracy["gate"] = _gate(accuracy, config.precision,
                                    meaningful_top1=real_data and not (random_weights or chance))
    if random_weights:
        gate["note"] = "random weights (no --checkpoint at export): top-1 agreement is not meaningful"
    if gate["passed"]:
        return
    if config.gate:
        raise ValueMismatchError(f"{config.precision.upper()} fails its default thresholds on {accuracy['samples']} "
                                 f"samples: {'; '.join(gate['failures'])}" + (f" ({few})" if few else "")
                                 + "; nothing written (--no-gate writes it anyway)", figures=accuracy["vs_fp32"])
    warnings.append(f"written although it fails its default thresholds: {'; '.join(gate['failures'])}")


def _gate(accuracy: dict, precision: str, meaningful_top1: bool) -> dict:
    """The precision's default validate thresholds applied to the held-out comparison.

    Top-1 criteria count only with trained weights on real data (``meaningful_top1``); with
    random weights or random inputs the cosine still gates.
    """
    c = Comparison(**accuracy["vs_fp32"])
    thresholds = PRECISION_THRESHOLDS[precision]
    # the few dozen held-out images resolve top-1 only to two images (compare.NOISE_SAMPLES)
    if not meaningful_top1:
        thresholds = replace(thresholds, top1_agreement=None, top5_agreement=None)
    elif thresholds.top1_agreement is not None:
        thresholds = replace(thresholds, top1_agreement=resolvable_agreement(thresholds.top1_agreement, c.samples))
    failures = thresholds.failures(c)
    limits = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in thresholds.__dict__.items() if v is not None}
    if meaningful_top1 and "top1_drop_points" in accuracy:
        limit = resolvable_drop(MAX_TOP1_DROP[precision], c.samples)
        limits["max_top1_drop_points"] = round(limit, 3)
        if accuracy["top1_drop_points"] > limit + 1e-9:
            failures.append(f"top-1 drop {accuracy['top1_drop_points']:.2f} points > {limit:.2f}")
    return {"passed": not failures, "failures": failures, "top1_counted": meaningful_top1, "thresholds": limits}


def _statistics(ctx: _Context, data_digest: str, tensors: list[str], samples: np.ndarray, config: QuantizeConfig,
                steps: Steps, progress, label: str = "activation statistics"):
    key = stats.stats_key(ctx.model_digest, data_digest, tensors)
    path = stats.cache_dir() / f"{key}.npz"
    with steps.step(label) as rec:
        collected = stats.load_stats(path)
        if collected is not None and all(t in collected for t in tensors):
            rec.detail = "from cache"
            return collected, path, True
        advance = progress("calibrate", len(samples)) if progress else None
        size = ctx.static_batch or config.batch_size
        if ctx.static_batch and len(samples) < ctx.static_batch:  # fewer samples than one batch: repeat them
            samples = np.resize(samples, (ctx.static_batch, *samples.shape[1:]))
        batches = (samples[i:i + size] for i in range(0, len(samples), size))
        collected = stats.collect(ctx.model, tensors, batches, ctx.input_name, advance, config.threads)
        try:
            stats.save_stats(path, collected, {"model": ctx.model_digest, "data": data_digest})
        except OSError as exc:  # an unwritable cache costs time, not correctness
            rec.detail = f"cache not written: {exc}"
        return collected, path, False
