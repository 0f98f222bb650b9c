"""Checks of a dataset against a model before any model runs: sample shape and layout
(``check_shape``), and the dtype and values of preprocessed arrays (``check_array_values``,
overridable with --no-data-check)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from vitdeploy.core.errors import InputError
from vitdeploy.data.sampling import sample_indices

if TYPE_CHECKING:
    from vitdeploy.core.preprocessing import Preprocessing
    from vitdeploy.data.sources import Dataset


def fits(model: tuple[int, ...], got: tuple[int, ...]) -> bool:
    """Whether samples of shape ``got`` fit a model input ``model`` whose dynamic dimensions are -1."""
    return len(model) == len(got) and all(m in (-1, g) for m, g in zip(model, got))


def _channels_last(model: tuple[int, ...]) -> bool:
    """Whether a model's (C, H, W) input reads as (H, W, C): 1 or 3 channels last, not first."""
    return len(model) == 3 and model[2] in (1, 3) and model[0] not in (1, 3)


def check_shape(ds: Dataset, pre: Preprocessing, model_shape: tuple[int, ...] | None = None) -> None:
    """The samples must fit the model's input: ``model_shape`` (its dimensions after the batch, -1
    dynamic) where the caller has read it from the model, else ``pre.input_size``. Raises InputError
    (exit 3) before any model runs, naming the layout when only the channel position differs: channels-
    last data gets the transpose as its fix; a channels-last (N,H,W,C) model given N,C,H,W samples (any
    image: vitdeploy feeds N,C,H,W) is named as such."""
    want = tuple(model_shape) if model_shape is not None else tuple(pre.input_size)
    nhwc_model = (f"the model takes channels-last N,H,W,C input {want} but vitdeploy feeds N,C,H,W: export it with "
                  "an N,C,H,W input")
    if ds.kind != "array":
        if _channels_last(want):
            raise InputError(f"{Path(ds.source).name}: images are preprocessed to N,C,H,W; {nhwc_model}")
        return
    got = tuple(ds.array.shape[1:])  # type: ignore[union-attr]
    if fits(want, got):
        return
    if len(got) == 3 and fits(want, (got[2], got[0], got[1])):
        raise InputError(f"{ds.source}: samples are {got}, channels last (N,H,W,C); the model takes N,C,H,W "
                         f"{want}: save x.transpose(0, 3, 1, 2)")
    if len(got) == 3 and fits(want, (got[1], got[2], got[0])):
        raise InputError(f"{ds.source}: samples are N,C,H,W {got}; {nhwc_model}, or save x.transpose(0, 2, 3, 1)")
    raise InputError(f"{ds.source}: samples are {got} but the model takes {want} "
                     "(a .npy/.npz must be preprocessed already)")


# Value check of preprocessed arrays (check_array_values). Normalised input is (x - mean) / std
# with x in [0, 1], so channel c lies in [a, b] = [(0 - mean) / std, (1 - mean) / std], width 1 / std.
VALUE_SAMPLE = 4096  # values drawn per channel (seeded, across the VALUE_ROWS samples): fast on any array size
VALUE_ROWS = 64  # samples read for the value check (seeded; a memory-mapped .npy pages in only those)
VALUE_QUANTILE = 0.005  # robust low/high: the 0.5 % and 99.5 % quantiles of the sample, not min/max
# mean/std unknown: no [0, 1]-based normalisation with std >= 0.1 leaves [-10, 10] (ImageNet's is
# [-2.1, 2.6], Inception's [-1, 1], CLIP's [-1.8, 2.1]); 0..255 pixels of any real image set exceed it.
RAW_LIMIT = 10.0
# mean/std unknown: non-negative data with high quantile > 3 and >= 25 % of values > 1 is pixel-like
# (a normalisation with mean >= 0 only reaches 3 with std < 1/3).
PIXEL_LIKE_HIGH, PIXEL_LIKE_SHARE = 3.0, 0.25
# mean/std known: the low/high quantiles must lie within [a - w, b + w] (w = b - a: one full range
# of slack, for resampling overshoot and synthetic data such as standard normal samples on a
# [-1, 1] model) and each channel mean within [a - w/10, b + w/10] (a mean of values in [a, b]).
BAND_SLACK, MEAN_SLACK = 1.0, 0.1
# mean/std known and every a <= -0.5: data within [0, 1] (and not constant) was scaled but never
# normalised; normalised real images would hold values below 0 in every channel.
UNNORMALISED_LOW = -0.5
DATA_CHECK_HINT = "or pass --no-data-check"


def value_sample(arr: np.ndarray, per_channel: int = VALUE_SAMPLE, seed: int = 0) -> np.ndarray:
    """(n, C) values of an (N, C, H, W) array: the same n <= ``per_channel`` seeded (sample, pixel)
    positions in every channel, drawn with replacement (all positions when there are fewer)."""
    n, c = arr.shape[:2]
    flat = arr.reshape(n, c, -1)
    positions = n * flat.shape[2]
    if positions <= per_channel:
        return flat.transpose(0, 2, 1).reshape(-1, c)
    rng = np.random.default_rng(seed)
    return flat[rng.integers(0, n, per_channel), :, rng.integers(0, flat.shape[2], per_channel)]


def check_array_values(ds: Dataset, pre: Preprocessing | None, allow: bool = False) -> None:
    """Refuse a preprocessed array whose dtype or values contradict normalised model inputs.

    No-op for image datasets and when ``allow`` (``--no-data-check``). Raises InputError (one
    line naming the likely fix and ``--no-data-check``) for: an integer or bool dtype in the file
    (raw pixels); NaN/inf; with ``pre`` mean/std unknown, values beyond +-RAW_LIMIT or pixel-like
    non-negative data; with mean/std known, a channel's 0.5/99.5 % quantiles outside its normalised
    range widened by one range width on each side, its mean outside that range (+- a tenth of its
    width), or all data in [0, 1] for a model whose normalised range reaches below -0.5. Thresholds:
    see the constants above. Works on ``value_sample`` (4096 values per channel) of ``VALUE_ROWS`` seeded samples.
    """
    if allow or ds.kind != "array" or ds.array is None:
        return
    name = Path(ds.source).name
    dtype = np.dtype(ds.source_dtype or ds.array.dtype)
    if not np.issubdtype(dtype, np.floating):
        raise InputError(f"{name}: a {dtype} array looks like raw pixels; a .npy/.npz must hold float images already "
                         f"preprocessed (resize, /255, normalise with mean/std), {DATA_CHECK_HINT}")
    # a few seeded rows, read alone: a memory-mapped .npy is not paged in whole
    x = value_sample(ds.rows(sample_indices(len(ds), VALUE_ROWS, 0))).astype(np.float64)
    if not np.isfinite(x).all():
        raise InputError(f"{name}: the array holds NaN or inf values; fix the preprocessing, {DATA_CHECK_HINT}")
    lo, hi = np.quantile(x, VALUE_QUANTILE, axis=0), np.quantile(x, 1.0 - VALUE_QUANTILE, axis=0)
    vmin, vmax = float(x.min()), float(x.max())
    raw_pixels = (f"{name}: values {vmin:.4g}..{vmax:.4g} look like raw 0-255 pixels, not normalised inputs: divide "
                  f"by 255 and normalise with the model's mean/std, {DATA_CHECK_HINT}")
    if pre is None or not pre.normalisation_known:
        if max(float(np.abs(lo).max()), float(np.abs(hi).max())) > RAW_LIMIT:
            raise InputError(raw_pixels if vmin >= 0 else f"{name}: values {vmin:.4g}..{vmax:.4g} are far outside the "
                             f"range of normalised images (about -3..3): preprocess them, {DATA_CHECK_HINT}")
        if vmin >= 0 and float(hi.max()) > PIXEL_LIKE_HIGH and float((x > 1.0).mean()) >= PIXEL_LIKE_SHARE:
            raise InputError(raw_pixels)
        return
    _check_against_normalisation(name, x, lo, hi, pre, raw_pixels)


def _check_against_normalisation(name: str, x: np.ndarray, lo: np.ndarray, hi: np.ndarray, pre: Preprocessing,
                                 raw_pixels: str) -> None:
    """The mean/std-known part of ``check_array_values``; x: (n, C) sample, lo/hi: (C,) quantiles."""
    c = x.shape[1]
    mean = np.broadcast_to(np.asarray(pre.mean, np.float64), (c,)) if len(pre.mean) in (1, c) else None  # type: ignore[arg-type]
    std = np.broadcast_to(np.asarray(pre.std, np.float64), (c,)) if len(pre.std) in (1, c) else None  # type: ignore[arg-type]
    if mean is None or std is None:
        return  # mean/std for another channel count: check_shape / the model will say so
    a, b = (0.0 - mean) / std, (1.0 - mean) / std
    a, b = np.minimum(a, b), np.maximum(a, b)
    w = b - a
    vmin, vmax = float(x.min()), float(x.max())
    if (a <= UNNORMALISED_LOW).all() and vmin >= 0.0 and vmax <= 1.0 + 1e-6 and (x.max(0) > x.min(0)).all():
        raise InputError(f"{name}: values lie in 0..1: scaled to [0, 1] but not normalised; the model expects (x - mean) "
                         f"/ std, range {a.min():.2f}..{b.max():.2f}, {DATA_CHECK_HINT}")
    outside = (lo < a - BAND_SLACK * w) | (hi > b + BAND_SLACK * w)
    means = x.mean(axis=0)
    off_mean = (means < a - MEAN_SLACK * w) | (means > b + MEAN_SLACK * w)
    if outside.any() or off_mean.any():
        if vmin >= 0.0 and vmax > 2.0 * max(float(b.max()), 1.0):
            raise InputError(raw_pixels)
        ch = int(np.argmax(outside | off_mean))
        raise InputError(f"{name}: channel {ch} values {lo[ch]:.3g}..{hi[ch]:.3g} (mean {means[ch]:.3g}) do not fit "
                         f"normalised inputs ({a[ch]:.2f}..{b[ch]:.2f} for mean/std "
                         f"{mean[ch]:g}/{std[ch]:g}): preprocess with them, {DATA_CHECK_HINT}")
