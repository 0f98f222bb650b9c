"""The accuracy step of `vitdeploy quantize`: the quantized model against the FP32 one on held-out
images (or seeded inputs), reduced batch by batch, and the gate: the precision's default validate
thresholds, judged by ``core.compare.judge`` as `vitdeploy validate` judges its candidates."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import numpy as np

from vitdeploy.core import compare
from vitdeploy.core.compare import Comparison, StreamingComparison, TopKAccuracy, judge, seeded_inputs
from vitdeploy.core.errors import ValueMismatchError
from vitdeploy.core.io import has_random_weights
from vitdeploy.data.batches import no_decodable_image, skipped_warning
from vitdeploy.data.labels import chance_level, chance_warning

if TYPE_CHECKING:
    from vitdeploy.calib.quantize import QuantizeConfig
    from vitdeploy.core.preprocessing import Preprocessing
    from vitdeploy.data.sources import Dataset


def evaluate(ref_model: bytes, cand_model: bytes, batches: Iterable[tuple[np.ndarray, np.ndarray | None]],
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


def measure_accuracy(ref_model: bytes, cand_model: bytes, held_out: Iterable[tuple[np.ndarray, np.ndarray | None]] | None,
                     ds: Dataset | None, pre: Preprocessing, static_batch: int | None, config: QuantizeConfig,
                     synthetic: bool, warnings: list[str]) -> dict[str, Any]:
    """Both models on the held-out (inputs, labels or None) batches, or on seeded random inputs when
    there are none: the ``accuracy`` block of the manifest (not yet judged). Raises when no held-out
    image decodes or the candidate's outputs are not finite (nothing is written then)."""
    if held_out is not None:
        accuracy = evaluate(ref_model, cand_model, held_out, config.threads, static_batch)
        if accuracy is None:
            raise no_decodable_image(ds)
        accuracy["data"] = ("held-out images of the built-in synthetic sample (no --calib)" if synthetic
                            else "held-out calibration images")
    else:
        x = seeded_inputs(static_batch or 8, tuple(pre.input_size), config.seed)
        accuracy = evaluate(ref_model, cand_model, [(x, None)], config.threads, static_batch)
        accuracy["data"] = ("seeded random inputs (no calibration data given)" if config.calib is None
                            else "seeded random inputs (no held-out images: --holdout 0 or too few images)")
        if config.calib is not None:
            warnings.append("no held-out images: accuracy measured on seeded random inputs, not on your data")
    if ds is not None and (skipped := skipped_warning(ds)) is not None:  # calibration and held-out images
        warnings.append(skipped)
    vs = accuracy["vs_fp32"]
    if not np.isfinite([vs["max_abs"], vs["cosine_min"]]).all():
        raise ValueMismatchError(f"{config.precision.upper()} outputs are not finite on {accuracy['samples']} "
                                 f"{accuracy['data'].split(' (')[0]} (max abs {vs['max_abs']:.3g}); nothing written",
                                 figures=vs)
    return accuracy


def judge_accuracy(accuracy: dict, config: QuantizeConfig, parent: dict | None, num_classes: int | None, real_data: bool,
           warnings: list[str], few: str | None = None) -> None:
    """Set ``accuracy["gate"]``; raise ValueMismatchError (exit 6, nothing written) when the result
    fails it and ``config.gate``. Labels on which the FP32 model scores at chance are moved to
    ``accuracy["unusable_labels"]``, and so are those of a model with random weights; top-1 counts only with
    trained weights on real held-out images."""
    random_weights = has_random_weights(parent)
    chance = ("top1_fp32" in accuracy and num_classes is not None
              and chance_level(accuracy["top1_fp32"], accuracy["samples"], num_classes))
    # labels that are not the model's classes, or a model with random weights (as validate treats them):
    # kept for diagnosis, not shown as accuracy
    if "top1_fp32" in accuracy and (chance or random_weights):
        if chance and not random_weights:
            warnings.append(chance_warning(accuracy["top1_fp32"], accuracy["samples"], num_classes))
        accuracy["unusable_labels"] = {k: accuracy.pop(k) for k in ("top1_fp32", "top1", "top1_drop_points")}
    gate = accuracy["gate"] = gate_verdict(accuracy, config.precision,
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


def gate_verdict(accuracy: dict, precision: str, meaningful_top1: bool) -> dict:
    """The precision's default validate thresholds applied to the held-out comparison (``judge``).

    Top-1 criteria count only with trained weights on real data (``meaningful_top1``); with
    random weights or random inputs the cosine still gates. The few dozen held-out images resolve
    top-1 only to two images (compare.NOISE_SAMPLES): ``judge`` widens the limits to that.
    """
    c = Comparison(**accuracy["vs_fp32"])
    drop = accuracy.get("top1_drop_points") if meaningful_top1 else None
    # read from the module at call time: tests tighten compare.PRECISION_THRESHOLDS
    verdict = judge(c, compare.PRECISION_THRESHOLDS[precision], agreement=meaningful_top1, top1_drop=drop,
                    max_top1_drop=compare.MAX_TOP1_DROP[precision])
    limits = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in verdict.thresholds.__dict__.items() if v is not None}
    if verdict.max_top1_drop is not None:
        limits["max_top1_drop_points"] = round(verdict.max_top1_drop, 3)
    return {"passed": verdict.passed, "failures": list(verdict.failures), "top1_counted": meaningful_top1, "thresholds": limits}
