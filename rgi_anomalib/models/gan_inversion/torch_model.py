"""Pure-torch GAN-inversion model: generator, discriminator, EMA generator and the solver."""

from __future__ import annotations

import copy
from typing import Any, NamedTuple

import torch
from torch import nn

from .anomaly_map import anomaly_map, image_score
from .gap import reconstruction_gap
from .holdout import invert_held_out
from .networks import Backbone, Discriminator, Encoder, Generator
from .residual import residual_map
from .solver import CandidatePool, InversionConfig, InversionResult, Progress, invert
from .tiling import check_tiling, invert_tiled


class RestorationBatch(NamedTuple):
    """anomalib's ``InferenceBatch`` (same first four fields, same order) plus what inversion
    adds: the restored image G(ẑ) and its per-image reconstruction gap."""

    pred_score: torch.Tensor | None = None
    pred_label: torch.Tensor | None = None
    anomaly_map: torch.Tensor | None = None
    pred_mask: torch.Tensor | None = None
    # G(ẑ) in the input's [0, 1] range, B×C×H×W (mask-free inpainting result).
    restored_image: torch.Tensor | None = None
    # Per image (B), [0, 1] units: RMSE and 99th percentile of |x − G(ẑ)|. On a defect image it
    # includes the defect; the headline gap is the mean over normal images.
    reconstruction_rmse: torch.Tensor | None = None
    reconstruction_p99: torch.Tensor | None = None


# Fields anomalib's batches do not have: the Lightning steps attach them to the batch as
# attributes of these names (read by the benchmark harness; absent for other models).
RESTORATION_FIELDS = ("restored_image", "reconstruction_rmse", "reconstruction_p99")


def attach_restoration(batch: Any, output: RestorationBatch) -> Any:
    """Put ``output``'s scores and maps into an anomalib batch and its extras beside them."""
    batch.update(pred_score=output.pred_score, anomaly_map=output.anomaly_map)
    for name in RESTORATION_FIELDS:
        setattr(batch, name, getattr(output, name))
    return batch


class GanInversionModel(nn.Module):
    """Holds the GAN; ``forward`` inverts a batch and returns a ``RestorationBatch``.

    The EMA copy of the generator (smoother than the raw training weights) is the one inverted.
    With ``tile_size`` the GAN models ``tile_size`` crops and an image is inverted as overlapping
    tiles (``tiling.py``); otherwise it models whole ``image_size`` images.
    """

    def __init__(
        self,
        image_size: int,
        inversion: InversionConfig,
        latent_dim: int = 128,
        channels: int = 3,
        base_width: int = 32,
        max_width: int = 256,
        backbone: Backbone = "dcgan",
        spectral_norm: bool = True,
        compile_generator: bool = False,
        tile_size: int | None = None,
        tile_stride: int | None = None,
        encoder: bool = False,
    ) -> None:
        super().__init__()
        check_tiling(image_size, tile_size, tile_stride)
        self.image_size, self.channels = image_size, channels
        self.tile_size, self.tile_stride = tile_size, tile_stride
        self.inversion = inversion
        gan_size = tile_size or image_size
        self.generator = Generator(gan_size, latent_dim, channels, base_width, max_width, backbone)
        self.discriminator = Discriminator(
            gan_size, channels, base_width, max_width, backbone, spectral_norm
        )
        # Only with an encoder-regularised GAN: without it the state dict is as before.
        if encoder:
            self.encoder = Encoder(gan_size, latent_dim, channels, base_width, max_width)
        self.generator_ema = copy.deepcopy(self.generator).eval().requires_grad_(False)
        # The inverted copy runs channels-last: faster solves on CPU (README.md); strides only,
        # so values and checkpoints are unchanged.
        self.generator_ema.to(memory_format=torch.channels_last)
        self._pool = CandidatePool()
        # Shares generator_ema's parameters; set past nn.Module.__setattr__ so it is not a
        # submodule and the state dict (checkpoints) stays the same with or without it.
        compiled = torch.compile(self.generator_ema) if compile_generator else None
        object.__setattr__(self, "_compiled", compiled)

    @torch.no_grad()
    def update_ema(self, decay: float) -> None:
        """θ_ema ← decay·θ_ema + (1−decay)·θ; buffers (BatchNorm statistics) are copied."""
        for ema, live in zip(
            self.generator_ema.parameters(), self.generator.parameters(), strict=True
        ):
            ema.lerp_(live, 1.0 - decay)
        for ema, live in zip(self.generator_ema.buffers(), self.generator.buffers(), strict=True):
            ema.copy_(live)

    def invert(
        self,
        images: torch.Tensor,
        missing: torch.Tensor | None = None,
        inversion: InversionConfig | None = None,
        progress: Progress | None = None,
    ) -> InversionResult:
        """Run the solver on a batch of images in [-1, 1]: the model's configuration, or
        ``inversion``; ``missing`` (B×1×H×W, 1 = unknown pixel) makes it a masked inversion.
        ``progress(done, total)``: told the iterations run so far (it changes no result)."""
        generator = self.generator_ema if self._compiled is None else self._compiled
        config = inversion or self.inversion
        discriminator = self.discriminator if config.discriminator_weight > 0 else None
        encoder = getattr(self, "encoder", None)
        if self.tile_size is None:
            return invert(
                generator,
                images,
                config,
                discriminator,
                self._pool,
                missing=missing,
                encoder=encoder,
                progress=progress,
            )
        return invert_tiled(
            generator,
            images,
            config,
            self.tile_size,
            self.tile_stride,
            discriminator,
            self._pool,
            missing=missing,
            encoder=encoder,
            progress=progress,
        )

    def forward(self, images: torch.Tensor, progress: Progress | None = None) -> RestorationBatch:
        """Images in [-1, 1] (the pre-processor's range) -> scores, maps and G(ẑ)."""
        config = self.inversion
        if config.holdout_phases:
            restored = invert_held_out(
                self.invert, images, config.holdout_phases, config.holdout_cell, progress
            )
        else:
            result = self.invert(images, progress=progress)
            restored = result.restored
        restored_01 = (restored * 0.5 + 0.5).clamp(0, 1)
        if config.holdout_phases or config.residual is not None:
            maps = residual_map(images * 0.5 + 0.5, restored_01, config.residual or "pixel")
        else:
            maps = anomaly_map(images, result)
        gap = reconstruction_gap(images, restored)
        return RestorationBatch(
            pred_score=image_score(maps),
            anomaly_map=maps,
            restored_image=restored_01,
            reconstruction_rmse=gap.rmse,
            reconstruction_p99=gap.p99,
        )
