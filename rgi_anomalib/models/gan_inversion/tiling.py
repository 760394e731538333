"""Tile generator support: train on random crops, invert a large image tile by tile.

A surface such as a solar cell or a machined part is locally alike everywhere, so a generator of
small tiles (e.g. 32 px) sees many crops per training image and trains fast, and a test image is
solved as overlapping tiles with anomalib's ``Tiler``. Each tile gets its own latent (and mask),
which is what lets the restoration follow the image's own texture.

Seams: tiles overlap (stride < tile size by default) and ``Tiler.untile`` averages the restored
tiles and the masks where they overlap, so no tile border shows as a hard edge in G(ẑ) or M̂.
"""

from __future__ import annotations

import torch
from anomalib.data.utils.tiler import Tiler

from .solver import CandidatePool, InversionConfig, InversionResult, Progress, invert


def default_stride(image_size: int, tile_size: int) -> int:
    """The largest step of at most 3/4 of a tile that tiles the image exactly, so that at least a
    quarter of a tile overlaps its neighbour (128 px, 32 px tiles: stride 24, 5 × 5 tiles)."""
    span = image_size - tile_size
    if span == 0:
        return tile_size
    return max(s for s in range(1, tile_size * 3 // 4 + 1) if span % s == 0)


def check_tiling(image_size: int, tile_size: int | None, stride: int | None) -> None:
    """One clear error for a tiling that cannot cover the image exactly."""
    if tile_size is None:
        if stride is not None:
            msg = f"tile_stride={stride} needs a tile_size"
            raise ValueError(msg)
        return
    if not 0 < tile_size <= image_size:
        msg = f"tile_size={tile_size} must be in (0, image_size={image_size}]"
        raise ValueError(msg)
    stride = stride or default_stride(image_size, tile_size)
    if not 0 < stride <= tile_size or (image_size - tile_size) % stride:
        msg = (
            f"tile_stride={stride} must be in (0, tile_size={tile_size}] and tile the image "
            f"exactly: (image_size - tile_size) = {image_size - tile_size} must be a multiple "
            "of it (e.g. 128 px, tile 32, stride 24 or 32)"
        )
        raise ValueError(msg)


def random_crops(
    images: torch.Tensor, size: int, per_image: int = 1, generator: torch.Generator | None = None
) -> torch.Tensor:
    """``per_image`` random ``size``×``size`` crops of every image of a B×C×H×W batch."""
    batch, _, height, width = images.shape
    n = batch * per_image
    device = images.device
    top = torch.randint(0, height - size + 1, (n,), generator=generator).to(device)
    left = torch.randint(0, width - size + 1, (n,), generator=generator).to(device)
    source = torch.arange(batch, device=device).repeat_interleave(per_image)
    rows = (top[:, None] + torch.arange(size, device=device))[:, :, None]  # n×size×1
    cols = (left[:, None] + torch.arange(size, device=device))[:, None, :]  # n×1×size
    return images[source[:, None, None], :, rows, cols].permute(0, 3, 1, 2).contiguous()


def invert_tiled(
    generator: torch.nn.Module,
    images: torch.Tensor,
    config: InversionConfig,
    tile_size: int,
    stride: int | None = None,
    discriminator: torch.nn.Module | None = None,
    pool: CandidatePool | None = None,
    chunk: int = 256,
    missing: torch.Tensor | None = None,
    encoder: torch.nn.Module | None = None,
    progress: Progress | None = None,
) -> InversionResult:
    """Invert every tile (``chunk`` tiles per solve) and stitch restoration and mask back
    together; latents are B×tiles×d, losses summed per image. R-RGI fine-tunes one generator copy
    per tile (``config.finetune_per="tile"``) or one per image, shared by its tiles (``"image"``).
    ``progress(done, total)`` counts iterations over all chunks (total: chunks × iterations); a
    chunk that stops early counts as complete when it returns."""
    finetune_per = config.finetune_per
    stride = stride or default_stride(images.shape[-1], tile_size)
    tiler = Tiler(tile_size=tile_size, stride=stride)
    tiles = tiler.tile(images)  # image-major: the tiles of image 0, then of image 1, ...
    missing_tiles = None if missing is None else tiler.tile(missing.to(images.dtype))
    pool = pool or CandidatePool()
    per_image = tiles.shape[0] // images.shape[0]
    if finetune_per == "image":
        chunk = per_image * max(1, chunk // per_image)  # whole images per solve
    missing_parts = [None] * len(tiles.split(chunk))
    if missing_tiles is not None:
        missing_parts = list(missing_tiles.split(chunk))
    total = len(missing_parts) * config.iterations
    parts = []
    for index, (part, part_missing) in enumerate(
        zip(tiles.split(chunk), missing_parts, strict=True)
    ):
        offset = index * config.iterations
        result = invert(
            generator,
            part,
            config,
            discriminator,
            pool,
            groups=part.shape[0] // per_image if finetune_per == "image" else None,
            missing=part_missing,
            encoder=encoder,
            progress=None if progress is None else _shifted(progress, offset, total),
        )
        parts.append(result)
        if progress is not None and result.iterations_run < config.iterations:
            progress(offset + config.iterations, total)  # stopped early: the chunk is done
    batch = images.shape[0]
    restored = tiler.untile(torch.cat([p.restored for p in parts]))
    mask = None
    if parts[0].mask is not None:
        mask = tiler.untile(torch.cat([p.mask for p in parts]))  # type: ignore[misc]
    latents = torch.cat([p.latent for p in parts])
    losses = torch.cat([p.loss for p in parts]).view(batch, -1).sum(dim=1)
    return InversionResult(
        latent=latents.view(batch, -1, latents.shape[-1]),
        restored=restored,
        mask=mask,
        loss=losses,
        iterations_run=max(p.iterations_run for p in parts),
    )


def _shifted(progress: Progress, offset: int, total: int) -> Progress:
    """One chunk's ``progress(done, iterations)`` as a count over all chunks."""

    def chunk_progress(done: int, _iterations: int) -> None:
        progress(offset + done, total)

    return chunk_progress
