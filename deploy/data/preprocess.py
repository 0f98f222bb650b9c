"""Preprocessing: how raw images become model inputs (``Preprocess``), and the image transform.

Images are preprocessed the way the model was trained (from the manifest): resize the shorter
side to size / crop_pct with the model's interpolation (timm's eval transform, ``resize_size``),
center crop, scale to [0, 1], normalise with mean/std, NCHW float32. Preprocessed arrays need
only their sample shape (``Preprocess.for_array``, ``resolve_preprocess``).

Builders: ``Preprocess.from_manifest`` (images: all of it known), ``Preprocess.for_array``
(preprocessed arrays: the shape, mean/std if known) and ``resolve_preprocess`` (picks one for a
dataset).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from vitdeploy.core.errors import UsageError
from vitdeploy.data.decode import to_rgb8

if TYPE_CHECKING:
    from vitdeploy.data.sources import Dataset


@dataclass(frozen=True)
class Preprocess:
    """How raw images become model inputs, and what the model's inputs look like.

    input_size: (C, H, W). mean/std: per channel, applied to pixels scaled to [0, 1]; None when
    unknown, which only preprocessed arrays allow (see ``for_array``): images cannot be
    normalised without them, and the value check of arrays is then generic.
    """

    input_size: tuple[int, int, int]
    mean: tuple[float, ...] | None
    std: tuple[float, ...] | None
    interpolation: str = "bicubic"
    crop_pct: float = 0.875

    @classmethod
    def from_manifest(cls, manifest: dict | None, **overrides) -> Preprocess:
        """The manifest's ``preprocessing`` with non-None ``overrides`` on top; all of input_size,
        mean and std must be known (UsageError otherwise; a null value counts as unknown)."""
        pre = _known_preprocessing(manifest, overrides)
        missing = [k for k in ("input_size", "mean", "std") if k not in pre]
        if missing:
            raise UsageError(f"no preprocessing known (missing {', '.join(missing)}): export with vitdeploy to get a "
                             "manifest, or pass --input-size, --mean and --std")
        return cls(tuple(int(v) for v in pre["input_size"]), tuple(float(v) for v in pre["mean"]),
                   tuple(float(v) for v in pre["std"]), pre.get("interpolation", "bicubic"),
                   float(pre.get("crop_pct", 0.875)))

    @classmethod
    def for_array(cls, input_size: tuple[int, ...], mean: tuple[float, ...] | None = None,
                  std: tuple[float, ...] | None = None) -> Preprocess:
        """For data that is preprocessed already (.npy/.npz): only the (C, H, W) sample shape is
        needed. mean/std, when known, let ``check_array_values`` test the values against them."""
        if (mean is None) != (std is None):
            raise UsageError("give both --mean and --std, or neither")
        return cls(tuple(int(v) for v in input_size), None if mean is None else tuple(float(v) for v in mean),  # type: ignore[arg-type]
                   None if std is None else tuple(float(v) for v in std), "bicubic", 1.0)

    @property
    def normalisation_known(self) -> bool:
        return self.mean is not None and self.std is not None

    def key(self) -> str:
        return json.dumps([list(self.input_size), None if self.mean is None else list(self.mean),
                           None if self.std is None else list(self.std), self.interpolation, self.crop_pct])


def _known_preprocessing(manifest: dict | None, overrides: dict) -> dict:
    """The manifest's ``preprocessing`` entries and the ``overrides`` on top, both without nulls."""
    pre = {k: v for k, v in dict((manifest or {}).get("preprocessing") or {}).items() if v is not None}
    pre.update({k: v for k, v in overrides.items() if v is not None})
    return pre


def resolve_preprocess(manifest: dict | None, ds: Dataset, **overrides) -> Preprocess:
    """The preprocessing for ``ds``: ``Preprocess.from_manifest`` for images (which need all of it);
    for a preprocessed array, what is known: input_size from the manifest/overrides or else the
    array's (C, H, W) sample shape, mean/std from the manifest/overrides or else None."""
    if ds.kind != "array":
        return Preprocess.from_manifest(manifest, **overrides)
    pre = _known_preprocessing(manifest, overrides)
    if "input_size" in pre and "mean" in pre and "std" in pre:
        return Preprocess.from_manifest(manifest, **overrides)
    size = pre.get("input_size") or ds.array.shape[1:]  # type: ignore[union-attr]
    return Preprocess.for_array(size, pre.get("mean"), pre.get("std"))


def _pil_filter(name: str):
    from PIL import Image

    table = {"bicubic": Image.Resampling.BICUBIC, "bilinear": Image.Resampling.BILINEAR,
             "nearest": Image.Resampling.NEAREST, "lanczos": Image.Resampling.LANCZOS}
    if name not in table:
        raise UsageError(f"unknown interpolation {name!r}; choose from {', '.join(table)}")
    return table[name]


def resize_size(width: int, height: int, pre: Preprocess) -> tuple[int, int]:
    """The (width, height) a ``width`` x ``height`` image is resized to before the center crop, exactly
    as timm's eval transform (``transforms_imagenet_eval``, crop mode "center") computes it.

    Each side's target is floor(size / crop_pct) (224 at 0.9: 248, not 249; 384 at 0.875: 438). A
    square input goes through torchvision's ``Resize(int)``: the shorter side to the target, the
    longer side scaled and truncated (int, not round). Otherwise timm's ``ResizeKeepRatio``: both
    sides divided by the smaller of the two side ratios, rounded."""
    _, h, w = pre.input_size
    th, tw = math.floor(h / pre.crop_pct), math.floor(w / pre.crop_pct)
    if th == tw:
        return (th, int(th * height / width)) if width <= height else (int(th * width / height), th)
    ratio = min(height / th, width / tw)
    return round(width / ratio), round(height / ratio)


def _crop_offset(side: int, crop: int) -> int:
    """Where torchvision's ``CenterCrop`` starts a ``crop`` in an image side of ``side`` pixels; negative
    when the side is shorter: torchvision pads (crop - side) // 2 zeros before it, as PIL's crop does."""
    return round((side - crop) / 2.0) if side >= crop else -((crop - side) // 2)


def preprocess_image(img, pre: Preprocess) -> np.ndarray:
    """PIL image (any mode, see ``to_rgb8``) -> normalised (C, H, W) float32 array: ``resize_size``
    with the model's interpolation, torchvision's center crop, /255, (x - mean) / std.

    Raises UsageError when ``pre`` has no mean/std (images need the model's normalisation)."""
    if pre.mean is None or pre.std is None:
        raise UsageError("images need the model's mean/std: export with vitdeploy to get a manifest, "
                         "or pass --mean and --std")
    _, h, w = pre.input_size
    img = to_rgb8(img)
    nw, nh = resize_size(*img.size, pre)
    img = img.resize((nw, nh), _pil_filter(pre.interpolation))
    left, top = _crop_offset(nw, w), _crop_offset(nh, h)
    img = img.crop((left, top, left + w, top + h))
    arr = np.asarray(img, dtype=np.float32) / 255.0
    arr = (arr - np.asarray(pre.mean, np.float32)) / np.asarray(pre.std, np.float32)
    return np.ascontiguousarray(arr.transpose(2, 0, 1))
