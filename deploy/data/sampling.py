"""Seeded sampling: which samples a command uses, deterministic in its seed.

Everything draws from one permutation (``seeded_order``): validate's subset of n (``sample_indices``)
is its first n, quantize's held-out images (``holdout_split``) its first ``holdout_size``, the
calibration images the ones after them. So with the same seed, validating n held-out images
(``vitdeploy deploy``) scores exactly the images quantize held out and never calibrated on.
"""

from __future__ import annotations

import numpy as np

HOLDOUT_MIN, HOLDOUT_MAX = 8, 256  # default held-out count: samples // 8 within these bounds


def seeded_order(n: int, seed: int) -> np.ndarray:
    """The permutation of range(n) that every seeded selection of ``seed`` takes its samples from."""
    return np.random.default_rng(seed).permutation(n)


def sample_indices(n: int, samples: int | None, seed: int) -> np.ndarray:
    """A deterministic subset (all of it, shuffled, when samples is None or >= n): the first ``samples``
    of ``seeded_order``, sorted."""
    return np.sort(seeded_order(n, seed)[: samples if samples is not None else n])


def max_holdout(available: int) -> int:
    """The most samples that may be held out of ``available``: half, so calibration keeps the rest."""
    return available // 2


def holdout_size(n: int, samples: int, holdout: int | None) -> int:
    """Samples held out of ``n``: ``holdout`` (default samples // 8 within 8..256), at most ``max_holdout``."""
    hold = holdout if holdout is not None else int(np.clip(samples // 8, HOLDOUT_MIN, HOLDOUT_MAX))
    return min(hold, max_holdout(n))


def holdout_split(n: int, samples: int, holdout: int | None, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Disjoint (calibration, held-out) indices, both sorted, deterministic in ``seed``: the held-out ones
    are ``sample_indices(n, hold, seed)``, the calibration ones the next ``samples`` of the same order."""
    order = seeded_order(n, seed)
    hold = holdout_size(n, samples, holdout)
    return np.sort(order[hold: hold + samples]), np.sort(order[:hold])
