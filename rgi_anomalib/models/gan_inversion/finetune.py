"""R-RGI's per-image generator weights: which are fine-tuned, their copies, the forward pass."""

from __future__ import annotations

import torch
from torch import nn
from torch.func import functional_call, vmap

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


def per_image_weights(
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


def generate(
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
