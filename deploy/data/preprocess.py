"""Preprocessing applied: how raw images become model inputs, as ``core.preprocessing.Preprocessing`` describes.

Images are preprocessed the way the model was trained (from the manifest): resize the shorter
side to size / crop_pct with the model's interpolation (timm's eval transform, ``resize_size``),
center crop, scale to [0, 1], normalise with mean/std, NCHW float32 (``preprocess_image``).
Preprocessed arrays need only their sample shape (``resolve_preprocess`` picks what a dataset needs).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from vitdeploy.core.errors import UsageError
from vitdeploy.core.preprocessing import Preprocessing
from vitdeploy.data.decode import to_rgb8

if TYPE_CHECKING:
    from vitdeploy.data.sources import Dataset


def resolve_preprocess(known: Preprocessing, ds: Dataset) -> Preprocessing:
    """The preprocessing for ``ds`` from what is ``known`` (a manifest's, with options on top): all of
    it for images (``Preprocessing.for_images``; UsageError when input_size, mean or std is unknown);
    for a preprocessed array, what is known: input_size or else the array's (C, H, W) sample shape,
    mean/std or else None (``Preprocessing.for_array``)."""
    if ds.kind != "array" or known.complete:
        return known.for_images()
    return Preprocessing.for_array(known.input_size or ds.array.shape[1:], known.mean, known.std)  # type: ignore[union-attr]


def _pil_filter(name: str):
    from PIL import Image

    table = {"bicubic": Image.Resampling.BICUBIC, "bilinear": Image.Resampling.BILINEAR,
             "nearest": Image.Resampling.NEAREST, "lanczos": Image.Resampling.LANCZOS}
    if name not in table:
        raise UsageError(f"unknown interpolation {name!r}; choose from {', '.join(table)}")
    return table[name]


def resize_size(width: int, height: int, pre: Preprocessing) -> tuple[int, int]:
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


def preprocess_image(img, pre: Preprocessing) -> np.ndarray:
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
