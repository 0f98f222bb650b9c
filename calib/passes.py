"""The precision passes of `vitdeploy quantize`: INT8 (statistics -> ranges -> Q/DQ, float parts in
FP16 or FP32) and FP16 (FP32 islands), over the model and calibration samples of a ``QuantizeContext``.

Public steps: ``int8_pass``, ``fp16_pass``, ``fp32_islands`` (what stays FP32 in an FP16 part) and
``statistics`` (activation statistics, cached on disk by model, data and tensors)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from vitdeploy.calib import fp16 as F16
from vitdeploy.calib import qdq, qdq_write, stats
from vitdeploy.calib.graph import float_tensor_names
from vitdeploy.calib.methods import asymmetric_range, symmetric_amax
from vitdeploy.core import onnx_utils
from vitdeploy.core.precision import QuantPolicy
from vitdeploy.core.steps import Steps

if TYPE_CHECKING:
    from vitdeploy.data.sample_set import SampleSet
    from vitdeploy.calib.quantize import QuantizeConfig


@dataclass
class QuantizeContext:
    """What both precision passes read: the model, once serialized, and the calibration samples."""

    model: Any
    model_bytes: bytes
    model_digest: str
    input_name: str
    static_batch: int | None
    samples: SampleSet | None = None  # calibration samples, read in batches (None without --calib)
    data_hash: str | None = None
    # statistics already read or collected in this run, by cache file: the precision search and the final
    # INT8 pass share one entry, which is then decompressed once, not twice
    collected: dict[Path, dict] = field(default_factory=dict)
    ranges: dict = field(default_factory=dict)  # ranges computed from those statistics (``int8_ranges``'s memo)


def int8_tensors(model, qplan: qdq.QuantPlan, config: QuantizeConfig, input_name: str, types=None) -> tuple[list[str], list[str]]:
    """(tensors whose statistics the INT8 pass needs, the Conv outputs the ort-cpu form quantizes)."""
    outputs = qplan.node_outputs(model) if config.target == "ort-cpu" else []
    tensors = list(dict.fromkeys(qplan.activations + outputs))
    if config.trt_calibration_cache:
        tensors = list(dict.fromkeys([input_name] + tensors + float_tensor_names(model, types)))
    return tensors, outputs


def search_tensors(model, qplan: qdq.QuantPlan, config: QuantizeConfig, input_name: str, types=None) -> list[str]:
    """``int8_tensors`` of ``qplan`` and, for ort-cpu, the output of every Conv it quantizes: what any plan
    keeping some of its layers float needs (a Conv -> Relu whose reader is kept float gets its own output
    Q/DQ), so the precision search and the final file's pass share one statistics cache entry."""
    tensors, _ = int8_tensors(model, qplan, config, input_name, types)
    if config.target == "ort-cpu":
        convs = {q.node for q in qdq.ort_cpu_plan(model, qplan).inputs if q.is_weight and q.op == "Conv"}
        graph_outputs = {o.name for o in model.graph.output}
        tensors += [n.output[0] for n in model.graph.node if n.name in convs and n.output[0] not in graph_outputs]
    return list(dict.fromkeys(tensors))


@dataclass
class Int8Ranges:
    """The calibrated ranges of one Q/DQ plan: per planned activation (amax for trt, (lo, hi) for
    ort-cpu), per quantized Conv output (ort-cpu), and the symmetric amax of every collected tensor
    when TensorRT's calibration cache needs them."""

    activations: dict[str, Any]
    outputs: dict[str, Any]
    symmetric: dict[str, float]
    probabilities: list[str]


def int8_ranges(model, qplan: qdq.QuantPlan, collected: dict, tensors: list[str], outputs: list[str],
                config: QuantizeConfig, memo: dict | None = None) -> Int8Ranges:
    """Ranges by ``config.method`` from the statistics ``collected`` (see ``Int8Ranges``). ``memo``: the
    ranges an earlier call of this run computed from the same statistics objects (``QuantizeContext.ranges``:
    the precision search's full plan, then the final plan, a part of it), reused instead of searched again
    (entropy's threshold search takes ~30 ms a tensor)."""
    memo = {} if memo is None else memo

    def method_range(t: str, symmetric: bool):
        key = (id(collected[t]), symmetric, config.method, config.percentile)
        if key not in memo:
            fn = symmetric_amax if symmetric else asymmetric_range
            memo[key] = (collected[t], fn(collected[t], config.method, config.percentile))  # keeps the key's object alive
        return memo[key][1]

    symmetric = ({t: method_range(t, True) for t in tensors} if config.target == "trt" or config.trt_calibration_cache
                 else {})
    if config.target == "trt":
        ranges = {t: symmetric[t] for t in qplan.activations}
    else:
        ranges = {t: method_range(t, False) for t in qplan.activations}
    # Attention probabilities are never clipped: the few large weights of a Softmax row are
    # what attention is about, and clipping them (entropy does) costs DeiT-Tiny 0.03 cosine.
    probabilities = qdq.probability_tensors(model, qplan.activations,
                                            {t: (collected[t].min, collected[t].max) for t in qplan.activations})
    for t in probabilities:
        ranges[t] = collected[t].amax if config.target == "trt" else (0.0, max(collected[t].max, 0.0))
        if t in symmetric:
            symmetric[t] = collected[t].amax
    output_ranges = {t: method_range(t, False) for t in outputs}
    return Int8Ranges(ranges, output_ranges, symmetric, probabilities)


def int8_pass(ctx: QuantizeContext, qplan: qdq.QuantPlan, policy: QuantPolicy, config: QuantizeConfig, steps: Steps,
              progress, stats_plan: qdq.QuantPlan | None = None):
    """Statistics -> ranges -> Q/DQ (-> FP16 float parts). ``policy``: the one ``qplan`` was planned with
    (hints resolved), recorded in the manifest block. ``stats_plan``: a plan ``qplan`` is part of whose
    statistics to collect (the precision search's full plan: one cache entry serves both). Returns the model, its manifest block, and the symmetric
    thresholds of every collected tensor for TensorRT's calibration cache (None when not asked)."""
    model = ctx.model
    high_precision = config.high_precision if config.target == "trt" else "fp32"
    # shape inference once, for every step below that needs the float tensors of the source model
    types = onnx_utils.elem_types(model) if config.trt_calibration_cache or high_precision == "fp16" else None
    tensors, outputs = int8_tensors(model, qplan, config, ctx.input_name, types)
    if stats_plan is not None:
        tensors = list(dict.fromkeys(search_tensors(model, stats_plan, config, ctx.input_name, types) + tensors))
    collected, stats_path, cached = statistics(ctx, ctx.data_hash, tensors, ctx.samples, config, steps, progress)
    with steps.step(f"ranges ({config.method})"):
        r = int8_ranges(model, qplan, collected, tensors, outputs, config, ctx.ranges)
        ranges, symmetric, probabilities = r.activations, r.symmetric, r.probabilities
    with steps.step("write Q/DQ"):
        result_model = qdq_write.write(model, qplan, ranges, config.target, r.outputs)
        onnx_utils.check_model(result_model)
    islands = None
    if high_precision == "fp16":
        # INT8 + FP16 (trtexec --int8 --fp16, ModelOpt's default): what TensorRT 10/11 builds strongly
        # typed runs LayerNorm, GELU, residual adds and the unquantized matmuls in FP16, not FP32.
        islands = fp32_islands(ctx, (), config, steps, progress, types)
        with steps.step("float parts to FP16"):
            result_model = F16.convert(result_model, (), islands["fp32_nodes"] + islands["fp32_overflow_nodes"])
            onnx_utils.check_model(result_model)
    info = {
        "method": config.method, "percentile": config.percentile if config.method == "percentile" else None,
        "target": config.target, "high_precision": high_precision,
        "activations": "int8 symmetric per-tensor" if config.target == "trt" else "uint8 asymmetric per-tensor",
        "weights": "int8 symmetric per-output-channel" + (" (Q->DQ on float weights)" if config.target == "trt" else " (pre-quantized, DQ only)"),
        "quantized_ops": list(qdq.QUANTIZABLE_OPS), "exclude": list(policy.exclude),
        "attention_matmuls": "quantized" if policy.quantize_attention and config.target == "trt" else "float",
        "depthwise_convs": "quantized" if policy.quantize_depthwise else "float",
        "family_hints": policy.hints.to_json(),
        "quantized_nodes": len({q.node for q in qplan.inputs}), "quantized_activations": len(qplan.activations),
        "quantized_outputs": len(outputs),
        "unclipped_probabilities": len(probabilities),
        "quantized_weights": len(qplan.weights), "skipped_nodes": qplan.skipped_nodes[:50],
        "statistics": {"path": str(stats_path), "cached": cached, "tensors": len(tensors)},
        "fp16": islands,
        "ranges": {t: (list(v) if isinstance(v, tuple) else v) for t, v in list(ranges.items())[:2000]},
    }
    return result_model, info, (symmetric if config.trt_calibration_cache else None)


def fp16_pass(ctx: QuantizeContext, config: QuantizeConfig, steps: Steps, progress):
    """FP32 islands (ops, named nodes, nodes reading or writing a tensor beyond the FP16 range) -> FP16 model."""
    model = ctx.model
    op_types = {n.op_type for n in model.graph.node}
    keep_ops = tuple(k for k in config.keep_fp32 if k in op_types)
    keep_nodes = tuple(k for k in config.keep_fp32 if k not in op_types)
    types = onnx_utils.elem_types(model)  # shape inference once for the islands and the conversion
    info = fp32_islands(ctx, keep_ops, config, steps, progress, types)
    info["fp32_nodes"] = list(keep_nodes)
    with steps.step("convert FP16"):
        result_model = F16.convert(model, keep_ops, keep_nodes + tuple(info["fp32_overflow_nodes"]), types)
        onnx_utils.check_model(result_model)
    info["io"] = "float32"
    return result_model, info


def fp32_islands(ctx: QuantizeContext, keep_ops: tuple[str, ...], config: QuantizeConfig, steps: Steps, progress,
                  types: dict[str, int] | None = None) -> dict:
    """What stays FP32 in an FP16 (or INT8+FP16) file: the op types, and the nodes whose calibrated
    ranges do not suit FP16 (every float tensor measured on up to 64 calibration samples; see
    ``fp16.range_fp32_nodes``). The manifest lists those under ``fp32_overflow_nodes`` (its first
    reason; the counts per reason are in ``fp32_range_reasons``). ``types``: ``onnx_utils.elem_types(ctx.model)``
    when the caller has it."""
    model = ctx.model
    types = onnx_utils.elem_types(model) if types is None else types
    overflow: list[str] = []
    why: dict[str, int] = {}
    stats_info = None
    if ctx.samples is not None:
        tensors = float_tensor_names(model, types)
        subset = ctx.samples.head(64)
        collected, stats_path, cached = statistics(ctx, ctx.data_hash + ":fp16", tensors, subset, config, steps,
                                                    progress, label="FP16 range statistics")
        reasons = F16.range_fp32_nodes(model, {t: s.amax for t, s in collected.items()},
                                       {t: s.tiny_fraction for t, s in collected.items()})
        overflow = list(reasons)
        why = {r: sum(v == r for v in reasons.values()) for r in sorted(set(reasons.values()))}
        stats_info = {"path": str(stats_path), "cached": cached, "tensors": len(tensors)}
    return {"fp32_ops": F16.kept_fp32_op_types(model, keep_ops, types),  # only those this graph has on float data
            "fp32_nodes": [], "fp32_overflow_nodes": overflow, "fp32_range_reasons": why, "statistics": stats_info}


def statistics(ctx: QuantizeContext, data_digest: str, tensors: list[str], samples: SampleSet, config: QuantizeConfig,
                steps: Steps, progress, label: str = "activation statistics"):
    """Statistics of ``tensors`` over ``samples`` (batched as the model takes them), from the on-disk cache
    when it has them all. Returns (tensor -> TensorStats, cache path, whether it came from the cache)."""
    key = stats.stats_key(ctx.model_digest, data_digest, tensors)
    path = stats.cache_dir() / f"{key}.npz"
    with steps.step(label) as rec:
        collected = ctx.collected.get(path) or stats.load_stats(path)
        if collected is not None and all(t in collected for t in tensors):
            rec.detail = "from cache"
            ctx.collected[path] = collected
            return collected, path, True
        if ctx.static_batch:  # whole batches (the FP16 subset of 64 may not divide); fewer than one: repeated
            samples = samples.whole_batches(ctx.static_batch)
        if ctx.static_batch and len(samples) < ctx.static_batch:
            batches = iter([np.resize(samples[:], (ctx.static_batch, *samples.sample_shape))])
        else:  # read back one batch at a time: memory does not grow with --samples
            batches = samples.batches(ctx.static_batch or config.batch_size)
        advance = progress("calibrate", len(samples)) if progress else None
        collected = ctx.collected[path] = stats.collect(ctx.model, tensors, batches, ctx.input_name, advance, config.threads,
                                                        ctx.static_batch)
        try:
            stats.save_stats(path, collected, {"model": ctx.model_digest, "data": data_digest})
        except OSError as exc:  # an unwritable cache costs time, not correctness
            rec.detail = f"cache not written: {exc}"
        return collected, path, False
