"""GAN training of the inversion models: alternating D and G steps and the EMA generator."""

from __future__ import annotations

from typing import Any

import torch
from anomalib.data import Batch
from lightning.pytorch.utilities.types import STEP_OUTPUT

from .augment import diff_augment, parse_policy
from .loss import discriminator_loss, generator_loss, r1_penalty
from .settings import GanArchitecture, GanTraining
from .tiling import random_crops


class GanTrainingMixin:
    """Lightning training hooks of ``GanInversionModule`` (manual optimisation, two optimisers).

    Needs on its host (a LightningModule): ``model`` (``GanInversionModel``), ``architecture``
    (``GanArchitecture``: tiles or whole images) and ``gan_training`` (``GanTraining``).
    """

    model: Any
    architecture: GanArchitecture
    gan_training: GanTraining

    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        betas = (0.5, 0.999)
        lr = self.gan_training.lr_gan
        # An encoder (encoder_weight > 0) is trained with the generator, by the same loss.
        generator_side = list(self.model.generator.parameters())
        if hasattr(self.model, "encoder"):
            generator_side += list(self.model.encoder.parameters())
        return [
            torch.optim.Adam(generator_side, lr=lr, betas=betas),
            torch.optim.Adam(self.model.discriminator.parameters(), lr=lr, betas=betas),
        ]

    def training_step(self, batch: Batch, batch_idx: int) -> STEP_OUTPUT:
        del batch_idx
        settings = self.gan_training
        opt_g, opt_d = self.optimizers()
        generator, discriminator = self.model.generator, self.model.discriminator
        real = batch.image
        tile_size = self.architecture.tile_size
        if tile_size is not None:  # a tile GAN learns random crops
            real = random_crops(real, tile_size, settings.crops_per_image)
        latent = torch.randn(real.shape[0], generator.latent_dim, device=real.device)
        # DiffAugment: D sees real and generated images through the same random transformations.
        ops = parse_policy(settings.diff_augment)

        # Discriminator step.
        real = real.detach().requires_grad_(settings.r1_gamma > 0)
        d_real = discriminator(diff_augment(real, ops))
        d_fake = discriminator(diff_augment(generator(latent).detach(), ops))
        loss_d = discriminator_loss(d_real, d_fake, settings.gan_loss)
        if settings.r1_gamma > 0:
            loss_d = loss_d + r1_penalty(d_real, real, settings.r1_gamma)
        opt_d.zero_grad(set_to_none=True)
        self.manual_backward(loss_d)
        opt_d.step()

        # Generator step.
        d_gen = discriminator(diff_augment(generator(torch.randn_like(latent)), ops))
        loss_g = generator_loss(d_gen, settings.gan_loss)
        if settings.encoder_weight > 0:
            real = real.detach()
            loss_rec = (generator(self.model.encoder(real)) - real).pow(2).mean()
            self.log("loss_rec", loss_rec.detach(), prog_bar=True)
            loss_g = loss_g + settings.encoder_weight * loss_rec
        opt_g.zero_grad(set_to_none=True)
        self.manual_backward(loss_g)
        opt_g.step()

        # EMA with a warm-up, so that short CPU runs are not dominated by the random init.
        step = self.global_step // 2
        self.model.update_ema(min(settings.ema_decay, (1 + step) / (10 + step)))
        self.log_dict({"loss_d": loss_d.detach(), "loss_g": loss_g.detach()}, prog_bar=True)
        return {"loss": loss_d.detach() + loss_g.detach()}
