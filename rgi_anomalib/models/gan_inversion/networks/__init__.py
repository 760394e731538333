"""Generator and discriminator networks, sized by image resolution.

One module per architecture (``dcgan.py``, ``progan.py``, ``fastgan.py``), each registering its
classes by name (``registry.py``); all share one layout, 4×4 → image_size by doubling, with
channel widths from ``widths_for``. ``build_generator`` / ``build_discriminator`` pick the class
of a ``backbone`` name. To add an architecture: a module with ``@register_generator("name")``
(and a discriminator, or register an existing one under the name), imported below, and the name
in ``Backbone``.
"""

from __future__ import annotations

import math
from typing import Literal, get_args

import torch
from torch import nn

from . import dcgan, fastgan, progan  # noqa: F401 - each registers its networks
from .dcgan import DcganDiscriminator
from .fastgan import SkipLayerExcitation
from .layers import MAX_IMAGE_SIZE, MIN_IMAGE_SIZE, check_image_size, widths_for
from .registry import DISCRIMINATORS, GENERATORS, register_discriminator, register_generator

Backbone = Literal["dcgan", "progan", "fastgan"]
BACKBONES: tuple[str, ...] = get_args(Backbone)


def _registered(registry: dict[str, type[nn.Module]], backbone: str) -> type[nn.Module]:
    if backbone not in registry:
        msg = f"backbone must be one of {BACKBONES}, got {backbone!r}"
        raise ValueError(msg)
    return registry[backbone]


def build_generator(
    image_size: int,
    latent_dim: int = 128,
    channels: int = 3,
    base_width: int = 32,
    max_width: int = 256,
    backbone: Backbone = "dcgan",
) -> nn.Module:
    """The ``backbone``'s generator: latent ``z`` (B×latent_dim) → image in [-1, 1] (B×C×S×S)."""
    widths = widths_for(check_image_size(image_size), base_width, max_width)
    return _registered(GENERATORS, backbone)(widths, latent_dim, channels)


def build_discriminator(
    image_size: int,
    channels: int = 3,
    base_width: int = 32,
    max_width: int = 256,
    backbone: Backbone = "dcgan",
    spectral_norm: bool = False,
    out_features: int = 1,
) -> nn.Module:
    """The ``backbone``'s discriminator: image (B×C×S×S) → one realism logit per image (B)."""
    widths = widths_for(check_image_size(image_size), base_width, max_width)[::-1]
    return _registered(DISCRIMINATORS, backbone)(widths, channels, spectral_norm, out_features)


# The names callers used when these were classes (tests, benchmarks/ scripts).
Generator = build_generator
Discriminator = build_discriminator


class Encoder(DcganDiscriminator):
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
        widths = widths_for(check_image_size(image_size), base_width, max_width)[::-1]
        super().__init__(widths, channels, False, latent_dim)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        code = self.head(self.blocks(self.from_image(image)))
        return (
            code * math.sqrt(code.shape[1]) * torch.rsqrt(code.pow(2).sum(1, keepdim=True) + 1e-8)
        )


__all__ = [
    "BACKBONES",
    "DISCRIMINATORS",
    "GENERATORS",
    "MAX_IMAGE_SIZE",
    "MIN_IMAGE_SIZE",
    "Backbone",
    "Discriminator",
    "Encoder",
    "Generator",
    "SkipLayerExcitation",
    "build_discriminator",
    "build_generator",
    "check_image_size",
    "register_discriminator",
    "register_generator",
    "widths_for",
]
