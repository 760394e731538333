"""One batched robust GAN-inversion solver for AnoGAN, RGI and R-RGI.

For images x (B×C×H×W in [-1, 1]) it minimises, independently per image,

    ρ(x − G(z; θ)) [+ λ‖M‖₁] − w_D·D(G(z; θ))

- AnoGAN (``objective="l2"``/``"l1"``): no mask, plain l2 (or l1) data term.
- RGI (eq. 3, ``objective="rgi"``): data term ‖(1−M)⊙(x−G(z))‖² + λ‖M‖₁ over z and M.
  ``mask_update="adam"`` optimises M as a free variable (the paper); ``"closed_form"`` uses, for
  the current residual r, the optimal M = clip(1 − λ / (2r²), 0, 1), which turns eq. 3 into a
  bounded robust loss of z alone (same minimisers, fewer variables).
- ``lr_schedule="cosine"`` decays the learning rates of z and M to 0 over the solve (the fast
  defaults: fewer iterations, and a quiet M at the end; see docs/fast_inversion.md).
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
from torch.func import functional_call, vmap

from .inversion_config import (  # noqa: F401 - re-exported: the solver's settings
    InversionConfig,
    LatentInit,
    LrSchedule,
    MaskUpdate,
    Method,
    Objective,
)

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


def closed_form_mask(residual_sq: torch.Tensor, lam: float) -> torch.Tensor:
    """Optimal mask for a fixed residual: argmin_M (1−M)²r² + λ|M| = clip(1 − λ/(2r²), 0, 1)."""
    return (1.0 - lam / (2.0 * residual_sq.clamp_min(1e-12))).clamp_min(0.0)


def _residual_sq(images: torch.Tensor, generated: torch.Tensor, per_channel: bool) -> torch.Tensor:
    """Squared residual, averaged over channels when the mask is shared by all channels."""
    sq = (images - generated).pow(2)
    return sq if per_channel else sq.mean(dim=1, keepdim=True)


def data_term(
    images: torch.Tensor,
    generated: torch.Tensor,
    config: InversionConfig,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Per-image objective without the discriminator term (shape: leading batch dims).

    A shared mask (B×1×H×W) weighs the channel-mean squared residual by C, and its λ‖M‖₁ by C,
    so λ means the same per colour value whether the mask is shared or per channel.
    """
    dims = (-3, -2, -1)
    if config.objective == "l2":
        return (images - generated).pow(2).sum(dim=dims)
    if config.objective == "l1":
        return (images - generated).abs().sum(dim=dims)
    channels = images.shape[-3]
    weight = 1.0 if config.mask_per_channel else float(channels)
    residual_sq = _residual_sq(images, generated, config.mask_per_channel)
    if mask is None:
        mask = closed_form_mask(residual_sq.detach(), config.lam)
    fit = ((1.0 - mask).pow(2) * residual_sq).sum(dim=dims)
    return weight * (fit + config.lam * mask.abs().sum(dim=dims))


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


def hide_missing(
    generated: torch.Tensor, images: torch.Tensor, missing: torch.Tensor | None
) -> torch.Tensor:
    """G(z) where pixels are known, the input where they are missing: a zero residual there, so
    no data term sees the missing pixels (gradients flow through the known ones only)."""
    if missing is None:
        return generated
    return generated * (1.0 - missing) + images * missing


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
def _better_start(
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
            latent = _better_start(generator, encoder, images, latent, start, missing)
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
            weights = _per_image_weights(generator, groups or batch, config.finetune_params)
            optimisers.append(torch.optim.Adam(list(weights.values()), lr=config.lr_generator))
            if mask is not None and config.freeze_mask_during_finetune:
                optimisers.remove(mask_optimiser)
                mask.requires_grad_(False)
        generated = _generate(generator, latent, weights)
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
        restored = _generate(generator, latent, weights)
        seen = hide_missing(restored, images, missing)
        if config.uses_mask and mask is None:
            residual_sq = _residual_sq(images, seen, config.mask_per_channel)
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


# A ``finetune_params`` entry naming a group rather than a prefix: the per-channel scale and
# shift of every normalisation layer. Fine-tuned per image (or tile) they act as a per-channel
# modulation of every feature map; being elementwise, they keep the solve a plain batched
# forward pass (vmap turns per-item convolution weights into grouped convolutions).
NORM_AFFINE = "norm_affine"
_NORM_LAYERS = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm)


def finetuned_parameters(
    generator: nn.Module, selectors: tuple[str, ...] = ()
) -> list[tuple[str, nn.Parameter]]:
    """The generator parameters R-RGI fine-tunes: all of them (no ``selectors``), or those whose
    name starts with a selector, plus every normalisation layer's for ``NORM_AFFINE``."""
    generator = getattr(generator, "_orig_mod", generator)  # names of the plain module
    if not selectors:
        return list(generator.named_parameters())
    prefixes = tuple(s for s in selectors if s != NORM_AFFINE)
    norm = {
        f"{module_name}.{name}" if module_name else name
        for module_name, module in generator.named_modules()
        if NORM_AFFINE in selectors and isinstance(module, _NORM_LAYERS)
        for name, _ in module.named_parameters(recurse=False)
    }
    return [
        (name, param)
        for name, param in generator.named_parameters()
        if name in norm or (prefixes and name.startswith(prefixes))
    ]


def _per_image_weights(
    generator: nn.Module, batch: int, selectors: tuple[str, ...] = ()
) -> dict[str, torch.Tensor]:
    """A private, trainable copy of the fine-tuned generator weights for each image (leading
    dim = B): all of them, or those ``selectors`` pick (``finetuned_parameters``)."""
    named = finetuned_parameters(generator, selectors)
    if not named:
        msg = f"finetune_params {selectors!r} match no generator parameter"
        raise ValueError(msg)
    return {
        name: param.detach().unsqueeze(0).repeat(batch, *([1] * param.ndim)).requires_grad_(True)
        for name, param in named
    }


def _generate(
    generator: nn.Module, latent: torch.Tensor, weights: dict[str, torch.Tensor] | None
) -> torch.Tensor:
    if weights is None:
        return generator(latent)
    # A torch.compile wrapper is bypassed here: functional_call needs the plain module.
    generator = getattr(generator, "_orig_mod", generator)
    # Weights that are not fine-tuned (and buffers) are shared by every image.
    shared = {n: p for n, p in generator.named_parameters() if n not in weights}
    shared.update(generator.named_buffers())
    groups = next(iter(weights.values())).shape[0]
    if groups < latent.shape[0]:
        # One copy per group of consecutive latents: a plain batched call per group (cheaper
        # than vmap, which turns per-item weights into grouped convolutions).
        return torch.cat(
            [
                functional_call(generator, ({k: w[g] for k, w in weights.items()}, shared), (z,))
                for g, z in enumerate(latent.chunk(groups))
            ]
        )

    def one_image(image_weights: dict[str, torch.Tensor], z: torch.Tensor) -> torch.Tensor:
        return functional_call(generator, (image_weights, shared), (z.unsqueeze(0),)).squeeze(0)

    return vmap(one_image)(weights, latent)
