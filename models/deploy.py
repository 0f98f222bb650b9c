"""Deploy-ready forms: the same weights, rewritten into ops every exporter and TensorRT take.

A module that has a plain (official) forward and a deploy forward implements
``switch_to_deploy()``; it must keep its state_dict keys unchanged (new tensors go into
non-persistent buffers) and its outputs equal to the plain form within 1e-5.
A model may also implement ``deploy_info() -> dict`` to record what the deploy form fixed
(e.g. SReT's permutation); exporters write that into the manifest.
"""

from __future__ import annotations

import copy
from typing import Any

from torch import nn


def make_deploy_ready(model: nn.Module, inplace: bool = False) -> nn.Module:
    """Return ``model`` (a copy unless ``inplace``) in eval mode with every deploy rewrite applied."""
    target = model if inplace else copy.deepcopy(model)
    target.eval()
    for module in target.modules():
        switch = getattr(module, "switch_to_deploy", None)
        if callable(switch) and module is not target:
            switch()
    top = getattr(target, "switch_to_deploy", None)
    if callable(top):
        top()
    target.vitdeploy_deploy_form = True  # type: ignore[attr-defined]
    return target


def deploy_info(model: nn.Module) -> dict[str, Any]:
    fn = getattr(model, "deploy_info", None)
    return dict(fn()) if callable(fn) else {}
