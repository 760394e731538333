"""Tile generator support: random crops, tiled inversion round trip, tiling errors."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from model_helpers import nested
from torch import nn

from rgi_anomalib.models.gan_inversion.gap import reconstruction_gap
from rgi_anomalib.models.gan_inversion.solver import InversionConfig
from rgi_anomalib.models.gan_inversion.tiling import (
    check_tiling,
    default_stride,
    invert_tiled,
    random_crops,
)


class PixelGenerator(nn.Module):
    """G(z) = tanh(z) reshaped to a tile: every tile is on its manifold (an exact generator)."""

    def __init__(self, tile: int = 8, channels: int = 3) -> None:
        super().__init__()
        self.shape = (channels, tile, tile)
        self.latent_dim = channels * tile * tile
        self.scale = nn.Parameter(torch.ones(()))  # the solver freezes and restores parameters

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.scale * z).view(z.shape[0], *self.shape)


def test_default_stride_overlaps_and_tiles_exactly() -> None:
    assert default_stride(128, 32) == 24
    assert default_stride(64, 32) == 16
    assert default_stride(256, 32) == 16
    assert default_stride(32, 32) == 32


def test_random_crops_are_crops_of_their_own_image() -> None:
    images = torch.arange(2 * 3 * 16 * 16, dtype=torch.float32).view(2, 3, 16, 16)
    crops = random_crops(images, 8, per_image=3, generator=torch.Generator().manual_seed(0))
    assert crops.shape == (6, 3, 8, 8)
    for k, crop in enumerate(crops):
        source = images[k // 3]
        top, left = divmod(int((crop[0, 0, 0] - source[0, 0, 0]).item()), 16)
        assert torch.equal(crop, source[:, top : top + 8, left : left + 8])
    again = random_crops(images, 8, per_image=3, generator=torch.Generator().manual_seed(0))
    assert torch.equal(crops, again)  # seeded


def test_tiled_inversion_of_an_exact_generator_restores_the_image() -> None:
    """Overlapping tiles solved independently and stitched back: a generator that can make every
    tile gives back the whole image (no seams), one latent per tile."""
    torch.manual_seed(0)
    images = torch.rand(2, 3, 32, 32) * 1.6 - 0.8
    config = InversionConfig(objective="l2", iterations=300, lr_latent=0.05, init_candidates=4)
    result = invert_tiled(PixelGenerator(8), images, config, tile_size=8, stride=6, chunk=16)
    assert result.restored.shape == images.shape
    assert result.latent.shape == (2, 25, 192)  # (32 - 8) / 6 + 1 = 5 tiles per side
    assert result.loss.shape == (2,)
    assert reconstruction_gap(images, result.restored).rmse.max() < 2e-3
    rgi = InversionConfig(objective="rgi", iterations=300, lr_latent=0.05, init_candidates=4)
    result = invert_tiled(PixelGenerator(8), images, rgi, tile_size=8, stride=6, chunk=16)
    assert result.mask is not None and result.mask.shape == (2, 1, 32, 32)


@pytest.mark.parametrize(
    ("image_size", "tile", "stride", "match"),
    [
        (128, 256, None, "must be in"),
        (128, 32, 20, "tile the image exactly"),
        (128, 32, 40, "tile the image exactly"),
        (128, None, 24, "needs a tile_size"),
    ],
)
def test_bad_tiling_is_one_clear_error(
    image_size: int, tile: int | None, stride: int | None, match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        check_tiling(image_size, tile, stride)


def test_tile_model_trains_on_crops_and_inverts_whole_images() -> None:
    from rgi_anomalib.models import Rgi

    model = Rgi(**nested(image_size=64, tile_size=32, latent_dim=16, base_width=8, max_width=32))
    assert model.model.generator(torch.randn(2, 16)).shape == (2, 3, 32, 32)
    model.model.inversion = InversionConfig(objective="rgi", iterations=3, init_candidates=4)
    out = model.model.eval()(torch.rand(2, 3, 64, 64) * 2 - 1)
    assert out.anomaly_map.shape == (2, 1, 64, 64)
    with pytest.raises(ValueError, match="tile the image exactly"):
        Rgi(**nested(image_size=64, tile_size=32, tile_stride=24))


def test_grouped_finetune_weights_equal_repeated_per_item_weights() -> None:
    """One generator copy per group of consecutive latents gives what per-item copies give
    when the items of a group hold the same weights."""
    from rgi_anomalib.models.gan_inversion.finetune import generate

    torch.manual_seed(0)
    generator = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 3))
    latent = torch.randn(6, 4)
    grouped = {n: p.detach() + torch.randn(2, *p.shape) for n, p in generator.named_parameters()}
    per_item = {n: w.repeat_interleave(3, dim=0) for n, w in grouped.items()}
    torch.testing.assert_close(
        generate(generator, latent, grouped), generate(generator, latent, per_item)
    )


def test_tiled_finetune_per_image_shares_one_copy_per_image() -> None:
    torch.manual_seed(0)
    images = torch.rand(2, 3, 32, 32) * 1.6 - 0.8
    config = InversionConfig(
        objective="rgi", iterations=20, finetune_iterations=5, lr_generator=1e-2, init_candidates=4
    )
    for per in ("tile", "image"):
        per_config = dataclasses.replace(config, finetune_per=per)
        result = invert_tiled(
            PixelGenerator(8), images, per_config, tile_size=8, stride=6, chunk=30
        )
        assert result.restored.shape == images.shape and result.loss.shape == (2,)
    with pytest.raises(ValueError, match="finetune_per must be one of"):
        dataclasses.replace(config, finetune_per="pixel")


def test_encoder_is_on_by_default_off_at_zero_and_maps_onto_the_latent_sphere() -> None:
    from rgi_anomalib.models import Rgi

    plain = Rgi(
        **nested(image_size=32, latent_dim=16, base_width=8, max_width=32, encoder_weight=0.0)
    )
    assert not any(key.startswith("model.encoder") for key in plain.state_dict())
    model = Rgi(**nested(image_size=32, latent_dim=16, base_width=8, max_width=32))
    assert model.gan_training.encoder_weight == 10.0
    codes = model.model.encoder(torch.rand(3, 3, 32, 32) * 2 - 1)
    assert codes.shape == (3, 16)
    torch.testing.assert_close(codes.norm(dim=1), torch.full((3,), 4.0))
    with pytest.raises(ValueError, match="encoder_weight must be >= 0"):
        Rgi(**nested(image_size=32, encoder_weight=-1.0))


@pytest.mark.slow
def test_encoder_training_makes_the_generator_reconstruct_training_images(
    tiny_datamodule, tmp_path
) -> None:
    from anomalib.engine import Engine
    from model_helpers import FAST_RGI

    from rgi_anomalib.models import Rgi

    model = Rgi(**nested(**{**FAST_RGI, "max_epochs": 15}, encoder_weight=10.0, lr_gan=1e-3))
    tiny_datamodule.setup()
    images = next(iter(tiny_datamodule.train_dataloader())).image
    images = model.pre_processor.transform(images)

    def reconstruction_error() -> float:
        with torch.no_grad():
            codes = model.model.encoder(images)
            return (model.model.generator(codes) - images).pow(2).mean().item()

    before = reconstruction_error()
    Engine(default_root_dir=tmp_path, logger=False).fit(model, datamodule=tiny_datamodule)
    model.model.train()  # BatchNorm as in training, where the loss was measured
    after = reconstruction_error()
    assert after < 0.5 * before, (before, after)


def test_a_checkpoint_without_encoder_is_refused_by_a_model_with_one_naming_the_option() -> None:
    from rgi_anomalib.models import Rgi

    arch = {"image_size": 32, "latent_dim": 16, "base_width": 8, "max_width": 32}
    old = Rgi(**nested(**arch, encoder_weight=0.0))
    checkpoint = {"state_dict": old.state_dict(), "hyper_parameters": dict(old.hparams)}
    with pytest.raises(ValueError, match=r"--model\.training\.encoder_weight 0\.0"):
        Rgi(**nested(**arch)).on_load_checkpoint(checkpoint)
    Rgi(**nested(**arch, encoder_weight=0.0)).on_load_checkpoint(checkpoint)  # matching: accepted


def test_tile_rrgi_finetunes_norm_affine_and_output_by_default_keeps_explicit_choices() -> None:
    """With tiles, R-RGI's fast default fine-tunes only the normalisation scales/shifts and the
    output layer per tile (per-tile copies of
    every weight cost 4-6x); an explicit list, the paper preset and whole images are unchanged."""
    from rgi_anomalib.models import Rgi, RRgi

    tiled = {"image_size": 64, "tile_size": 32, "visualizer": False}
    assert RRgi(**nested(**tiled)).inversion.finetune_params == ("norm_affine", "to_image")
    assert RRgi(**nested(**tiled)).inversion.lr_generator == 1e-2
    assert (
        Rgi(**nested(**tiled)).inversion.start_objective
        == RRgi(**nested(**tiled)).inversion.start_objective
        == "l2"
    )
    assert Rgi(**nested(**tiled, start_objective="rgi")).inversion.start_objective == "rgi"
    stored = ["norm_affine", "to_image"]
    assert (
        RRgi(**nested(**tiled)).inversion_settings.finetune_params == stored
    )  # stored: a checkpoint keeps it
    assert RRgi(**nested(**tiled, finetune_params=[])).inversion.finetune_params == ()
    assert RRgi(**nested(**tiled, finetune_params=["to_image"])).inversion.finetune_params == (
        "to_image",
    )
    assert RRgi(**nested(**tiled, preset="paper")).inversion == InversionConfig.paper("rrgi")
    assert (
        RRgi(**nested(image_size=64, tile_size=None, visualizer=False)).inversion.finetune_params
        == ()
    )
    whole = Rgi(**nested(image_size=64, tile_size=None, visualizer=False)).inversion
    assert whole.start_objective is None and whole.iterations == 50
    assert Rgi(**nested(**tiled)).inversion == dataclasses.replace(
        whole, start_objective="l2", iterations=30
    )
