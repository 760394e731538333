"""Where each solve starts: the best latent of a seeded candidate pool, or the encoder's E(x)."""

from __future__ import annotations

import torch
from torch import nn

from .inversion_config import InversionConfig
from .objective import data_term, hide_missing


def _sample_latents(n: int, latent_dim: int, config: InversionConfig) -> torch.Tensor:
    gen = torch.Generator().manual_seed(config.seed)
    if config.init_distribution == "uniform":  # what the authors' code drew: U[0, 1)
        return torch.rand(n, latent_dim, generator=gen)
    return torch.randn(n, latent_dim, generator=gen)


class CandidatePool:
    """Seeded pool of latent candidates and their images, cached while G's weights are unchanged."""

    def __init__(self) -> None:
        self._key: tuple | None = None
        self.latents: torch.Tensor | None = None
        self.images: torch.Tensor | None = None

    @staticmethod
    def _weights_key(generator: nn.Module, config: InversionConfig) -> tuple:
        versions = tuple(t._version for t in generator.state_dict().values())
        return (
            id(generator),
            versions,
            config.init_candidates,
            config.seed,
            config.init_distribution,
        )

    @torch.no_grad()
    def get(
        self, generator: nn.Module, config: InversionConfig, device: torch.device, chunk: int = 128
    ) -> tuple[torch.Tensor, torch.Tensor]:
        key = self._weights_key(generator, config)
        if key != self._key or self.latents is None or self.latents.device != device:
            latents = _sample_latents(config.init_candidates, generator.latent_dim, config).to(
                device
            )
            self.images = torch.cat([generator(part) for part in latents.split(chunk)])
            self.latents, self._key = latents, key
        return self.latents, self.images


@torch.no_grad()
def best_candidates(
    images: torch.Tensor,
    pool_latents: torch.Tensor,
    pool_images: torch.Tensor,
    config: InversionConfig,
    chunk: int = 64,
    missing: torch.Tensor | None = None,
) -> torch.Tensor:
    """For each image, the pool latent with the lowest data term (one batched pass per chunk)."""
    hidden = None if missing is None else missing[:, None]
    scores = torch.cat(
        [
            data_term(
                images[:, None], hide_missing(part[None], images[:, None], hidden), config
            )  # B×chunk
            for part in pool_images.split(chunk)
        ],
        dim=1,
    )
    return pool_latents[scores.argmin(dim=1)].clone()


@torch.no_grad()
def better_start(
    generator: nn.Module,
    encoder: nn.Module,
    images: torch.Tensor,
    latent: torch.Tensor,
    config: InversionConfig,
    missing: torch.Tensor | None,
) -> torch.Tensor:
    """Per image, the pool's best latent or the encoder's E(x), whichever has the lower data term
    (the encoder saw the defect too; the data term, not the encoder, decides)."""
    was_training = encoder.training
    encoder.eval()
    try:
        encoded = encoder(images)
    finally:
        encoder.train(was_training)
    hidden = None if missing is None else missing[:, None]
    both = torch.stack([latent, encoded], dim=1)  # B×2×d
    generated = generator(both.flatten(0, 1)).unflatten(0, (images.shape[0], 2))
    scores = data_term(images[:, None], hide_missing(generated, images[:, None], hidden), config)
    return both[torch.arange(images.shape[0]), scores.argmin(dim=1)].clone()
