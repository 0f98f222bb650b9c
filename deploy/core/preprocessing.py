"""How images become a model's inputs: the one typed description, ``Preprocessing``.

Every layer uses this type: a zoo model's spec gives it (``ModelSpec.preprocessing()``), export
writes it into the manifest (``to_manifest``), the data pipeline applies it
(``vitdeploy.data.preprocess.preprocess_image``), quantize and validate read it back.

One builder per source:

- a model spec: ``ModelSpec.preprocessing()`` (vitdeploy.models.spec), all of it known;
- CLI options: ``vitdeploy.cli.options.preprocessing_options`` (--input-size, --mean, --std), what
  was given, the rest None;
- a manifest: ``Preprocessing.from_manifest`` (its ``preprocessing`` block; missing or null entries None).

A partial description goes on top of another with ``updated`` (its non-None entries win). What a
dataset needs is then made complete: ``for_images`` (input size, mean and std all known; the
interpolation and crop default to bicubic and 0.875) or ``for_array`` (preprocessed samples: the
sample shape is enough, mean/std only when known).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

from vitdeploy.core.errors import UsageError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
INCEPTION_MEAN = (0.5, 0.5, 0.5)
INCEPTION_STD = (0.5, 0.5, 0.5)
DEFAULT_INTERPOLATION = "bicubic"
DEFAULT_CROP_PCT = 0.875
INTERPOLATIONS = ("bicubic", "bilinear", "nearest", "lanczos")
# The entries a preprocessing can leave unknown (None) and another can fill (``updated``).
KNOWN_LATER = ("input_size", "mean", "std", "interpolation", "crop_pct")


@dataclass(frozen=True)
class Preprocessing:
    """How raw images become model inputs, and what the model's inputs look like.

    input_size: (C, H, W). mean/std: per channel, applied to pixels scaled to [0, 1]. interpolation
    and crop_pct: timm's eval transform (resize to size / crop_pct, center crop). Any of these is
    None while unknown (CLI options not given, a manifest without them, preprocessed arrays without
    mean/std). layout and channel_order: what vitdeploy feeds, always NCHW RGB.
    """

    input_size: tuple[int, int, int] | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    interpolation: str | None = None
    crop_pct: float | None = None
    layout: str = "NCHW"
    channel_order: str = "RGB"

    def __post_init__(self) -> None:  # lists (JSON, callers) become tuples: hashable, comparable
        for name in ("input_size", "mean", "std"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, tuple):
                object.__setattr__(self, name, tuple(value))

    # -- builders ------------------------------------------------------------------------------

    @classmethod
    def from_manifest(cls, manifest: Mapping[str, Any] | None) -> Preprocessing:
        """The ``preprocessing`` block of a manifest (a dict, or any Mapping of the manifest's JSON);
        entries that are missing or null stay None."""
        block = (manifest or {}).get("preprocessing") or {}
        get = block.get

        def seq(key: str, conv) -> tuple | None:
            value = get(key)
            return None if value is None else tuple(conv(v) for v in value)

        return cls(seq("input_size", int), seq("mean", float), seq("std", float),  # type: ignore[arg-type]
                   None if get("interpolation") is None else str(get("interpolation")),
                   None if get("crop_pct") is None else float(get("crop_pct")),
                   get("layout") or "NCHW", get("channel_order") or "RGB")

    def updated(self, overrides: Preprocessing | None) -> Preprocessing:
        """This description with the known (non-None) entries of ``overrides`` on top."""
        if overrides is None:
            return self
        return replace(self, **{k: getattr(overrides, k) for k in KNOWN_LATER if getattr(overrides, k) is not None})

    def for_images(self) -> Preprocessing:
        """Complete for decoding images: input_size, mean and std must be known (UsageError
        otherwise); interpolation and crop_pct default to bicubic and 0.875."""
        missing = [k for k in ("input_size", "mean", "std") if getattr(self, k) is None]
        if missing:
            raise UsageError(f"no preprocessing known (missing {', '.join(missing)}): export with vitdeploy to get a "
                             "manifest, or pass --input-size, --mean and --std")
        return replace(self, input_size=tuple(int(v) for v in self.input_size),  # type: ignore[union-attr]
                       mean=tuple(float(v) for v in self.mean), std=tuple(float(v) for v in self.std),  # type: ignore[union-attr]
                       interpolation=self.interpolation or DEFAULT_INTERPOLATION,
                       crop_pct=float(self.crop_pct) if self.crop_pct is not None else DEFAULT_CROP_PCT)

    @classmethod
    def for_array(cls, input_size: tuple[int, ...], mean: tuple[float, ...] | None = None,
                  std: tuple[float, ...] | None = None) -> Preprocessing:
        """For data that is preprocessed already (.npy/.npz): only the (C, H, W) sample shape is
        needed. mean/std, when known, let the value check test the values against them."""
        if (mean is None) != (std is None):
            raise UsageError("give both --mean and --std, or neither")
        return cls(tuple(int(v) for v in input_size), None if mean is None else tuple(float(v) for v in mean),  # type: ignore[arg-type]
                   None if std is None else tuple(float(v) for v in std), DEFAULT_INTERPOLATION, 1.0)

    # -- reading -------------------------------------------------------------------------------

    @property
    def normalisation_known(self) -> bool:
        return self.mean is not None and self.std is not None

    @property
    def complete(self) -> bool:
        """Whether images can be preprocessed with it: input_size, mean and std known."""
        return self.input_size is not None and self.normalisation_known

    def key(self) -> str:
        """What decides the samples it makes (cache keys, data hashes)."""
        return json.dumps([None if self.input_size is None else list(self.input_size),
                           None if self.mean is None else list(self.mean),
                           None if self.std is None else list(self.std), self.interpolation, self.crop_pct])

    def to_manifest(self) -> dict[str, Any]:
        """The ``preprocessing`` block export writes into manifests (every entry, in this order)."""
        return {
            "input_size": None if self.input_size is None else list(self.input_size),
            "interpolation": self.interpolation,
            "crop_pct": self.crop_pct,
            "mean": None if self.mean is None else list(self.mean),
            "std": None if self.std is None else list(self.std),
            "layout": self.layout,
            "channel_order": self.channel_order,
        }

    def to_dict(self) -> dict[str, Any]:
        """Every field, tuples as lists (for digests and JSON documents)."""
        return {f.name: list(v) if isinstance(v := getattr(self, f.name), tuple) else v for f in fields(self)}
