"""ConViT (facebookresearch/convit): a DeiT whose first blocks use gated positional self-attention.

Architecture: patch embedding + a position embedding **without a class slot**
(``pos_embed`` is ``(1, 196, C)`` at 224 px); ``local_up_to_layer`` (10) GPSA blocks work on
the 196 patch tokens only; the class token is concatenated in front just before the first
plain MHSA block (196 -> 197 tokens); the remaining 2 blocks are ordinary ViT blocks.
LayerNorm eps 1e-6, no qkv bias.

GPSA mixes content attention ``softmax(q k^T * scale)`` with a positional attention
``softmax(pos_proj(rel))`` (``rel`` = per token pair (dx, dy, dx^2 + dy^2)) through a per-head
sigmoid gate, then renormalises rows. The official code builds ``rel`` lazily inside forward
and keeps it as a plain attribute (not in the state_dict). Here it is a non-persistent buffer
built at construction and never assigned in forward, so exporters (dynamo) cannot corrupt it.
The positional attention does not depend on the input: the deploy form precomputes
``sigmoid(gate) * softmax(pos_proj(rel))`` and ``1 - sigmoid(gate)`` into non-persistent
buffers, leaving MatMul -> Softmax -> MatMul plus one Mul/Add/Div in the graph.

Widths: the official factories take ``embed_dim`` as **dimensions per head** (training script
default 48) and multiply it by the head count: Ti 4x48=192, S 9x48=432, B 16x48=768. The
paper's "+" models were trained with ``--embed_dim 64`` (Ti+ 256, S+ 576, B+ 1024); the repo
has no factory name for them, here they are ``convit_{tiny,small,base}_plus``. The factories
below fix the final widths and refuse an ``embed_dim`` argument (its meaning is ambiguous).

Checkpoints: the released weights are bare state dicts (``torch.hub`` URLs, loaded with
``model.load_state_dict(checkpoint)``); the training script (DeiT-style) saves
``{"model": ..., "optimizer": ..., "lr_scheduler": ..., "epoch": ..., "model_ema": ... or None,
"args": Namespace}`` from the unwrapped model (no ``module.`` prefix).
"""

from __future__ import annotations

from functools import partial

import torch
from torch import nn

from vitdeploy.core.errors import CheckpointError, UsageError
from vitdeploy.models.layers import (
    Attention,
    DropPath,
    Mlp,
    PatchEmbed,
    drop_path_schedule,
    init_weights_vit,
    resize_pos_embed,
)
from vitdeploy.models.registry import register_family, register_model
from vitdeploy.models.spec import TINY_TEST_SPEC


def relative_indices(grid: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """(1, N, N, 3) tensor of (dx, dy, dx^2 + dy^2) between patch p and patch q, N = grid^2.

    Patches are numbered row-major (p = row * grid + col); dx = col_q - col_p,
    dy = row_q - row_p, as in the official ``get_rel_indices``.
    """
    idx = torch.arange(grid * grid, device=device)
    col, row = idx % grid, idx // grid
    dx = (col.view(1, -1) - col.view(-1, 1)).to(dtype)
    dy = (row.view(1, -1) - row.view(-1, 1)).to(dtype)
    return torch.stack([dx, dy, dx * dx + dy * dy], dim=-1).unsqueeze(0)


def local_init_weights(num_heads: int, locality_strength: float = 1.0) -> dict[int, tuple[float, float, float]]:
    """Official "local init" of ``pos_proj``: head h attends around an offset on a sqrt(H) grid.

    Returns {head: (w_dx, w_dy, w_dd)} for the heads it sets (before ``locality_strength``,
    which the caller applies to the whole weight as the official code does).
    """
    k = int(num_heads**0.5)
    center = (k - 1) / 2 if k % 2 == 0 else k // 2
    rows = {}
    for h1 in range(k):
        for h2 in range(k):
            rows[h1 + k * h2] = (2.0 * (h2 - center), 2.0 * (h1 - center), -1.0)
    return rows


class GPSA(nn.Module):
    """Gated positional self-attention (official names: ``qk``, ``v``, ``proj``, ``pos_proj``,
    ``gating_param``)."""

    def __init__(self, dim: int, num_heads: int = 8, qkv_bias: bool = False, qk_scale: float | None = None,
                 attn_drop: float = 0.0, proj_drop: float = 0.0, locality_strength: float = 1.0,
                 use_local_init: bool = True, grid: int = 14):
        super().__init__()
        self.num_heads = num_heads
        self.dim = dim
        self.scale = qk_scale or (dim // num_heads) ** -0.5
        self.grid = grid
        self.qk = nn.Linear(dim, dim * 2, bias=qkv_bias)
        self.v = nn.Linear(dim, dim, bias=qkv_bias)
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj = nn.Linear(dim, dim)
        self.pos_proj = nn.Linear(3, num_heads)
        self.proj_drop = nn.Dropout(proj_drop)
        self.locality_strength = locality_strength
        self.gating_param = nn.Parameter(torch.ones(num_heads))
        self.deploy = False
        # Not in the state_dict (the official model keeps it as a plain attribute).
        self.register_buffer("rel_indices", relative_indices(grid), persistent=False)

        self.apply(init_weights_vit)
        if use_local_init and not self.v.weight.is_meta:
            self._local_init(locality_strength)

    @torch.no_grad()
    def _local_init(self, locality_strength: float) -> None:
        self.v.weight.copy_(torch.eye(self.dim))
        w = self.pos_proj.weight
        for head, row in local_init_weights(self.num_heads).items():
            w[head] = torch.tensor(row, dtype=w.dtype)
        w.mul_(locality_strength)

    def positional_attention(self) -> torch.Tensor:
        """softmax over keys of ``pos_proj(rel)``: (1, heads, N, N); independent of the input."""
        return self.pos_proj(self.rel_indices).permute(0, 3, 1, 2).softmax(dim=-1)

    @torch.no_grad()
    def switch_to_deploy(self) -> None:
        w = self.pos_proj.weight
        # Rebuilt here rather than trusting the construction-time buffer (a model built on the
        # meta device and materialised with to_empty() has garbage in non-persistent buffers).
        self.rel_indices = relative_indices(self.grid, device=w.device, dtype=w.dtype)
        gate = torch.sigmoid(self.gating_param).view(1, -1, 1, 1)
        self.register_buffer("pos_attn", gate * self.positional_attention(), persistent=False)
        self.register_buffer("content_gate", 1.0 - gate, persistent=False)
        self.deploy = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, N, C = x.shape
        H = self.num_heads
        qk = self.qk(x).reshape(B, N, 2, H, C // H).permute(2, 0, 3, 1, 4)
        q, k = qk[0], qk[1]
        if self.deploy:
            content = ((q * self.scale) @ k.transpose(-2, -1)).softmax(dim=-1)
            attn = self.content_gate * content + self.pos_attn
        else:  # official order of operations
            content = ((q @ k.transpose(-2, -1)) * self.scale).softmax(dim=-1)
            gate = torch.sigmoid(self.gating_param).view(1, -1, 1, 1)
            attn = (1.0 - gate) * content + gate * self.positional_attention()
        attn = attn / attn.sum(dim=-1, keepdim=True)
        attn = self.attn_drop(attn)
        v = self.v(x).reshape(B, N, H, C // H).permute(0, 2, 1, 3)
        x = (attn @ v).transpose(1, 2).reshape(B, N, C)
        return self.proj_drop(self.proj(x))


class ConViTBlock(nn.Module):
    """Pre-norm block with GPSA (``use_gpsa``) or plain MHSA attention; official key names."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, qkv_bias: bool = False,
                 qk_scale: float | None = None, drop: float = 0.0, attn_drop: float = 0.0, drop_path: float = 0.0,
                 norm_layer=nn.LayerNorm, use_gpsa: bool = True, locality_strength: float = 1.0, grid: int = 14):
        super().__init__()
        self.use_gpsa = use_gpsa
        self.norm1 = norm_layer(dim)
        if use_gpsa:
            self.attn = GPSA(dim, num_heads, qkv_bias, qk_scale, attn_drop, drop,
                             locality_strength=locality_strength, grid=grid)
        else:
            self.attn = Attention(dim, num_heads, qkv_bias, qk_scale, attn_drop, drop)
            self.attn.apply(init_weights_vit)
        self.drop_path = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()
        self.norm2 = norm_layer(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), drop=drop)
        self.mlp.apply(init_weights_vit)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x)))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class ConViT(nn.Module):
    """ConViT with ``embed_dim`` = the final width (official: dims per head x heads)."""

    def __init__(self, img_size: int = 224, patch_size: int = 16, in_chans: int = 3, num_classes: int = 1000,
                 embed_dim: int = 768, depth: int = 12, num_heads: int = 12, mlp_ratio: float = 4.0,
                 qkv_bias: bool = False, qk_scale: float | None = None, drop_rate: float = 0.0,
                 attn_drop_rate: float = 0.0, drop_path_rate: float = 0.0,
                 norm_layer=partial(nn.LayerNorm, eps=1e-6), local_up_to_layer: int = 10,
                 locality_strength: float = 1.0, use_pos_embed: bool = True):
        super().__init__()
        if local_up_to_layer < 0:
            raise UsageError(f"local_up_to_layer={local_up_to_layer} must be >= 0")
        self.num_classes = num_classes
        self.num_features = self.embed_dim = embed_dim
        self.local_up_to_layer = local_up_to_layer
        self.locality_strength = locality_strength
        self.patch_embed = PatchEmbed(img_size, patch_size, in_chans, embed_dim)
        num_patches = self.patch_embed.num_patches
        self.num_patches = num_patches
        self.grid = img_size // patch_size
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_drop = nn.Dropout(p=drop_rate)
        self.pos_embed = nn.Parameter(torch.zeros(1, num_patches, embed_dim)) if use_pos_embed else None
        dpr = drop_path_schedule(drop_path_rate, depth)
        self.blocks = nn.ModuleList([
            ConViTBlock(embed_dim, num_heads, mlp_ratio, qkv_bias, qk_scale, drop_rate, attn_drop_rate, dpr[i],
                        norm_layer=norm_layer, use_gpsa=i < local_up_to_layer,
                        locality_strength=locality_strength, grid=self.grid)
            for i in range(depth)
        ])
        self.norm = norm_layer(embed_dim)
        self.head = nn.Linear(embed_dim, num_classes) if num_classes > 0 else nn.Identity()

        for p in (self.pos_embed, self.cls_token):
            if p is not None and not p.is_meta:
                nn.init.trunc_normal_(p, std=0.02)
        self.head.apply(init_weights_vit)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x)
        if self.pos_embed is not None:
            x = x + self.pos_embed
        x = self.pos_drop(x)
        for blk in self.blocks[: self.local_up_to_layer]:
            x = blk(x)
        if self.local_up_to_layer < len(self.blocks):
            # The class token joins only now (patch tokens 196 -> 197). With GPSA everywhere it
            # never joins and, as in the official code, the first patch token is classified.
            x = torch.cat((self.cls_token.expand(x.shape[0], -1, -1), x), dim=1)
        for blk in self.blocks[self.local_up_to_layer:]:
            x = blk(x)
        return self.norm(x)[:, 0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.forward_features(x))

    def deploy_info(self) -> dict:
        gpsa = [m for m in self.modules() if isinstance(m, GPSA)]
        return {
            "gpsa_blocks": len(gpsa),
            "gpsa_positional_attention": "precomputed" if gpsa and all(m.deploy for m in gpsa) else "computed",
            "tokens": [self.num_patches, self.num_patches + 1],
        }


_TRANSIENT = (".rel_indices", ".pos_attn", ".content_gate")


def checkpoint_filter(state_dict: dict, model: ConViT, notes: list[str]) -> dict:
    """Fit a ConViT checkpoint to ``model``.

    - drops derived GPSA tensors (``rel_indices`` and the deploy buffers) that ports or a
      saved deploy-form model may carry; they are rebuilt from the geometry;
    - rejects a checkpoint of another width with a hint about per-head ``embed_dim``
      (48 vs 64 dims per head: a "+" checkpoint into a plain variant, or the reverse);
    - rejects a position embedding with a class slot (ConViT's has none: DeiT weights?);
    - resizes ``pos_embed`` (bicubic) when the checkpoint was trained on another grid.
    """
    dropped = [k for k in state_dict if k.endswith(_TRANSIENT)]
    for k in dropped:
        del state_dict[k]
    if dropped:
        notes.append(f"dropped {len(dropped)} derived GPSA tensors not in the state_dict (e.g. {dropped[0]})")

    cls = state_dict.get("cls_token")
    width = model.embed_dim
    if cls is not None and cls.shape[-1] != width:
        heads = model.blocks[0].attn.num_heads
        got = cls.shape[-1]
        per_head = f"{got // heads} dims per head" if got % heads == 0 else f"not a multiple of {heads} heads"
        raise CheckpointError(
            f"cls_token: checkpoint width {got} ({per_head}) vs model width {width} "
            f"({width // heads} dims per head x {heads} heads); the official --embed_dim is per head: "
            f"48 gives convit_tiny/small/base, 64 gives the '+' variants convit_*_plus"
        )

    pe = state_dict.get("pos_embed")
    if pe is not None and model.pos_embed is not None and pe.shape != model.pos_embed.shape:
        n = pe.shape[1]
        side = int(round(n**0.5))
        if side * side != n:
            raise CheckpointError(
                f"pos_embed: checkpoint has {n} tokens, not a square grid; ConViT's pos_embed has no "
                f"class-token slot (a DeiT/ViT checkpoint?)"
            )
        if pe.shape[-1] == model.pos_embed.shape[-1]:
            state_dict["pos_embed"] = resize_pos_embed(pe, (model.grid, model.grid), num_prefix_tokens=0)
            notes.append(f"pos_embed resized from {tuple(pe.shape)} to {tuple(state_dict['pos_embed'].shape)}")
    return state_dict


register_family("convit", "ConViT", "facebookresearch/convit", checkpoint_filter)


def _convit(num_heads: int, dims_per_head: int, kwargs: dict) -> ConViT:
    if "embed_dim" in kwargs:
        raise UsageError(
            "ConViT factories fix the width (heads x dims per head); the official --embed_dim is per head: "
            "use convit_*_plus for 64 dims per head"
        )
    return ConViT(embed_dim=num_heads * dims_per_head, num_heads=num_heads, **kwargs)


# Paper (d'Ascoli et al. 2021) table 1: top-1 and FLOPs (= GMACs, rounded to 1-2 digits there);
# official README: convit_tiny Acc@1 73.116. "macs_g_counted": MACs of linears, conv and the
# attention matmuls at 224 px, counted from the architecture.
@register_model("convit", extra={"macs_g_counted": 1.25})
def convit_tiny(**kwargs) -> ConViT:
    return _convit(4, 48, kwargs)


@register_model("convit", extra={"macs_g_counted": 5.74})
def convit_small(**kwargs) -> ConViT:
    return _convit(9, 48, kwargs)


@register_model("convit", extra={"macs_g_counted": 17.49})
def convit_base(**kwargs) -> ConViT:
    return _convit(16, 48, kwargs)


@register_model("convit", notes="official: convit_tiny with --embed_dim 64 (no factory name in the repo)",
                extra={"macs_g_counted": 2.13})
def convit_tiny_plus(**kwargs) -> ConViT:
    return _convit(4, 64, kwargs)


@register_model("convit", notes="official: convit_small with --embed_dim 64 (no factory name in the repo)",
                extra={"macs_g_counted": 9.99})
def convit_small_plus(**kwargs) -> ConViT:
    return _convit(9, 64, kwargs)


@register_model("convit", notes="official: convit_base with --embed_dim 64 (no factory name in the repo)",
                extra={"macs_g_counted": 30.72})
def convit_base_plus(**kwargs) -> ConViT:
    return _convit(16, 64, kwargs)


@register_model("convit", **TINY_TEST_SPEC,
                notes="test-sized: 1 GPSA + 1 MHSA block, 4 heads x 16, patch 8 on 32 px (4x4 grid)")
def convit_tiny_test(**kwargs) -> ConViT:
    kwargs.setdefault("num_classes", 10)
    kwargs.setdefault("img_size", 32)
    return ConViT(patch_size=8, embed_dim=64, depth=2, num_heads=4, local_up_to_layer=1, **kwargs)
