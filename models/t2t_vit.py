"""T2T-ViT (yitu-opensource/T2T-ViT): a ViT whose patch embedding is a "tokens-to-token" module.

Architecture: the image is cut into overlapping patches three times ("soft splits", ``nn.Unfold``
with kernel/stride/padding 7/4/2, 3/2/1, 3/2/1: 224 px -> 56x56 -> 28x28 -> 14x14 tokens).
Between two splits a small single-head encoder (``attention1``/``attention2``) maps the unfolded
patches to ``token_dim`` (64) channels and the tokens are folded back into an image. Two kinds:

- Performer (``t2t_vit_7 ... t2t_vit_24``): linear attention with positive random features.
  The random projection ``w`` (``m = token_dim / 2`` rows) is an ``nn.Parameter`` with
  ``requires_grad=False``: it is in the state_dict and in the parameter count, and the released
  checkpoints hold the draw the model was trained with. It must be loaded, never redrawn (the
  checkpoint filter refuses a checkpoint that lacks it). The fused projection ``kqv`` is split
  in the order **k, q, v**; the value path is the residual (the input width differs).
- Transformer (``t2t_vit_t_14/19/24``): one-head softmax attention, ``qkv`` split q, k, v,
  scale ``(input width) ** -0.5`` (147 and 576), value path as the residual.

``project`` maps the last 576-wide tokens to ``embed_dim``; then a class token, a fixed
**sinusoid** position table ``pos_embed`` (an ``nn.Parameter`` with ``requires_grad=False``, so
it is in the state_dict and counted as a parameter) and standard pre-norm blocks without qkv
bias. All LayerNorms use eps 1e-5 (``nn.LayerNorm`` default).

Attention scale (the trap): the official factories set ``qk_scale = embed_dim ** -0.5`` only
when called with ``pretrained=True``; otherwise the blocks use ``head_dim ** -0.5``. The released
weights were trained with ``embed_dim ** -0.5`` and silently lose accuracy with the other scale.
**The factories here default to ``qk_scale = embed_dim ** -0.5``** (matching the released
weights); pass ``qk_scale=None`` for the official ``pretrained=False`` behaviour (head_dim).

Checkpoints: timm 0.3.4's training script saves ``{"epoch", "arch", "state_dict",
"optimizer", "version", "args", "state_dict_ema", "metric"}`` (released files are
``.pth.tar``; evaluation uses the EMA weights; some files carry a ``module.`` prefix). The
384 px T2T-ViT-14 checkpoint loads with ``img_size=384``; another grid is bicubically resized.

Deploy form (``switch_to_deploy``): the three soft splits become grouped one-hot ``Conv2d``
(exactly the same numbers; weights built in non-persistent buffers) and the Performer einsums
become MatMuls; the grid between splits comes from the input's spatial shape.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from vitdeploy.core.errors import CheckpointError
from vitdeploy.models.layers import Block, DropPath, Mlp, drop_path_schedule, init_weights_vit, resize_pos_embed
from vitdeploy.models.registry import register_family, register_model
from vitdeploy.models.spec import TINY_TEST_SPEC


def sinusoid_table(n_position: int, dim: int) -> torch.Tensor:
    """(1, n_position, dim) table: sin on even channels, cos on odd ones, angle
    ``pos / 10000 ** (2 * (j // 2) / dim)``, computed in float64 and stored as float32 (the
    official table). Built with torch ops, so it costs nothing on the meta device."""
    pos = torch.arange(n_position, dtype=torch.float64).unsqueeze(1)
    j = torch.arange(dim, dtype=torch.float64)
    exponent = 2.0 * torch.div(j, 2, rounding_mode="floor") / dim
    angle = pos / torch.pow(torch.tensor(10000.0, dtype=torch.float64), exponent)
    table = torch.where(torch.remainder(j, 2) == 0, torch.sin(angle), torch.cos(angle))
    return table.to(torch.float32).unsqueeze(0)


class SoftSplit(nn.Module):
    """``nn.Unfold(kernel, stride, padding)`` on a ``channels``-channel image, returning tokens
    ``(B, L, channels * kernel**2)`` (channel-major, as Unfold orders them).

    Deploy form: a grouped Conv2d (``groups=channels``) with one-hot kernels; output channel
    ``c * k * k + i * k + j`` copies input channel ``c`` at kernel offset ``(i, j)``. Every output
    is one input value times 1 plus zeros, so the result is identical to Unfold.
    """

    def __init__(self, channels: int, kernel_size: int, stride: int, padding: int):
        super().__init__()
        self.channels = channels
        self.kernel_size = kernel_size
        self.stride = stride
        self.padding = padding
        self.deploy = False

    def output_grid(self, height, width) -> tuple:
        k, s, p = self.kernel_size, self.stride, self.padding
        return (height + 2 * p - k) // s + 1, (width + 2 * p - k) // s + 1

    def build_conv(self, device=None, dtype=None) -> None:
        """Build the one-hot kernels (non-persistent buffer) and switch to the conv forward."""
        k = self.kernel_size
        out = self.channels * k * k
        weight = torch.zeros(out, 1, k * k, device=device, dtype=dtype or torch.float32)
        # output channel o = c * k*k + r looks at kernel offset r of channel c (group c)
        offsets = torch.arange(k * k, device=device).repeat(self.channels)
        weight[torch.arange(out, device=device), 0, offsets] = 1.0
        self.register_buffer("weight", weight.reshape(out, 1, k, k), persistent=False)
        self.deploy = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.deploy:
            # contiguous input: the conv then returns NCHW, so the tokens get Unfold's memory layout
            # and the following Linear runs the same kernel (bit-identical results on CPU)
            y = F.conv2d(x.contiguous(), self.weight, None, self.stride, self.padding, 1, self.channels)
            return y.flatten(2).transpose(1, 2)
        return F.unfold(x, self.kernel_size, 1, self.padding, self.stride).transpose(1, 2)

    def extra_repr(self) -> str:
        return (f"channels={self.channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"padding={self.padding}, deploy={self.deploy}")


class TokenPerformer(nn.Module):
    """Single-head Performer encoder of the T2T module (official names ``kqv``, ``proj``,
    ``norm1``, ``norm2``, ``mlp.0``/``mlp.2``, ``w``).

    ``dim`` is the input width (unfolded patch), ``in_dim`` the output width (``token_dim``).
    """

    def __init__(self, dim: int, in_dim: int, head_cnt: int = 1, kernel_ratio: float = 0.5,
                 dp1: float = 0.1, dp2: float = 0.1):
        super().__init__()
        self.emb = in_dim * head_cnt
        self.kqv = nn.Linear(dim, 3 * self.emb)
        self.dp = nn.Dropout(dp1)
        self.proj = nn.Linear(self.emb, self.emb)
        self.head_cnt = head_cnt
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(self.emb)
        self.epsilon = 1e-8
        self.mlp = nn.Sequential(nn.Linear(self.emb, self.emb), nn.GELU(), nn.Linear(self.emb, self.emb),
                                 nn.Dropout(dp2))
        self.m = int(self.emb * kernel_ratio)
        # Random features: an orthogonal draw scaled by sqrt(m); frozen, saved with the weights.
        w = torch.empty(self.m, self.emb)
        if not w.is_meta:
            with torch.no_grad():
                nn.init.orthogonal_(w)
                w.mul_(math.sqrt(self.m))
        self.w = nn.Parameter(w, requires_grad=False)
        self.deploy = False

    def switch_to_deploy(self) -> None:
        self.deploy = True

    def prm_exp(self, x: torch.Tensor) -> torch.Tensor:
        """Positive random features exp(w x - |x|^2 / 2) / sqrt(m): (B, T, emb) -> (B, T, m)."""
        if self.deploy:
            xd = (x * x).sum(dim=-1, keepdim=True) / 2
            wtx = torch.matmul(x, self.w.t())
        else:
            xd = (x * x).sum(dim=-1, keepdim=True).repeat(1, 1, self.m) / 2
            wtx = torch.einsum("bti,mi->btm", x.float(), self.w)
        return torch.exp(wtx - xd) / math.sqrt(self.m)

    def single_attn(self, x: torch.Tensor) -> torch.Tensor:
        kqv = self.kqv(x)
        k, q, v = kqv[..., : self.emb], kqv[..., self.emb: 2 * self.emb], kqv[..., 2 * self.emb:]
        kp, qp = self.prm_exp(k), self.prm_exp(q)  # (B, T, m)
        if self.deploy:
            denom = torch.matmul(qp, kp.sum(dim=1).unsqueeze(2))  # (B, T, 1)
            kptv = torch.matmul(v.transpose(1, 2), kp)  # (B, emb, m)
            y = torch.matmul(qp, kptv.transpose(1, 2)) / (denom + self.epsilon)
        else:
            denom = torch.einsum("bti,bi->bt", qp, kp.sum(dim=1)).unsqueeze(dim=2)
            kptv = torch.einsum("bin,bim->bnm", v.float(), kp)
            y = torch.einsum("bti,bni->btn", qp, kptv) / (denom.repeat(1, 1, self.emb) + self.epsilon)
        return v + self.dp(self.proj(y))  # the value path is the residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.single_attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class TokenAttention(nn.Module):
    """One-head softmax attention that changes the width (``dim`` -> ``in_dim``); the value path
    is the residual. Official names ``qkv``, ``proj``; default scale ``dim ** -0.5`` (input width).
    """

    def __init__(self, dim: int, num_heads: int = 1, in_dim: int | None = None, qkv_bias: bool = False,
                 qk_scale: float | None = None, attn_drop: float = 0.0, proj_drop: float = 0.0):
        super().__init__()
        if num_heads != 1:
            raise ValueError("the T2T token attention is single-head")
        in_dim = in_dim or dim
        self.num_heads = num_heads
        self.in_dim = in_dim
        self.scale = qk_scale or (dim // num_heads) ** -0.5
        self.qkv = nn.Linear(dim, in_dim * 3, bias=qkv_bias)
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj = nn.Linear(in_dim, in_dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        qkv = self.qkv(x)
        e = self.in_dim
        q, k, v = qkv[..., :e], qkv[..., e: 2 * e], qkv[..., 2 * e:]
        attn = self.attn_drop(((q * self.scale) @ k.transpose(-2, -1)).softmax(dim=-1))
        y = self.proj_drop(self.proj(attn @ v))
        return v + y


class TokenTransformer(nn.Module):
    """Transformer encoder of the T2T module (official names ``norm1``, ``attn``, ``norm2``, ``mlp``)."""

    def __init__(self, dim: int, in_dim: int, num_heads: int = 1, mlp_ratio: float = 1.0, qkv_bias: bool = False,
                 qk_scale: float | None = None, drop: float = 0.0, attn_drop: float = 0.0, drop_path: float = 0.0,
                 act_layer: type[nn.Module] = nn.GELU, norm_layer=nn.LayerNorm):
        super().__init__()
        self.norm1 = norm_layer(dim)
        self.attn = TokenAttention(dim, num_heads=num_heads, in_dim=in_dim, qkv_bias=qkv_bias, qk_scale=qk_scale,
                                   attn_drop=attn_drop, proj_drop=drop)
        self.drop_path = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()
        self.norm2 = norm_layer(in_dim)
        self.mlp = Mlp(in_dim, int(in_dim * mlp_ratio), in_dim, act_layer=act_layer, drop=drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.attn(self.norm1(x))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class T2TModule(nn.Module):
    """Tokens-to-token: split (7/4/2), encode, fold, split (3/2/1), encode, fold, split, project."""

    def __init__(self, img_size: int = 224, tokens_type: str = "performer", in_chans: int = 3,
                 embed_dim: int = 768, token_dim: int = 64):
        super().__init__()
        self.tokens_type = tokens_type
        self.soft_split0 = SoftSplit(in_chans, 7, 4, 2)
        self.soft_split1 = SoftSplit(token_dim, 3, 2, 1)
        self.soft_split2 = SoftSplit(token_dim, 3, 2, 1)
        if tokens_type == "performer":
            self.attention1 = TokenPerformer(in_chans * 7 * 7, token_dim, kernel_ratio=0.5)
            self.attention2 = TokenPerformer(token_dim * 3 * 3, token_dim, kernel_ratio=0.5)
        elif tokens_type == "transformer":
            self.attention1 = TokenTransformer(in_chans * 7 * 7, token_dim, num_heads=1, mlp_ratio=1.0)
            self.attention2 = TokenTransformer(token_dim * 3 * 3, token_dim, num_heads=1, mlp_ratio=1.0)
        else:
            raise ValueError(f"tokens_type must be 'performer' or 'transformer', not {tokens_type!r}")
        self.project = nn.Linear(token_dim * 3 * 3, embed_dim)
        self.num_patches = (img_size // 16) * (img_size // 16)  # strides 4 * 2 * 2

    def switch_to_deploy(self) -> None:
        ref = self.project.weight
        for split in (self.soft_split0, self.soft_split1, self.soft_split2):
            split.build_conv(device=ref.device, dtype=ref.dtype)

    @staticmethod
    def _fold(x: torch.Tensor, grid: tuple) -> torch.Tensor:
        # tokens (B, h*w, C) back to an image (B, C, h, w)
        return x.transpose(1, 2).reshape(x.shape[0], x.shape[2], grid[0], grid[1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        grid = self.soft_split0.output_grid(x.shape[2], x.shape[3])
        x = self.attention1(self.soft_split0(x))
        x = self._fold(x, grid)
        grid = self.soft_split1.output_grid(grid[0], grid[1])
        x = self.attention2(self.soft_split1(x))
        x = self._fold(x, grid)
        return self.project(self.soft_split2(x))


class T2T_ViT(nn.Module):  # noqa: N801 - official class name
    def __init__(self, img_size: int = 224, tokens_type: str = "performer", in_chans: int = 3, num_classes: int = 1000,
                 embed_dim: int = 768, depth: int = 12, num_heads: int = 12, mlp_ratio: float = 4.0,
                 qkv_bias: bool = False, qk_scale: float | None = None, drop_rate: float = 0.0,
                 attn_drop_rate: float = 0.0, drop_path_rate: float = 0.0, norm_layer=nn.LayerNorm,
                 token_dim: int = 64):
        super().__init__()
        self.num_classes = num_classes
        self.num_features = self.embed_dim = embed_dim
        self.num_prefix_tokens = 1
        self.tokens_to_token = T2TModule(img_size, tokens_type, in_chans, embed_dim, token_dim)
        num_patches = self.tokens_to_token.num_patches
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(sinusoid_table(num_patches + 1, embed_dim), requires_grad=False)
        self.pos_drop = nn.Dropout(p=drop_rate)
        dpr = drop_path_schedule(drop_path_rate, depth)
        self.blocks = nn.ModuleList([
            Block(embed_dim, num_heads, mlp_ratio, qkv_bias, qk_scale, drop_rate, attn_drop_rate, dpr[i],
                  norm_layer=norm_layer)
            for i in range(depth)
        ])
        self.norm = norm_layer(embed_dim)
        self.head = nn.Linear(embed_dim, num_classes) if num_classes > 0 else nn.Identity()

        if not self.cls_token.is_meta:
            nn.init.trunc_normal_(self.cls_token, std=0.02)
        self.apply(init_weights_vit)

    def deploy_info(self) -> dict:
        return {"tokens_type": self.tokens_to_token.tokens_type, "qk_scale": self.blocks[0].attn.scale,
                "soft_split": "grouped one-hot Conv2d"}

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.tokens_to_token(x)
        x = torch.cat((self.cls_token.expand(x.shape[0], -1, -1), x), dim=1)
        x = self.pos_drop(x + self.pos_embed)
        for blk in self.blocks:
            x = blk(x)
        return self.norm(x)[:, 0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.forward_features(x))


def checkpoint_filter(state_dict: dict, model: T2T_ViT, notes: list[str]) -> dict:
    """Resize ``pos_embed`` trained on another grid; refuse Performer weights without ``w``."""
    pe = state_dict.get("pos_embed")
    target = model.pos_embed.shape
    if pe is not None and pe.ndim == 3 and pe.shape != target and pe.shape[-1] == target[-1]:
        side = int(round((target[1] - 1) ** 0.5))
        state_dict["pos_embed"] = resize_pos_embed(pe, (side, side), 1)
        notes.append(f"pos_embed resized from {tuple(pe.shape)} to {tuple(state_dict['pos_embed'].shape)} (bicubic)")
    for name, module in model.named_modules():
        if isinstance(module, TokenPerformer):
            key = f"{name}.w"
            if key not in state_dict and f"{name}.kqv.weight" in state_dict:
                raise CheckpointError(
                    f"checkpoint has no {key}: the Performer random features are part of the trained weights "
                    "and cannot be redrawn"
                )
    return state_dict


# main.py --eval_checkpoint loads with use_ema=args.model_ema (default True): the EMA weights.
register_family("t2t_vit", "T2T-ViT", "yitu-opensource/T2T-ViT", checkpoint_filter, prefer_ema=True)


def _t2t(tokens_type: str, embed_dim: int, depth: int, num_heads: int, mlp_ratio: float, **kwargs) -> T2T_ViT:
    # The released weights were trained with qk_scale = embed_dim ** -0.5 (see module docstring).
    kwargs.setdefault("qk_scale", embed_dim**-0.5)
    return T2T_ViT(tokens_type=tokens_type, embed_dim=embed_dim, depth=depth, num_heads=num_heads,
                   mlp_ratio=mlp_ratio, **kwargs)


# Official README: top-1 (224 px), MACs, params; eval config crop 0.9, bicubic, ImageNet mean/std.
_CFG = {"crop_pct": 0.9, "interpolation": "bicubic"}


@register_model("t2t_vit", **_CFG)
def t2t_vit_7(**kwargs) -> T2T_ViT:
    return _t2t("performer", 256, 7, 4, 2.0, **kwargs)


@register_model("t2t_vit", **_CFG)
def t2t_vit_10(**kwargs) -> T2T_ViT:
    return _t2t("performer", 256, 10, 4, 2.0, **kwargs)


@register_model("t2t_vit", **_CFG)
def t2t_vit_12(**kwargs) -> T2T_ViT:
    return _t2t("performer", 256, 12, 4, 2.0, **kwargs)


@register_model("t2t_vit", **_CFG)
def t2t_vit_14(**kwargs) -> T2T_ViT:
    return _t2t("performer", 384, 14, 6, 3.0, **kwargs)


@register_model("t2t_vit", **_CFG)
def t2t_vit_19(**kwargs) -> T2T_ViT:
    return _t2t("performer", 448, 19, 7, 3.0, **kwargs)


@register_model("t2t_vit", **_CFG)
def t2t_vit_24(**kwargs) -> T2T_ViT:
    return _t2t("performer", 512, 24, 8, 3.0, **kwargs)


@register_model("t2t_vit", **_CFG)
def t2t_vit_t_14(**kwargs) -> T2T_ViT:
    return _t2t("transformer", 384, 14, 6, 3.0, **kwargs)


@register_model("t2t_vit", **_CFG)
def t2t_vit_t_19(**kwargs) -> T2T_ViT:
    return _t2t("transformer", 448, 19, 7, 3.0, **kwargs)


@register_model("t2t_vit", **_CFG)
def t2t_vit_t_24(**kwargs) -> T2T_ViT:
    return _t2t("transformer", 512, 24, 8, 3.0, **kwargs)


@register_model("t2t_vit", notes="test-sized: Performer T2T (token_dim 16), 2 blocks, width 64, 32 px", **TINY_TEST_SPEC)
def t2t_vit_tiny_test(**kwargs) -> T2T_ViT:
    kwargs.setdefault("num_classes", 10)
    kwargs.setdefault("img_size", 32)
    kwargs.setdefault("token_dim", 16)
    return _t2t("performer", 64, 2, 2, 2.0, **kwargs)


@register_model("t2t_vit", notes="test-sized: Transformer T2T (token_dim 16), 2 blocks, width 64, 32 px", **TINY_TEST_SPEC)
def t2t_vit_t_tiny_test(**kwargs) -> T2T_ViT:
    kwargs.setdefault("num_classes", 10)
    kwargs.setdefault("img_size", 32)
    kwargs.setdefault("token_dim", 16)
    return _t2t("transformer", 64, 2, 2, 2.0, **kwargs)
