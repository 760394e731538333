"""The paper's fill formula x_sys = (1 - M) * x + M * C on hand-made examples."""

from __future__ import annotations

import numpy as np
import pytest

from synthetic_btad import MaskError, fill_defect, region_mean_colour


def test_fill_hand_made_example() -> None:
    x = np.array(
        [
            [[10, 100, 200], [20, 110, 210], [30, 120, 220]],
            [[40, 130, 230], [50, 140, 240], [61, 151, 255]],
        ],
        dtype=np.uint8,
    )
    m = np.array([[True, False, False], [False, True, True]])
    # Means over the 3 masked pixels, by hand: R (10+50+61)/3 = 40.33, G (100+140+151)/3 = 130.33,
    # B (200+240+255)/3 = 231.67.
    np.testing.assert_allclose(region_mean_colour(x, m), [121 / 3, 391 / 3, 695 / 3])
    out, colour = fill_defect(x, m)
    assert colour.tolist() == [40, 130, 232]
    expected = x.copy()
    expected[0, 0] = expected[1, 1] = expected[1, 2] = [40, 130, 232]
    np.testing.assert_array_equal(out, expected)
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(x[0, 0], [10, 100, 200])  # input untouched


def test_fill_matches_formula_on_random_image() -> None:
    rng = np.random.default_rng(3)
    x = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
    m = rng.random((16, 16)) < 0.2
    out, colour = fill_defect(x, m)
    c = np.rint(x[m].astype(float).mean(axis=0))
    formula = (1 - m[..., None]) * x.astype(float) + m[..., None] * c
    np.testing.assert_array_equal(out, formula.astype(np.uint8))
    np.testing.assert_array_equal(colour, c.astype(np.uint8))


def test_fill_rounds_half_to_even() -> None:
    x = np.array([[[1, 2, 0], [2, 3, 0]]], dtype=np.uint8)  # means 1.5, 2.5, 0
    _, colour = fill_defect(x, np.ones((1, 2), bool))
    assert colour.tolist() == [2, 2, 0]


@pytest.mark.parametrize(
    ("mask", "match"),
    [
        (np.ones((4, 4, 3), bool), "single-channel"),
        (np.ones((4, 5), bool), "differs from image size"),
        (np.zeros((4, 4), bool), "empty"),
        (np.ones((4, 4), np.uint8), "boolean"),
    ],
)
def test_fill_rejects_bad_masks(mask: np.ndarray, match: str) -> None:
    with pytest.raises(MaskError, match=match):
        fill_defect(np.zeros((4, 4, 3), np.uint8), mask)
