"""Generator / discriminator families: shapes, ranges, FastGAN's skip-layer excitation."""

from __future__ import annotations

import pytest
import torch

from rgi_anomalib.models import Rgi
from rgi_anomalib.models.gan_inversion.networks import (
    BACKBONES,
    Discriminator,
    Generator,
    SkipLayerExcitation,
)
from rgi_anomalib.models.gan_inversion.solver import finetuned_parameters


@pytest.mark.parametrize("backbone", BACKBONES)
@pytest.mark.parametrize("size", [32, 64])
def test_every_family_maps_latents_to_images_and_images_to_logits(backbone: str, size: int) -> None:
    torch.manual_seed(0)
    gen = Generator(size, latent_dim=16, channels=1, base_width=8, max_width=32, backbone=backbone)
    images = gen(torch.randn(4, 16))
    assert images.shape == (4, 1, size, size)
    assert images.abs().max() <= 1 and images.std() > 0
    disc = Discriminator(size, 1, 8, 32, backbone)
    assert disc(images).shape == (4,)


def test_fastgan_excites_each_map_from_16_px_on_by_the_map_two_levels_below() -> None:
    gen = Generator(64, latent_dim=16, base_width=8, max_width=32, backbone="fastgan")
    # levels 4, 8, 16, 32, 64 px: gates for 16 (from 4), 32 (from 8) and 64 (from 16)
    assert len(gen.excite) == 3
    assert [m.gate[1].in_channels for m in gen.excite] == [32, 32, 32]
    assert [m.gate[1].out_channels for m in gen.excite] == [32, 16, 8]
    # R-RGI's first-layer selector still names the generator's first layer
    assert {n.split(".")[0] for n, _ in finetuned_parameters(gen, ("stem",))} == {"stem"}


def test_skip_layer_excitation_is_a_per_channel_gate_in_zero_one() -> None:
    torch.manual_seed(0)
    sle = SkipLayerExcitation(source_channels=6, target_channels=3)
    target = torch.randn(2, 3, 16, 16)
    gated = sle(torch.randn(2, 6, 4, 4), target)
    ratio = gated / target
    # one factor per image and channel, constant over pixels, strictly between 0 and 1
    assert torch.allclose(ratio, ratio[..., :1, :1].expand_as(ratio), atol=1e-5)
    assert ((ratio > 0) & (ratio < 1)).all()
    # the gate depends on the source: another coarse map, another factor
    assert not torch.allclose(sle(torch.randn(2, 6, 4, 4), target), gated)


def test_unknown_backbone_names_the_choices() -> None:
    with pytest.raises(ValueError, match=r"backbone must be one of .*fastgan"):
        Generator(32, backbone="stylegan")
    with pytest.raises(ValueError, match="backbone must be one of"):
        Rgi(image_size=32, backbone="stylegan")
