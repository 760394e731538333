"""FastGAN's generator (Liu et al., ICLR 2021) at this layout: nearest upsampling, 3×3 conv,
BatchNorm and GLU per block, and skip-layer excitation: each feature map from 16×16 on is gated
per channel by the map two levels below it. Its discriminator is the DCGAN one (dcgan.py)."""

from __future__ import annotations

import itertools

import torch
from torch import nn

from .registry import register_generator


class SkipLayerExcitation(nn.Module):
    """FastGAN's skip-layer excitation: a channel gate for a large map computed from a small one,
    so coarse layout steers fine texture with a short gradient path to the low levels."""

    def __init__(self, source_channels: int, target_channels: int) -> None:
        super().__init__()
        self.gate = nn.Sequential(
            nn.AdaptiveAvgPool2d(4),
            nn.Conv2d(source_channels, target_channels, 4, 1, 0, bias=False),
            nn.SiLU(),
            nn.Conv2d(target_channels, target_channels, 1, 1, 0, bias=False),
            nn.Sigmoid(),
        )

    def forward(self, source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return target * self.gate(source)


@register_generator("fastgan")
class FastganGenerator(nn.Module):
    """Latent → image in [-1, 1] (GLU blocks with skip-layer excitation)."""

    def __init__(self, widths: list[int], latent_dim: int, channels: int) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        self.stem = nn.Sequential(
            nn.ConvTranspose2d(latent_dim, 2 * widths[0], 4, 1, 0, bias=False),
            nn.BatchNorm2d(2 * widths[0]),
            nn.GLU(dim=1),
        )
        self.blocks = nn.Sequential(
            *(
                nn.Sequential(
                    nn.Upsample(scale_factor=2, mode="nearest"),
                    nn.Conv2d(w_in, 2 * w_out, 3, 1, 1, bias=False),
                    nn.BatchNorm2d(2 * w_out),
                    nn.GLU(dim=1),
                )
                for w_in, w_out in itertools.pairwise(widths)
            )
        )
        # excite[i] gates the output of blocks[i + 1] (16×16 and up) by the map at 4 · 2**i.
        self.excite = nn.ModuleList(
            SkipLayerExcitation(w_src, w_dst)
            for w_src, w_dst in zip(widths, widths[2:], strict=False)
        )
        self.to_image = nn.Conv2d(widths[-1], channels, 3, 1, 1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = self.stem(z.view(z.shape[0], -1, 1, 1))
        features = [x]
        for level, block in enumerate(self.blocks, start=1):
            x = block(x)
            if level >= 2:
                x = self.excite[level - 2](features[level - 2], x)
            features.append(x)
        return torch.tanh(self.to_image(x))
