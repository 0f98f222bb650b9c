"""The 1000 ILSVRC-2012 (ImageNet-1k) classes as WordNet ids, in the standard order.

Class index i of every ImageNet-1k classifier (timm, torchvision, DeiT, T2T-ViT, ...) is the i-th
wnid of the sorted list of the 1000 ILSVRC-2012 wnids: ``n01440764`` (tench) is 0, ``n02085620``
(Chihuahua) 151, ``n02123045`` (tabby) 281, ``n04037443`` (racer) 751. A validation folder cut to
a subset of classes must still score against those indices, not against 0..k-1.

The list is ``imagenet_synsets.txt`` beside this module, copied from timm 1.0.31
(``timm/data/_info/imagenet_synsets.txt``, Apache License 2.0); its first line names the source.
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path

NUM_CLASSES = 1000
WNID_PATTERN = re.compile(r"n\d{8}")
_SYNSETS = Path(__file__).with_name("imagenet_synsets.txt")


@lru_cache(maxsize=1)
def wnids() -> tuple[str, ...]:
    """The 1000 ImageNet-1k wnids in class-index order (sorted); checked on load."""
    lines = [ln.strip() for ln in _SYNSETS.read_text().splitlines()]
    ids = tuple(ln for ln in lines if ln and not ln.startswith("#"))
    if len(ids) != NUM_CLASSES or len(set(ids)) != NUM_CLASSES or list(ids) != sorted(ids) or not all(
            WNID_PATTERN.fullmatch(w) for w in ids):
        raise RuntimeError(f"{_SYNSETS} is damaged: expected {NUM_CLASSES} sorted unique WordNet ids")
    return ids


@lru_cache(maxsize=1)
def _index() -> dict[str, int]:
    return {w: i for i, w in enumerate(wnids())}


def looks_like_wnid(name: str) -> bool:
    """Whether ``name`` has the form of a WordNet noun id (``n`` + 8 digits), ImageNet-1k or not."""
    return WNID_PATTERN.fullmatch(name) is not None


def is_imagenet1k_wnid(name: str) -> bool:
    """Whether ``name`` is one of the 1000 ImageNet-1k wnids."""
    return name in _index()


def class_index(wnid: str) -> int:
    """The ImageNet-1k class index of ``wnid`` (KeyError when it is not one of the 1000)."""
    return _index()[wnid]
