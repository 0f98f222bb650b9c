"""Which INT8 form runs faster on this CPU in ONNX Runtime: chosen by timing, not assumed.

Two Q/DQ layouts of the same quantization run on ONNX Runtime's CPU provider: ``ort-cpu`` (UINT8
activations, float outputs for the linear layers, QLinearConv) and ``trt`` with FP32 float parts
(signed INT8 activations, Q->DQ on float weights: the TensorRT form). Which is faster depends on the
CPU (VNNI, AMX, AVX2 saturation) and on the model's op mix, so ``choose`` times both on this
machine, interleaved at batch 8 on one thread, in a few seconds.

Speed does not depend on the calibrated ranges, so ``placeholder_forms`` writes both layouts with
placeholder ranges straight from the FP32 model: the choice is made before calibrating, and only
the chosen form is then calibrated.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import asdict, dataclass, field

import numpy as np

from vitdeploy.calib import qdq, qdq_write
from vitdeploy.core.deps import require
from vitdeploy.core.precision import QuantHints, QuantPolicy

PREFERRED = "ort-cpu"  # kept unless another form is measured clearly faster
MARGIN = 0.05  # "clearly": at least 5% lower median paired latency


@dataclass
class FormTiming:
    p50_ms: float
    min_ms: float
    runs: int


@dataclass
class FormChoice:
    choice: str
    batch: int
    threads: int | None
    timings: dict[str, FormTiming]
    ratio_vs_preferred: dict[str, float]  # median over rounds of (form latency / preferred latency)
    reason: str
    seconds: float
    fp32_p50_ms: float | None = None
    speedup_vs_fp32: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def placeholder_forms(model, hints: QuantHints | None = None, targets: tuple[str, ...] = ("ort-cpu", "trt")) -> dict[str, bytes]:
    """Each target's Q/DQ layout of ``model`` (FP32 float parts), with placeholder ranges: for timing only.

    ``hints`` are the export manifest's quantization hints, applied as ``vitdeploy quantize`` applies them.
    """
    from vitdeploy.calib.graph import constants_to_initializers, name_unnamed_nodes

    onnx = require("onnx")
    m = onnx.ModelProto()
    m.CopyFrom(model)
    constants_to_initializers(m)  # as `vitdeploy quantize` loads a model
    name_unnamed_nodes(m)
    prod = {o: n.op_type for n in m.graph.node for o in n.output}

    def placeholder(t: str) -> tuple[float, float]:
        # the sign matters for the layout: a Relu output calibrates to zero point 0, which lets ONNX
        # Runtime fuse Conv -> Relu -> Q into QLinearConv; the values themselves do not change speed
        return (0.0, 4.0) if prod.get(t) in ("Relu", "Clip", "Softmax") else (-4.0, 4.0)

    forms = {}
    for target in targets:
        plan = qdq.plan(m, QuantPolicy(hints=hints or QuantHints()))
        if target == "trt":
            ranges, outputs = {t: 4.0 for t in plan.activations}, {}
        else:
            ranges = {t: placeholder(t) for t in plan.activations}
            outputs = {t: placeholder(t) for t in plan.node_outputs(m)}
        forms[target] = qdq_write.write(m, plan, ranges, target, outputs).SerializeToString()
    return forms


def _input(runner, batch: int) -> np.ndarray:
    meta = runner.input_metadata()[0]
    shape = list(meta.shape)
    shape[0] = shape[0] or batch
    if any(d is None for d in shape[1:]):
        raise ValueError(f"input {meta.name} has dynamic non-batch axes {meta.shape}: cannot time it")
    return np.random.default_rng(0).standard_normal(shape).astype(meta.dtype)


def time_forms(forms: dict[str, bytes], batch: int = 8, threads: int | None = 1, rounds: int = 7, warmup: int = 1,
               budget_s: float = 6.0, min_s: float = 1.0, max_rounds: int = 200) -> tuple[dict[str, list[float]], int]:
    """Latencies (ms) of each ONNX (bytes) at ``batch``, interleaved round-robin (the starting model
    rotates each round) on ``threads`` threads (None: ONNX Runtime's default). Runs ``rounds`` rounds,
    more (up to ``max_rounds``) while under ``min_s`` seconds, so that a fast model gets enough
    samples, and stops past 3 rounds once ``budget_s`` seconds are spent, so that a slow one stays
    bounded. Returns (latencies per form, batch used)."""
    from vitdeploy.runners.ort import OnnxRuntimeRunner

    runners = {k: OnnxRuntimeRunner(v, threads=threads) for k, v in forms.items()}
    for r in runners.values():
        r.activate()
    try:
        first = next(iter(runners.values()))
        x = _input(first, batch)
        names = list(runners)
        for _ in range(warmup):
            for k in names:
                runners[k].infer_one(x)
        samples: dict[str, list[float]] = {k: [] for k in names}
        start = time.perf_counter()
        for i in range(max_rounds):
            for k in names[i % len(names):] + names[:i % len(names)]:
                t = time.perf_counter()
                runners[k].infer_one(x)
                samples[k].append((time.perf_counter() - t) * 1e3)
            elapsed = time.perf_counter() - start
            if (i + 1 >= rounds and elapsed >= min_s) or (i + 1 >= 3 and elapsed > budget_s):
                break
        return samples, int(x.shape[0])
    finally:
        for r in runners.values():
            r.deactivate()


def choose(forms: dict[str, bytes], fp32: bytes | None = None, batch: int = 8, threads: int | None = 1, rounds: int = 7,
           budget_s: float = 6.0) -> FormChoice:
    """The faster INT8 form on this machine. ``forms`` maps target -> ONNX bytes; ``PREFERRED`` is kept
    unless another form's median per-round latency ratio to it is below 1 - ``MARGIN`` (run-to-run
    noise must not flip the choice). ``fp32`` (optional) is timed alongside for the speed-ups."""
    if PREFERRED not in forms:
        raise ValueError(f"choose() needs the {PREFERRED} form among {', '.join(forms)}")
    t0 = time.perf_counter()
    timed = dict(forms)
    if fp32 is not None:
        timed["fp32"] = fp32
    samples, used_batch = time_forms(timed, batch, threads, rounds, budget_s=budget_s)
    timings = {k: FormTiming(round(statistics.median(v), 3), round(min(v), 3), len(v)) for k, v in samples.items()}
    base = samples[PREFERRED]
    ratios = {k: round(statistics.median(a / b for a, b in zip(samples[k], base)), 4) for k in forms}
    best = min(ratios, key=ratios.get)
    if best != PREFERRED and ratios[best] < 1.0 - MARGIN:
        choice, reason = best, f"{best} {1 / ratios[best]:.2f}x faster than {PREFERRED}"
    else:
        choice = PREFERRED
        others = ", ".join(f"{k} at {1 / r:.2f}x its speed" for k, r in ratios.items() if k != PREFERRED)
        reason = f"{PREFERRED} kept ({others}; another form must be >= {1 / (1 - MARGIN):.2f}x faster to replace it)"
    fp32_p50 = timings["fp32"].p50_ms if "fp32" in timings else None
    speedups = ({k: round(statistics.median(a / b for a, b in zip(samples["fp32"], samples[k])), 3) for k in forms}
                if fp32_p50 is not None else {})
    return FormChoice(choice, used_batch, threads, {k: timings[k] for k in forms}, ratios, reason,
                      round(time.perf_counter() - t0, 2), fp32_p50, speedups)
