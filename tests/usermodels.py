"""Models outside the zoo, for the `package.module:function` export path."""

import torch
import torch.nn.functional as F
from torch import nn


class SmallSdpaViT(nn.Module):
    """A user ViT written with F.scaled_dot_product_attention and nn.TransformerEncoderLayer-free blocks."""

    def __init__(self, dim=32, heads=2, classes=7):
        super().__init__()
        self.heads = heads
        self.patch = nn.Conv2d(3, dim, 8, 8)
        self.cls = nn.Parameter(torch.randn(1, 1, dim) * 0.02)
        self.pos = nn.Parameter(torch.randn(1, 17, dim) * 0.02)
        self.norm1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))
        self.head = nn.Linear(dim, classes)

    def forward(self, x):
        x = self.patch(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls.expand(x.shape[0], -1, -1), x], 1) + self.pos
        B, N, C = x.shape
        q, k, v = self.qkv(self.norm1(x)).reshape(B, N, 3, self.heads, C // self.heads).permute(2, 0, 3, 1, 4)
        x = x + self.proj(F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(B, N, C))
        x = x + self.mlp(self.norm2(x))
        return self.head(x[:, 0])


def build_small_vit():
    torch.manual_seed(0)
    return SmallSdpaViT()


class ExportDrift(nn.Module):
    """Behaves differently while being exported: a planted parity failure."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3 * 32 * 32, 5)

    def forward(self, x):
        y = self.fc(x.flatten(1))
        if torch.onnx.is_in_onnx_export():
            y = y + 0.05
        return y


def build_drift():
    torch.manual_seed(0)
    return ExportDrift()


class ReflectPad(nn.Module):
    """Reflect padding: the dynamo exporter cannot convert its Pad down to opset 17."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        x = self.conv(F.pad(x, (1, 1, 1, 1), mode="reflect"))
        return self.fc(x.mean((2, 3)))


def build_reflect_pad():
    torch.manual_seed(0)
    return ReflectPad()


def not_a_module():
    return 42


class _PlainBlock(nn.Module):
    """A pre-norm ViT block with an explicit attention scale (1.0 = unscaled logits)."""

    def __init__(self, dim, heads, scale):
        super().__init__()
        self.heads, self.scale = heads, scale
        self.norm1, self.norm2 = nn.LayerNorm(dim, eps=1e-6), nn.LayerNorm(dim, eps=1e-6)
        self.qkv, self.proj = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))

    def forward(self, x):
        B, N, C = x.shape
        q, k, v = self.qkv(self.norm1(x)).reshape(B, N, 3, self.heads, C // self.heads).permute(2, 0, 3, 1, 4)
        attn = ((q @ k.transpose(-2, -1)) * self.scale).softmax(-1)
        x = x + self.proj((attn @ v).transpose(1, 2).reshape(B, N, C))
        return x + self.mlp(self.norm2(x))


class FP16HostileViT(nn.Module):
    """Finite and correct in FP32, beyond FP16 inside nodes a float16 pass keeps in FP32."""

    def __init__(self, dim=32, heads=2, depth=2, classes=10, scale=None):
        super().__init__()
        self.patch = nn.Conv2d(3, dim, 8, 8)
        self.cls = nn.Parameter(torch.randn(1, 1, dim) * 0.02)
        self.pos = nn.Parameter(torch.randn(1, 17, dim) * 0.02)
        self.blocks = nn.Sequential(*[_PlainBlock(dim, heads, scale or (dim // heads) ** -0.5) for _ in range(depth)])
        self.norm, self.head = nn.LayerNorm(dim, eps=1e-6), nn.Linear(dim, classes)

    def forward(self, x):
        x = self.patch(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls.expand(x.shape[0], -1, -1), x], 1) + self.pos
        return self.head(self.norm(self.blocks(x))[:, 0])


def build_massive_residual():
    """A few residual channels near 2000 ("massive activations"): (x - mean)^2 ~ 4e6 in LayerNorm."""
    torch.manual_seed(0)
    m = FP16HostileViT()
    with torch.no_grad():
        m.pos[:, :, :3] += 2000.0
    return m


def build_unscaled_logits():
    """No 1/sqrt(d) and large q/k weights: attention logits ~1e5 before the Softmax."""
    torch.manual_seed(1)
    m = FP16HostileViT(scale=1.0)
    with torch.no_grad():
        for b in m.blocks:
            b.qkv.weight[:64] *= 200.0
    return m
