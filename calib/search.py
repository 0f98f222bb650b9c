"""Accuracy-budgeted mixed precision (`vitdeploy quantize --int8 --max-drop D`): the layers to keep in
float so that the INT8 file stays within a budget, chosen for the most INT8 time saved.

A *group* is one quantizable layer: a MatMul/Gemm/Conv the Q/DQ plan quantizes (a block's qkv,
proj, fc1, fc2, the attention products QK^T and AV, the stem, the head, a family's own layers),
named after its module path. Its fallback is the float the rest of the file runs in: FP16 (the
``trt`` form, FP32 only where the FP16 islands require it) or FP32 (``ort-cpu``).

How it works, on held-out images split into a *selection* set (the search looks at it) and a
*confirmation* set (only the final file is measured on it, and that figure is the result):

1. One ONNX Runtime session runs the model with every group switchable between its fake-quantized
   and its float inputs (a ``Where`` on a boolean graph input per group), so each evaluation is
   one pass over the data, not one model build.
2. Sensitivity, on up to ``SENSITIVITY_SAMPLES`` selection images: per group, the harm when that
   group alone is INT8, and the recovery when it alone is float in an otherwise INT8 model
   (2 evaluations per group).
3. Greedy order by harm per unit of estimated time INT8 saves (``calib.cost``), then the shortest
   prefix of that order kept float that is accepted on the whole selection set: galloping then
   bisection, so at most ``2 * ceil(log2(groups + 1)) + 1`` evaluations. A plan is accepted when its
   drop on the selection set is within the budget and, for top-1 and agreement, when it should also
   be within it on the confirmation set with probability ``PASS_PROBABILITY``: its expected rate of
   flipped images (``flip_rate``) as a Poisson count over the confirmation images. Counting flips
   alone would accept a plan that flipped none of a few hundred images by luck, and at a budget of
   one image or less the confirmation figure would then miss it about as often as not.

Metrics (``--metric``), each a drop in percentage points against the FP32 model: ``top1`` (accuracy
against labels), ``agreement`` (100 - top-1 agreement with FP32), ``cosine`` (100 x (1 - mean
cosine of the outputs)). Groups are ranked by 1 - cosine, which moves before any top-1 flips.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from vitdeploy.calib import cost as costs
from vitdeploy.calib.graph import initializers, producers, toposort
from vitdeploy.calib.qdq import QuantPlan, derived_from
from vitdeploy.core.compare import compare
from vitdeploy.core.deps import require
from vitdeploy.core.errors import UsageError
from vitdeploy.runners.base import pad_batch

if TYPE_CHECKING:
    from vitdeploy.data.sample_set import SampleSet

METRICS = ("top1", "agreement", "cosine")
SENSITIVITY_SAMPLES = 64
FLAG_PREFIX = "vitdeploy_int8_group_"


def points(value: float) -> str:
    """A drop in points as the user reads it next to a budget: 2 decimals, or 2 significant digits below 0.1
    (a 0.005 drop is not "0.01")."""
    return f"{value:.2f}" if abs(value) >= 0.1 or value == 0 else f"{value:.2g}"


def summary(block: dict[str, Any]) -> str:
    """One line of a manifest's ``precision_search`` block: the budget, the choice, the estimate, the figures."""
    conf, sel, ev = block["confirmation"], block["selection"], block["evaluations"]
    fallback = block["fallback"].upper()
    rest = f", the rest {fallback}" if block["layers_int8"] < block["layers_total"] else ""
    return (f"--max-drop {block['max_drop_points']:g} pt of {block['metric']}: {block['layers_int8']} of "
            f"{block['layers_total']} layers INT8 ({block['int8_mac_share']:.0%} of MACs){rest}; estimated "
            f"{block['estimated_speedup_vs_fallback']:.2f}x over all-{fallback} ({block['device_profile']['name']}, an "
            f"estimate); drop {points(conf['drop_points'])} pt on {conf['samples']} confirmation images "
            f"({points(sel['drop_points'])} on {sel['samples']} searched); {ev['total']} evaluations (bound {ev['bound']})"
            + (f"; plot {block['plot']}" if block.get("plot") else ""))


def check_budget_options(max_drop: float, metric: str | None) -> None:
    """UsageError for a --max-drop that is not a number of points >= 0 or an unknown --metric."""
    if not (math.isfinite(max_drop) and max_drop >= 0):
        raise UsageError(f"--max-drop must be a number of points >= 0, not {max_drop:g}")
    if metric is not None and metric not in METRICS:
        raise UsageError(f"unknown --metric {metric!r}; choose from {', '.join(METRICS)}")


@dataclass
class LayerGroup:
    """One quantizable layer; ``macs`` and ``boundary`` (elements of the activations it quantizes) per image."""

    name: str
    node: str
    op: str
    role: str  # "linear" | "conv" | "QK^T" | "AV"
    macs: int = 0
    inputs: tuple[str, ...] = ()
    harm_int8: float = 0.0  # metric drop, this group alone INT8
    harm_int8_proxy: float = 0.0  # 1 - mean cosine, this group alone INT8
    recovery: float = 0.0  # metric drop regained when this group alone is float (all others INT8)
    recovery_proxy: float = 0.0
    saved_seconds: float = 0.0  # estimated time INT8 saves over the fallback (per image)
    score: float = 0.0  # harm per saved time: higher stays float first
    precision: str = "int8"

    def to_json(self) -> dict[str, Any]:
        return {"layer": self.name, "node": self.node, "role": self.role, "macs": self.macs, "precision": self.precision,
                "harm_int8_alone": round(self.harm_int8, 4), "harm_int8_alone_1_minus_cos": float(f"{self.harm_int8_proxy:.3g}"),
                "recovery_float_alone": round(self.recovery, 4), "recovery_float_alone_1_minus_cos": float(f"{self.recovery_proxy:.3g}"),
                "estimated_saving_s": float(f"{self.saved_seconds:.3g}")}


@dataclass
class PathPoint:
    float_layers: int
    drop: float  # metric drop on the selection set (points)
    expected: float  # expected drop on new images (``flip_rate``, points); the drop itself for cosine
    pass_probability: float  # of meeting the budget on the confirmation set (``pass_probability``)
    estimated_speedup: float  # vs every group at the fallback precision
    evaluated: bool = True  # False: every layer float, the FP32 model itself here (its drop 0 by definition)

    @property
    def accepted(self) -> bool:
        return self.pass_probability >= PASS_PROBABILITY

    def to_json(self) -> dict[str, Any]:
        return {"float_layers": self.float_layers, "drop_points": round(self.drop, 6),
                "expected_drop_points": round(self.expected, 4), "pass_probability": round(self.pass_probability, 4),
                "estimated_speedup": round(self.estimated_speedup, 4), "evaluated": self.evaluated}


@dataclass
class SearchResult:
    metric: str
    max_drop: float
    fallback: str
    profile: costs.DeviceProfile
    groups: list[LayerGroup]
    path: list[PathPoint]
    chosen: PathPoint
    evaluations: dict[str, int]
    selection_samples: int
    sensitivity_samples: int
    model_macs: int  # every MatMul/Gemm/Conv of the model, per image
    float_nodes: tuple[str, ...] = ()
    confirmation: dict[str, Any] = field(default_factory=dict)

    @property
    def int8_macs(self) -> int:
        return sum(g.macs for g in self.groups if g.precision == "int8")

    @property
    def int8_mac_share(self) -> float:
        return self.int8_macs / self.model_macs if self.model_macs else 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "metric": self.metric, "max_drop_points": self.max_drop, "fallback": self.fallback,
            "device_profile": self.profile.to_json(),
            "layers_total": len(self.groups), "layers_int8": sum(g.precision == "int8" for g in self.groups),
            "float_layers": [g.name for g in self.groups if g.precision != "int8"],
            "int8_mac_share": round(self.int8_mac_share, 4), "model_macs_per_image": self.model_macs,
            "estimated_speedup_vs_fallback": round(self.chosen.estimated_speedup, 4),
            "selection": {"samples": self.selection_samples, "sensitivity_samples": self.sensitivity_samples,
                          "drop_points": round(self.chosen.drop, 6), "expected_drop_points": round(self.chosen.expected, 6),
                          "pass_probability": round(self.chosen.pass_probability, 4)},
            "confirmation": self.confirmation,
            "evaluations": self.evaluations,
            "path": [p.to_json() for p in self.path],
            "layers": [g.to_json() for g in self.groups],
        }


# --- groups ---------------------------------------------------------------------------------------

def layer_groups(model, qplan: QuantPlan) -> list[LayerGroup]:
    """One group per node ``qplan`` quantizes, in graph order, named after its module: the module path of
    the node name (``/blocks.0/mlp/fc1/MatMul`` -> ``blocks.0.mlp.fc1``), else the parameter path of its
    weight or bias (``blocks.0.attn.qkv.bias`` -> ``blocks.0.attn.qkv``); attention products get
    ``.QK^T`` / ``.AV``, and a module run more than once (SReT's recursion) ``#2``, ``#3``."""
    prod = producers(model)
    inits = initializers(model)
    by_node: dict[str, list] = {}
    for q in qplan.inputs:
        by_node.setdefault(q.node, []).append(q)
    weight_of: dict[str, set[str]] = {}  # initializer -> the weights of the nodes reading it (an Add: its own name)
    for n in model.graph.node:
        for x in n.input:
            if x in inits:
                weight_of.setdefault(x, set()).add(n.input[1] if n.op_type in ("Gemm", "Conv") and len(n.input) > 2 else n.name)
    groups, seen, owner = [], {}, {}
    for node in model.graph.node:
        qs = by_node.get(node.name)
        if not qs:
            continue
        weighted = any(q.is_weight for q in qs)
        if weighted:
            role = "conv" if node.op_type == "Conv" else "linear"
        else:
            role = "AV" if any(derived_from(x, prod, "Softmax") for x in node.input[:2]) else "QK^T"
        name = _module_name(node, inits, weight_of)
        weight = node.input[1] if weighted else ""
        if weighted and name in owner and owner[name] != weight and "/" not in node.name:
            name = node.name  # two weights under one parameter name: an initializer the simplifier shared
        owner.setdefault(name, weight)
        if not weighted:
            name = f"{name}.{role}"
        seen[name] = seen.get(name, 0) + 1
        if seen[name] > 1:
            name = f"{name}#{seen[name]}"
        groups.append(LayerGroup(name, node.name, node.op_type, role,
                                 inputs=tuple(dict.fromkeys(q.tensor for q in qs if not q.is_weight))))
    return groups


def _module_name(node, inits, weight_of: dict[str, set[str]]) -> str:
    """The exporter's module path of the node name; else the parameter path of its weight, or of its bias when
    that bias belongs to this weight alone (a simplifier shares equal initializers, such as zero biases, across
    layers); else the node name."""
    parts = [p for p in node.name.split("/") if p]
    if len(parts) > 1:
        return ".".join(parts[:-1])
    for k, x in ((1, node.input[1] if len(node.input) > 1 else ""), (2, node.input[2] if len(node.input) > 2 else "")):
        if x in inits and not x.startswith("onnx::") and x.rsplit(".", 1)[-1] in ("weight", "bias"):
            if k == 1 or len(weight_of.get(x, ())) == 1:
                return x.rsplit(".", 1)[0]
    return node.name


def layer_costs(model, sample: np.ndarray, input_name: str, threads: int | None,
                static_batch: int | None = None) -> tuple[dict[str, costs.LayerCost], dict[str, int]]:
    """(node -> its ``LayerCost`` per image for every MatMul/Gemm/Conv, tensor -> elements per image of
    their activation inputs), from the shapes of one run of the FP32 model on the first image of
    ``sample`` (repeated to ``static_batch`` for a model with a fixed batch; counts divided by it)."""
    from vitdeploy.calib.stats import with_outputs
    from vitdeploy.runners.ort import OnnxRuntimeRunner

    inits = initializers(model)
    layers = [n for n in model.graph.node if n.op_type in ("MatMul", "Gemm", "Conv")]
    wanted = list(dict.fromkeys([n.output[0] for n in layers] + [n.input[0] for n in layers if n.input[0] not in inits]
                                + [n.input[1] for n in layers if n.op_type == "MatMul" and n.input[1] not in inits]))
    graph_inputs = {i.name for i in model.graph.input}
    probe = with_outputs(model, [t for t in wanted if t not in graph_inputs])
    b = static_batch or 1
    first = pad_batch(sample[:1], b)
    with OnnxRuntimeRunner(probe.SerializeToString(), threads=threads, optimization="basic") as r:
        outs = r.infer({input_name: first})
    outs[input_name] = first
    shape = {t: (tuple(inits[t].dims) if t in inits else tuple(np.shape(outs[t]))) for t in wanted + [
        x for n in layers for x in n.input[:3] if x in inits]}
    per_image = lambda t: int(np.prod(shape[t])) // (1 if t in inits else b)  # noqa: E731
    result = {}
    for n in layers:
        out = per_image(n.output[0])
        if n.op_type == "Conv":
            w = shape[n.input[1]]
            k = int(np.prod(w[1:]))
        elif n.op_type == "Gemm":
            trans_a = next((a.i for a in n.attribute if a.name == "transA"), 0)
            a = shape[n.input[0]]
            k = a[0] if trans_a else a[-1]
        else:
            k = shape[n.input[0]][-1]
        acts = [x for x in n.input[:2] if x and x not in inits]
        weights = [x for x in n.input[1:3] if x in inits]
        result[n.name] = costs.LayerCost(out * int(k), sum(per_image(x) for x in acts),
                                         sum(per_image(x) for x in weights), out)
    elements = {t: per_image(t) for t in shape if t not in inits}
    return result, elements


# --- the switchable model -------------------------------------------------------------------------

def switchable(model, qmodel, groups: list[LayerGroup]):
    """``qmodel`` (the Q/DQ file of the full plan, float parts FP32) where each group's layer reads
    ``Where(flag, its quantized input, the FP32 model's input)``: graph input ``FLAG_PREFIX<i>`` (bool
    scalar) true runs group i in INT8, false in float. Quantized Conv outputs (ort-cpu) switch the same way."""
    onnx = require("onnx")
    helper = onnx.helper
    m = onnx.ModelProto()
    m.CopyFrom(qmodel)
    graph = m.graph
    src = {n.name: n for n in model.graph.node}
    src_inits = initializers(model)
    have = {i.name for i in graph.initializer}
    by_name = {n.name: n for n in graph.node}
    made_by = producers(m)
    new_nodes = []
    for i, g in enumerate(groups):
        flag = f"{FLAG_PREFIX}{i}"
        graph.input.append(helper.make_tensor_value_info(flag, onnx.TensorProto.BOOL, []))
        node, orig = by_name[g.node], src[g.node]
        for k, (qi, oi) in enumerate(zip(node.input, orig.input)):
            if qi == oi or not oi:
                continue
            if oi in src_inits and oi not in have:
                graph.initializer.append(src_inits[oi])
                have.add(oi)
            sw = f"{oi}__switch{i}_{k}"
            new_nodes.append(helper.make_node("Where", [flag, qi, oi], [sw], name=f"{g.node}__switch_in{k}"))
            node.input[k] = sw
        if node.output[0] != orig.output[0]:  # ort-cpu: producer writes t__float, an output Q/DQ writes t
            t, raw = orig.output[0], node.output[0]
            odq = made_by[t]
            odq.output[list(odq.output).index(t)] = f"{t}__switch_dq"
            new_nodes.append(helper.make_node("Where", [flag, f"{t}__switch_dq", raw], [t], name=f"{g.node}__switch_out"))
    graph.node.extend(new_nodes)
    toposort(m)
    return m


# --- evaluation -----------------------------------------------------------------------------------

def metric_drop(ref: np.ndarray, cand: np.ndarray, labels: np.ndarray | None, metric: str) -> tuple[float, float]:
    """(drop in points by ``metric``, 1 - mean cosine) of ``cand`` against the FP32 outputs ``ref``."""
    drop, proxy, _ = _measure(ref, cand, labels, metric)
    return drop, proxy


TAIL = 10  # the smallest margins that set the margin distribution's slope near zero (``flip_rate``)
PASS_PROBABILITY = 0.8  # a plan is accepted when it should meet the budget on the confirmation set this often


def flip_rate(ref: np.ndarray, cand: np.ndarray, labels: np.ndarray | None, metric: str) -> float:
    """The expected fraction of new images whose top-1 the plan changes (``agreement``) or turns from right
    to wrong (``top1``), estimated on these images by pairing every image's FP32 margin (top-1 minus
    runner-up logit) with every image's change of that margin under the plan: an image flips when its
    margin shrinks by more than the margin. Smooth where counting flips is not: no flip in a few hundred
    images still says how close the plan came. New images can have smaller margins than any here: near
    zero the margins' distribution is taken as linear (its slope from the ``TAIL`` smallest), which
    gives the rate of flips below the smallest margin seen."""
    r, c = ref.reshape(len(ref), -1), cand.reshape(len(cand), -1)
    rows = np.arange(len(r))
    top = r.argmax(1)
    others = lambda a: np.where(np.arange(a.shape[1]) == top[:, None], -np.inf, a).max(1)  # noqa: E731
    margin = r[rows, top] - others(r)
    if r.shape[1] < 2:
        raise UsageError("a top-1 or agreement budget needs at least two outputs per image: use --metric cosine")
    delta = np.sort(np.nan_to_num((c[rows, top] - others(c)) - margin, nan=-np.inf, posinf=-np.inf, neginf=-np.inf))
    at_risk = np.sort(margin if metric == "agreement" else margin[top == labels])
    crossed = float(np.searchsorted(delta, -at_risk, side="left").sum()) / (len(delta) * len(r))
    if len(at_risk) == 0:
        return crossed
    k = min(TAIL, len(at_risk))
    slope = k / (len(r) * max(float(at_risk[k - 1]), 1e-12))  # images per unit of margin near zero
    return max(crossed, slope * float(np.maximum(-delta, 0.0).mean()))


def pass_probability(rate: float, confirm: int, max_drop: float) -> float:
    """P(a Poisson count of mean ``rate * confirm`` flips stays within ``max_drop`` points of ``confirm`` images)."""
    allowed = math.floor(max_drop * confirm / 100.0 + 1e-9)
    lam = rate * confirm
    term = total = math.exp(-lam)  # P(0), then P(k) = P(k-1) lam / k: no factorial, no overflow
    if term == 0.0:  # e^-lam underflows (lam > ~745): use the normal approximation
        return 0.5 * math.erfc((lam - allowed - 0.5) / math.sqrt(2 * lam))
    for k in range(1, allowed + 1):
        term *= lam / k
        total += term
        if term < 1e-17 * total and k > lam:
            break
    return min(total, 1.0)


def _measure(ref: np.ndarray, cand: np.ndarray, labels: np.ndarray | None, metric: str) -> tuple[float, float, int]:
    """(drop in points, 1 - mean cosine, images changed) of ``cand`` against ``ref``: ``core.compare``'s
    cosine and agreement, the figures the confirmation set is judged by."""
    c = compare(ref, cand)
    proxy = 1.0 - c.cosine_mean
    if metric == "top1":
        ref_hit = ref.reshape(len(ref), -1).argmax(1) == labels
        hit = cand.reshape(len(cand), -1).argmax(1) == labels
        return 100.0 * float(ref_hit.mean() - hit.mean()), proxy, int((ref_hit != hit).sum())
    if metric == "agreement":
        flips = int(round((1.0 - c.top1_agreement) * len(ref)))
        return 100.0 * flips / len(ref), proxy, flips
    return 100.0 * proxy, proxy, 0


class Evaluator:
    """Runs the switchable model on samples (an array, or a ``SampleSet`` read a batch at a time) for a
    set of INT8 groups; counts its runs."""

    def __init__(self, sim_bytes: bytes, input_name: str, n_groups: int, threads: int | None, batch: int,
                 static_batch: int | None):
        from vitdeploy.runners.ort import OnnxRuntimeRunner

        self.runner = OnnxRuntimeRunner(sim_bytes, threads=threads)
        self.input_name, self.n, self.batch, self.static_batch = input_name, n_groups, batch, static_batch
        self.count = 0

    def __enter__(self) -> Evaluator:
        self.runner.activate()
        return self

    def __exit__(self, *exc) -> None:
        self.runner.deactivate()

    def run(self, x: np.ndarray | SampleSet, int8: set[int]) -> np.ndarray:
        flags = {f"{FLAG_PREFIX}{i}": np.array(i in int8) for i in range(self.n)}
        outs = []
        for s in range(0, len(x), self.batch):
            chunk = x[s:s + self.batch]
            out = self.runner.infer({self.input_name: pad_batch(chunk, self.static_batch or 1), **flags})
            outs.append(np.asarray(next(iter(out.values())), dtype=np.float32)[:len(chunk)])
        self.count += 1
        return np.concatenate(outs)


def path_budget(n: int) -> int:
    """The most path evaluations ``search`` makes for ``n`` groups (galloping, then bisection)."""
    return 2 * math.ceil(math.log2(n + 1)) + 1 if n else 1


def search(model, qmodel, qplan: QuantPlan, x: np.ndarray | SampleSet, labels: np.ndarray | None, *, input_name: str,
           metric: str, max_drop: float, confirm: int, fallback: str, profile: costs.DeviceProfile, threads: int | None,
           static_batch: int | None, progress: Callable[[str, int], Callable[[int], None] | None] | None = None) -> SearchResult:
    """The float groups for ``max_drop`` on the selection set ``x`` (``labels`` for ``top1``); ``confirm``:
    the number of confirmation images the result will be measured on (what ``pass_probability`` needs).

    ``qmodel``: ``model`` with the Q/DQ of the full ``qplan`` written, float parts FP32. Returns the
    groups with their sensitivities and precisions, the evaluated path and the chosen point."""
    groups = layer_groups(model, qplan)
    if not groups:
        raise UsageError("--max-drop: no quantizable layer is left to search (--exclude, --float-attention or the "
                         "family hints keep them all float)")
    layer_cost, elements = layer_costs(model, x, input_name, threads, static_batch)
    for g in groups:
        g.macs = layer_cost[g.node].macs
        boundary = sum(elements.get(t, 0) for t in g.inputs) * profile.boundary_element
        g.saved_seconds = (profile.layer_seconds(layer_cost[g.node], fallback)
                           - profile.layer_seconds(layer_cost[g.node], "int8") - boundary)
    model_macs = sum(c.macs for c in layer_cost.values())
    group_cost = {g.name: layer_cost[g.node] for g in groups}
    n = len(groups)
    sim = switchable(model, qmodel, groups).SerializeToString()
    sens_x = x[:SENSITIVITY_SAMPLES]
    sens_labels = None if labels is None else labels[:SENSITIVITY_SAMPLES]
    total = 2 + 2 * n + path_budget(n)
    advance = progress("precision search", total) if progress else None

    def tick() -> None:
        if advance:
            advance(1)

    everything = set(range(n))
    batch = static_batch or 16
    with Evaluator(sim, input_name, n, threads, batch, static_batch) as ev:
        ref = ev.run(x, set())
        tick()
        sens_ref = ref[:len(sens_x)]
        all_int8, all_int8_proxy = metric_drop(sens_ref, ev.run(sens_x, everything), sens_labels, metric)
        tick()
        for i, g in enumerate(groups):
            g.harm_int8, g.harm_int8_proxy = metric_drop(sens_ref, ev.run(sens_x, {i}), sens_labels, metric)
            tick()
            d, p = metric_drop(sens_ref, ev.run(sens_x, everything - {i}), sens_labels, metric)
            g.recovery, g.recovery_proxy = all_int8 - d, all_int8_proxy - p
            tick()
        for g in groups:
            harm = max(g.harm_int8_proxy, g.recovery_proxy, 0.0)
            g.score = math.inf if g.saved_seconds <= 0 else harm / g.saved_seconds
        order = sorted(range(n), key=lambda i: (-groups[i].score, i))
        fallback_s = costs.plan_seconds(group_cost, {g.name: fallback for g in groups}, {}, profile)

        def speedup(k: int) -> float:
            int8 = [groups[i] for i in order[k:]]
            prec = {g.name: fallback for g in groups} | {g.name: "int8" for g in int8}
            bounds = {t: elements.get(t, 0) for g in int8 for t in g.inputs}
            seconds = costs.plan_seconds(group_cost, prec, bounds, profile)
            return fallback_s / seconds if seconds > 0 else 1.0

        evaluated: dict[int, PathPoint] = {}
        path_evals = 0

        def point(k: int) -> PathPoint:
            nonlocal path_evals
            if k not in evaluated:
                if k == n:  # every group float: the FP32 model itself in this simulation
                    evaluated[k] = PathPoint(k, 0.0, 0.0, 1.0, speedup(k), evaluated=False)
                else:
                    cand = ev.run(x, set(order[k:]))
                    drop, _ = metric_drop(ref, cand, labels, metric)
                    if metric == "cosine":
                        expected, chance = drop, float(drop <= max_drop + 1e-9)
                    else:
                        rate = flip_rate(ref, cand, labels, metric)
                        expected, chance = 100.0 * rate, pass_probability(rate, confirm, max_drop)
                        chance = chance if drop <= max_drop + 1e-9 else 0.0
                    evaluated[k] = PathPoint(k, drop, expected, chance, speedup(k))
                    path_evals += 1
                    tick()
            return evaluated[k]

        ok = lambda k: point(k).accepted  # noqa: E731
        if ok(0):
            chosen = 0
        else:
            lo, hi = 0, 1  # lo fails; gallop until hi meets the budget (n always does)
            while hi < n and not ok(hi):
                lo, hi = hi, min(2 * hi, n)
            hi = hi if hi < n else n
            while hi - lo > 1:
                mid = (lo + hi) // 2
                if ok(mid):
                    hi = mid
                else:
                    lo = mid
            chosen = hi
        point(chosen)
        point(n)
    floats = set(order[:chosen])
    for i, g in enumerate(groups):
        g.precision = fallback if i in floats else "int8"
    evaluations = {"reference": 1, "sensitivity": 1 + 2 * n, "path": path_evals, "total": ev.count,
                   "bound": total}
    return SearchResult(metric, max_drop, fallback, profile, groups, sorted(evaluated.values(), key=lambda p: p.float_layers),
                        evaluated[chosen], evaluations, len(x), len(sens_x), model_macs,
                        tuple(groups[i].node for i in sorted(floats)))


def run(ctx, qplan: QuantPlan, config, x: SampleSet, labels: np.ndarray | None, metric: str, confirm: int, steps,
        progress) -> SearchResult:
    """The search of ``quantize --max-drop``: statistics and ranges of the full ``qplan`` (cached on
    disk; the final file's pass finds them there), its Q/DQ written with FP32 float parts, then
    ``search`` on the selection samples ``x``."""
    import copy

    from vitdeploy.calib import qdq_write
    from vitdeploy.calib.passes import int8_ranges, int8_tensors, search_tensors, statistics

    _, outputs = int8_tensors(ctx.model, qplan, config, ctx.input_name)
    tensors = search_tensors(ctx.model, qplan, config, ctx.input_name)
    collected, _, _ = statistics(ctx, ctx.data_hash, tensors, ctx.samples, config, steps, progress)
    ranges = int8_ranges(ctx.model, qplan, collected, tensors, outputs, config, ctx.ranges)
    qplan = copy.deepcopy(qplan)  # the form's writer narrows it to what it quantizes (ort-cpu: no attention products)
    qmodel = qdq_write.write(ctx.model, qplan, ranges.activations, config.target, ranges.outputs)
    fallback = "fp32" if config.target == "ort-cpu" or config.high_precision == "fp32" else "fp16"
    prof = costs.profile(config.device_profile or costs.default_profile(config.target), config.threads or 1)
    with steps.step(f"precision search ({metric}, --max-drop {config.max_drop:g})") as rec:
        result = search(ctx.model, qmodel, qplan, x, labels, input_name=ctx.input_name, metric=metric,
                        max_drop=config.max_drop, confirm=confirm, fallback=fallback, profile=prof, threads=config.threads,
                        static_batch=ctx.static_batch, progress=progress)
        rec.detail = (f"{result.evaluations['total']} evaluations; {len(result.float_nodes)} of {len(result.groups)} "
                      f"layers {fallback.upper()}")
    return result
