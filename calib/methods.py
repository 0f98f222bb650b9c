"""Calibration methods: from an activation histogram to a clipping range.

All methods work on the same statistics (``TensorStats``): exact min/max plus histograms of
|x| for positive and negative values over [0, R] (2048 bins). So choosing another method
never re-runs the model, and the methods really differ:

- ``minmax``: the largest |x| seen (keeps every outlier);
- ``percentile``: the |x| below which ``percentile`` % of values fall (clips the tail);
- ``entropy``: TensorRT's KL-divergence search: the threshold whose 128-level quantized
  distribution loses the least information against the clipped reference;
- ``mse``: the threshold minimising the expected squared error of clip + round, summed over the histogram.

Every method except ``minmax`` first sets aside *spikes*: single histogram bins that hold a large
share of all values and tower over their neighbours, i.e. one constant value that occurs very
often (a ReLU's zeros, zero padding, the uniform background of images after normalisation:
30-80 % of an input tensor at one value such as -0.81). Left in, such a spike dominates the
search (the KL divergence of the entropy method, the squared error of ``mse``, the CDF of
``percentile``) and the threshold is chosen for the one constant instead of the content: the
entropy method clipped a Fashion-MNIST input at 0.81 when its real maximum was 2.02. A spike's
excess mass is removed from the histogram the search runs on, and the threshold is never below
the spike's own magnitude: a value that common must be representable without clipping.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vitdeploy.core.precision import METHODS

NUM_BINS = 2048
TINY = 2.0 ** -14  # FP16's smallest normal number (6.1e-5)


@dataclass
class TensorStats:
    """Running statistics of one tensor; histograms grow by merging bins when the range grows."""

    min: float = np.inf
    max: float = -np.inf
    count: int = 0
    range: float = 0.0  # histograms cover |x| in [0, range]
    pos: np.ndarray | None = None
    neg: np.ndarray | None = None
    zeros: int = 0  # values exactly 0
    tiny: int = 0  # values with 0 < |x| < TINY (below FP16's smallest normal: FP16 flushes or blurs them)

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
        zeros = int(np.count_nonzero(a == 0))
        self.zeros += zeros
        self.tiny += int(np.count_nonzero(a < TINY)) - zeros
        pos_counts, _ = np.histogram(a[x >= 0], bins=NUM_BINS, range=(0, self.range))
        neg_counts, _ = np.histogram(a[x < 0], bins=NUM_BINS, range=(0, self.range))
        self.pos += pos_counts
        self.neg += neg_counts  # type: ignore[operator]

    @property
    def amax(self) -> float:
        return max(abs(self.min), abs(self.max))

    @property
    def tiny_fraction(self) -> float:
        """Share of the non-zero values below FP16's smallest normal number (0 when all are zero)."""
        nonzero = self.count - self.zeros
        return self.tiny / nonzero if nonzero > 0 else 0.0

    def folded(self) -> np.ndarray:
        return self.pos + self.neg  # type: ignore[operator]

    def to_arrays(self) -> dict[str, np.ndarray]:
        return {"minmax": np.array([self.min, self.max, self.range, self.count, self.zeros, self.tiny], np.float64),
                "pos": self.pos, "neg": self.neg}

    @classmethod
    def from_arrays(cls, d: dict[str, np.ndarray]) -> TensorStats:
        """Raises ValueError for an entry of an older layout (the cache then recomputes it)."""
        lo, hi, rng, cnt, zeros, tiny = d["minmax"].tolist()
        return cls(lo, hi, int(cnt), rng, d["pos"].astype(np.int64), d["neg"].astype(np.int64), int(zeros), int(tiny))


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
    tail = np.cumsum(hist[::-1])[::-1]  # tail[i]: values at or above bin i
    for i in range(levels, last + 1, stride):
        if i < last and tail[i] > 0.5 * tail[0]:
            # Clipping most values cannot be right, yet its KL is ~0 when everything lands in the
            # last bin: a tensor far from zero (a LayerNorm's std, 0.69..2.5) picked 0.689.
            continue
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


# A spike: one bin that holds >= SPIKE_MIN_FRACTION of all values and more than SPIKE_RATIO times
# both adjacent bins and the median of its 2 * SPIKE_NEIGHBOURS nearest bins. Smooth data never
# comes close: a Gaussian's fullest bin holds ~0.2 % of the values and matches its neighbours, and
# a sharp edge of the support (a uniform distribution's last bin) only halves the median.
# A single value fills exactly one bin and towers over both neighbours by 100x or more.
#
# The histogram cannot tell one value from many values inside one bin, so three guards keep coarse
# histograms (content squeezed into a few bins by outliers 1000x its scale) from passing for
# spikes, where setting the bulk aside would leave the threshold to the outliers:
# * a signed bulk around zero fills both bins next to zero (neg[0] and pos[0]); exact zeros only
#   ever land in pos[0]: two adjacent candidates are therefore not spikes;
# * the values left after removing the spikes must be >= SPIKE_MIN_CONTENT of all values
#   (a tensor that is 99.5 % one value keeps the old behaviour);
# * and they must be resolved by the histogram: their 10th..90th percentile magnitudes span
#   >= SPIKE_MIN_SPREAD bins. Next to a coarse bulk only its tail is left (|Laplace| at 0.1 plus
#   a few values near 500: bins 1..3), and a percentile of that is the outliers (1.33 -> 567);
#   real content next to a spike spans hundreds of bins (a ReLU's positive half, an image's pixels).
SPIKE_MIN_FRACTION = 0.01
SPIKE_RATIO = 16.0
SPIKE_NEIGHBOURS = 3
SPIKE_MIN_CONTENT = 0.01
SPIKE_MIN_SPREAD = 8


def _despike(pos: np.ndarray, neg: np.ndarray) -> tuple[np.ndarray, np.ndarray, int, int]:
    """``pos`` and ``neg`` without the excess mass of their spikes, and how many bins each side's
    spikes reach (0: none): a threshold must keep ``reach * width`` to represent them unclipped.

    Detection runs on the signed axis (neg reversed, then pos) so that the bins either side of zero
    are neighbours. A spike's count is replaced by the median of its neighbours, which keeps about
    the ordinary content that shares its bin. Without spikes the inputs come back unchanged
    (the same arrays), so ordinary distributions get bit-identical thresholds.
    """
    n = pos.size
    signed = np.concatenate([neg[::-1], pos]).astype(np.float64)
    total = float(signed.sum())
    if total <= 0:
        return pos, neg, 0, 0
    k = SPIKE_NEIGHBOURS
    padded = np.pad(signed, k)  # off the histogram's ends: empty bins
    spikes: dict[int, float] = {}
    for b in np.nonzero(signed >= SPIKE_MIN_FRACTION * total)[0]:
        c = int(b) + k  # index into padded
        window = np.concatenate([padded[c - k:c], padded[c + 1:c + 1 + k]])
        baseline = float(np.median(window))
        if signed[b] > SPIKE_RATIO * max(padded[c - 1], padded[c + 1], baseline):
            spikes[int(b)] = baseline
    if not spikes:
        return pos, neg, 0, 0
    cleaned = signed.copy()
    for b, baseline in spikes.items():
        cleaned[b] = np.floor(baseline)
    content = cleaned[n:] + cleaned[:n][::-1]  # folded: |x|
    if content.sum() < SPIKE_MIN_CONTENT * total:
        return pos, neg, 0, 0
    lo, hi = np.searchsorted(np.cumsum(content), np.array([0.1, 0.9]) * content.sum())
    if hi - lo < SPIKE_MIN_SPREAD:
        return pos, neg, 0, 0
    reach_neg = max((n - b for b in spikes if b < n), default=0)  # signed b < n is neg bin n-1-b
    reach_pos = max((b - n + 1 for b in spikes if b >= n), default=0)
    return cleaned[n:], cleaned[:n][::-1], reach_pos, reach_neg


def symmetric_amax(stats: TensorStats, method: str, percentile: float = 99.99) -> float:
    """Clipping threshold T for symmetric INT8 (scale = T / 127)."""
    amax = stats.amax
    if stats.pos is None or amax == 0:
        return amax
    if method == "minmax":
        return amax
    if method not in METHODS:
        raise ValueError(f"unknown calibration method {method!r}; choose from {', '.join(METHODS)}")
    width = stats.range / NUM_BINS
    pos, neg, reach_pos, reach_neg = _despike(stats.pos, stats.neg)  # type: ignore[arg-type]
    hist = pos + neg
    floor = min(max(reach_pos, reach_neg) * width, amax)  # never clip a spike's value
    if method == "percentile":
        t = _percentile_threshold(hist, width, percentile, amax)
    elif method == "entropy":
        # Zeros are exact in INT8; a ReLU's spike at zero otherwise dominates the KL search and
        # drags the threshold down (SReT's conv stem: 37% of the range, cosine 0.91). A tensor
        # that is never negative drops bin 0 whether or not it counts as a spike.
        if stats.min >= 0:
            hist = hist.copy()
            hist[0] = 0
        t = _entropy_threshold(hist, width, amax)
    else:
        t = _mse_threshold(hist, width, amax)
    return max(t, floor)


def asymmetric_range(stats: TensorStats, method: str, percentile: float = 99.99) -> tuple[float, float]:
    """[lo, hi] for asymmetric UINT8 activations (ONNX Runtime CPU); always contains 0."""
    if method == "minmax" or stats.pos is None:
        lo, hi = stats.min, stats.max
    elif method == "percentile":
        width = stats.range / NUM_BINS
        pos, neg, reach_pos, reach_neg = _despike(stats.pos, stats.neg)  # type: ignore[arg-type]
        top, bottom = max(stats.max, 0.0), max(-stats.min, 0.0)
        hi = lo = 0.0
        if stats.max > 0:
            hi = max(_percentile_threshold(pos, width, percentile, top), min(reach_pos * width, top))
        if stats.min < 0:
            lo = -max(_percentile_threshold(neg, width, percentile, bottom), min(reach_neg * width, bottom))
    else:  # the symmetric threshold already keeps every spike, on either side
        t = symmetric_amax(stats, method, percentile)
        lo, hi = max(stats.min, -t), min(stats.max, t)
    return min(lo, 0.0), max(hi, 0.0)
