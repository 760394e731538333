"""Structural residuals and hold-out inversion: the options that stop scoring grain and stop
the solve from absorbing the defect."""

from __future__ import annotations

import pytest
import torch
from model_helpers import nested

from rgi_anomalib.models.gan_inversion.holdout import holdout_masks, invert_held_out
from rgi_anomalib.models.gan_inversion.residual import residual_map
from rgi_anomalib.models.gan_inversion.solver import InversionConfig, InversionResult, invert

SIZE = 48


def _surface(batch: int = 2, grain: float = 0.04) -> tuple[torch.Tensor, torch.Tensor]:
    """A texture (what a generator draws) and the same texture with grain (what a camera sees)."""
    torch.manual_seed(0)
    yy, xx = torch.meshgrid(torch.arange(SIZE), torch.arange(SIZE), indexing="ij")
    texture = 0.5 + 0.15 * torch.sin(xx / 2.0) * torch.cos(yy / 3.0)
    texture = texture.expand(batch, 3, SIZE, SIZE).clone()
    noisy = texture + grain * torch.randn(batch, 1, SIZE, SIZE)
    return texture, noisy.clamp(0, 1)


def _flat_defect(image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A mean-colour patch (the paper's fill) and its mask."""
    mask = torch.zeros(image.shape[0], 1, SIZE, SIZE, dtype=torch.bool)
    mask[..., 16:32, 16:32] = True
    return torch.where(mask, image.mean(), image), mask


@pytest.mark.parametrize("kind", ["gms", "ssim_cs", "features"])
def test_structural_residuals_rise_above_the_grain_floor_where_pixels_do_not(kind: str) -> None:
    texture, noisy = _surface()
    defective, mask = _flat_defect(noisy)
    grain_floor = residual_map(noisy, texture, "pixel").quantile(0.99)
    assert residual_map(defective, texture, "pixel")[mask].mean() < grain_floor  # the problem
    floor = residual_map(noisy, texture, kind).quantile(0.99)
    assert residual_map(defective, texture, kind)[mask].mean() > 1.5 * floor


@pytest.mark.parametrize("kind", ["pixel", "gms", "ssim_cs", "features"])
def test_a_residual_is_zero_for_a_perfect_restoration_and_low_for_a_copied_defect(
    kind: str,
) -> None:
    texture, noisy = _surface(grain=0.0)
    assert residual_map(texture, texture, kind).abs().max() < 1e-3
    defective, mask = _flat_defect(noisy)
    copied = residual_map(defective, defective, kind)[mask].mean()
    restored = residual_map(defective, texture, kind)[mask].mean()
    assert copied < 0.25 * restored  # a restoration that copies the defect hides it


def test_unknown_residual_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="residual must be one of"):
        residual_map(torch.zeros(1, 3, 8, 8), torch.zeros(1, 3, 8, 8), "ssim")  # type: ignore[arg-type]


@pytest.mark.parametrize("phases", [2, 4])
def test_holdout_masks_partition_the_image_into_interleaved_cells(phases: int) -> None:
    masks = holdout_masks(20, 24, phases, cell=4)
    assert masks.shape == (phases, 1, 20, 24)
    torch.testing.assert_close(masks.sum(0), torch.ones(1, 20, 24))
    assert masks[0, 0, :4, :4].eq(1).all() and masks[0, 0, :4, 4:8].eq(0).all()
    for mask in masks:  # every phase is spread over the whole image, not a block of it
        assert mask[0, :8].mean() >= 0.2 and mask[0, 8:16].mean() >= 0.2


def test_holdout_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="holdout_phases must be one of"):
        holdout_masks(8, 8, 3, 2)
    with pytest.raises(ValueError, match="holdout_cell"):
        holdout_masks(8, 8, 2, 0)


class _Lowpass(torch.nn.Module):
    """G(z): an 8×8 latent image upsampled to 32×32; it draws smooth surfaces, not sharp dots."""

    latent_dim = 3 * 64

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        small = torch.tanh(z.view(-1, 3, 8, 8))
        return torch.nn.functional.interpolate(small, size=32, mode="bilinear")


def test_holdout_fills_each_pixel_from_a_solve_that_did_not_see_it() -> None:
    """A bright spot of one cell: a solve that sees it draws a blurred bump over it (the defect
    is absorbed); the hold-out restoration is the surface around it."""
    torch.manual_seed(0)
    generator = _Lowpass()
    clean = generator(torch.randn(1, 3 * 64) * 0.3).detach()
    spot = torch.zeros(1, 1, 32, 32)
    spot[..., 8:12, 12:16] = 1  # one 4-pixel cell of the hold-out grid
    images = torch.where(spot.bool(), torch.ones_like(clean), clean)
    config = InversionConfig(objective="l2", iterations=300, lr_latent=0.05, init_candidates=1)

    def solve(x: torch.Tensor, missing: torch.Tensor | None = None, **_: object) -> InversionResult:
        return invert(generator, x, config, missing=missing)

    inside = spot.expand_as(clean).bool()

    def absorbed(restored: torch.Tensor) -> float:
        copied = (restored - clean)[inside].square().mean().sqrt()
        return float(copied / (images - clean)[inside].square().mean().sqrt())

    seen = absorbed(solve(images).restored)
    held_out = absorbed(invert_held_out(solve, images, phases=4, cell=4))
    assert seen > 0.2  # the plain solve copies part of the spot
    assert held_out < 0.5 * seen


@pytest.mark.parametrize(
    ("options", "is_mask"),
    [({}, True), ({"residual": "ssim_cs"}, False), ({"holdout_phases": 2}, False)],
)
def test_the_model_scores_the_chosen_residual_of_the_held_out_restoration(
    options: dict, is_mask: bool
) -> None:
    from rgi_anomalib.models import Rgi

    model = Rgi(**nested(
        image_size=32, latent_dim=16, base_width=8, max_width=32, encoder_weight=0.0,
        iterations=3, init_candidates=4, holdout_cell=4, **options,
    )).eval()  # fmt: skip
    assert model.anomaly_map_is_mask is is_mask
    calls: list[tuple[int, int]] = []
    with torch.no_grad():
        out = model.model(
            torch.rand(2, 3, 32, 32) * 2 - 1, progress=lambda d, t: calls.append((d, t))
        )
    assert out.anomaly_map.shape == (2, 1, 32, 32) and out.restored_image.shape == (2, 3, 32, 32)
    if options.get("holdout_phases"):  # progress counts over both solves, to the end
        total = calls[0][1]
        assert {t for _, t in calls} == {total} and calls[-1][0] == total
        done = [d for d, _ in calls]
        assert done == sorted(done) and len(done) == total  # one call per iteration, 2 solves


def _flagged(defective: torch.Tensor, normal: torch.Tensor, clean: torch.Tensor, kind: str):
    """The share of the defect's pixels the closed-form mask flags when λ lets it flag 0.5 % of
    a normal image's pixels (the rule of lam="auto"), with the robust term on ``kind``."""
    from rgi_anomalib.models.gan_inversion.lam_calibration import lam_for_normal_rate
    from rgi_anomalib.models.gan_inversion.objective import closed_form_mask, squared_residual

    def to_solver(t: torch.Tensor) -> torch.Tensor:
        return t * 2 - 1

    normal_sq = squared_residual(to_solver(normal), to_solver(clean), False, kind)
    lam = lam_for_normal_rate(normal_sq, 0.005)
    defect_sq = squared_residual(to_solver(defective), to_solver(clean), False, kind)
    return closed_form_mask(defect_sq, lam)


def test_the_robust_term_on_structure_flags_a_defect_below_the_grain_floor() -> None:
    """The mask of eq. 3 pays for what the residual shows: on pixels, grain as much as a
    mean-colour patch; on SSIM's contrast-structure term, the patch."""
    texture, noisy = _surface()
    defective, mask = _flat_defect(noisy)
    on_pixels = _flagged(defective, noisy, texture, "pixel")
    on_structure = _flagged(defective, noisy, texture, "ssim_cs")
    inside = mask.expand_as(on_pixels)
    assert (on_pixels[inside] > 0).float().mean() < 0.3
    assert (on_structure[inside] > 0).float().mean() > 0.6
    assert (on_structure[~inside] > 0).float().mean() < 0.1


def test_the_structural_squared_residual_broadcasts_like_the_pixel_one() -> None:
    """The start's candidate search compares B images with K candidates (B×1 against 1×K)."""
    from rgi_anomalib.models.gan_inversion.objective import squared_residual

    torch.manual_seed(0)
    images, candidates = torch.rand(2, 1, 3, 16, 16) * 2 - 1, torch.rand(1, 4, 3, 16, 16) * 2 - 1
    table = squared_residual(images, candidates, False, "gms")
    assert table.shape == (2, 4, 1, 16, 16)
    one = squared_residual(images[1], candidates[0, 2:3], False, "gms")
    torch.testing.assert_close(table[1, 2], one[0])


def test_a_solve_with_the_robust_term_on_structure_lowers_its_objective() -> None:
    torch.manual_seed(0)
    generator = _Lowpass()
    images = generator(torch.randn(2, 3 * 64) * 0.3).detach()
    images[..., 10:20, 10:20] = images.mean()
    config = InversionConfig(
        lam=0.05, iterations=40, robust_residual="ssim_cs", init_candidates=4, lr_latent=0.05
    )
    result = invert(generator, images, config)
    assert result.loss_history[-1] < 0.7 * result.loss_history[0]
    assert result.mask is not None and result.mask.shape == (2, 1, 32, 32)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"robust_residual": "features"}, "robust_residual must be one of pixel, gms, ssim_cs"),
        ({"robust_residual": "gms", "mask_per_channel": True}, "needs mask_per_channel=False"),
    ],
)
def test_robust_residual_settings_are_checked(changes: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        InversionConfig(**changes)
