"""What a registered model is: architecture facts and preprocessing, independent of torch."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
INCEPTION_MEAN = (0.5, 0.5, 0.5)
INCEPTION_STD = (0.5, 0.5, 0.5)


# Spec fields every family's `*_tiny_test` variant shares (32 px, 10 classes, for tests).
TINY_TEST_SPEC = dict(input_size=(3, 32, 32), num_classes=10, crop_pct=1.0, interpolation="bilinear",
                      mean=INCEPTION_MEAN, std=INCEPTION_STD, tiny=True)


@dataclass(frozen=True)
class ModelSpec:
    """Facts about one registered variant.

    ``official_params`` is the parameter count of the official implementation (what its
    checkpoint holds); the zoo's own count is checked against it by the tests.
    """

    name: str
    family: str
    input_size: tuple[int, int, int] = (3, 224, 224)
    num_classes: int = 1000
    interpolation: str = "bicubic"
    crop_pct: float = 0.875
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    paper_top1: float | None = None  # ImageNet-1k top-1 reported by the paper / official repo
    macs_g: float | None = None  # GMACs (multiply-accumulates) at input_size, as reported
    official_params: int | None = None  # exact count from the official code
    source: str = ""  # official repository
    tiny: bool = False  # test-sized variant, not an official one
    notes: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        for k in ("input_size", "mean", "std"):
            d[k] = list(d[k])
        return d

    def preprocessing(self) -> dict[str, Any]:
        """The preprocessing block written into manifests."""
        return {
            "input_size": list(self.input_size),
            "interpolation": self.interpolation,
            "crop_pct": self.crop_pct,
            "mean": list(self.mean),
            "std": list(self.std),
            "layout": "NCHW",
            "channel_order": "RGB",
        }
