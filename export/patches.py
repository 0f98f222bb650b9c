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


@contextlib.contextmanager
def mha_slow_path() -> Iterator[None]:
    """Turn off the fused fast path of nn.MultiheadAttention / nn.TransformerEncoder(Layer) while exporting.

    In eval mode without grad, torch runs ``nn.TransformerEncoderLayer`` as one fused kernel
    (``aten::_transformer_encoder_layer_fwd``, nested tensors with ``enable_nested_tensor``), which
    the legacy exporter has no ONNX symbol for and the dynamo exporter only writes at opset 18.
    With the fast path off, the same modules trace as their plain MatMul / Softmax / LayerNorm
    ops at any opset; the numbers are the same. torch < 2.2 has no switch: then this is a no-op.
    """
    mha = getattr(torch.backends, "mha", None)
    if mha is None or not hasattr(mha, "set_fastpath_enabled"):
        yield
        return
    was = mha.get_fastpath_enabled()
    mha.set_fastpath_enabled(False)
    try:
        yield
    finally:
        mha.set_fastpath_enabled(was)


PATCHES: tuple[Patch, ...] = (
    Patch(
        "explicit_attention",
        "torch's ONNX decomposition of scaled_dot_product_attention multiplies both Q and K by sqrt(scale); "
        "TensorRT's attention fusion and the INT8 placement expect MatMul -> Softmax -> MatMul with one scale, "
        "as timm-style models written with F.scaled_dot_product_attention would otherwise not get",
        explicit_attention,
    ),
    Patch(
        "mha_slow_path",
        "nn.TransformerEncoderLayer's fused fast path traces as aten::_transformer_encoder_layer_fwd, which "
        "the legacy exporter refuses and the dynamo exporter writes only at opset 18; the plain path exports at 17",
        mha_slow_path,
    ),
)


@contextlib.contextmanager
def applied(patches: tuple[Patch, ...] = PATCHES) -> Iterator[list[str]]:
    """Apply every patch for the duration of an export; yields the names applied."""
    with contextlib.ExitStack() as stack:
        for p in patches:
            stack.enter_context(p.factory())  # type: ignore[operator]
        yield [p.name for p in patches]
