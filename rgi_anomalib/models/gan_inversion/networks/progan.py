"""ProGAN: the paper's PGGAN building blocks without progressive growing — equalised learning
rate, pixel norm in G, minibatch standard deviation in D."""

from __future__ import annotations

import itertools

import torch
from torch import nn

from .layers import EqualizedConv2d, EqualizedLinear, MinibatchStd, PixelNorm
from .registry import register_discriminator, register_generator


class _Reshape(nn.Module):
    """Latent (B×d) to a 1×1 feature map; the first ProGAN conv pads it to 4×4."""

    def __init__(self, latent_dim: int) -> None:
        super().__init__()
        self.latent_dim = latent_dim

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return z.view(-1, self.latent_dim, 1, 1)


@register_generator("progan")
class ProganGenerator(nn.Module):
    """Latent → image in [-1, 1]: nearest upsampling and two equalised 3×3 convs per doubling."""

    def __init__(self, widths: list[int], latent_dim: int, channels: int) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        self.stem = nn.Sequential(
            PixelNorm(),
            _Reshape(latent_dim),
            EqualizedConv2d(latent_dim, widths[0], 4, padding=3),
            nn.LeakyReLU(0.2),
            PixelNorm(),
            EqualizedConv2d(widths[0], widths[0], 3, padding=1),
            nn.LeakyReLU(0.2),
            PixelNorm(),
        )
        self.blocks = nn.Sequential(
            *(
                nn.Sequential(
                    nn.Upsample(scale_factor=2, mode="nearest"),
                    EqualizedConv2d(w_in, w_out, 3, padding=1),
                    nn.LeakyReLU(0.2),
                    PixelNorm(),
                    EqualizedConv2d(w_out, w_out, 3, padding=1),
                    nn.LeakyReLU(0.2),
                    PixelNorm(),
                )
                for w_in, w_out in itertools.pairwise(widths)
            )
        )
        self.to_image = EqualizedConv2d(widths[-1], channels, 1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.to_image(self.blocks(self.stem(z))))


@register_discriminator("progan")
class ProganDiscriminator(nn.Module):
    """Image → ``out_features``: two equalised convs and average pooling per halving, a
    minibatch-std feature before the head. ``spectral_norm`` is ignored (equalised lr instead)."""

    def __init__(
        self, widths: list[int], channels: int, spectral_norm: bool, out_features: int = 1
    ) -> None:
        super().__init__()
        del spectral_norm
        self.from_image = nn.Sequential(EqualizedConv2d(channels, widths[0], 1), nn.LeakyReLU(0.2))
        self.blocks = nn.Sequential(
            *(
                nn.Sequential(
                    EqualizedConv2d(w_in, w_in, 3, padding=1),
                    nn.LeakyReLU(0.2),
                    EqualizedConv2d(w_in, w_out, 3, padding=1),
                    nn.LeakyReLU(0.2),
                    nn.AvgPool2d(2),
                )
                for w_in, w_out in itertools.pairwise(widths)
            )
        )
        self.head = nn.Sequential(
            MinibatchStd(),
            EqualizedConv2d(widths[-1] + 1, widths[-1], 3, padding=1),
            nn.LeakyReLU(0.2),
            nn.Flatten(),
            EqualizedLinear(widths[-1] * 16, widths[-1]),
            nn.LeakyReLU(0.2),
            EqualizedLinear(widths[-1], out_features),
        )

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.from_image(image))).view(-1)
