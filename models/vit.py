"""ViT / DeiT (facebookresearch/deit; timm's VisionTransformer, whose names DeiT checkpoints use).

Checkpoints: ``{"model": state_dict, "optimizer": ..., "args": Namespace}`` from the DeiT
training script, or a bare state dict. Distilled variants add ``dist_token``/``head_dist`` and
average both heads at inference.
"""

from __future__ import annotations

from functools import partial

import torch
from torch import nn

from vitdeploy.models.layers import Block, PatchEmbed, drop_path_schedule, init_weights_vit, resize_pos_embed
from vitdeploy.models.registry import register_family, register_model
from vitdeploy.models.spec import TINY_TEST_SPEC


class VisionTransformer(nn.Module):
    def __init__(self, img_size: int = 224, patch_size: int = 16, in_chans: int = 3, num_classes: int = 1000,
                 embed_dim: int = 768, depth: int = 12, num_heads: int = 12, mlp_ratio: float = 4.0,
                 qkv_bias: bool = True, qk_scale: float | None = None, drop_rate: float = 0.0,
                 attn_drop_rate: float = 0.0, drop_path_rate: float = 0.0, distilled: bool = False,
                 norm_layer=partial(nn.LayerNorm, eps=1e-6)):
        super().__init__()
        self.num_classes = num_classes
        self.embed_dim = embed_dim
        self.distilled = distilled
        self.num_prefix_tokens = 2 if distilled else 1
        self.patch_embed = PatchEmbed(img_size, patch_size, in_chans, embed_dim)
        num_patches = self.patch_embed.num_patches
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.dist_token = nn.Parameter(torch.zeros(1, 1, embed_dim)) if distilled else None
        self.pos_embed = nn.Parameter(torch.zeros(1, num_patches + self.num_prefix_tokens, embed_dim))
        self.pos_drop = nn.Dropout(p=drop_rate)
        dpr = drop_path_schedule(drop_path_rate, depth)
        self.blocks = nn.ModuleList([
            Block(embed_dim, num_heads, mlp_ratio, qkv_bias, qk_scale, drop_rate, attn_drop_rate, dpr[i],
                  norm_layer=norm_layer)
            for i in range(depth)
        ])
        self.norm = norm_layer(embed_dim)
        self.head = nn.Linear(embed_dim, num_classes) if num_classes > 0 else nn.Identity()
        self.head_dist = (nn.Linear(embed_dim, num_classes) if num_classes > 0 else nn.Identity()) if distilled else None

        for p in (self.pos_embed, self.cls_token, self.dist_token):
            if p is not None and not p.is_meta:
                nn.init.trunc_normal_(p, std=0.02)
        self.apply(init_weights_vit)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x)
        prefix = [self.cls_token.expand(x.shape[0], -1, -1)]
        if self.dist_token is not None:
            prefix.append(self.dist_token.expand(x.shape[0], -1, -1))
        x = self.pos_drop(torch.cat(prefix + [x], dim=1) + self.pos_embed)
        for blk in self.blocks:
            x = blk(x)
        return self.norm(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.forward_features(x)
        logits = self.head(x[:, 0])
        if self.head_dist is not None:
            dist = self.head_dist(x[:, 1])
            if self.training:
                return logits, dist  # type: ignore[return-value]
            return (logits + dist) / 2
        return logits


def checkpoint_filter(state_dict: dict, model: VisionTransformer, notes: list[str]) -> dict:
    """Resize position embeddings trained on another grid (e.g. a 384 px checkpoint into 224)."""
    pe = state_dict.get("pos_embed")
    if pe is not None and pe.shape != model.pos_embed.shape:
        n = model.pos_embed.shape[1] - model.num_prefix_tokens
        side = int(n**0.5)
        state_dict["pos_embed"] = resize_pos_embed(pe, (side, side), model.num_prefix_tokens)
        notes.append(f"pos_embed resized from {tuple(pe.shape)} to {tuple(state_dict['pos_embed'].shape)}")
    return state_dict


register_family("vit", "ViT / DeiT", "facebookresearch/deit", checkpoint_filter)


def _deit(**kwargs) -> VisionTransformer:
    return VisionTransformer(patch_size=16, mlp_ratio=4, qkv_bias=True, **kwargs)


# DeiT table 1 / repo README: top-1, GFLOPs (= GMACs), params
@register_model("vit")
def deit_tiny_patch16_224(**kwargs) -> VisionTransformer:
    return _deit(embed_dim=192, depth=12, num_heads=3, **kwargs)


@register_model("vit")
def deit_small_patch16_224(**kwargs) -> VisionTransformer:
    return _deit(embed_dim=384, depth=12, num_heads=6, **kwargs)


@register_model("vit")
def deit_base_patch16_224(**kwargs) -> VisionTransformer:
    return _deit(embed_dim=768, depth=12, num_heads=12, **kwargs)


@register_model("vit")
def deit_tiny_distilled_patch16_224(**kwargs) -> VisionTransformer:
    return _deit(embed_dim=192, depth=12, num_heads=3, distilled=True, **kwargs)


@register_model("vit")
def deit_small_distilled_patch16_224(**kwargs) -> VisionTransformer:
    return _deit(embed_dim=384, depth=12, num_heads=6, distilled=True, **kwargs)


@register_model("vit")
def deit_base_distilled_patch16_224(**kwargs) -> VisionTransformer:
    return _deit(embed_dim=768, depth=12, num_heads=12, distilled=True, **kwargs)


@register_model("vit", **TINY_TEST_SPEC, notes="test-sized: 2 blocks, width 64, patch 8 on 32 px")
def vit_tiny_test(**kwargs) -> VisionTransformer:
    kwargs.setdefault("num_classes", 10)
    kwargs.setdefault("img_size", 32)
    return VisionTransformer(patch_size=8, embed_dim=64, depth=2, num_heads=2, **kwargs)
