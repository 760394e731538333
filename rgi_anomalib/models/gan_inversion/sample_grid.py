"""A grid of generated samples during GAN training (a Lightning callback)."""

from __future__ import annotations

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from torchvision.utils import save_image

from rgi_anomalib.utils import atomic_path

from .gap_report import output_dir

SAMPLES = 16  # a 4 × 4 grid


def sample_latents(latent_dim: int, seed: int) -> torch.Tensor:
    """The grid's fixed latents: the same samples every epoch, so epochs compare."""
    return torch.randn(SAMPLES, latent_dim, generator=torch.Generator().manual_seed(seed))


class GanSampleGrid(Callback):
    """Every ``every_n_epochs`` epochs and after the last one, writes the EMA generator's images
    of ``latents`` to ``gan_samples/epoch_NNNN.png`` (and the logger's ``gan_samples``).
    Needs a module whose ``model.generator_ema`` maps ``latents`` to images in [-1, 1]."""

    def __init__(self, every_n_epochs: int, latents: torch.Tensor) -> None:
        self.every_n_epochs = every_n_epochs
        self.latents = latents

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        epoch = pl_module.current_epoch + 1
        every, last = self.every_n_epochs, epoch == trainer.max_epochs
        if every and (epoch % every == 0 or last):
            self._save(trainer, pl_module)

    def _save(self, trainer: Trainer, pl_module: LightningModule) -> None:
        root = output_dir(trainer)  # on every rank (a broadcast under DDP)
        if not trainer.is_global_zero:
            return
        with torch.no_grad():
            images = pl_module.model.generator_ema(self.latents.to(pl_module.device))
        path = root / "gan_samples" / f"epoch_{pl_module.current_epoch + 1:04d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            save_image(images * 0.5 + 0.5, tmp, nrow=4, format="png")
        if pl_module.logger is not None and hasattr(pl_module.logger.experiment, "add_image"):
            grid = torch.cat(list(images[:8] * 0.5 + 0.5), dim=-1)
            pl_module.logger.experiment.add_image("gan_samples", grid, pl_module.current_epoch)
