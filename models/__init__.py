"""The model zoo: efficient vision transformers with the official repositories' parameter names.

    from vitdeploy.models import create_model, list_models
    model = create_model("t2t_vit_14", checkpoint="81.5_T2T_ViT_14.pth.tar")
    deployable = make_deploy_ready(model)   # same weights, export-friendly ops

Families: ``vit`` (ViT/DeiT), ``t2t_vit``, ``convit``, ``sret``, ``ceit``; each has ``*_tiny_test``
variants (2 layers, 32 px) for tests. Building a model requires torch; the registry and specs do not.
"""

from __future__ import annotations

import importlib
import os
from typing import TYPE_CHECKING, Any

from vitdeploy.models.registry import (
    get_entry,
    get_family,
    get_spec,
    list_families,
    list_models,
    register_family,
    register_model,
)
from vitdeploy.models.spec import ModelSpec

if TYPE_CHECKING:
    from torch import nn
    from vitdeploy.models.checkpoint import LoadReport, load_checkpoint
    from vitdeploy.models.deploy import deploy_info, make_deploy_ready
    from vitdeploy.models.layers import count_params

# Imported on first use, so the registry and the specs (`vitdeploy models`) need no torch.
_LAZY = {"LoadReport": "checkpoint", "load_checkpoint": "checkpoint", "deploy_info": "deploy",
         "make_deploy_ready": "deploy", "count_params": "layers"}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from vitdeploy.core.deps import require

    require("torch", "the model zoo")
    return getattr(importlib.import_module(f"vitdeploy.models.{_LAZY[name]}"), name)


__all__ = [
    "LoadReport",
    "ModelSpec",
    "count_params",
    "create_model",
    "deploy_info",
    "get_spec",
    "list_families",
    "list_models",
    "load_checkpoint",
    "make_deploy_ready",
    "model_params",
    "register_family",
    "register_model",
]


def create_model(name: str, *, checkpoint: str | os.PathLike | None = None, strict: bool = True,
                 prefer_ema: bool | None = None, deploy: bool = False, **kwargs: Any) -> nn.Module:
    """Build a registered model in eval mode, optionally loading ``checkpoint``.

    ``kwargs`` go to the factory (e.g. ``num_classes``). With ``deploy=True`` the deploy-ready
    form is returned (see ``make_deploy_ready``). ``prefer_ema`` picks EMA weights when a
    checkpoint holds both; None means the family's default (what its official evaluation used).
    """
    from vitdeploy.models.checkpoint import load_checkpoint
    from vitdeploy.models.deploy import make_deploy_ready

    entry = get_entry(name)
    model = entry.factory(**kwargs)
    model.vitdeploy_name = name  # type: ignore[attr-defined]
    if checkpoint is not None:
        family = get_family(entry.spec.family)
        ema = family.prefer_ema if prefer_ema is None else prefer_ema
        report = load_checkpoint(model, checkpoint, strict=strict, prefer_ema=ema,
                                 checkpoint_filter=family.checkpoint_filter, name=name)
        model.vitdeploy_load_report = report  # type: ignore[attr-defined]
    model.eval()
    return make_deploy_ready(model, inplace=True) if deploy else model


def model_params(name: str, **kwargs: Any) -> int:
    """Parameter count of a registered model, built on the meta device (no memory, no init)."""
    import torch
    from vitdeploy.models.layers import count_params

    entry = get_entry(name)
    with torch.device("meta"):
        model = entry.factory(**kwargs)
    return count_params(model)
