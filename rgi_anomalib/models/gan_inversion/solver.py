"""One batched robust GAN-inversion solver for AnoGAN, RGI and R-RGI.

For images x (B×C×H×W in [-1, 1]) it minimises, independently per image,

    ρ(x − G(z; θ)) [+ λ‖M‖₁] − w_D·D(G(z; θ))

- AnoGAN (``objective="l2"``/``"l1"``): no mask, plain l2 (or l1) data term.
- RGI (eq. 3, ``objective="rgi"``): data term ‖(1−M)⊙(x−G(z))‖² + λ‖M‖₁ over z and M.
  ``mask_update="adam"`` optimises M as a free variable (the paper); ``"closed_form"`` uses, for
  the current residual r, the optimal M = clip(1 − λ / (2r²), 0, 1), which turns eq. 3 into a
  bounded robust loss of z alone (same minimisers, fewer variables).
- ``lr_schedule="cosine"`` decays the learning rates of z and M to 0 over the solve (the fast
  defaults: fewer iterations, and a quiet M at the end; see docs/results/fast_inversion.md).
- R-RGI (eq. 4): as RGI, and for the last ``finetune_iterations`` the generator weights θ join the
  optimisation. Each image gets its own copy of θ (``torch.func.vmap`` over per-image weights), so
  nothing leaks from one test image to another and a batch solve equals B single solves.

Masked inversion (the inpainting baselines of Yeh et al. 2017 and Pan et al. 2021): with
``missing`` (B×1×H×W, 1 = pixel unknown) the data term ignores those pixels; G(ẑ) fills them.

Per-image losses are summed over pixels (as the authors' code) and then over the batch: every
variable belongs to one image and Adam is element-wise, so batching changes no result.

``progress`` (optional): a callable ``progress(done, total)`` told after every iteration how many
of the solve's iterations have run; it only observes, so results are the same with or without it.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from .finetune import (  # noqa: F401 - finetuned_parameters, NORM_AFFINE: re-exported
    NORM_AFFINE,
    finetuned_parameters,
    generate,
    per_image_weights,
)
from .inversion_config import (  # noqa: F401 - re-exported: the solver's settings
    InversionConfig,
    LatentInit,
    LrSchedule,
    MaskUpdate,
    Method,
    Objective,
)
from .objective import closed_form_mask, data_term, hide_missing, squared_residual
from .start import CandidatePool, best_candidates, better_start

# ``progress(done, total)``: iterations run so far out of the solve's total (solve_progress.py).
Progress = Callable[[int, int], None]


@dataclass
class InversionResult:
    """Outcome of one batched solve (all tensors detached, on the input's device)."""

    latent: torch.Tensor  # B×d
    restored: torch.Tensor  # B×C×H×W, G(ẑ; θ̂): the defect-free estimate
    mask: torch.Tensor | None  # B×(1|C)×H×W, M̂ (None for AnoGAN)
    loss: torch.Tensor  # B, final objective per image
    iterations_run: int = 0
    loss_history: list[float] = field(default_factory=list)


def invert(
    generator: nn.Module,
    images: torch.Tensor,
    config: InversionConfig,
    discriminator: nn.Module | None = None,
    pool: CandidatePool | None = None,
    groups: int | None = None,
    missing: torch.Tensor | None = None,
    encoder: nn.Module | None = None,
    progress: Progress | None = None,
) -> InversionResult:
    """Solve the configured inversion for a batch of images; G and D are left untouched.

    Works under Lightning's ``torch.inference_mode()``: the solve runs with inference mode off and
    gradients on, on a clone of the input. ``groups``: R-RGI fine-tunes one generator copy per
    group of ``B / groups`` consecutive images (e.g. the tiles of one image) instead of one per
    image. ``encoder`` (trained with G): its latent E(x) joins the pool as a start candidate.
    ``progress(done, total)`` is called after every iteration (see the module docstring).
    """
    if images.ndim != 4:
        msg = f"images must be B×C×H×W, got shape {tuple(images.shape)}"
        raise ValueError(msg)
    if missing is not None:
        expected = (images.shape[0], 1, *images.shape[2:])
        if tuple(missing.shape) != expected:
            msg = f"missing must be B×1×H×W = {expected}, got shape {tuple(missing.shape)}"
            raise ValueError(msg)
        missing = missing.to(images.dtype)
    if groups is not None and (groups < 1 or images.shape[0] % groups):
        msg = f"groups={groups!r} must divide the batch of {images.shape[0]} images"
        raise ValueError(msg)
    with torch.inference_mode(False), torch.enable_grad():
        return _invert(
            generator,
            images.clone(),
            config,
            discriminator,
            pool or CandidatePool(),
            groups,
            missing,
            encoder,
            progress,
        )


def _invert(
    generator: nn.Module,
    images: torch.Tensor,
    config: InversionConfig,
    discriminator: nn.Module | None,
    pool: CandidatePool,
    groups: int | None = None,
    missing: torch.Tensor | None = None,
    encoder: nn.Module | None = None,
    progress: Progress | None = None,
) -> InversionResult:
    was_training = generator.training
    generator.eval()
    frozen = [p for p in generator.parameters() if p.requires_grad]
    if discriminator is not None:
        discriminator.eval()
        frozen += [p for p in discriminator.parameters() if p.requires_grad]
    for p in frozen:
        p.requires_grad_(False)
    try:
        pool_latents, pool_images = pool.get(generator, config, images.device)
        if pool_images.shape[1:] != images.shape[1:]:
            msg = (
                f"the generator produces images of shape {tuple(pool_images.shape[1:])}, "
                f"but the input has shape {tuple(images.shape[1:])}"
            )
            raise ValueError(msg)
        start = config
        if config.start_objective not in (None, config.objective):
            start = dataclasses.replace(config, objective=config.start_objective)
        latent = best_candidates(images, pool_latents, pool_images, start, missing=missing)
        if encoder is not None:
            latent = better_start(generator, encoder, images, latent, start, missing)
        latent.requires_grad_(True)
        return _optimise(
            generator, images, latent, config, discriminator, groups, missing, progress
        )
    finally:
        for p in frozen:
            p.requires_grad_(True)
        generator.train(was_training)


# Long on purpose: the optimisation loop keeps z, M, the per-image generator weights and their
# Adam states together; the phase switch (fine-tuning joins late) must see all of them.
def _optimise(
    generator: nn.Module,
    images: torch.Tensor,
    latent: torch.Tensor,
    config: InversionConfig,
    discriminator: nn.Module | None,
    groups: int | None = None,
    missing: torch.Tensor | None = None,
    progress: Progress | None = None,
) -> InversionResult:
    batch, channels, height, width = images.shape
    mask = None
    optimisers = [torch.optim.Adam([latent], lr=config.lr_latent)]
    if config.uses_mask and config.mask_update == "adam":
        mask_channels = channels if config.mask_per_channel else 1
        mask = torch.zeros(batch, mask_channels, height, width, device=images.device)
        mask.requires_grad_(True)
        mask_optimiser = torch.optim.Adam([mask], lr=config.lr_mask)
        optimisers.append(mask_optimiser)

    weights: dict[str, torch.Tensor] | None = None
    finetune_start = config.iterations - config.finetune_iterations
    history: list[float] = []
    best_total, stale, iterations_run = float("inf"), 0, 0
    # The cosine schedule applies to z and M (not to the fine-tuned generator weights).
    scheduled = [(group, group["lr"]) for opt in optimisers for group in opt.param_groups]
    for iteration in range(config.iterations):
        if config.lr_schedule == "cosine":  # z and M decay to 0 over the solve
            factor = 0.5 * (1.0 + math.cos(math.pi * iteration / config.iterations))
            for group, lr in scheduled:
                group["lr"] = lr * factor
        if config.finetune_iterations and iteration == finetune_start:
            weights = per_image_weights(generator, groups or batch, config.finetune_params)
            optimisers.append(torch.optim.Adam(list(weights.values()), lr=config.lr_generator))
            if mask is not None and config.freeze_mask_during_finetune:
                optimisers.remove(mask_optimiser)
                mask.requires_grad_(False)
        generated = generate(generator, latent, weights)
        per_image = data_term(images, hide_missing(generated, images, missing), config, mask)
        if discriminator is not None and config.discriminator_weight > 0:
            per_image = per_image - config.discriminator_weight * discriminator(generated)
        total = per_image.sum()
        for optimiser in optimisers:
            optimiser.zero_grad(set_to_none=True)
        total.backward()
        for optimiser in optimisers:
            optimiser.step()
        iterations_run = iteration + 1
        history.append(total.item())
        if progress is not None:
            progress(iterations_run, config.iterations)
        if config.early_stop_patience and weights is None:
            if total.item() < best_total * (1 - config.early_stop_tol):
                best_total, stale = total.item(), 0
            else:
                stale += 1
                if stale >= config.early_stop_patience:
                    break

    with torch.no_grad():
        restored = generate(generator, latent, weights)
        seen = hide_missing(restored, images, missing)
        if config.uses_mask and mask is None:
            residual_sq = squared_residual(
                images, seen, config.mask_per_channel, config.robust_residual
            )
            mask = closed_form_mask(residual_sq, config.lam)
        loss = data_term(images, seen, config, mask)
    return InversionResult(
        latent=latent.detach(),
        restored=restored.detach(),
        mask=None if mask is None else mask.detach(),
        loss=loss.detach(),
        iterations_run=iterations_run,
        loss_history=history,
    )
