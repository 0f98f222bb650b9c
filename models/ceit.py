"""CeiT, Convolution-enhanced image Transformer (coeusguo/ceit, Yuan et al. 2021).

Three changes to DeiT, all kept with the official parameter names:

- ``i2t``: Image-to-Tokens. A conv stem (``i2t.backbone``: 7x7/2 conv without bias, BatchNorm2d,
  3x3/2 max-pool) followed by a patch projection (``i2t.proj``, patch 4 on the 1/4 feature map,
  so 224 px gives the same 14x14 grid as DeiT/16).
- ``blocks.N.leff``: Locally-enhanced Feed-Forward instead of the MLP: the patch tokens are laid out
  on the grid and go through 1x1 conv -> BN -> GELU -> depthwise kxk conv -> BN -> GELU -> 1x1 conv
  -> BN (``conv1..3``, ``bn1..3``). The class token skips the convolutions: LeFF returns it as it
  came in (already normalised by ``norm2``), and the residual adds that to the class token.
- ``lca``: Layer-wise Class-token Attention. The class tokens of all ``depth`` blocks, plus
  ``pos_layer_embed``, form a short sequence; one block attends from the last of them (query of the
  last token only; ``attn.qkv`` stays one fused Linear whose first ``dim`` rows are the query) and
  has a plain MLP (``lca.feedforward``) and no LeFF. ``norm`` and ``head`` act on its output.

Checkpoints are saved by the DeiT-style ``main.py``: ``{"model", "optimizer", "lr_scheduler",
"epoch", "model_ema", "scaler", "args": argparse.Namespace}``, weights without a ``module.`` prefix
(the script saves ``model_without_ddp``). The official evaluation (``main.py --eval --resume``)
reads ``checkpoint["model"]``, not ``model_ema``. BatchNorm running statistics are part of the
state dict. rishikksh20/CeiT-pytorch is an unofficial, different architecture (other key names,
BatchNorm1d, hard-coded 14x14): its checkpoints are rejected with a clear message.

The official LeFF derives the grid side from ``sqrt(num_tokens - 1)`` in forward; here the grid is
fixed at construction from ``img_size`` (same result at the configured size; the token <-> image
reshapes use ``-1`` for the batch, so they export with a dynamic batch axis, and a non-square
``img_size`` works). No deploy rewrite is needed: the plain forward exports as it is, and both
ONNX exporters fold every eval-mode BatchNorm into the convolution before it.
"""

from __future__ import annotations

import math
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

from vitdeploy.core.errors import CheckpointError
from vitdeploy.models.layers import Attention, DropPath, Mlp, drop_path_schedule, init_weights_vit, resize_pos_embed
from vitdeploy.models.registry import register_family, register_model
from vitdeploy.models.spec import TINY_TEST_SPEC


def _pair(v: int | tuple[int, int]) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))


def _out_len(n: int, kernel: int, stride: int, padding: int) -> int:
    return (n + 2 * padding - kernel) // stride + 1


class ConvStem(nn.Module):
    """I2T low-level features: 7x7/2 conv (no bias) -> BatchNorm -> 3x3/2 max-pool (1/4 resolution)."""

    def __init__(self, in_chans: int = 3, out_chans: int = 64, kernel_size: int = 7, stride: int = 2):
        super().__init__()
        self.conv = nn.Conv2d(in_chans, out_chans, kernel_size, stride=stride, padding=kernel_size // 2, bias=False)
        self.bn = nn.BatchNorm2d(out_chans)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.out_chans = out_chans

    def output_size(self, size: tuple[int, int]) -> tuple[int, int]:
        k, s, p = self.conv.kernel_size[0], self.conv.stride[0], self.conv.padding[0]
        return tuple(_out_len(_out_len(n, k, s, p), 3, 2, 1) for n in size)  # type: ignore[return-value]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.maxpool(self.bn(self.conv(x)))


class ImageToTokens(nn.Module):
    """``i2t``: conv stem (``backbone``) then a patch projection (``proj``) on its feature map."""

    def __init__(self, img_size: int | tuple[int, int] = 224, patch_size: int = 4, in_chans: int = 3,
                 stem_chans: int = 64, embed_dim: int = 768):
        super().__init__()
        self.img_size = _pair(img_size)
        self.backbone = ConvStem(in_chans, stem_chans)
        self.feature_size = self.backbone.output_size(self.img_size)
        self.grid_size = (self.feature_size[0] // patch_size, self.feature_size[1] // patch_size)
        self.num_patches = self.grid_size[0] * self.grid_size[1]
        self.proj = nn.Conv2d(stem_chans, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.backbone(x)).flatten(2).transpose(1, 2)


class ExportGELU(nn.GELU):
    """nn.GELU (same numerics in PyTorch) whose ONNX export applies the 0.5 to the input first:
    ``(0.5 * x) * (1 + erf(x / sqrt(2)))``. The exporter's form ends in a constant ``Mul(0.5)``, which the
    simplifier folds into the conv that follows (LeFF: conv2, conv3), leaving Div/Erf/Add/Mul that ONNX
    Runtime no longer fuses into one Gelu (ceit_tiny, batch 8, 1 thread: 40 ms of GELU math instead of 8).
    This form is the other pattern ONNX Runtime's GELU fusion matches, and no constant Mul is left to fold."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.onnx.is_in_onnx_export() and self.approximate == "none":
            return x * 0.5 * (1.0 + torch.erf(x / math.sqrt(2.0)))
        return super().forward(x)


class LocallyEnhancedFeedForward(nn.Module):
    """LeFF on a fixed ``grid`` of patch tokens; the leading class token is passed through unchanged."""

    def __init__(self, dim: int, hidden: int, grid: tuple[int, int], kernel_size: int = 3, with_bn: bool = True,
                 act_layer: type[nn.Module] = ExportGELU):
        super().__init__()
        self.grid = grid
        self.conv1 = nn.Conv2d(dim, hidden, kernel_size=1)
        self.conv2 = nn.Conv2d(hidden, hidden, kernel_size, padding=(kernel_size - 1) // 2, groups=hidden)
        self.conv3 = nn.Conv2d(hidden, dim, kernel_size=1)
        self.act = act_layer()
        self.with_bn = with_bn
        if with_bn:
            self.bn1 = nn.BatchNorm2d(hidden)
            self.bn2 = nn.BatchNorm2d(hidden)
            self.bn3 = nn.BatchNorm2d(dim)

    def _convs(self, x: torch.Tensor) -> torch.Tensor:
        if self.with_bn:
            x = self.act(self.bn1(self.conv1(x)))
            x = self.act(self.bn2(self.conv2(x)))
            return self.bn3(self.conv3(x))
        return self.conv3(self.act(self.conv2(self.act(self.conv1(x)))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        cls_token, tokens = x[:, :1], x[:, 1:]
        h, w = self.grid
        grid = tokens.reshape(-1, h, w, self.conv1.in_channels).permute(0, 3, 1, 2)
        # channels-last then flatten (the values of flatten(2).transpose(1, 2)): ONNX Runtime cancels this
        # Transpose against the NHWC layout of its quantized conv / folds it into the NCHWc reorder
        tokens = self._convs(grid).permute(0, 2, 3, 1).reshape(-1, h * w, self.conv3.out_channels)
        return torch.cat([cls_token, tokens], dim=1)


class LayerClassAttention(Attention):
    """LCA attention: the last token queries the whole sequence; output has one token.

    The query uses the first ``dim`` rows of the fused ``qkv`` Linear, keys/values the rest.
    """

    def __init__(self, dim: int, num_heads: int = 8, qkv_bias: bool = False, qk_scale: float | None = None,
                 attn_drop: float = 0.0, proj_drop: float = 0.0):
        super().__init__(dim, num_heads, qkv_bias, qk_scale, attn_drop, proj_drop)
        self.dim = dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, N, C = x.shape
        heads, hd = self.num_heads, C // self.num_heads
        w, b = self.qkv.weight, self.qkv.bias
        q = F.linear(x[:, -1:], w[:C], None if b is None else b[:C])
        kv = F.linear(x, w[C:], None if b is None else b[C:])
        q = q.reshape(B, 1, heads, hd).permute(0, 2, 1, 3)
        kv = kv.reshape(B, N, 2, heads, hd).permute(2, 0, 3, 1, 4)
        k, v = kv[0], kv[1]
        attn = (q * self.scale) @ k.transpose(-2, -1)
        attn = self.attn_drop(attn.softmax(dim=-1))
        x = (attn @ v).transpose(1, 2).reshape(B, 1, C)
        return self.proj_drop(self.proj(x))


class CeiTBlock(nn.Module):
    """Encoder block with LeFF; returns the tokens and this block's class token."""

    def __init__(self, dim: int, num_heads: int, grid: tuple[int, int], mlp_ratio: float = 4.0,
                 qkv_bias: bool = False, qk_scale: float | None = None, drop: float = 0.0, attn_drop: float = 0.0,
                 drop_path: float = 0.0, norm_layer=nn.LayerNorm, kernel_size: int = 3, with_bn: bool = True):
        super().__init__()
        # registration order as in the official Block (norm2 before norm1)
        self.drop_path = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()
        self.norm2 = norm_layer(dim)
        self.norm1 = norm_layer(dim)
        self.attn = Attention(dim, num_heads=num_heads, qkv_bias=qkv_bias, qk_scale=qk_scale,
                              attn_drop=attn_drop, proj_drop=drop)
        self.leff = LocallyEnhancedFeedForward(dim, int(dim * mlp_ratio), grid, kernel_size, with_bn)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x)))
        return x + self.drop_path(self.leff(self.norm2(x)))


class LCABlock(nn.Module):
    """Layer-wise class-token attention block: output is the updated last token, shape (B, 1, C)."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, qkv_bias: bool = False,
                 qk_scale: float | None = None, drop: float = 0.0, attn_drop: float = 0.0, norm_layer=nn.LayerNorm):
        super().__init__()
        self.drop_path = nn.Identity()  # the official LCA block has no stochastic depth
        self.norm2 = norm_layer(dim)
        self.norm1 = norm_layer(dim)
        self.attn = LayerClassAttention(dim, num_heads=num_heads, qkv_bias=qkv_bias, qk_scale=qk_scale,
                                        attn_drop=attn_drop, proj_drop=drop)
        self.feedforward = Mlp(dim, int(dim * mlp_ratio), drop=drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, -1:] + self.attn(self.norm1(x))
        return x + self.feedforward(self.norm2(x))


class CeiT(nn.Module):
    def __init__(self, img_size: int | tuple[int, int] = 224, patch_size: int = 4, in_chans: int = 3,
                 num_classes: int = 1000, embed_dim: int = 768, depth: int = 12, num_heads: int = 12,
                 mlp_ratio: float = 4.0, qkv_bias: bool = True, qk_scale: float | None = None,
                 drop_rate: float = 0.0, attn_drop_rate: float = 0.0, drop_path_rate: float = 0.0,
                 norm_layer=partial(nn.LayerNorm, eps=1e-6), stem_chans: int = 64, leff_local_size: int = 3,
                 leff_with_bn: bool = True):
        super().__init__()
        self.num_classes = num_classes
        self.num_features = self.embed_dim = embed_dim
        self.num_prefix_tokens = 1
        self.i2t = ImageToTokens(img_size, patch_size, in_chans, stem_chans, embed_dim)
        self.grid_size = self.i2t.grid_size
        num_patches = self.i2t.num_patches

        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, num_patches + 1, embed_dim))
        self.pos_drop = nn.Dropout(p=drop_rate)

        dpr = drop_path_schedule(drop_path_rate, depth)
        self.blocks = nn.ModuleList([
            CeiTBlock(embed_dim, num_heads, self.grid_size, mlp_ratio, qkv_bias, qk_scale, drop_rate,
                      attn_drop_rate, dpr[i], norm_layer, leff_local_size, leff_with_bn)
            for i in range(depth)
        ])
        self.lca = LCABlock(embed_dim, num_heads, mlp_ratio, qkv_bias, qk_scale, drop_rate, attn_drop_rate,
                            norm_layer)
        self.pos_layer_embed = nn.Parameter(torch.zeros(1, depth, embed_dim))
        self.norm = norm_layer(embed_dim)
        self.head = nn.Linear(embed_dim, num_classes) if num_classes > 0 else nn.Identity()

        for p in (self.pos_embed, self.cls_token):  # pos_layer_embed starts at zero, as officially
            if not p.is_meta:
                nn.init.trunc_normal_(p, std=0.02)
        self.apply(init_weights_vit)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.i2t(x)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)
        x = self.pos_drop(x + self.pos_embed)
        cls_tokens = []
        for blk in self.blocks:
            x = blk(x)
            cls_tokens.append(x[:, 0])
        layer_tokens = torch.stack(cls_tokens, dim=1) + self.pos_layer_embed
        return self.norm(self.lca(layer_tokens)).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.forward_features(x))


# Keys that only the unofficial rishikksh20/CeiT-pytorch model has.
_UNOFFICIAL_MARKERS = ("pos_embedding", "to_patch_embedding.", "transformer.layers.", "mlp_head.", "LCA.layers.")


def checkpoint_filter(state_dict: dict, model: CeiT, notes: list[str]) -> dict:
    """Reject unofficial-implementation checkpoints; resize ``pos_embed`` trained on another grid."""
    odd = [k for k in state_dict if k.startswith(_UNOFFICIAL_MARKERS)]
    if odd and "i2t.proj.weight" not in state_dict:
        raise CheckpointError(
            f"checkpoint looks like rishikksh20/CeiT-pytorch (key {odd[0]!r}), an unofficial CeiT with a different "
            "architecture; only coeusguo/ceit checkpoints can be loaded")
    pe = state_dict.get("pos_embed")
    if pe is not None and pe.shape != model.pos_embed.shape and pe.shape[-1] == model.pos_embed.shape[-1]:
        new = resize_pos_embed(pe, model.grid_size, model.num_prefix_tokens)
        state_dict["pos_embed"] = new
        notes.append(f"pos_embed resized from {tuple(pe.shape)} to {tuple(new.shape)} (bicubic, class slot kept)")
    return state_dict


register_family("ceit", "CeiT", "coeusguo/ceit", checkpoint_filter)


def _ceit(embed_dim: int, num_heads: int, img_size: int = 224, **kwargs) -> CeiT:
    return CeiT(img_size=img_size, patch_size=4, embed_dim=embed_dim, depth=12, num_heads=num_heads, mlp_ratio=4,
                qkv_bias=True, **kwargs)


# top-1: coeusguo/ceit README; GMACs: the paper's FLOPs column, which counts conv and linear layers
# but not the two attention matmuls (counting those too: 1.40 / 4.76 / 17.75 / 5.10 / 15.98).
@register_model("ceit")
def ceit_tiny_patch16_224(**kwargs) -> CeiT:
    return _ceit(192, 3, **kwargs)


@register_model("ceit")
def ceit_small_patch16_224(**kwargs) -> CeiT:
    return _ceit(384, 6, **kwargs)


@register_model("ceit",
                notes="top-1 after 150 epochs (81.9 after 100); no GMACs in the paper: 17.0 counted as the paper "
                      "counts")
def ceit_base_patch16_224(**kwargs) -> CeiT:
    return _ceit(768, 12, **kwargs)


@register_model("ceit", input_size=(3, 384, 384),
                notes="fine-tuned at 384; the paper lists the 224 model's 6.4M params")
def ceit_tiny_patch16_384(**kwargs) -> CeiT:
    kwargs.setdefault("img_size", 384)
    return _ceit(192, 3, **kwargs)


@register_model("ceit", input_size=(3, 384, 384),
                notes="fine-tuned at 384; the paper lists the 224 model's 24.2M params")
def ceit_small_patch16_384(**kwargs) -> CeiT:
    kwargs.setdefault("img_size", 384)
    return _ceit(384, 6, **kwargs)


@register_model("ceit", **TINY_TEST_SPEC,
                notes="test-sized: conv stem 16 ch, patch 2 on the 8x8 feature map (4x4 grid), 2 LeFF blocks "
                      "with BN, width 64, LCA over 2 class tokens")
def ceit_tiny_test(**kwargs) -> CeiT:
    kwargs.setdefault("num_classes", 10)
    kwargs.setdefault("img_size", 32)
    return CeiT(patch_size=2, embed_dim=64, depth=2, num_heads=2, mlp_ratio=4, qkv_bias=True, stem_chans=16,
                **kwargs)
