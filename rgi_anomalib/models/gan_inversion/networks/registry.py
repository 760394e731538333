"""Name → generator / discriminator class, filled by each architecture's module as it is
imported (as timm's model files register themselves)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from torch import nn

Network = TypeVar("Network", bound=type[nn.Module])

GENERATORS: dict[str, type[nn.Module]] = {}
DISCRIMINATORS: dict[str, type[nn.Module]] = {}


def register_generator(name: str) -> Callable[[Network], Network]:
    """Class decorator: build ``name``'s generator with this class. Its ``__init__`` takes
    ``(widths, latent_dim, channels)``: the channel widths at 4, 8, ..., image_size px."""

    def add(cls: Network) -> Network:
        GENERATORS[name] = cls
        return cls

    return add


def register_discriminator(*names: str) -> Callable[[Network], Network]:
    """Class decorator: build the discriminator of ``names`` with this class. Its ``__init__``
    takes ``(widths, channels, spectral_norm, out_features)`` (widths from image_size to 4 px)."""

    def add(cls: Network) -> Network:
        for name in names:
            DISCRIMINATORS[name] = cls
        return cls

    return add
