"""The batch sizes an artifact serves (min:opt:max, TensorRT's optimisation-profile terms)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from vitdeploy.core.errors import UsageError


@dataclass(frozen=True)
class BatchRange:
    """Batch sizes the ONNX file serves: min <= opt <= max (TensorRT optimisation profile)."""

    min: int
    opt: int
    max: int

    @property
    def dynamic(self) -> bool:
        return self.min != self.max

    @classmethod
    def parse(cls, text: str) -> BatchRange:
        """'1:4:8' (min:opt:max), '1:8' (opt = min), or '4' (static)."""
        parts = text.strip().split(":")
        if not 1 <= len(parts) <= 3 or not all(re.fullmatch(r"\d+", p) for p in parts):
            raise UsageError(f"invalid batch range {text!r}: expected MIN:OPT:MAX, MIN:MAX or N with positive integers")
        nums = [int(p) for p in parts]
        if len(nums) == 1:
            nums = nums * 3
        elif len(nums) == 2:
            nums = [nums[0], nums[0], nums[1]]
        lo, opt, hi = nums
        if lo < 1 or not lo <= opt <= hi:
            raise UsageError(f"invalid batch range {text!r}: need 1 <= MIN <= OPT <= MAX")
        return cls(lo, opt, hi)

    def __str__(self) -> str:
        return f"{self.min}:{self.opt}:{self.max}"


# What `vitdeploy export` serves when no batch option is given (and the source fixes none).
DEFAULT_BATCH = BatchRange(1, 1, 8)
