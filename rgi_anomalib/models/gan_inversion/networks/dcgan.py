"""DCGAN: transposed-conv/conv blocks with BatchNorm in G and optional spectral norm in D."""

from __future__ import annotations

import itertools

import torch
from torch import nn

from .registry import register_discriminator, register_generator


@register_generator("dcgan")
class DcganGenerator(nn.Module):
    """Latent (B×latent_dim) → image in [-1, 1]: a 4×4 transposed-conv stem, then one
    stride-2 transposed conv, BatchNorm and ReLU per doubling."""

    def __init__(self, widths: list[int], latent_dim: int, channels: int) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        self.stem = nn.Sequential(
            nn.ConvTranspose2d(latent_dim, widths[0], 4, 1, 0, bias=False),
            nn.BatchNorm2d(widths[0]),
            nn.ReLU(inplace=True),
        )
        self.blocks = nn.Sequential(
            *(
                nn.Sequential(
                    nn.ConvTranspose2d(w_in, w_out, 4, 2, 1, bias=False),
                    nn.BatchNorm2d(w_out),
                    nn.ReLU(inplace=True),
                )
                for w_in, w_out in itertools.pairwise(widths)
            )
        )
        self.to_image = nn.Conv2d(widths[-1], channels, 3, 1, 1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = self.stem(z.view(z.shape[0], -1, 1, 1))
        return torch.tanh(self.to_image(self.blocks(x)))


# FastGAN pairs its generator with this plain discriminator here (its self-supervised decoder
# heads are left out: the models' encoder term already asks for reconstruction).
@register_discriminator("dcgan", "fastgan")
class DcganDiscriminator(nn.Module):
    """Image (B×C×S×S) → ``out_features`` per image: one stride-2 conv and LeakyReLU per
    halving down to 4×4, then a linear head."""

    def __init__(
        self, widths: list[int], channels: int, spectral_norm: bool, out_features: int = 1
    ) -> None:
        super().__init__()
        sn = nn.utils.parametrizations.spectral_norm if spectral_norm else (lambda m: m)
        self.from_image = nn.Sequential(sn(nn.Conv2d(channels, widths[0], 3, 1, 1)))
        self.blocks = nn.Sequential(
            *(
                nn.Sequential(sn(nn.Conv2d(w_in, w_out, 4, 2, 1)), nn.LeakyReLU(0.2))
                for w_in, w_out in itertools.pairwise(widths)
            )
        )
        self.head = nn.Sequential(nn.Flatten(), sn(nn.Linear(widths[-1] * 16, out_features)))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.from_image(image))).view(-1)
