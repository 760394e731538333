"""DiffAugment: differentiable, shape-preserving, seeded, and one clear error for a bad policy."""

from __future__ import annotations

import pytest
import torch
from model_helpers import FAST_RGI, nested

from rgi_anomalib.models import Rgi
from rgi_anomalib.models.gan_inversion.augment import diff_augment, parse_policy


def _images() -> torch.Tensor:
    return torch.rand(6, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1


def test_every_operation_keeps_the_shape_and_passes_gradients() -> None:
    images = _images().requires_grad_(True)
    out = diff_augment(images, parse_policy("color,translation,cutout"))
    assert out.shape == images.shape
    out.square().sum().backward()
    assert images.grad is not None and images.grad.abs().sum() > 0


def test_same_seed_same_augmentation_and_an_empty_policy_is_the_identity() -> None:
    images = _images()
    ops = parse_policy("color, translation ,cutout")
    first = diff_augment(images, ops, torch.Generator().manual_seed(3))
    again = diff_augment(images, ops, torch.Generator().manual_seed(3))
    other = diff_augment(images, ops, torch.Generator().manual_seed(4))
    assert torch.equal(first, again) and not torch.equal(first, other)
    assert parse_policy("") == () and torch.equal(diff_augment(images, ()), images)


def test_translation_shifts_content_and_cutout_zeroes_one_square() -> None:
    ramp = (torch.arange(32.0) + 1).expand(4, 1, 32, 32).contiguous()  # value = column + 1
    shifted = diff_augment(ramp, ("translation",), torch.Generator().manual_seed(1))
    columns = torch.arange(32.0).expand(32, 32)
    offsets = []
    for image in shifted[:, 0]:  # each image: the ramp moved by one whole offset, zero fill
        inside = image > 0
        offset = (image - 1 - columns)[inside]
        assert inside.any() and (offset == offset[0]).all()
        assert offset[0].abs() <= 4  # at most 1/8 of the side
        offsets.append(offset[0])
    assert any(o != 0 for o in offsets)  # seed 1 shifts these four by 3, -3, -2, 1
    cut = diff_augment(torch.ones(4, 1, 32, 32), ("cutout",), torch.Generator().manual_seed(1))
    zeroed = (cut == 0).float().mean(dim=(1, 2, 3))
    assert ((zeroed > 0) & (zeroed <= 0.25 + 1e-6)).all()


def test_unknown_operation_is_one_error_naming_it() -> None:
    with pytest.raises(ValueError, match=r"diff_augment='color,zoom'.*'zoom'"):
        parse_policy("color,zoom")
    with pytest.raises(ValueError, match="zoom"):
        Rgi(**nested(image_size=32, diff_augment="zoom"))


@pytest.mark.slow
def test_a_model_trains_with_diff_augment(tmp_path, monkeypatch) -> None:
    """Every image D sees in training goes through the configured augmentation."""
    from anomalib.engine import Engine
    from torchvision.utils import save_image

    from rgi_anomalib.benchmark.images import image_loader

    paths = [tmp_path / f"{i}.png" for i in range(4)]
    for image, path in zip(_images(), paths, strict=False):
        save_image(image * 0.5 + 0.5, path)
    from rgi_anomalib.models.gan_inversion import gan_training

    seen: list[tuple[str, ...]] = []

    def spy(images: torch.Tensor, ops: tuple[str, ...], *args) -> torch.Tensor:
        seen.append(ops)
        return diff_augment(images, ops, *args)

    monkeypatch.setattr(gan_training, "diff_augment", spy)
    model = Rgi(**nested(**{**FAST_RGI, "max_epochs": 1}, diff_augment="color,translation,cutout"))
    before = {k: v.clone() for k, v in model.model.generator.state_dict().items()}
    engine = Engine(
        default_root_dir=tmp_path,
        logger=False,
        accelerator="cpu",
        devices=1,
        limit_val_batches=0,
        enable_progress_bar=False,
    )
    engine.fit(model=model, train_dataloaders=image_loader(paths, None, 0, 4, shuffle=True))
    after = model.model.generator.state_dict()
    # Per step: real and generated in D's step, generated in G's step.
    assert seen and len(seen) % 3 == 0
    assert all(ops == ("color", "translation", "cutout") for ops in seen)
    assert any(not torch.equal(before[k], after[k]) for k in before)
    assert all(torch.isfinite(v).all() for v in after.values() if v.is_floating_point())
