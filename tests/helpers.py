"""Test utilities shared by the test files."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np
import torch


def save_official_checkpoint(path: str | Path, state_dict: dict[str, torch.Tensor], *, wrapper: str | None = "model",
                             module_prefix: bool = False, extra: dict[str, Any] | None = None,
                             with_args: bool = True, ema: str | None = None) -> Path:
    """Save ``state_dict`` the way a training script does.

    wrapper: key the weights live under ("model" for DeiT-style scripts, "state_dict" for timm's
        train.py); None saves the bare state dict.
    module_prefix: prefix every key with "module." as DataParallel/DistributedDataParallel does.
    ema: also store the weights under this key (e.g. "state_dict_ema", "model_ema").
    with_args: add an argparse Namespace under "args", as DeiT-style scripts do.
    """
    sd = {(f"module.{k}" if module_prefix else k): v.detach().clone() for k, v in state_dict.items()}
    if wrapper is None:
        obj: Any = sd
    else:
        obj = {wrapper: sd, "epoch": 299}
        if ema:
            obj[ema] = {k: v.clone() for k, v in sd.items()}
        if with_args:
            obj["args"] = argparse.Namespace(model="x", lr=5e-4, batch_size=128, input_size=224)
        if extra:
            obj.update(extra)
    path = Path(path)
    torch.save(obj, path)
    return path


def randomize(model: torch.nn.Module, seed: int = 0, scale: float = 0.05) -> torch.nn.Module:
    """Fill parameters with seeded noise (zero-initialised heads and tokens would hide bugs).

    BatchNorm running statistics get plausible values (positive variances); other buffers
    (fixed random features, precomputed indices) are left as the model made them.
    """
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * scale)
        for m in model.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and m.running_var is not None:
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
    return model


def run_batched(runner, x: np.ndarray, batch: int, min_batch: int = 1) -> np.ndarray:
    """Outputs for all of ``x`` in chunks of ``batch`` (``vitdeploy.runners.base.infer_batch``): the
    in-memory path the streaming validate replaced, kept for tests that check against it."""
    from vitdeploy.runners.base import infer_batch

    return np.concatenate([infer_batch(runner, x[i:i + batch], min_batch) for i in range(0, len(x), batch)])
