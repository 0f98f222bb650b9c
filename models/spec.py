"""What a registered model is: architecture facts and preprocessing, independent of torch."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from vitdeploy.core.preprocessing import IMAGENET_MEAN, IMAGENET_STD, INCEPTION_MEAN, INCEPTION_STD, Preprocessing

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "INCEPTION_MEAN", "INCEPTION_STD", "LISTED", "Listed", "ModelSpec",
           "TINY_TEST_SPEC"]


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

    def preprocessing(self) -> Preprocessing:
        """How the variant was trained to see images (all of it known); manifests get its ``to_manifest()``."""
        return Preprocessing(self.input_size, self.mean, self.std, self.interpolation, self.crop_pct)


@dataclass(frozen=True)
class Listed:
    """What `vitdeploy models` lists for a variant, kept as data so the listing needs no torch.

    The reported figures live here only: a variant's spec takes ``paper_top1``, ``macs_g`` and
    (official variants) ``official_params`` from its row when it registers. ``params`` is the
    official code's count (tests build the models to check the zoo's equals it); the family, input
    size and ``tiny`` must equal the registration's (checked when the family registers).
    """

    family: str
    params: int
    px: int  # square input side: input_size (3, px, px)
    paper_top1: float | None = None
    macs_g: float | None = None
    tiny: bool = False

    @property
    def input_size(self) -> tuple[int, int, int]:
        return (3, self.px, self.px)


# Every registered variant, in listing order (family by family).
LISTED: dict[str, Listed] = {
    "ceit_tiny_patch16_224":            Listed("ceit", 6_356_904, 224, 76.4, 1.2),
    "ceit_small_patch16_224":           Listed("ceit", 24_204_840, 224, 82.0, 4.5),
    "ceit_base_patch16_224":            Listed("ceit", 94_405_416, 224, 82.5, 17.0),
    "ceit_tiny_patch16_384":            Listed("ceit", 6_429_864, 384, 78.8, 3.6),
    "ceit_small_patch16_384":           Listed("ceit", 24_350_760, 384, 83.3, 12.9),
    "ceit_tiny_test":                   Listed("ceit", 165_978, 32, tiny=True),
    "convit_tiny":                      Listed("convit", 5_710_512, 224, 73.1, 1.0),
    "convit_small":                     Listed("convit", 27_777_322, 224, 81.3, 5.4),
    "convit_base":                      Listed("convit", 86_540_040, 224, 82.4, 17.0),
    "convit_tiny_plus":                 Listed("convit", 9_972_912, 224, 76.7, 2.0),
    "convit_small_plus":                Listed("convit", 48_979_882, 224, 82.2, 10.0),
    "convit_base_plus":                 Listed("convit", 153_134_856, 224, 82.5, 30.0),
    "convit_tiny_test":                 Listed("convit", 113_822, 32, tiny=True),
    "SReT_T":                           Listed("sret", 4_755_979, 224, 76.0, 1.1),
    "SReT_LT":                          Listed("sret", 4_988_024, 224, 76.7, 1.2),
    "SReT_S":                           Listed("sret", 20_899_692, 224, 81.9, 4.2),
    "SReT_T_distill":                   Listed("sret", 4_755_979, 224, 77.6, 1.1),
    "SReT_LT_distill":                  Listed("sret", 4_988_024, 224, 77.7, 1.2),
    "SReT_T_wo_slice":                  Listed("sret", 4_755_979, 224, 76.1, 1.4),
    "SReT_LT_wo_slice":                 Listed("sret", 4_988_024, 224, 76.8, 1.4),
    "SReT_S_wo_slice":                  Listed("sret", 20_899_692, 224, 82.0, 4.7),
    "SReT_LT_wo_slice_distill":         Listed("sret", 4_988_024, 224, 77.9, 1.4),
    "SReT_S_wo_slice_finetune_384":     Listed("sret", 21_091_212, 384, 83.8, 18.5),
    "sret_tiny_test":                   Listed("sret", 14_603, 32, tiny=True),
    "t2t_vit_7":                        Listed("t2t_vit", 4_310_222, 224, 71.7, 1.1),
    "t2t_vit_10":                       Listed("t2t_vit", 5_889_230, 224, 75.2, 1.5),
    "t2t_vit_12":                       Listed("t2t_vit", 6_941_902, 224, 76.5, 1.8),
    "t2t_vit_14":                       Listed("t2t_vit", 21_545_550, 224, 81.5, 4.8),
    "t2t_vit_19":                       Listed("t2t_vit", 39_177_422, 224, 81.9, 8.5),
    "t2t_vit_24":                       Listed("t2t_vit", 64_105_934, 224, 82.3, 13.8),
    "t2t_vit_t_14":                     Listed("t2t_vit", 21_541_070, 224, 81.7, 6.1),
    "t2t_vit_t_19":                     Listed("t2t_vit", 39_172_942, 224, 82.4, 9.8),
    "t2t_vit_t_24":                     Listed("t2t_vit", 64_101_454, 224, 82.6, 15.0),
    "t2t_vit_tiny_test":                Listed("t2t_vit", 93_600, 32, tiny=True),
    "t2t_vit_t_tiny_test":              Listed("t2t_vit", 93_248, 32, tiny=True),
    "deit_tiny_patch16_224":            Listed("vit", 5_717_416, 224, 72.2, 1.3),
    "deit_small_patch16_224":           Listed("vit", 22_050_664, 224, 79.8, 4.6),
    "deit_base_patch16_224":            Listed("vit", 86_567_656, 224, 81.8, 17.6),
    "deit_tiny_distilled_patch16_224":  Listed("vit", 5_910_800, 224, 74.5, 1.3),
    "deit_small_distilled_patch16_224": Listed("vit", 22_436_432, 224, 81.2, 4.7),
    "deit_base_distilled_patch16_224":  Listed("vit", 87_338_192, 224, 83.4, 17.7),
    "vit_tiny_test":                    Listed("vit", 114_250, 32, tiny=True),
}
