"""Reading checkpoints the way the official repositories saved them, safely.

- ``.pth`` / ``.pth.tar`` / ``.pt`` / ``.bin``: ``torch.load(weights_only=True)`` with a short
  allow-list for what real checkpoints carry besides tensors (the argparse ``Namespace`` of
  DeiT-style training scripts, numpy scalars). Arbitrary pickles are never executed.
- ``.safetensors``.
- Wrapped dicts are unwrapped (``state_dict_ema``, ``model_ema``, ``state_dict``, ``model``),
  a DataParallel ``module.`` prefix is stripped, then the family's filter runs.
- Keys and shapes are compared with the model before loading; any mismatch raises
  CheckpointError with a one-line summary unless ``strict=False``.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from vitdeploy.errors import CheckpointError, InputError

# Preference order when a checkpoint holds several state dicts (the family decides which).
WRAPPER_KEYS_EMA_FIRST = ("state_dict_ema", "model_ema", "state_dict", "model", "net", "params")
WRAPPER_KEYS_RAW_FIRST = ("state_dict", "model", "state_dict_ema", "model_ema", "net", "params")


@dataclass
class LoadReport:
    path: str
    source_key: str | None  # which entry of a wrapped dict was used
    stripped_prefix: str | None
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: list[tuple[str, tuple, tuple]] = field(default_factory=list)  # key, ckpt shape, model shape
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.missing or self.unexpected or self.mismatched)

    def summary(self, limit: int = 3) -> str:
        parts = []
        if self.missing:
            parts.append(f"{len(self.missing)} missing ({_head(self.missing, limit)})")
        if self.unexpected:
            parts.append(f"{len(self.unexpected)} unexpected ({_head(self.unexpected, limit)})")
        if self.mismatched:
            shown = ", ".join(f"{k}: checkpoint {tuple(a)} vs model {tuple(b)}" for k, a, b in self.mismatched[:limit])
            more = f", +{len(self.mismatched) - limit} more" if len(self.mismatched) > limit else ""
            parts.append(f"{len(self.mismatched)} shape mismatch ({shown}{more})")
        return "; ".join(parts) or "all keys match"

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "source_key": self.source_key,
            "stripped_prefix": self.stripped_prefix,
            "missing": self.missing,
            "unexpected": self.unexpected,
            "mismatched": [[k, list(a), list(b)] for k, a, b in self.mismatched],
            "notes": self.notes,
        }


def _head(keys: list[str], limit: int) -> str:
    more = f", +{len(keys) - limit} more" if len(keys) > limit else ""
    return ", ".join(keys[:limit]) + more


def _safe_globals() -> list[Any]:
    allowed: list[Any] = [argparse.Namespace]
    try:  # numpy scalars/dtypes that training scripts store as metrics
        import numpy as np

        allowed += [np.dtype, type(np.dtype("float64")), type(np.dtype("float32")), type(np.dtype("int64"))]
        try:
            from numpy._core.multiarray import scalar  # numpy >= 2
        except ImportError:  # pragma: no cover - numpy 1.x
            from numpy.core.multiarray import scalar  # type: ignore[no-redef]
        allowed.append(scalar)
    except ImportError:  # pragma: no cover
        pass
    return allowed


def read_checkpoint_file(path: str | os.PathLike) -> Any:
    """Read a checkpoint file without executing arbitrary pickled code."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"checkpoint {path} not found")
    if path.suffix == ".safetensors":
        from vitdeploy.deps import require

        st = require("safetensors.torch", "reading .safetensors checkpoints")
        try:
            return st.load_file(str(path), device="cpu")
        except Exception as exc:  # safetensors raises its own error types
            raise CheckpointError(f"cannot read {path}: {exc}") from exc
    try:
        with torch.serialization.safe_globals(_safe_globals()):
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        msg = str(exc).strip().splitlines()
        detail = next((line for line in msg if "Unsupported global" in line or "GLOBAL" in line), msg[0] if msg else "")
        raise CheckpointError(
            f"cannot read {path} safely (weights_only): {detail.strip()}"
        ) from exc


def extract_state_dict(obj: Any, prefer_ema: bool = True) -> tuple[dict[str, torch.Tensor], str | None]:
    """Unwrap the state dict from a training checkpoint; return it and the key it came from."""
    if isinstance(obj, nn.Module):
        return obj.state_dict(), None
    if not isinstance(obj, dict):
        raise CheckpointError(f"checkpoint holds a {type(obj).__name__}, not a state dict")
    order = WRAPPER_KEYS_EMA_FIRST if prefer_ema else WRAPPER_KEYS_RAW_FIRST
    for key in order:
        inner = obj.get(key)
        if isinstance(inner, dict) and inner and all(isinstance(v, torch.Tensor) for v in inner.values()):
            return dict(inner), key
    tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if tensors and len(tensors) == len(obj):
        return tensors, None
    raise CheckpointError(
        f"no state dict found in checkpoint (top-level keys: {', '.join(map(str, list(obj)[:8]))})"
    )


def strip_prefix(state_dict: dict[str, torch.Tensor], prefixes: tuple[str, ...] = ("module.", "_orig_mod.")) -> tuple[dict[str, torch.Tensor], str | None]:
    for prefix in prefixes:
        if state_dict and all(k.startswith(prefix) for k in state_dict):
            return {k[len(prefix):]: v for k, v in state_dict.items()}, prefix
    return state_dict, None


def compare_state_dict(state_dict: dict[str, torch.Tensor], model: nn.Module, report: LoadReport) -> None:
    expected = model.state_dict()
    report.missing = [k for k in expected if k not in state_dict]
    report.unexpected = [k for k in state_dict if k not in expected]
    report.mismatched = [
        (k, tuple(v.shape), tuple(expected[k].shape))
        for k, v in state_dict.items()
        if k in expected and tuple(v.shape) != tuple(expected[k].shape)
    ]


def load_checkpoint(model: nn.Module, path: str | os.PathLike, *, strict: bool = True, prefer_ema: bool = True,
                    checkpoint_filter=None, name: str | None = None) -> LoadReport:
    """Load ``path`` into ``model``. Raises CheckpointError on any mismatch when ``strict``."""
    raw = read_checkpoint_file(path)
    state_dict, source_key = extract_state_dict(raw, prefer_ema=prefer_ema)
    state_dict, prefix = strip_prefix(state_dict)
    report = LoadReport(path=str(path), source_key=source_key, stripped_prefix=prefix)
    if checkpoint_filter is not None:
        # filter(state_dict, model, notes) -> state_dict; it appends what it changed to notes
        state_dict = checkpoint_filter(state_dict, model, report.notes)
    compare_state_dict(state_dict, model, report)
    label = name or type(model).__name__
    if report.mismatched or (strict and not report.ok):
        raise CheckpointError(f"checkpoint {Path(path).name} does not match {label}: {report.summary()}"
                              + ("" if report.mismatched else "; pass --non-strict to load anyway"))
    model.load_state_dict(state_dict, strict=False)
    return report
