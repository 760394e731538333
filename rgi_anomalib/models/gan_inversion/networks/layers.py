"""Layers and sizing shared by the generator families."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

MIN_IMAGE_SIZE, MAX_IMAGE_SIZE = 32, 256


def check_image_size(image_size: int) -> int:
    """Return ``image_size`` if the generator can produce it, else raise one clear error."""
    if (
        not isinstance(image_size, int)
        or image_size < MIN_IMAGE_SIZE
        or image_size > MAX_IMAGE_SIZE
        or image_size & (image_size - 1)
    ):
        msg = (
            f"image_size={image_size!r} cannot be produced by the generator: it grows 4×4 by "
            f"doubling, so image_size must be a power of two in [{MIN_IMAGE_SIZE}, "
            f"{MAX_IMAGE_SIZE}] (32, 64, 128 or 256)."
        )
        raise ValueError(msg)
    return image_size


def widths_for(image_size: int, base_width: int, max_width: int) -> list[int]:
    """Channel widths at resolutions 4, 8, ..., image_size (wide at low resolution)."""
    n_levels = int(math.log2(image_size)) - 1
    return [min(max_width, base_width * 2 ** (n_levels - 1 - i)) for i in range(n_levels)]


class EqualizedConv2d(nn.Module):
    """Conv with weights scaled at run time by He's constant (ProGAN's equalised learning rate)."""

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int, padding: int = 0) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_ch, in_ch, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_ch))
        self.scale = 1.0 / math.sqrt(in_ch * kernel_size * kernel_size)
        self.padding = padding

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight * self.scale, self.bias, padding=self.padding)


class EqualizedLinear(nn.Module):
    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_features, in_features))
        self.bias = nn.Parameter(torch.zeros(out_features))
        self.scale = 1.0 / math.sqrt(in_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight * self.scale, self.bias)


class PixelNorm(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(dim=1, keepdim=True) + 1e-8)


class MinibatchStd(nn.Module):
    """Appends the mean over features of the per-feature std across the (sub)batch."""

    def __init__(self, group_size: int = 4) -> None:
        super().__init__()
        self.group_size = group_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        g = math.gcd(b, self.group_size)
        std = x.view(g, -1, c, h, w).std(dim=0, unbiased=False).mean(dim=(1, 2, 3))
        std = std.view(-1, 1, 1, 1).repeat(g, 1, h, w)
        return torch.cat([x, std], dim=1)
