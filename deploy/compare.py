"""Compare a candidate's outputs with a reference's: error figures, agreement, thresholds.

Figures (per output, over a batch of samples):
- max_abs: max |cand - ref|
- max_rel: max |cand - ref| / max |ref|   (relative to the output's scale; elementwise relative
  error is meaningless for logits near zero)
- mean_abs
- cosine_min / cosine_mean: cosine similarity of each sample's flattened output with the reference's
- top1 / top5 agreement: share of samples whose top-1 class equals the reference's, and whose
  reference top-1 is within the candidate's top-5
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from vitdeploy.errors import ShapeMismatchError, ValueMismatchError


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


def compare(ref: np.ndarray, cand: np.ndarray, worst: int = 5) -> Comparison:
    """Compare two output arrays whose first axis is the sample axis."""
    ref = np.asarray(ref, dtype=np.float64)
    cand = np.asarray(cand, dtype=np.float64)
    if ref.shape != cand.shape:
        raise ShapeMismatchError(f"output shapes differ: reference {ref.shape} vs candidate {cand.shape}")
    if ref.ndim == 0 or ref.shape[0] == 0:
        raise ShapeMismatchError("nothing to compare: empty outputs")
    n = ref.shape[0]
    r = ref.reshape(n, -1)
    c = cand.reshape(n, -1)
    diff = np.abs(c - r)
    finite = np.isfinite(c).all()
    scale = float(np.abs(r).max()) or 1.0
    denom = np.linalg.norm(r, axis=1) * np.linalg.norm(c, axis=1)
    cos = np.where(denom > 0, (r * c).sum(axis=1) / np.where(denom > 0, denom, 1.0), 1.0)
    if not finite:
        cos = np.where(np.isfinite(c).all(axis=1), cos, -1.0)
    top1 = float((r.argmax(1) == c.argmax(1)).mean())
    k = min(5, r.shape[1])
    topk = np.argsort(-c, axis=1)[:, :k]
    top5 = float((topk == r.argmax(1)[:, None]).any(axis=1).mean())
    return Comparison(
        samples=n,
        max_abs=float(diff.max()) if finite else float("inf"),
        max_rel=float(diff.max() / scale) if finite else float("inf"),
        mean_abs=float(diff.mean()) if finite else float("inf"),
        cosine_min=float(cos.min()),
        cosine_mean=float(cos.mean()),
        top1_agreement=top1,
        top5_agreement=top5,
        worst=[int(i) for i in np.argsort(cos)[:worst]],
    )


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
