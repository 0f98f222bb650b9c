"""Calibration / evaluation data: image folders, image lists, or preprocessed .npy/.npz arrays.

Images are preprocessed the way the model was trained (from the manifest): resize the shorter
side to size / crop_pct with the model's interpolation, center crop, scale to [0, 1],
normalise with mean/std, NCHW float32; 16-bit and float images are first brought to 8 bits
(``to_rgb8``). Preprocessed arrays need only their sample shape (``Preprocess.for_array``,
``resolve_preprocess``) and are refused when their dtype or values are not normalised inputs
(``check_array_values``, overridable). Sampling is deterministic (seed). Undecodable files
are counted and named, then skipped or fatal (``on_error``), never silently dropped.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import struct
import warnings
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vitdeploy.core.errors import InputError, UsageError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".ppm", ".tif", ".tiff")
ARRAY_KEYS = ("images", "x", "data", "inputs", "input")
LABEL_KEYS = ("labels", "y", "targets", "label")


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


def to_rgb8(img):
    """Any PIL image -> 8-bit RGB PIL image, keeping the picture of high-bit-depth images.

    ``Image.convert("RGB")`` clips single-channel 16-bit and 32-bit integer images to 0..255 (a
    16-bit image turns flat white) and truncates float images (0..1 floats turn flat black), so:

    - ``I;16`` / ``I;16L`` / ``I;16B`` / ``I;16N`` (unsigned 16-bit): value >> 8 (0..65535 -> 0..255).
    - ``I`` and other integer modes (32-bit or signed 16-bit; no bit depth is recorded): values
      within 0..255 are used as they are, within 0..65535 taken as 16-bit (>> 8), else min-max scaled.
    - ``F`` (float): NaN -> 0; within [0, 1] scaled by 255, within [0, 255] used as they are,
      else min-max scaled to 0..255 (a constant image is clipped to 0..255).

    16-bit RGB/RGBA PNGs and TIFFs already open as 8-bit RGB/RGBA in Pillow. Every other mode
    (RGB, RGBA, LA, L, 1, P, CMYK, YCbCr, ...) goes through Pillow's ``convert("RGB")`` unchanged.
    """
    from PIL import Image

    if img.mode == "RGB":
        return img
    if img.mode.startswith("I;16") and not img.mode.endswith("S"):
        gray = (np.asarray(img).astype(np.uint16) >> 8).astype(np.uint8)
        return Image.fromarray(gray).convert("RGB")
    if img.mode == "F" or img.mode.startswith("I"):
        return Image.fromarray(_scale_to_uint8(np.asarray(img), is_float=img.mode == "F")).convert("RGB")
    return img.convert("RGB")


def _scale_to_uint8(arr: np.ndarray, is_float: bool) -> np.ndarray:
    """A 2-D integer or float array -> uint8 0..255 by the rules of ``to_rgb8``."""
    a = np.nan_to_num(arr.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    lo, hi = (float(a.min()), float(a.max())) if a.size else (0.0, 0.0)
    if is_float and lo >= 0.0 and hi <= 1.0:
        a = a * 255.0
    elif lo >= 0.0 and hi <= 255.0:
        pass
    elif not is_float and lo >= 0.0 and hi <= 65535.0:
        return (a.astype(np.uint32) >> 8).astype(np.uint8)
    elif hi > lo:
        a = (a - lo) * (255.0 / (hi - lo))
    return np.clip(np.round(a), 0, 255).astype(np.uint8)


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


@dataclass
class Dataset:
    """A resolved data source: either image files or an in-memory preprocessed array."""

    source: str
    kind: str  # "images" | "array"
    files: list[Path] = field(default_factory=list)
    labels: np.ndarray | None = None
    classes: list[str] | None = None
    array: np.ndarray | None = None  # (N, C, H, W) float32
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (file, reason)
    source_dtype: str | None = None  # the array's dtype in the file, before the float32 conversion
    # How ``labels`` were made (see ``labels_for``): "index" (folders named 0..999 keep their number),
    # "imagenet" (folders named by ImageNet-1k wnids: their standard 1000-class index), "sorted"
    # (other folder names, numbered in sorted order), "array" (labels stored in the .npz); None: no labels.
    label_scheme: str | None = None

    def __len__(self) -> int:
        return len(self.files) if self.kind == "images" else int(self.array.shape[0])  # type: ignore[union-attr]


def open_dataset(path: str | os.PathLike) -> Dataset:
    """Resolve DATA: a folder (recursive; class subfolders give labels), a .txt list, or .npy/.npz."""
    p = Path(path)
    if not p.exists():
        raise InputError(f"data {p} not found")
    if p.is_dir():
        files = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise InputError(f"no images ({', '.join(IMAGE_SUFFIXES)}) under {p}")
        rel_parents = {f.relative_to(p).parts[0] for f in files if len(f.relative_to(p).parts) > 1}
        labels = classes = scheme = None
        if rel_parents and all(len(f.relative_to(p).parts) == 2 for f in files):  # ImageFolder layout
            classes, scheme, index = _folder_classes(rel_parents)
            labels = np.array([index[f.relative_to(p).parts[0]] for f in files], dtype=np.int64)
        return Dataset(str(p), "images", files=files, labels=labels, classes=classes, label_scheme=scheme)
    suffix = p.suffix.lower()
    if suffix in (".npy", ".npz"):
        return _open_array(p)
    if suffix in (".txt", ".lst", ".list"):
        lines = [ln.strip() for ln in p.read_text().splitlines() if ln.strip() and not ln.startswith("#")]
        files = [(p.parent / ln) if not Path(ln).is_absolute() else Path(ln) for ln in lines]
        if not files:
            raise InputError(f"image list {p} is empty")
        return Dataset(str(p), "images", files=files)
    raise InputError(f"unsupported data {p}: give a folder of images, a .txt list of image paths, or a .npy/.npz array")


def _open_array(p: Path) -> Dataset:
    try:
        loaded = np.load(p, allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise InputError(f"cannot read {p}: {exc}") from exc
    labels = None
    if isinstance(loaded, np.ndarray):
        arr = loaded
    else:
        keys = list(loaded.keys())
        key = next((k for k in ARRAY_KEYS if k in keys), keys[0] if len(keys) == 1 else None)
        if key is None:
            raise InputError(f"{p} holds {keys}: name the images array one of {', '.join(ARRAY_KEYS)}")
        arr = loaded[key]
        lkey = next((k for k in LABEL_KEYS if k in keys), None)
        labels = np.asarray(loaded[lkey]).astype(np.int64) if lkey else None
    if arr.ndim != 4:
        raise InputError(f"{p}: expected a 4-D N,C,H,W array of preprocessed images, got shape {arr.shape}")
    if arr.shape[0] == 0:
        raise InputError(f"{p} holds no samples")
    if labels is not None and labels.shape[0] != arr.shape[0]:
        raise InputError(f"{p}: {labels.shape[0]} labels for {arr.shape[0]} images")
    if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_) or np.iscomplexobj(arr):
        raise InputError(f"{p}: expected a real numeric N,C,H,W array of preprocessed images, got dtype {arr.dtype}")
    return Dataset(str(p), "array", array=np.asarray(arr, dtype=np.float32), labels=labels,
                   source_dtype=str(arr.dtype), label_scheme=None if labels is None else "array")


# Class folders -> labels, and whether those labels can be a given model's classes (labels_for).

CHANCE_ALPHA = 1e-3  # reference top-1 no better than guessing at this significance: the labels mean nothing


def _folder_classes(names: set[str]) -> tuple[list[str], str, dict[str, int]]:
    """(classes, label scheme, folder -> label) for ImageFolder class folders.

    Folders named by class index ("0".."999") keep their numbers, and folders that are all ImageNet-1k
    WordNet ids ("n01440764"..) take their index in the standard 1000-class order (``calib.imagenet``),
    so a subset of classes still scores against the model's outputs; other names are indexed in
    sorted order (torchvision's ImageFolder)."""
    from vitdeploy.data import imagenet

    if all(c.isdigit() for c in names):
        classes = sorted(names, key=int)
        return classes, "index", {c: int(c) for c in classes}
    classes = sorted(names)
    if all(imagenet.is_imagenet1k_wnid(c) for c in classes):
        return classes, "imagenet", {c: imagenet.class_index(c) for c in classes}
    return classes, "sorted", {c: i for i, c in enumerate(classes)}


@dataclass(frozen=True)
class LabelMap:
    """The labels of a dataset for a model with ``num_classes`` outputs (see ``labels_for``)."""

    labels: np.ndarray | None  # one per dataset sample, an index into the model's outputs; None: no labels
    scheme: str | None  # Dataset.label_scheme, or "sorted" where wnid folders fell back to sorted order
    num_classes: int | None
    meaningful: bool  # labels exist and can be the model's classes: accuracy on them means something
    warnings: tuple[str, ...] = ()


def labels_for(ds: Dataset, num_classes: int | None) -> LabelMap:
    """``ds``'s labels for a model with ``num_classes`` outputs, with warnings where they cannot match.

    - folders named by class index and labels of a .npz: as they are;
    - folders named by ImageNet-1k wnids: their standard index (0..999) for a 1000-output model
      (or ``num_classes`` None); for another model, sorted order 0..k-1 (ImageFolder), which can only be
      its classes when it has exactly k outputs (a warning either way; not meaningful otherwise);
    - other names: sorted order; names that look like WordNet ids but are not all ImageNet-1k classes
      cannot be a 1000-output model's indices (not meaningful); fewer or more folders than outputs
      is a warning (sorted order is right only for a model trained on exactly these folders);
    - any label outside 0..num_classes-1: not meaningful.

    Not meaningful means: report no accuracy from these labels (and gate nothing on it). A reference
    that scores at chance on meaningful-looking labels is caught after inference: ``chance_level``.
    """
    from vitdeploy.data import imagenet

    if ds.labels is None:
        return LabelMap(None, None, num_classes, False)
    name = Path(ds.source).name
    labels, scheme, classes = ds.labels, ds.label_scheme, list(ds.classes or [])
    warns: list[str] = []
    ok = True
    if scheme == "imagenet" and num_classes is not None and num_classes != imagenet.NUM_CLASSES:
        folder = {c: i for i, c in enumerate(classes)}
        labels, scheme = np.array([folder[f.parent.name] for f in ds.files], dtype=np.int64), "sorted"
        if len(classes) == num_classes:
            warns.append(f"{name}: class folders are ImageNet-1k WordNet ids but the model has {num_classes} outputs, "
                         f"not 1000: numbered 0..{num_classes - 1} in sorted order, right only for a model trained "
                         "on exactly these folders in that order")
        else:
            ok = False
            warns.append(f"{name}: {len(classes)} class folders are ImageNet-1k WordNet ids but the model has "
                         f"{num_classes} outputs, not 1000: the labels cannot be its classes")
    elif scheme == "sorted" and classes:
        not_1k = [c for c in classes if not imagenet.is_imagenet1k_wnid(c)]
        if num_classes == imagenet.NUM_CLASSES and any(imagenet.looks_like_wnid(c) for c in classes):
            ok = False
            warns.append(f"{name}: class folders look like WordNet ids but {len(not_1k)} of {len(classes)} are not "
                         f"ImageNet-1k classes (e.g. {not_1k[0]}): numbered in sorted order, they cannot be the "
                         "1000-class model's indices")
        elif num_classes is not None and len(classes) != num_classes:
            warns.append(f"{name}: {len(classes)} class folders numbered 0..{len(classes) - 1} in sorted order for a "
                         f"model with {num_classes} outputs: right only if its first classes are these folders in "
                         f"this order; name the folders by class index (0..{num_classes - 1}) or, for ImageNet-1k, "
                         "by WordNet id (n01440764/ ...)")
    if ok and num_classes is not None and labels.size:
        out = (labels < 0) | (labels >= num_classes)
        if out.any():
            ok = False
            warns.append(f"{name}: {int(out.sum())} of {labels.size} labels lie outside the model's {num_classes} "
                         f"classes (e.g. {int(labels[out][0])}): the labels cannot be its classes")
    return LabelMap(labels, scheme, num_classes, ok, tuple(warns))


def chance_level(top1: float, samples: int, num_classes: int, alpha: float = CHANCE_ALPHA) -> bool:
    """Whether a top-1 accuracy of ``top1`` on ``samples`` labelled samples is no better than guessing
    among ``num_classes`` classes: one-sided binomial test, P(hits >= observed | p = 1/num_classes) > alpha.
    A reference model there means labels that do not follow its class order (or untrained weights)."""
    import math

    if samples < 1 or num_classes < 2:
        return False
    hits = int(round(top1 * samples))
    p = 1.0 / num_classes
    lp, lq = math.log(p), math.log1p(-p)
    log_n = math.lgamma(samples + 1)
    tail = math.fsum(math.exp(log_n - math.lgamma(k + 1) - math.lgamma(samples - k + 1) + k * lp + (samples - k) * lq)
                     for k in range(hits, samples + 1))
    return tail > alpha


def chance_warning(top1: float, samples: int, num_classes: int) -> str:
    """The warning for a reference whose top-1 is at chance level (``chance_level``)."""
    return (f"the reference's top-1 {top1:.2%} on {samples} labelled samples is at chance level for {num_classes} "
            f"classes ({1.0 / num_classes:.2%}): the labels do not follow the model's class order (or the model "
            "is untrained); top-1 figures are not meaningful and not counted")


def fits(model: tuple[int, ...], got: tuple[int, ...]) -> bool:
    """Whether samples of shape ``got`` fit a model input ``model`` whose dynamic dimensions are -1."""
    return len(model) == len(got) and all(m in (-1, g) for m, g in zip(model, got))


def _channels_last(model: tuple[int, ...]) -> bool:
    """Whether a model's (C, H, W) input reads as (H, W, C): 1 or 3 channels last, not first."""
    return len(model) == 3 and model[2] in (1, 3) and model[0] not in (1, 3)


def check_shape(ds: Dataset, pre: Preprocess, model_shape: tuple[int, ...] | None = None) -> None:
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
VALUE_SAMPLE = 4096  # values drawn per channel (seeded, across all samples): fast on any array size
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


def check_array_values(ds: Dataset, pre: Preprocess | None, allow: bool = False) -> None:
    """Refuse a preprocessed array whose dtype or values contradict normalised model inputs.

    No-op for image datasets and when ``allow`` (``--no-data-check``). Raises InputError (one
    line naming the likely fix and ``--no-data-check``) for: an integer or bool dtype in the file
    (raw pixels); NaN/inf; with ``pre`` mean/std unknown, values beyond +-RAW_LIMIT or pixel-like
    non-negative data; with mean/std known, a channel's 0.5/99.5 % quantiles outside its normalised
    range widened by one range width on each side, its mean outside that range (+- a tenth of its
    width), or all data in [0, 1] for a model whose normalised range reaches below -0.5. Thresholds:
    see the constants above. Works on ``value_sample`` (4096 values per channel).
    """
    if allow or ds.kind != "array" or ds.array is None:
        return
    name = Path(ds.source).name
    dtype = np.dtype(ds.source_dtype or ds.array.dtype)
    if not np.issubdtype(dtype, np.floating):
        raise InputError(f"{name}: a {dtype} array looks like raw pixels; a .npy/.npz must hold float images already "
                         f"preprocessed (resize, /255, normalise with mean/std), {DATA_CHECK_HINT}")
    x = value_sample(ds.array).astype(np.float64)
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


def _check_against_normalisation(name: str, x: np.ndarray, lo: np.ndarray, hi: np.ndarray, pre: Preprocess,
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


def sample_indices(n: int, samples: int | None, seed: int) -> np.ndarray:
    """A deterministic subset (all of it, shuffled, when samples is None or >= n)."""
    order = np.random.default_rng(seed).permutation(n)
    return np.sort(order[: samples if samples is not None else n])


class ImageDecodeError(InputError):
    """A file that does not decode as an image (exit 3): its ``path`` and the decoder's ``reason``."""

    def __init__(self, path: str | os.PathLike, reason: str) -> None:
        super().__init__(f"cannot decode {path}: {reason}")
        self.path, self.reason = str(path), reason


def _decode_errors() -> tuple[type[BaseException], ...]:
    """What reading one image file can raise that is the file's fault, not vitdeploy's: OSError (missing,
    a directory, permission denied, truncated or broken data, unknown format: UnidentifiedImageError),
    ValueError (bad headers, modes that cannot become RGB), the parse errors Pillow's plugins raise on
    broken files (SyntaxError, EOFError, struct.error, zlib.error) and Pillow's DecompressionBombError
    (more than twice ``Image.MAX_IMAGE_PIXELS``)."""
    from PIL import Image

    return OSError, ValueError, SyntaxError, EOFError, struct.error, zlib.error, Image.DecompressionBombError


def decode_image(path: Path):
    """The image at ``path``, fully decoded, as 8-bit RGB (``to_rgb8``; first frame of an animation).

    Raises ImageDecodeError (exit 3) naming the file and the decoder's reason for anything in
    ``_decode_errors``; other exceptions are vitdeploy bugs and propagate. Pillow's warnings (large
    images, palette transparency, corrupt EXIF) are not shown: they concern files that decode."""
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(path) as img:
                img.load()
                rgb = to_rgb8(img)
                return rgb.copy() if rgb is img else rgb  # the with block closes img
    except _decode_errors() as exc:
        reason = str(exc).strip().splitlines()[0][:120] if str(exc).strip() else type(exc).__name__
        raise ImageDecodeError(path, reason) from exc


def _load_one(ds: Dataset, pre: Preprocess, i: int) -> np.ndarray:
    """Sample ``i`` preprocessed: a row of the array, or the image decoded (``decode_image``) and preprocessed."""
    if ds.kind == "array":
        return ds.array[i]  # type: ignore[index]
    return preprocess_image(decode_image(ds.files[i]), pre)


def decode_workers(threads: int | None = None) -> int:
    """Decoder threads by default: the cores the runtime's ``threads`` leave free (half of them when
    unknown), 1 to 4."""
    cores = os.cpu_count() or 1
    return max(1, min(4, cores - threads if threads else cores // 2))


def _loaded(ds: Dataset, pre: Preprocess, indices: np.ndarray, workers: int,
            ahead: int) -> Iterator[tuple[int, Callable]]:
    """(index, result()) for each of ``indices`` in order, where result() returns the sample or raises
    ImageDecodeError. Images are decoded by ``workers`` threads (0: in the caller's thread; Pillow
    releases the GIL) at most ``ahead`` samples ahead of the consumer; closing the iterator (an error,
    Ctrl-C) cancels what is queued and leaves the threads to finish one image each."""
    if ds.kind == "array" or workers < 1:
        for i in indices:
            yield int(i), lambda i=int(i): _load_one(ds, pre, i)
        return
    from collections import deque
    from concurrent.futures import ThreadPoolExecutor

    pool = ThreadPoolExecutor(workers, thread_name_prefix="vitdeploy-decode")
    pending: deque = deque()
    todo = iter(indices)
    try:
        while True:
            while len(pending) < ahead and (i := next(todo, None)) is not None:
                pending.append((int(i), pool.submit(_load_one, ds, pre, int(i))))
            if not pending:
                return
            i, future = pending.popleft()
            yield i, future.result
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


def iter_batches(ds: Dataset, pre: Preprocess, indices: np.ndarray, batch_size: int, on_error: str = "skip",
                 progress: Callable[[int], None] | None = None,
                 workers: int = 1) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield (batch, dataset indices) of preprocessed samples, in the order of ``indices``, decoded by
    ``workers`` threads (0: in the caller's thread) up to a batch and a few samples ahead of the consumer
    (``_loaded``): while the consumer runs one batch, the next one is decoded. A file that does not decode
    (``decode_image``) goes to ds.skipped as (file, reason), or raises InputError under on_error "fail"."""
    check_shape(ds, pre)
    if on_error not in ("skip", "fail"):
        raise UsageError(f"on_error must be skip or fail, not {on_error!r}")
    buf, idx = [], []
    loaded = _loaded(ds, pre, indices, workers, batch_size + 4 * workers)
    try:
        for i, result in loaded:
            try:
                buf.append(result())
            except ImageDecodeError as exc:
                if on_error == "fail":
                    raise
                ds.skipped.append((exc.path, exc.reason))
            else:
                idx.append(i)
            if progress:
                progress(1)
            if len(buf) == batch_size:
                yield np.stack(buf), np.asarray(idx)
                buf, idx = [], []
        if buf:
            yield np.stack(buf), np.asarray(idx)
    finally:
        loaded.close()


def no_decodable_image(ds: Dataset) -> InputError:
    detail = f"; e.g. {ds.skipped[0][0]}: {ds.skipped[0][1]}" if ds.skipped else ""
    return InputError(f"no decodable image in {ds.source} ({len(ds.skipped)} failed{detail})")


def load_samples(ds: Dataset, pre: Preprocess, indices: np.ndarray, on_error: str = "skip",
                 progress: Callable[[int], None] | None = None, workers: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """All selected samples as one array (and their dataset indices), filled in place (no second
    copy while loading). Raises when none decode. For data at scale, iterate ``iter_batches``."""
    x: np.ndarray | None = None
    idx = np.empty(len(indices), dtype=np.int64)
    n = 0
    for batch, i in iter_batches(ds, pre, indices, 64, on_error, progress, workers):
        if x is None:
            x = np.empty((len(indices), *batch.shape[1:]), dtype=batch.dtype)
        x[n:n + len(batch)], idx[n:n + len(batch)] = batch, i
        n += len(batch)
    if x is None:
        raise no_decodable_image(ds)
    return x[:n], idx[:n]  # the unused tail of skipped images was never written: not resident


def skipped_warning(ds: Dataset, shown: int = 3) -> str | None:
    """One warning line counting and naming the files that did not decode (``ds.skipped``); None if none."""
    if not ds.skipped:
        return None
    root = Path(ds.source)

    def name(f: str) -> str:
        return str(Path(f).relative_to(root)) if root.is_dir() and Path(f).is_relative_to(root) else f

    named = "; ".join(f"{name(f)} ({reason})" for f, reason in ds.skipped[:shown])
    more = f"; and {len(ds.skipped) - shown} more" if len(ds.skipped) > shown else ""
    return f"{len(ds.skipped)} undecodable image(s) skipped: {named}{more}"


def data_hash(ds: Dataset, indices: np.ndarray, pre: Preprocess) -> str:
    """Content hash of the selected samples and the preprocessing (cache key, manifests)."""
    h = hashlib.sha256(pre.key().encode())
    if ds.kind == "array":
        h.update(np.ascontiguousarray(ds.array[indices]).tobytes())  # type: ignore[index]
    else:
        for i in indices:
            f = ds.files[i]
            h.update(str(f.name).encode())
            try:
                h.update(hashlib.sha256(f.read_bytes()).digest())
            except OSError:
                h.update(b"unreadable")
    return h.hexdigest()


def source_fingerprint(path: str | os.PathLike) -> str:
    """A cheap identity of a data source (file hash, or a folder's names, sizes and mtimes)."""
    p = Path(path)
    h = hashlib.sha256()
    if p.is_file():
        with open(p, "rb") as f:
            while block := f.read(1 << 20):
                h.update(block)
    elif p.is_dir():
        for f in sorted(q for q in p.rglob("*") if q.is_file()):
            st = f.stat()
            h.update(f"{f.relative_to(p)}:{st.st_size}:{int(st.st_mtime)}\n".encode())
    return h.hexdigest()
