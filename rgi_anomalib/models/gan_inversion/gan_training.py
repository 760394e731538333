"""GAN training of the inversion models: alternating D and G steps, EMA generator, samples."""

from __future__ import annotations

from typing import Any

import torch
from anomalib.data import Batch
from lightning.pytorch.utilities.types import STEP_OUTPUT
from torchvision.utils import save_image

from rgi_anomalib.utils import atomic_path

from .augment import diff_augment, parse_policy
from .loss import discriminator_loss, generator_loss, r1_penalty
from .tiling import random_crops


class GanTrainingMixin:
    """Lightning training hooks of ``GanInversionModule`` (manual optimisation, two optimisers).

    Uses the host's ``model`` (``GanInversionModel``), ``hparams`` and ``_output_dir()``.
    """

    hparams: Any
    model: Any

    # --- GAN training ------------------------------------------------------------------------
    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        betas = (0.5, 0.999)
        lr = self.hparams.lr_gan
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
        opt_g, opt_d = self.optimizers()
        generator, discriminator = self.model.generator, self.model.discriminator
        real = batch.image
        if self.hparams.tile_size is not None:  # a tile GAN learns random crops
            real = random_crops(real, self.hparams.tile_size, self.hparams.crops_per_image)
        latent = torch.randn(real.shape[0], generator.latent_dim, device=real.device)
        # DiffAugment: D sees real and generated images through the same random transformations.
        ops = parse_policy(self.hparams.get("diff_augment", ""))

        # Discriminator step.
        real = real.detach().requires_grad_(self.hparams.r1_gamma > 0)
        d_real = discriminator(diff_augment(real, ops))
        d_fake = discriminator(diff_augment(generator(latent).detach(), ops))
        loss_d = discriminator_loss(d_real, d_fake, self.hparams.gan_loss)
        if self.hparams.r1_gamma > 0:
            loss_d = loss_d + r1_penalty(d_real, real, self.hparams.r1_gamma)
        opt_d.zero_grad(set_to_none=True)
        self.manual_backward(loss_d)
        opt_d.step()

        # Generator step.
        d_gen = discriminator(diff_augment(generator(torch.randn_like(latent)), ops))
        loss_g = generator_loss(d_gen, self.hparams.gan_loss)
        if self.hparams.get("encoder_weight", 0.0) > 0:
            real = real.detach()
            loss_rec = (generator(self.model.encoder(real)) - real).pow(2).mean()
            self.log("loss_rec", loss_rec.detach(), prog_bar=True)
            loss_g = loss_g + self.hparams.encoder_weight * loss_rec
        opt_g.zero_grad(set_to_none=True)
        self.manual_backward(loss_g)
        opt_g.step()

        # EMA with a warm-up, so that short CPU runs are not dominated by the random init.
        step = self.global_step // 2
        self.model.update_ema(min(self.hparams.ema_decay, (1 + step) / (10 + step)))
        self.log_dict({"loss_d": loss_d.detach(), "loss_g": loss_g.detach()}, prog_bar=True)
        return {"loss": loss_d.detach() + loss_g.detach()}

    def on_train_epoch_end(self) -> None:
        every = self.hparams.sample_every_n_epochs
        last = self.current_epoch + 1 == self.trainer.max_epochs
        if every and ((self.current_epoch + 1) % every == 0 or last):
            self._save_samples()

    def _save_samples(self) -> None:
        root = self._output_dir()
        if not self.trainer.is_global_zero:
            return
        with torch.no_grad():
            images = self.model.generator_ema(self._sample_latents.to(self.device))
        path = root / "gan_samples" / f"epoch_{self.current_epoch + 1:04d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            save_image(images * 0.5 + 0.5, tmp, nrow=4, format="png")
        if self.logger is not None and hasattr(self.logger.experiment, "add_image"):
            grid = torch.cat(list(images[:8] * 0.5 + 0.5), dim=-1)
            self.logger.experiment.add_image("gan_samples", grid, self.current_epoch)
