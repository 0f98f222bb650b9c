"""`vitdeploy validate`'s options: the run's settings (``ValidateConfig``) and the thresholds per
precision (presets or a JSON file, ``load_thresholds``)."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, replace
from pathlib import Path

from vitdeploy.core.compare import MAX_TOP1_DROP, PRECISION_THRESHOLDS, Thresholds
from vitdeploy.core.errors import InputError, UsageError

VALIDATE_SCHEMA = "vitdeploy.validate/1"


PRESETS: dict[str, dict[str, Thresholds]] = {
    "default": PRECISION_THRESHOLDS,
    "strict": {
        "fp32": Thresholds(max_abs=1e-4, cosine_min=0.99999, top1_agreement=1.0),
        "fp16": Thresholds(max_abs=None, cosine_min=0.9999, top1_agreement=0.99),
        "int8": Thresholds(max_abs=None, cosine_min=0.99, top1_agreement=0.97),
    },
    "loose": {
        "fp32": Thresholds(max_abs=1e-3, cosine_min=0.9999, top1_agreement=0.99),
        "fp16": Thresholds(max_abs=None, cosine_min=0.995, top1_agreement=0.95),
        "int8": Thresholds(max_abs=None, cosine_min=0.95, top1_agreement=0.90),
    },
}


@dataclass(frozen=True)
class ValidateConfig:
    reference: str
    candidates: tuple[str, ...]
    data: Path
    checkpoint: Path | None = None  # for a zoo-model reference
    samples: int | None = 256  # None: all of the data
    thresholds: dict[str, Thresholds] = field(default_factory=lambda: dict(PRECISION_THRESHOLDS))
    max_top1_drop: dict[str, float] = field(default_factory=lambda: dict(MAX_TOP1_DROP))
    batch_size: int = 8
    seed: int = 0
    threads: int | None = None
    backends: dict[str, str] = field(default_factory=dict)  # artifact -> backend override
    on_error: str = "skip"
    data_check: bool = True  # refuse .npy/.npz data whose values are not normalised inputs (vitdeploy.data.checks.check_array_values)
    decode_workers: int | None = None  # image decoder threads (default: vitdeploy.data.batches.decode_workers)
    cache_dir: Path | None = None  # per-artifact partial results, to resume (default: $VITDEPLOY_CACHE/validate)

    def __post_init__(self) -> None:
        if not self.candidates:
            raise UsageError("give at least one candidate to validate against the reference")
        if self.samples is not None and self.samples < 1:
            raise UsageError("--samples must be >= 1")


# Each key of a thresholds file and the values it may take: (low, high), both included.
THRESHOLD_RANGES: dict[str, tuple[float, float]] = {
    "max_abs": (0.0, math.inf), "cosine_min": (0.0, 1.0), "top1_agreement": (0.0, 1.0), "top5_agreement": (0.0, 1.0),
    "max_top1_drop": (0.0, 100.0),
}


def _check_threshold(path: Path, precision: str, key: str, value: object) -> None:
    """UsageError naming the key and its allowed range for an unknown key or an out-of-range value."""
    if key not in THRESHOLD_RANGES:
        raise UsageError(f"{path}: unknown threshold {precision}.{key}; allowed: {', '.join(THRESHOLD_RANGES)}")
    lo, hi = THRESHOLD_RANGES[key]
    if value is None:
        return
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not lo <= value <= hi:
        where = f"[{lo:g}, {hi:g}]" if math.isfinite(hi) else f">= {lo:g}"
        raise UsageError(f"{path}: {precision}.{key} is {json.dumps(value)}; it must be a number in {where} or null")


def load_thresholds(spec: str | None) -> tuple[dict[str, Thresholds], dict[str, float]]:
    """A preset name (default, strict, loose) or a JSON file {"int8": {"cosine_min": 0.99, "max_top1_drop": 1.0}, ...}."""
    if spec is None or spec in PRESETS:
        return dict(PRESETS[spec or "default"]), dict(MAX_TOP1_DROP)
    path = Path(spec)
    if not path.is_file():
        raise UsageError(f"--thresholds {spec!r} is neither a preset ({', '.join(PRESETS)}) nor a JSON file")
    try:
        raw = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: invalid JSON ({exc})") from exc
    thresholds, drops = dict(PRECISION_THRESHOLDS), dict(MAX_TOP1_DROP)
    shape = f"{path}: expected {{precision: {{{', '.join(THRESHOLD_RANGES)}: number or null}}}} with precision in fp32/fp16/int8"
    if not isinstance(raw, dict):
        raise UsageError(shape)
    for precision, values in raw.items():
        if precision not in thresholds or not isinstance(values, dict):
            raise UsageError(shape)
        for key, value in values.items():
            _check_threshold(path, precision, key, value)
        values = dict(values)
        if "max_top1_drop" in values:
            drop = values.pop("max_top1_drop")
            if drop is None:  # null: no drop limit
                drops.pop(precision, None)
            else:
                drops[precision] = float(drop)
        thresholds[precision] = replace(thresholds[precision], **values)
    return thresholds, drops

