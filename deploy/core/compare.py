"""Compare a candidate's outputs with a reference's: error figures, agreement, thresholds.

Figures (per output, over a batch of samples):
- max_abs: max |cand - ref|
- max_rel: max |cand - ref| / max |ref|   (relative to the output's scale; elementwise relative
  error is meaningless for logits near zero)
- mean_abs
- cosine_min / cosine_mean: cosine similarity of each sample's flattened output with the reference's
- top1 / top5 agreement: share of samples whose top-1 class equals the reference's, and whose
  reference top-1 is within the candidate's top-5

``judge`` is the one accuracy verdict on those figures (closeness and agreement thresholds per
precision, the top-1 drop against a limit, both widened to what the samples resolve): `vitdeploy
validate` judges its candidates and `vitdeploy quantize` gates its result with it.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import asdict, dataclass, field, replace

import numpy as np

from vitdeploy.core.errors import ShapeMismatchError, ValueMismatchError


@dataclass
class Comparison:
    samples: int
    max_abs: float
    max_rel: float
    mean_abs: float
    cosine_min: float
    cosine_mean: float
    top1_agreement: float
    top5_agreement: float
    worst: list[int] = field(default_factory=list)  # sample indices, lowest cosine first

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Thresholds:
    """Pass criteria; None disables a criterion."""

    max_abs: float | None = 1e-4
    cosine_min: float | None = 0.99999
    top1_agreement: float | None = 1.0
    top5_agreement: float | None = None

    def failures(self, c: Comparison) -> list[str]:
        out = []
        if self.max_abs is not None and not c.max_abs <= self.max_abs:
            out.append(f"max_abs {c.max_abs:.3g} > {self.max_abs:.3g}")
        if self.cosine_min is not None and not c.cosine_min >= self.cosine_min:
            out.append(f"cosine {c.cosine_min:.6f} < {self.cosine_min}")
        if self.top1_agreement is not None and not c.top1_agreement >= self.top1_agreement:
            out.append(f"top-1 agreement {c.top1_agreement:.2%} < {self.top1_agreement:.2%}")
        if self.top5_agreement is not None and not c.top5_agreement >= self.top5_agreement:
            out.append(f"top-5 agreement {c.top5_agreement:.2%} < {self.top5_agreement:.2%}")
        return out


# Defaults per precision of the candidate (against an FP32 reference).
PRECISION_THRESHOLDS: dict[str, Thresholds] = {
    "fp32": Thresholds(max_abs=1e-4, cosine_min=0.99999, top1_agreement=1.0),
    "fp16": Thresholds(max_abs=None, cosine_min=0.999, top1_agreement=0.98),
    "int8": Thresholds(max_abs=None, cosine_min=0.98, top1_agreement=0.95),
}
# Largest top-1 accuracy drop (points) against the FP32 reference, per precision, where labels exist.
MAX_TOP1_DROP: dict[str, float] = {"fp32": 0.1, "fp16": 0.3, "int8": 1.5}
# n samples move top-1 figures in steps of 1/n: two samples that flip are below what they resolve
# (120 images: 1.67 points), so a limit is never tighter than that.
NOISE_SAMPLES = 2


def resolvable_drop(limit_points: float, samples: int) -> float:
    """A top-1 drop limit (points) widened to what ``samples`` labelled samples resolve."""
    return max(limit_points, 100.0 * NOISE_SAMPLES / samples)


def resolvable_agreement(minimum: float, samples: int) -> float:
    """A top-1 agreement minimum relaxed to what ``samples`` samples resolve."""
    return min(minimum, 1.0 - NOISE_SAMPLES / samples)


@dataclass(frozen=True)
class Verdict:
    """What ``judge`` decided: the failures (reasons, in the order checked) and the limits as applied."""

    failures: tuple[str, ...]
    thresholds: Thresholds  # effective: agreement minima relaxed to what the samples resolve, or off
    max_top1_drop: float | None = None  # effective top-1 drop limit (points); None: the drop was not judged

    @property
    def passed(self) -> bool:
        return not self.failures


def judge(c: Comparison, thresholds: Thresholds, *, agreement: bool = True, top1_drop: float | None = None,
          max_top1_drop: float | None = None, labelled: int | None = None) -> Verdict:
    """The one accuracy verdict of a candidate against its reference (validate's and quantize's gate).

    ``thresholds``: the candidate precision's closeness criteria. ``agreement`` False drops the
    top-1/top-5 agreement criteria (random weights, inputs or chance-level labels: which class wins
    is noise there); otherwise the top-1 minimum is relaxed to what ``c.samples`` resolve
    (``resolvable_agreement``). ``top1_drop``: the candidate's top-1 accuracy drop (points) against the
    reference on ``labelled`` samples (default ``c.samples``), judged against ``max_top1_drop`` widened
    to what those samples resolve (``resolvable_drop``); None for either: no drop criterion."""
    if not agreement:
        thresholds = replace(thresholds, top1_agreement=None, top5_agreement=None)
    elif thresholds.top1_agreement is not None:
        thresholds = replace(thresholds, top1_agreement=resolvable_agreement(thresholds.top1_agreement, c.samples))
    failures = thresholds.failures(c)
    limit = None
    if top1_drop is not None and max_top1_drop is not None:
        limit = resolvable_drop(max_top1_drop, c.samples if labelled is None else labelled)
        if top1_drop > limit + 1e-9:
            failures.append(f"top-1 drop {top1_drop:.2f} points > {limit:.2f}")
    return Verdict(tuple(failures), thresholds, limit)


class ExactSum:
    """A float sum fed in chunks, exactly rounded (Shewchuk's partials, as ``math.fsum``), so a sum
    over batches equals the sum over all values at once, whatever the chunking."""

    def __init__(self) -> None:
        self.partials: list[float] = []

    def add(self, values: np.ndarray) -> None:
        for x in np.asarray(values, dtype=np.float64).ravel().tolist():
            i = 0
            for y in self.partials:
                if abs(x) < abs(y):
                    x, y = y, x
                hi = x + y
                lo = y - (hi - x)
                if lo:
                    self.partials[i] = lo
                    i += 1
                x = hi
            self.partials[i:] = [x]

    @property
    def value(self) -> float:
        return math.fsum(self.partials)


class TopKAccuracy:
    """Top-1/top-5 hits of outputs against labels, counted batch by batch (a label outside the
    outputs, e.g. -1, is never a hit). Top-1 is the first largest output (``argmax``), top-5 the five
    largest; ``StreamingComparison`` counts its agreement with the reference's top-1 as labels."""

    def __init__(self) -> None:
        self.n = self.top1 = self.top5 = 0

    def update(self, logits: np.ndarray, labels: np.ndarray) -> None:
        labels = np.asarray(labels)
        top5 = np.argsort(-logits, axis=1)[:, : min(5, logits.shape[1])]
        self.top1 += int((logits.argmax(1) == labels).sum())
        self.top5 += int((top5 == labels[:, None]).any(axis=1).sum())
        self.n += len(labels)

    def result(self) -> dict[str, float]:
        return {"top1": self.top1 / self.n, "top5": self.top5 / self.n} if self.n else {"top1": 0.0, "top5": 0.0}


class StreamingComparison:
    """``compare`` reduced batch by batch: memory does not grow with the number of samples.

    ``update(ref, cand)`` with the next samples' outputs (first axis: samples); ``result()`` is the
    Comparison of everything fed, the same whatever the batching: per-sample figures are computed
    row by row, sums exactly (``ExactSum``), the worst samples kept in a heap of ``worst`` entries
    ordered by (cosine, sample index)."""

    def __init__(self, worst: int = 5) -> None:
        self.worst_k = worst
        self.n = 0
        self.values = 0  # output values compared (n x per-sample size)
        self.finite = True
        self.max_abs = 0.0
        self.scale = 0.0  # max |ref|
        self.abs_sum, self.cos_sum = ExactSum(), ExactSum()
        self.cos_min = math.inf
        self.agreement = TopKAccuracy()  # the candidate's top-1/top-5 against the reference's top-1
        self._heap: list[tuple[float, int]] = []  # (-cosine, -index): the largest kept key on top

    def update(self, ref: np.ndarray, cand: np.ndarray) -> None:
        ref = np.asarray(ref, dtype=np.float64)
        cand = np.asarray(cand, dtype=np.float64)
        if ref.shape != cand.shape:
            raise ShapeMismatchError(f"output shapes differ: reference {ref.shape} vs candidate {cand.shape}")
        if ref.ndim == 0 or ref.shape[0] == 0:
            return
        b = ref.shape[0]
        r, c = ref.reshape(b, -1), cand.reshape(b, -1)
        diff = np.abs(c - r)
        rows_finite = np.isfinite(c).all(axis=1)
        self.finite = self.finite and bool(rows_finite.all())
        if self.finite:
            self.max_abs = max(self.max_abs, float(diff.max()))
            self.abs_sum.add(diff.sum(axis=1))
        self.scale = max(self.scale, float(np.abs(r).max()))
        self.values += diff.size
        denom = np.linalg.norm(r, axis=1) * np.linalg.norm(c, axis=1)
        cos = np.where(denom > 0, (r * c).sum(axis=1) / np.where(denom > 0, denom, 1.0), 1.0)
        cos = np.where(rows_finite, cos, -1.0)
        self.cos_min = min(self.cos_min, float(cos.min()))
        self.cos_sum.add(cos)
        self.agreement.update(c, r.argmax(1))
        for i, v in enumerate(cos.tolist()):
            key = (-(math.inf if math.isnan(v) else v), -(self.n + i))  # NaN ranks last, as in a sort
            if len(self._heap) < self.worst_k:
                heapq.heappush(self._heap, key)
            elif key > self._heap[0]:
                heapq.heapreplace(self._heap, key)
        self.n += b

    def result(self) -> Comparison:
        if self.n == 0:
            raise ShapeMismatchError("nothing to compare: empty outputs")
        inf = float("inf")
        return Comparison(
            samples=self.n,
            max_abs=self.max_abs if self.finite else inf,
            max_rel=self.max_abs / (self.scale or 1.0) if self.finite else inf,
            mean_abs=self.abs_sum.value / self.values if self.finite else inf,
            cosine_min=self.cos_min,
            cosine_mean=self.cos_sum.value / self.n,
            top1_agreement=self.agreement.top1 / self.n,
            top5_agreement=self.agreement.top5 / self.n,
            worst=[-i for _, i in sorted(self._heap, reverse=True)],
        )


def compare(ref: np.ndarray, cand: np.ndarray, worst: int = 5) -> Comparison:
    """Compare two output arrays whose first axis is the sample axis (one ``StreamingComparison`` batch)."""
    ref = np.asarray(ref)
    cand = np.asarray(cand)
    if ref.shape != cand.shape:
        raise ShapeMismatchError(f"output shapes differ: reference {ref.shape} vs candidate {cand.shape}")
    reducer = StreamingComparison(worst)
    reducer.update(ref, cand)
    return reducer.result()


def assert_close(ref: np.ndarray, cand: np.ndarray, thresholds: Thresholds, what: str) -> Comparison:
    """compare() and raise ValueMismatchError (with the figures) when a threshold fails."""
    c = compare(ref, cand)
    fails = thresholds.failures(c)
    if fails:
        raise ValueMismatchError(
            f"{what}: {'; '.join(fails)} (max_abs {c.max_abs:.3g}, cosine {c.cosine_min:.6f}, "
            f"top-1 {c.top1_agreement:.2%}, {c.samples} samples)",
            figures=c.to_dict(),
        )
    return c


def seeded_inputs(batch: int, shape: tuple[int, ...], seed: int) -> np.ndarray:
    """Standard-normal inputs: the range of normalised images, reproducible from the seed."""
    return np.random.default_rng(seed + batch).standard_normal((batch, *shape), dtype=np.float32)
