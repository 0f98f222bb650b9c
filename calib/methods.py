"""Calibration methods: from an activation histogram to a clipping range.

All methods work on the same statistics (``TensorStats``): exact min/max plus histograms of
|x| for positive and negative values over [0, R] (2048 bins). So choosing another method
never re-runs the model, and the methods really differ:

- ``minmax``: the largest |x| seen (keeps every outlier);
- ``percentile``: the |x| below which ``percentile`` % of values fall (clips the tail);
- ``entropy``: TensorRT's KL-divergence search: the threshold whose 128-level quantized
  distribution loses the least information against the clipped reference;
- ``mse``: the threshold minimising the expected squared error of clip + round, summed over the histogram.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

METHODS = ("entropy", "percentile", "minmax", "mse")
NUM_BINS = 2048


@dataclass
class TensorStats:
    """Running statistics of one tensor; histograms grow by merging bins when the range grows."""

    min: float = np.inf
    max: float = -np.inf
    count: int = 0
    range: float = 0.0  # histograms cover |x| in [0, range]
    pos: np.ndarray | None = None
    neg: np.ndarray | None = None

    def update(self, x: np.ndarray) -> None:
        x = np.asarray(x, dtype=np.float32).ravel()
        if x.size == 0:
            return
        x = x[np.isfinite(x)]
        if x.size == 0:  # all NaN/inf: nothing to learn a range from
            return
        lo, hi = float(x.min()), float(x.max())
        self.min, self.max = min(self.min, lo), max(self.max, hi)
        self.count += x.size
        amax = max(abs(lo), abs(hi))
        if self.pos is None:
            self.range = amax if amax > 0 else 1e-8
            self.pos = np.zeros(NUM_BINS, np.int64)
            self.neg = np.zeros(NUM_BINS, np.int64)
        while amax > self.range:  # double the range: merge neighbouring bins
            for h in (self.pos, self.neg):
                merged = h.reshape(-1, 2).sum(1)
                h[:] = 0
                h[: NUM_BINS // 2] = merged
            self.range *= 2
        a = np.abs(x)
        pos_counts, _ = np.histogram(a[x >= 0], bins=NUM_BINS, range=(0, self.range))
        neg_counts, _ = np.histogram(a[x < 0], bins=NUM_BINS, range=(0, self.range))
        self.pos += pos_counts
        self.neg += neg_counts  # type: ignore[operator]

    @property
    def amax(self) -> float:
        return max(abs(self.min), abs(self.max))

    def folded(self) -> np.ndarray:
        return self.pos + self.neg  # type: ignore[operator]

    def to_arrays(self) -> dict[str, np.ndarray]:
        return {"minmax": np.array([self.min, self.max, self.range, self.count], np.float64),
                "pos": self.pos, "neg": self.neg}

    @classmethod
    def from_arrays(cls, d: dict[str, np.ndarray]) -> TensorStats:
        lo, hi, rng, cnt = d["minmax"].tolist()
        return cls(lo, hi, int(cnt), rng, d["pos"].astype(np.int64), d["neg"].astype(np.int64))


def _percentile_threshold(hist: np.ndarray, width: float, percentile: float, amax: float) -> float:
    total = hist.sum()
    if total == 0:
        return amax
    cdf = np.cumsum(hist) / total
    i = int(np.searchsorted(cdf, percentile / 100.0))
    return float(min((i + 1) * width, amax))


def _entropy_threshold(hist: np.ndarray, width: float, amax: float, levels: int = 128, stride: int = 1) -> float:
    """TensorRT's entropy calibration (KL divergence between clipped and quantized histograms)."""
    hist = hist.astype(np.float64)
    nz = np.nonzero(hist)[0]
    if nz.size == 0:
        return amax
    last = int(nz[-1]) + 1
    if last <= levels:  # everything fits into the levels exactly
        return float(min(last * width, amax))
    best_kl, best_i = np.inf, last
    stride = max(stride, (last - levels) // 512)  # at most ~512 candidate thresholds
    for i in range(levels, last + 1, stride):
        ref = hist[:i].copy()
        ref[i - 1] += hist[i:].sum()  # outliers clipped into the last bin
        # quantize hist[:i] into `levels` bins, then expand back over the non-empty source bins
        src = hist[:i]
        idx = np.minimum((np.arange(i) * levels) // i, levels - 1)
        sums = np.bincount(idx, weights=src, minlength=levels)
        nonzero = np.bincount(idx, weights=(src > 0).astype(np.float64), minlength=levels)
        q = np.where(src > 0, sums[idx] / np.maximum(nonzero[idx], 1), 0.0)
        p_sum, q_sum = ref.sum(), q.sum()
        if q_sum == 0:
            continue
        p = ref / p_sum
        qn = q / q_sum
        mask = p > 0
        # bins where p > 0 but q == 0 make KL infinite; smooth them like TensorRT does
        qn = np.where(mask & (qn == 0), 1e-10, qn)
        kl = float(np.sum(p[mask] * np.log(p[mask] / qn[mask])))
        if kl < best_kl:
            best_kl, best_i = kl, i
    return float(min((best_i + 0.5) * width, amax))


def _mse_threshold(hist: np.ndarray, width: float, amax: float, bits: int = 8, candidates: int = 256) -> float:
    centers = (np.arange(hist.size) + 0.5) * width
    weights = hist.astype(np.float64)
    if weights.sum() == 0:
        return amax
    qmax = 2 ** (bits - 1) - 1
    last = int(np.nonzero(weights)[0][-1]) + 1
    best_err, best_t = np.inf, amax
    for t in np.linspace(last * width / candidates, min(last * width, amax), candidates):
        step = t / qmax
        q = np.clip(np.round(centers / step), -qmax, qmax) * step
        err = float(np.sum(weights * (centers - q) ** 2))
        if err < best_err:
            best_err, best_t = err, float(t)
    return best_t


def symmetric_amax(stats: TensorStats, method: str, percentile: float = 99.99) -> float:
    """Clipping threshold T for symmetric INT8 (scale = T / 127)."""
    amax = stats.amax
    if stats.pos is None or amax == 0:
        return amax
    width = stats.range / NUM_BINS
    hist = stats.folded()
    if method == "minmax":
        return amax
    if method == "percentile":
        return _percentile_threshold(hist, width, percentile, amax)
    if method == "entropy":
        # Zeros are exact in INT8; a ReLU's spike at zero otherwise dominates the KL search and
        # drags the threshold down (SReT's conv stem: 37% of the range, cosine 0.91).
        if stats.min >= 0:
            hist = hist.copy()
            hist[0] = 0
        return _entropy_threshold(hist, width, amax)
    if method == "mse":
        return _mse_threshold(hist, width, amax)
    raise ValueError(f"unknown calibration method {method!r}; choose from {', '.join(METHODS)}")


def asymmetric_range(stats: TensorStats, method: str, percentile: float = 99.99) -> tuple[float, float]:
    """[lo, hi] for asymmetric UINT8 activations (ONNX Runtime CPU); always contains 0."""
    if method == "minmax" or stats.pos is None:
        lo, hi = stats.min, stats.max
    elif method == "percentile":
        width = stats.range / NUM_BINS
        hi = _percentile_threshold(stats.pos, width, percentile, max(stats.max, 0.0)) if stats.max > 0 else 0.0
        lo = -_percentile_threshold(stats.neg, width, percentile, max(-stats.min, 0.0)) if stats.min < 0 else 0.0
    else:
        t = symmetric_amax(stats, method, percentile)
        lo, hi = max(stats.min, -t), min(stats.max, t)
    return min(lo, 0.0), max(hi, 0.0)
