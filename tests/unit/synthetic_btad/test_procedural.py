"""Generated stand-ins: masks obey the grouping rules, bases form a varied but narrow family."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from synthetic_btad import CATEGORIES, GroupingRules, load_mvtec_masks
from synthetic_btad.bases import generate_base
from synthetic_btad.procedural import generate_mask


def _areas(category: str, size: int, n: int = 40) -> list[int]:
    rules = GroupingRules()
    out = []
    for i in range(n):
        g = generate_mask(category, np.random.default_rng(i), size, rules)
        assert g.mask.shape == (size, size) and g.mask.dtype == bool
        assert g.area_out == int(g.mask.sum()) > 0
        if category == "mixed_large":
            assert g.area_ref > rules.large_area_threshold
        else:
            assert 0 < g.area_ref <= rules.large_area_threshold
        out.append(g.area_out)
    return out


@pytest.mark.parametrize("category", CATEGORIES)
def test_generated_masks_follow_the_area_rule(category: str) -> None:
    areas = _areas(category, 128)
    med = float(np.median(areas))
    # Thin/small categories: a few dozen to a few hundred px at 128; large ones well above 400.
    if category == "mixed_large":
        assert min(areas) > 400 and 800 < med < 3500
    else:
        assert min(areas) >= 20 and 50 < med < 300 and max(areas) <= 400


@pytest.mark.parametrize("size", [32, 64, 256])
def test_generated_masks_non_empty_at_other_sizes(size: int) -> None:
    for cat in CATEGORIES:
        _areas(cat, size, n=8)


def test_thin_categories_are_thin() -> None:
    # Cracks and scratches: most pixels lie on the boundary (width of 1-3 px at 128).
    for cat in ("crack", "scratch"):
        g = generate_mask(cat, np.random.default_rng(5), 128, GroupingRules())
        m = g.mask
        interior = m[1:-1, 1:-1] & m[:-2, 1:-1] & m[2:, 1:-1] & m[1:-1, :-2] & m[1:-1, 2:]
        assert interior.sum() < 0.5 * m.sum()


def test_generated_masks_are_deterministic() -> None:
    rules = GroupingRules()
    a = generate_mask("crack", np.random.default_rng(7), 64, rules).mask
    b = generate_mask("crack", np.random.default_rng(7), 64, rules).mask
    c = generate_mask("crack", np.random.default_rng(8), 64, rules).mask
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_generated_areas_comparable_to_real_masks(real_mvtec_root: Path) -> None:
    lib = load_mvtec_masks(real_mvtec_root, GroupingRules(), size=128)
    real_small = [r.area_ref for c in ("crack", "irregular", "scratch") for r in lib.by_category[c]]
    real_large = [r.area_ref for r in lib.by_category["mixed_large"]]
    gen_small = [a for c in ("crack", "irregular", "scratch") for a in _areas(c, 128, 20)]
    gen_large = _areas("mixed_large", 128, 20)
    # Same order of magnitude: medians within a factor 3 of the real ones.
    for gen, real in ((gen_small, real_small), (gen_large, real_large)):
        ratio = np.median(gen) / np.median(real)
        assert 1 / 3 < ratio < 3, (np.median(gen), np.median(real))


def test_generated_bases_family() -> None:
    imgs = [generate_base(np.random.default_rng(i), 64) for i in range(6)]
    for img in imgs:
        assert img.shape == (64, 64, 3) and img.dtype == np.uint8
        assert 60 < img.mean() < 200  # mid-grey industrial surface, no clipping
        assert 2 < img.std() < 40  # textured but fairly uniform
    assert np.array_equal(imgs[0], generate_base(np.random.default_rng(0), 64))
    # Natural variation between draws (phase, illumination, noise).
    assert min(np.abs(imgs[0].astype(int) - im.astype(int)).mean() for im in imgs[1:]) > 1
    # Same family at every size: the mean level is resolution independent.
    small = generate_base(np.random.default_rng(0), 32).mean()
    assert abs(small - imgs[0].mean()) < 3
