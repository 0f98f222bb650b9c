"""Export-time patches: scoped context managers that rewrite a torch function while exporting.

Each patch says why it exists and undoes itself on exit, so the live model and the rest of
the process never see it. Model-level rewrites of the zoo (soft split, Performer, GPSA,
SReT permutation) are not patches: they are deploy-ready forms (vitdeploy.models.deploy).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class Patch:
    name: str
    why: str
    factory: object  # () -> context manager


def _explicit_sdpa(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None, enable_gqa=False):
    scale = 1.0 / math.sqrt(query.shape[-1]) if scale is None else scale
    attn = (query * scale) @ key.transpose(-2, -1)
    if is_causal:
        n, s = query.shape[-2], key.shape[-2]
        causal = torch.ones(n, s, dtype=torch.bool, device=query.device).tril()
        attn = attn.masked_fill(~causal, float("-inf"))
    if attn_mask is not None:
        attn = attn.masked_fill(~attn_mask, float("-inf")) if attn_mask.dtype == torch.bool else attn + attn_mask
    return attn.softmax(dim=-1) @ value


@contextlib.contextmanager
def explicit_attention() -> Iterator[None]:
    original = F.scaled_dot_product_attention
    F.scaled_dot_product_attention = _explicit_sdpa  # type: ignore[assignment]
    try:
        yield
    finally:
        F.scaled_dot_product_attention = original  # type: ignore[assignment]


PATCHES: tuple[Patch, ...] = (
    Patch(
        "explicit_attention",
        "torch's ONNX decomposition of scaled_dot_product_attention multiplies both Q and K by sqrt(scale); "
        "TensorRT's attention fusion and the INT8 placement expect MatMul -> Softmax -> MatMul with one scale, "
        "as timm-style models written with F.scaled_dot_product_attention would otherwise not get",
        explicit_attention,
    ),
)


@contextlib.contextmanager
def applied(patches: tuple[Patch, ...] = PATCHES) -> Iterator[list[str]]:
    """Apply every patch for the duration of an export; yields the names applied."""
    with contextlib.ExitStack() as stack:
        for p in patches:
            stack.enter_context(p.factory())  # type: ignore[operator]
        yield [p.name for p in patches]
