"""Generator and discriminator networks, sized by image resolution.

Three families share one layout (4×4 → image_size by doubling):
- ``dcgan``: transposed-conv/conv blocks with BatchNorm in G and optional spectral norm in D.
- ``progan``: the paper's PGGAN building blocks without progressive growing — equalised learning
  rate, pixel norm in G, minibatch standard deviation in D.
- ``fastgan``: FastGAN's generator (Liu et al., ICLR 2021) at this layout — nearest upsampling,
  3×3 conv, BatchNorm and GLU per block, and skip-layer excitation: each feature map from 16×16
  on is gated per channel by the map two levels below it. Its discriminator is the DCGAN one
  (FastGAN's self-supervised decoder heads are left out: the models' encoder term already asks
  for reconstruction).
"""

from __future__ import annotations

import itertools
import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

Backbone = Literal["dcgan", "progan", "fastgan"]
BACKBONES = ("dcgan", "progan", "fastgan")
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


def _widths(image_size: int, base_width: int, max_width: int) -> list[int]:
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


class Generator(nn.Module):
    """Maps a latent vector ``z`` (B×latent_dim) to an image in [-1, 1] (B×C×S×S)."""

    def __init__(
        self,
        image_size: int,
        latent_dim: int = 128,
        channels: int = 3,
        base_width: int = 32,
        max_width: int = 256,
        backbone: Backbone = "dcgan",
    ) -> None:
        super().__init__()
        check_image_size(image_size)
        widths = _widths(image_size, base_width, max_width)
        self.latent_dim = latent_dim
        self.backbone = backbone
        if backbone == "dcgan":
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
        elif backbone == "progan":
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
        elif backbone == "fastgan":
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
        else:
            msg = f"backbone must be one of {BACKBONES}, got {backbone!r}"
            raise ValueError(msg)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = self.stem(z if self.backbone == "progan" else z.view(z.shape[0], -1, 1, 1))
        if self.backbone != "fastgan":
            return torch.tanh(self.to_image(self.blocks(x)))
        features = [x]
        for level, block in enumerate(self.blocks, start=1):
            x = block(x)
            if level >= 2:
                x = self.excite[level - 2](features[level - 2], x)
            features.append(x)
        return torch.tanh(self.to_image(x))


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


class _Reshape(nn.Module):
    """Latent (B×d) to a 1×1 feature map; the first ProGAN conv pads it to 4×4."""

    def __init__(self, latent_dim: int) -> None:
        super().__init__()
        self.latent_dim = latent_dim

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return z.view(-1, self.latent_dim, 1, 1)


class Discriminator(nn.Module):
    """Maps an image (B×C×S×S) to one realism logit per image (B)."""

    def __init__(
        self,
        image_size: int,
        channels: int = 3,
        base_width: int = 32,
        max_width: int = 256,
        backbone: Backbone = "dcgan",
        spectral_norm: bool = False,
        out_features: int = 1,
    ) -> None:
        super().__init__()
        check_image_size(image_size)
        widths = _widths(image_size, base_width, max_width)[::-1]  # image_size → 4
        sn = nn.utils.parametrizations.spectral_norm if spectral_norm else (lambda m: m)
        if backbone in ("dcgan", "fastgan"):  # FastGAN pairs its generator with a plain D here
            self.from_image = nn.Sequential(sn(nn.Conv2d(channels, widths[0], 3, 1, 1)))
            self.blocks = nn.Sequential(
                *(
                    nn.Sequential(sn(nn.Conv2d(w_in, w_out, 4, 2, 1)), nn.LeakyReLU(0.2))
                    for w_in, w_out in itertools.pairwise(widths)
                )
            )
            self.head = nn.Sequential(nn.Flatten(), sn(nn.Linear(widths[-1] * 16, out_features)))
        elif backbone == "progan":
            self.from_image = nn.Sequential(
                EqualizedConv2d(channels, widths[0], 1), nn.LeakyReLU(0.2)
            )
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
        else:
            msg = f"backbone must be one of {BACKBONES}, got {backbone!r}"
            raise ValueError(msg)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.from_image(image))).view(-1)


class Encoder(Discriminator):
    """Maps an image (B×C×S×S) to a latent (B×latent_dim) for the generator to reconstruct.

    The latent is scaled onto the sphere of radius √latent_dim, where samples of N(0, I) lie, so
    the generator learns one latent region from the prior and from the encoder, and the solver's
    Gaussian start pool covers it. The DCGAN trunk always: the ProGAN head's minibatch-std
    feature would couple the images of a batch.
    """

    def __init__(
        self,
        image_size: int,
        latent_dim: int,
        channels: int = 3,
        base_width: int = 32,
        max_width: int = 256,
    ) -> None:
        super().__init__(image_size, channels, base_width, max_width, "dcgan", False, latent_dim)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        code = self.head(self.blocks(self.from_image(image)))
        return (
            code * math.sqrt(code.shape[1]) * torch.rsqrt(code.pow(2).sum(1, keepdim=True) + 1e-8)
        )
