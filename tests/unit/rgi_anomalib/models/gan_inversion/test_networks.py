"""Generator / discriminator families: shapes, ranges, FastGAN's skip-layer excitation."""

from __future__ import annotations

import pytest
import torch
from model_helpers import nested

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
        Rgi(**nested(image_size=32, backbone="stylegan"))


def _digest(tensors) -> str:
    import hashlib

    h = hashlib.sha256()
    for t in tensors:
        h.update(t.detach().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


# Recorded from the code before the networks became one module per architecture (networks.py
# with one if/elif, commit 93ae0f4): a seeded build's output for a fixed z and its weights.
OLD_DIGESTS = {
    "dcgan": ("20728ec0b6fb4c70", "4598866cef40bf64", "dd8993f17dd44a02", "cd7acb93c7024c0d"),
    "progan": ("7d5539631351eb68", "7f9f06ebfa587916", "ab41c01734758b8f", "78249507261ee851"),
    "fastgan": ("ff5ca85257460b2c", "015f03da010e6738", "ce1dc285a70cad85", "6f2a46d842b4d76d"),
}


@pytest.mark.parametrize("backbone", BACKBONES)
def test_seeded_networks_are_bit_identical_to_the_old_if_elif_code(backbone: str) -> None:
    from rgi_anomalib.models.gan_inversion.networks import Encoder

    torch.manual_seed(0)
    gen = Generator(32, 8, 3, 8, 32, backbone).eval()
    disc = Discriminator(32, 3, 8, 32, backbone, True)
    enc = Encoder(32, 8, 3, 8, 32)
    with torch.no_grad():
        images = gen(torch.linspace(-1, 1, 16).view(2, 8))
    got = (
        _digest([images]),
        _digest(gen.state_dict().values()),
        _digest(disc.state_dict().values()),
        _digest(enc.state_dict().values()),
    )
    assert got == OLD_DIGESTS[backbone]


def test_every_backbone_name_has_a_registered_generator_and_discriminator() -> None:
    from rgi_anomalib.models.gan_inversion.networks import DISCRIMINATORS, GENERATORS

    assert set(GENERATORS) == set(DISCRIMINATORS) == set(BACKBONES)
