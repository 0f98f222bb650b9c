"""SReT, the Sliced Recursive Transformer (szq0214/SReT, ECCV 2022).

Architecture: a 3-conv stem (stride 8, BatchNorm), a 4-D position embedding added on the
feature map, then three stages separated by depthwise stride-2 conv poolings. Each stage
alternates weight-shared transformer blocks (every shared block is applied twice: the
"recursion") with small MLP-only "non-projection" blocks; every residual branch is scaled by a
learnable scalar (80 of them). Attention is "sliced": the tokens are cut into groups that
attend only inside their group (``groups1`` on the first pass of a shared block, ``groups2``
on the recursive pass). Global average pooling, LayerNorm, linear head; no class token.
The ``*_wo_slice`` variants (SReT_wo_slice.py) are the same network with one group everywhere;
the ``*_distill`` variants only differ in training (soft-label KD), not in the forward.

Checkpoints: the DeiT-style training script saves ``{"model": state_dict, ...}`` without a
``module.`` prefix (the README loads ``torch.load(path)["model"]``). A shared block is stored
under every position it occupies (``transformers.0.blocks.0.*`` and ``...blocks.2.*`` are the
same tensors): 510 keys, 160 alias groups. The checkpoint filter fills an alias missing from a
checkpoint from its twin, refuses a checkpoint whose twins disagree, and resizes ``pos_embed``
(1, C, H, W) when the checkpoint was trained on another grid.

The permutation, the one place where vitdeploy's numbers differ from the official forward:
on the recursive pass of a block with ``groups2 != 1`` the official code shuffles the tokens
with ``torch.randperm(N)`` on every call, also at inference, so its logits change from call to
call and neither ONNX exporter can express the op. vitdeploy draws one permutation per such
block at construction from ``permutation_seed`` (default 0, Python's ``random.Random``; plain
Python, so it works on the meta device), keeps it and its precomputed inverse in non-persistent
buffers, and uses them in BOTH the plain and the deploy form, so the PyTorch reference and the
exported graph agree. ``deploy_info()`` returns the seed and the permutations for the manifest.
The official behaviour (a fresh ``randperm`` and ``argsort`` per forward) is kept behind
``fixed_permutation=False``; such a model cannot be made deploy-ready.

Deploy form (``switch_to_deploy``): in ``GroupAttention`` the groups are folded into the batch
axis (5-D attention instead of 6-D), the scale is folded into Q (MatMul -> Softmax -> MatMul)
and the permutation and its precomputed inverse are applied with ``index_select`` on a constant
index (one plain Gather each: no GatherND, no TopK); stages reshape with constant shapes (only
the batch axis is -1); the global average pool becomes an AveragePool over the known final grid.
"""

from __future__ import annotations

import random
from functools import partial
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from vitdeploy.core.errors import CheckpointError, UsageError
from vitdeploy.models.layers import DropPath, Mlp, resize_pos_embed
from vitdeploy.models.registry import register_family, register_model
from vitdeploy.models.spec import TINY_TEST_SPEC

_LayerNorm = partial(nn.LayerNorm, eps=1e-6)


class LearnableScale(nn.Module):
    """A learnable scalar gain on a residual path (official name of the scalar: ``bias``)."""

    def __init__(self):
        super().__init__()
        self.bias = nn.Parameter(torch.ones(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.bias


class GroupAttention(nn.Module):
    """Multi-head self-attention inside token groups (``qkv``/``proj`` as in timm).

    ``groups`` is used on a block's first pass, ``recursive_groups`` on its recursive pass, where
    the tokens are permuted first when ``recursive_groups != 1`` (and restored afterwards).
    """

    def __init__(self, dim: int, num_heads: int, groups: int = 1, recursive_groups: int = 1,
                 qkv_bias: bool = True, qk_scale: float | None = None, attn_drop: float = 0.0,
                 proj_drop: float = 0.0, fixed_permutation: bool = True, num_tokens: int | None = None):
        super().__init__()
        self.dim = dim
        self.num_heads = num_heads
        self.num_tokens = num_tokens  # known per stage; lets the deploy form use constant shapes
        self.groups = groups
        self.recursive_groups = recursive_groups
        self.scale = qk_scale or (dim // num_heads) ** -0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)
        self.fixed_permutation = fixed_permutation
        self.deploy = False
        self.permutation: list[int] | None = None  # plain-Python copy for deploy_info()
        self.register_buffer("perm", None, persistent=False)
        self.register_buffer("perm_inv", None, persistent=False)

    @property
    def needs_permutation(self) -> bool:
        return self.recursive_groups != 1

    def set_permutation(self, perm: list[int]) -> None:
        """Fix the token permutation of the recursive pass (and its inverse, computed here)."""
        perm = [int(p) for p in perm]
        n = len(perm)
        if sorted(perm) != list(range(n)):
            raise ValueError("not a permutation of 0..N-1")
        if n % self.recursive_groups:
            raise ValueError(f"{n} tokens cannot be cut into {self.recursive_groups} groups")
        inverse = _inverse(perm)
        self.permutation = perm
        device = self.qkv.weight.device
        self.perm = torch.tensor(perm, dtype=torch.long, device=device)
        self.perm_inv = torch.tensor(inverse, dtype=torch.long, device=device)

    def switch_to_deploy(self) -> None:
        if self.needs_permutation and not self.fixed_permutation:
            raise UsageError("SReT built with fixed_permutation=False draws a new token permutation on every "
                             "forward and cannot be exported; build it with fixed_permutation=True (the default)")
        self.deploy = True

    def _check_tokens(self, n: int) -> None:
        if self.perm is None:
            raise RuntimeError("no fixed permutation set: call set_permutation() (SReT does it at construction)")
        if n != self.perm.shape[0]:
            raise ValueError(f"the fixed permutation covers {self.perm.shape[0]} tokens but the input has {n}; "
                             "build the model for this input size")

    def _attention_grouped(self, x: torch.Tensor, groups: int) -> torch.Tensor:
        # Official layout: (B, groups, N/groups, 3, heads, head_dim), scale applied to the logits.
        B, N, C = x.shape
        qkv = self.qkv(x).reshape(B, groups, N // groups, 3, self.num_heads, C // self.num_heads)
        q, k, v = qkv.permute(3, 0, 1, 4, 2, 5).unbind(0)
        attn = self.attn_drop(((q @ k.transpose(-2, -1)) * self.scale).softmax(dim=-1))
        return (attn @ v).permute(0, 1, 3, 2, 4).reshape(B, N, C)

    def _attention_flat(self, x: torch.Tensor, groups: int) -> torch.Tensor:
        # Deploy layout: groups folded into the batch axis, scale folded into Q; constant shapes
        # (only the batch axis is left to -1).
        N = self.num_tokens if self.num_tokens is not None else x.shape[1]
        C = self.dim
        qkv = self.qkv(x).reshape(-1, N // groups, 3, self.num_heads, C // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        attn = self.attn_drop(((q * self.scale) @ k.transpose(-2, -1)).softmax(dim=-1))
        return (attn @ v).transpose(1, 2).reshape(-1, N, C)

    def forward(self, x: torch.Tensor, recursive: bool = False) -> torch.Tensor:
        groups = self.recursive_groups if recursive else self.groups
        shuffle = recursive and groups != 1
        inverse = None
        if shuffle:
            if self.deploy:  # the stage's constant reshapes already pin the token count
                if self.perm is None:
                    raise RuntimeError("no fixed permutation set")
                x = torch.index_select(x, 1, self.perm)
                inverse = self.perm_inv
            elif self.fixed_permutation:
                self._check_tokens(x.shape[1])
                x = x[:, self.perm, :]
                inverse = self.perm_inv
            else:  # official behaviour: a fresh permutation on every call
                idx = torch.randperm(x.shape[1], device=x.device)
                x = x[:, idx, :]
                inverse = torch.argsort(idx)
        if self.deploy:
            x = self._attention_flat(x, groups)
        else:
            x = self._attention_grouped(x, groups)
        if inverse is not None:
            x = torch.index_select(x, 1, inverse) if self.deploy else x[:, inverse, :]
        return self.proj_drop(self.proj(x))


class SReTBlock(nn.Module):
    """Shared transformer block: scaled residuals around group attention and an MLP."""

    def __init__(self, dim: int, num_heads: int, groups: int, recursive_groups: int, mlp_ratio: float,
                 qkv_bias: bool = True, drop: float = 0.0, attn_drop: float = 0.0, drop_path: float = 0.0,
                 fixed_permutation: bool = True, num_tokens: int | None = None):
        super().__init__()
        self.norm1 = _LayerNorm(dim)
        self.attn = GroupAttention(dim, num_heads, groups, recursive_groups, qkv_bias=qkv_bias,
                                   attn_drop=attn_drop, proj_drop=drop, fixed_permutation=fixed_permutation,
                                   num_tokens=num_tokens)
        self.drop_path = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()
        self.norm2 = _LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), drop=drop)
        self.coefficient1 = LearnableScale()
        self.coefficient2 = LearnableScale()
        self.coefficient3 = LearnableScale()
        self.coefficient4 = LearnableScale()

    def forward(self, x: torch.Tensor, recursive: bool = False) -> torch.Tensor:
        x = self.coefficient1(x) + self.coefficient2(self.drop_path(self.attn(self.norm1(x), recursive)))
        return self.coefficient3(x) + self.coefficient4(self.drop_path(self.mlp(self.norm2(x))))


class NonProjection(nn.Module):
    """The MLP-only block placed after every pass of a shared block (official ``Non_proj``)."""

    def __init__(self, dim: int, mlp_ratio: float = 1.0, drop: float = 0.0):
        super().__init__()
        self.norm1 = _LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), drop=drop)
        self.coefficient1 = LearnableScale()
        self.coefficient2 = LearnableScale()

    def forward(self, x: torch.Tensor, recursive: bool = False) -> torch.Tensor:
        return self.coefficient1(x) + self.coefficient2(self.mlp(self.norm1(x)))


class RecursiveStage(nn.Module):
    """One stage: ``recursive_num`` shared blocks, each applied ``depth // recursive_num`` times,
    each pass followed by its own NonProjection. ``blocks`` lists the passes in order, so a shared
    block appears (and is saved) under several indices.
    """

    def __init__(self, base_dim: int, depth: int, recursive_num: int, groups: int, recursive_groups: int,
                 heads: int, mlp_ratio: float, np_mlp_ratio: float, drop_rate: float = 0.0,
                 attn_drop_rate: float = 0.0, drop_path_prob: list[float] | None = None,
                 fixed_permutation: bool = True, grid: int | None = None):
        super().__init__()
        dim = base_dim * heads
        self.dim = dim
        self.grid = grid  # side of the token grid, when known: the deploy form reshapes with constants
        self.deploy = False
        dpr = drop_path_prob or [0.0] * depth
        tokens = grid * grid if grid is not None else None
        shared = [SReTBlock(dim, heads, groups, recursive_groups, mlp_ratio, qkv_bias=True, drop=drop_rate,
                            attn_drop=attn_drop_rate, drop_path=dpr[r], fixed_permutation=fixed_permutation,
                            num_tokens=tokens)
                  for r in range(recursive_num)]
        loops = int(depth / recursive_num)
        passes: list[nn.Module] = []
        for r in range(recursive_num):
            for _ in range(loops):
                passes.append(shared[r])
                passes.append(NonProjection(dim, np_mlp_ratio, drop=drop_rate))
        self.blocks = nn.ModuleList(passes)
        # The official rule: positions 2, 6, 10, ... (the second pass of each shared block) are recursive.
        self.recursive_flags = [(i + 2) % 4 == 0 for i in range(len(passes))]

    def switch_to_deploy(self) -> None:
        self.deploy = self.grid is not None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.deploy:  # constant shapes, batch left to -1
            C, H, W = self.dim, self.grid, self.grid
            x = x.reshape(-1, C, H * W).transpose(1, 2)
        else:
            _, C, H, W = x.shape
            x = x.flatten(2).transpose(1, 2)
        for blk, recursive in zip(self.blocks, self.recursive_flags):
            x = blk(x, recursive)
        return x.transpose(1, 2).reshape(-1, C, H, W)


class ConvStem(nn.Module):
    """Three 3x3 stride-2 conv-BN-ReLU layers (stride 8 in all)."""

    def __init__(self, in_chans: int, out_chans: int):
        super().__init__()
        mid = int(out_chans / 2)
        self.conv1 = nn.Conv2d(in_chans, mid, 3, stride=2, padding=1)
        self.bn1 = nn.BatchNorm2d(mid)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(mid, out_chans, 3, stride=2, padding=1)
        self.bn2 = nn.BatchNorm2d(out_chans)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv3 = nn.Conv2d(out_chans, out_chans, 3, stride=2, padding=1)
        self.bn3 = nn.BatchNorm2d(out_chans)
        self.relu3 = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu1(self.bn1(self.conv1(x)))
        x = self.relu2(self.bn2(self.conv2(x)))
        return self.relu3(self.bn3(self.conv3(x)))


class DepthwisePool(nn.Module):
    """Stage transition: depthwise (channel-multiplier) strided conv."""

    def __init__(self, in_chans: int, out_chans: int, stride: int = 2):
        super().__init__()
        self.conv = nn.Conv2d(in_chans, out_chans, kernel_size=stride + 1, padding=stride // 2, stride=stride,
                              groups=in_chans)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class SReT(nn.Module):
    """Sliced recursive transformer. ``groups1``/``groups2``: token groups of the first/recursive pass
    per stage (all 1 gives the ``*_wo_slice`` network). ``permutation_seed`` / ``fixed_permutation``:
    see the module docstring.
    """

    def __init__(self, image_size: int = 224, patch_size: int = 16, stride: int = 8,
                 base_dims: tuple[int, ...] = (32, 32, 32), depth: tuple[int, ...] = (4, 10, 6),
                 recursive_num: tuple[int, ...] = (2, 5, 3), groups1: tuple[int, ...] = (8, 4, 1),
                 groups2: tuple[int, ...] = (2, 1, 1), heads: tuple[int, ...] = (2, 4, 8),
                 mlp_ratio: float = 3.6, np_mlp_ratio: float = 1.0, num_classes: int = 1000, in_chans: int = 3,
                 attn_drop_rate: float = 0.0, drop_rate: float = 0.0, drop_path_rate: float = 0.1,
                 permutation_seed: int = 0, fixed_permutation: bool = True):
        super().__init__()
        n_stages = len(depth)
        self.num_classes = num_classes
        self.base_dims = list(base_dims)
        self.heads = list(heads)
        self.patch_size = patch_size  # recorded, unused (as in the official code)
        self.permutation_seed = permutation_seed
        self.fixed_permutation = fixed_permutation
        self.deploy = False
        width = int(image_size / 8)
        dim0 = base_dims[0] * heads[0]
        self.pos_embed = nn.Parameter(torch.zeros(1, dim0, width, width))
        self.patch_embed = ConvStem(in_chans, dim0)
        self.pos_drop = nn.Dropout(p=drop_rate)

        total = sum(depth)
        start = 0
        grids = []
        grid = width
        self.transformers = nn.ModuleList()
        self.pools = nn.ModuleList()
        for s in range(n_stages):
            dpr = [drop_path_rate * i / total for i in range(start, start + depth[s])]
            start += depth[s]
            tokens = grid * grid
            for g in (groups1[s], groups2[s]):
                if tokens % g:
                    raise ValueError(f"stage {s}: {tokens} tokens ({grid}x{grid}) cannot be cut into {g} groups")
            grids.append(grid)
            self.transformers.append(RecursiveStage(base_dims[s], depth[s], recursive_num[s], groups1[s], groups2[s],
                                                    heads[s], mlp_ratio, np_mlp_ratio, drop_rate, attn_drop_rate,
                                                    dpr, fixed_permutation=fixed_permutation, grid=grid))
            if s < n_stages - 1:
                self.pools.append(DepthwisePool(base_dims[s] * heads[s], base_dims[s + 1] * heads[s + 1], stride=2))
                grid = (grid - 1) // 2 + 1  # kernel 3, stride 2, padding 1
        self.grids = grids
        self.embed_dim = base_dims[-1] * heads[-1]
        self.norm = _LayerNorm(self.embed_dim)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.head = nn.Linear(self.embed_dim, num_classes) if num_classes > 0 else nn.Identity()

        self._draw_permutations()
        if not self.pos_embed.is_meta:
            nn.init.trunc_normal_(self.pos_embed, std=0.02)

    def _draw_permutations(self) -> None:
        # One permutation per shared block whose recursive pass is sliced, drawn in module order.
        rng = random.Random(self.permutation_seed)
        self.permutation_sites: dict[str, GroupAttention] = {}
        for s, stage in enumerate(self.transformers):
            n = self.grids[s] ** 2
            for i, (blk, recursive) in enumerate(zip(stage.blocks, stage.recursive_flags)):
                if recursive and isinstance(blk, SReTBlock) and blk.attn.needs_permutation:
                    if blk.attn.permutation is None:
                        perm = list(range(n))
                        rng.shuffle(perm)
                        blk.attn.set_permutation(perm)
                    self.permutation_sites[f"transformers.{s}.blocks.{i}.attn"] = blk.attn

    def deploy_info(self) -> dict[str, Any]:
        sites = self.permutation_sites
        return {
            "permutation_seed": self.permutation_seed,
            "fixed_permutation": self.fixed_permutation,
            "permutation_generator": "python random.Random(seed).shuffle, in module order",
            "permutations": {name: list(a.permutation) for name, a in sites.items()},
            "inverse_permutations": {name: _inverse(a.permutation) for name, a in sites.items()},
            "note": "the official SReT draws torch.randperm per forward on these recursive passes; "
                    "vitdeploy fixes them (same in the PyTorch reference and the export)",
        }

    def switch_to_deploy(self) -> None:
        # Global average pooling as AveragePool over the (known) final grid: AdaptiveAvgPool2d
        # becomes ReduceMean under the dynamo exporter, whose axes input defeats its 18 -> 17
        # down-conversion (the file silently stays opset 18).
        self.deploy = True

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pos_drop(self.patch_embed(x) + self.pos_embed)
        for stage, pool in zip(self.transformers, self.pools):
            x = pool(stage(x))
        x = self.transformers[-1](x)
        if self.deploy:
            x = F.avg_pool2d(x, self.grids[-1])
        else:
            x = self.avgpool(x)
        return self.norm(torch.flatten(x, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.forward_features(x))


def _inverse(perm: list[int]) -> list[int]:
    inv = [0] * len(perm)
    for position, token in enumerate(perm):
        inv[token] = position
    return inv


def alias_groups(model: nn.Module) -> list[list[str]]:
    """state_dict keys that name the same tensor (a shared block saved at each of its positions)."""
    seen: dict[int, list[str]] = {}
    for key, value in model.state_dict(keep_vars=True).items():
        seen.setdefault(id(value), []).append(key)
    return [keys for keys in seen.values() if len(keys) > 1]


def checkpoint_filter(state_dict: dict, model: SReT, notes: list[str]) -> dict:
    """Complete/verify shared-block aliases and resize ``pos_embed`` trained on another grid."""
    filled = 0
    for keys in alias_groups(model):
        present = [k for k in keys if k in state_dict]
        if not present:
            continue  # reported as missing by the loader
        ref_key = present[0]
        ref = state_dict[ref_key]
        for k in present[1:]:
            other = state_dict[k]
            if other.shape != ref.shape or not torch.equal(other, ref):
                raise CheckpointError(f"shared-block aliases {ref_key} and {k} hold different values "
                                      "(the same weights are saved under both keys); the checkpoint is inconsistent")
        for k in keys:
            if k not in state_dict:
                state_dict[k] = ref
                filled += 1
    if filled:
        notes.append(f"filled {filled} shared-block alias keys from their saved twin")

    pe = state_dict.get("pos_embed")
    target = model.pos_embed
    if (pe is not None and pe.ndim == 4 and pe.shape[:2] == target.shape[:2] and pe.shape[2] == pe.shape[3]
            and pe.shape != target.shape):
        c, h, w = target.shape[1:]
        tokens = pe.flatten(2).transpose(1, 2)
        resized = resize_pos_embed(tokens, (h, w), num_prefix_tokens=0)
        state_dict["pos_embed"] = resized.transpose(1, 2).reshape(1, c, h, w).contiguous()
        notes.append(f"pos_embed resized from {tuple(pe.shape)} to {tuple(target.shape)} (bicubic)")
    return state_dict


register_family("sret", "SReT (Sliced Recursive Transformer)", "szq0214/SReT", checkpoint_filter)


def _build(cfg: dict[str, Any], kwargs: dict[str, Any]) -> SReT:
    for k, v in cfg.items():
        kwargs.setdefault(k, v)
    return SReT(**kwargs)


_T = dict(image_size=224, base_dims=(32, 32, 32), depth=(4, 10, 6), recursive_num=(2, 5, 3), heads=(2, 4, 8),
          groups1=(8, 4, 1), groups2=(2, 1, 1), mlp_ratio=3.6, np_mlp_ratio=1)
_LT = dict(_T, mlp_ratio=4.0)
_S = dict(_T, base_dims=(42, 42, 42), heads=(3, 6, 12), mlp_ratio=3.0, np_mlp_ratio=2)
_NO_SLICE = dict(groups1=(1, 1, 1), groups2=(1, 1, 1), drop_path_rate=0.0)

# README table: top-1, "FLOPs" (= GMACs: 1.112 / 1.164 / 4.173 counted here), params.
# extra["paper_params"]: the parameter count the paper / FACTS.md give.
_PERM = "fixed token permutation on the sliced recursive pass (seed 0); official draws randperm per call"


@register_model("sret", notes=_PERM, extra={"paper_params": 4.76e6})
def SReT_T(**kwargs) -> SReT:
    return _build(_T, kwargs)


@register_model("sret", notes=_PERM, extra={"paper_params": 4.99e6})
def SReT_LT(**kwargs) -> SReT:
    return _build(_LT, kwargs)


@register_model("sret", notes=_PERM, extra={"paper_params": 20.9e6})
def SReT_S(**kwargs) -> SReT:
    return _build(_S, kwargs)


@register_model("sret", notes=_PERM + "; KD-trained", extra={"paper_params": 4.76e6})
def SReT_T_distill(**kwargs) -> SReT:
    return _build(_T, kwargs)


@register_model("sret", notes=_PERM + "; KD-trained", extra={"paper_params": 4.99e6})
def SReT_LT_distill(**kwargs) -> SReT:
    return _build(_LT, kwargs)


# Without slicing (SReT_wo_slice.py): one group everywhere, so no permutation. The official
# SReT_T_wo_slice / SReT_LT_wo_slice factories omit the required np_mlp_ratio; 1 (as in SReT_T,
# and the README's 4.8M / 5.0M) is used.
@register_model("sret", extra={"paper_params": 4.76e6})
def SReT_T_wo_slice(**kwargs) -> SReT:
    return _build(dict(_T, **_NO_SLICE), kwargs)


@register_model("sret", extra={"paper_params": 4.99e6})
def SReT_LT_wo_slice(**kwargs) -> SReT:
    return _build(dict(_LT, **_NO_SLICE), kwargs)


@register_model("sret", extra={"paper_params": 20.9e6})
def SReT_S_wo_slice(**kwargs) -> SReT:
    return _build(dict(_S, **_NO_SLICE), kwargs)


@register_model("sret", notes="KD-trained", extra={"paper_params": 4.99e6})
def SReT_LT_wo_slice_distill(**kwargs) -> SReT:
    return _build(dict(_LT, **_NO_SLICE), kwargs)


# README: 21.0M, but the 384 px position embedding alone adds 126 * (48^2 - 28^2) = 191,520 to
# SReT_S's 20,899,692; the exact count is the official code's.
@register_model("sret", input_size=(3, 384, 384),
                notes="KD-trained, fine-tuned at 384 px", extra={"paper_params": 21.0e6})
def SReT_S_wo_slice_finetune_384(**kwargs) -> SReT:
    return _build(dict(_S, **_NO_SLICE, image_size=384), kwargs)


@register_model("sret", **TINY_TEST_SPEC,
                notes="test-sized: 2 stages (4x4 and 2x2 tokens), 1 shared block each applied twice, "
                      "groups 4/2 then 2/2 (two permutations), widths 12/24, MLP 43/86")
def sret_tiny_test(**kwargs) -> SReT:
    kwargs.setdefault("num_classes", 10)
    return _build(dict(image_size=32, base_dims=(6, 6), depth=(2, 2), recursive_num=(1, 1), heads=(2, 4),
                       groups1=(4, 2), groups2=(2, 2), mlp_ratio=3.6, np_mlp_ratio=1), kwargs)
