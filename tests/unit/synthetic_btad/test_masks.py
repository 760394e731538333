"""Mask reading, binarisation, grouping rules and the area rule; grouping on the real masks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sbtad_helpers import save_mask

from synthetic_btad import (
    GroupingRules,
    ImageReadError,
    LayoutError,
    MaskError,
    load_mvtec_masks,
)
from synthetic_btad.io import binarise_mask, read_mask

# Expected grouping of the 27 shared real masks with the default rules (400 px at 128 px).
EXPECTED_REAL = {
    "crack": {"grid/broken": 2},
    "scratch": {"grid/thread": 2, "hazelnut/cut": 2, "transistor/cut_lead": 2},
    "irregular": {
        "grid/bent": 3,
        "grid/glue": 2,
        "grid/metal_contamination": 2,
        "hazelnut/hole": 2,
        "transistor/bent_lead": 2,
        "transistor/damaged_case": 1,
    },
    "mixed_large": {
        "hazelnut/crack": 2,
        "hazelnut/print": 2,
        "transistor/damaged_case": 1,
        "transistor/misplaced": 2,
    },
}


def _square(n: int, side: int) -> np.ndarray:
    arr = np.zeros((n, n), np.uint8)
    arr[:side, :side] = 255
    return arr


@pytest.mark.parametrize(
    ("values", "mode"),
    [((0, 255), "L"), ((0, 1), "L"), ((0, 37), "L"), ((0, 255), "1"), ((0, 255), "P")],
)
def test_binarise_storage_variants(values: tuple[int, int], mode: str) -> None:
    arr = np.full((8, 8), values[0], np.uint8)
    arr[2:5, 3:7] = values[1]
    img = Image.fromarray(arr).convert(mode) if mode != "L" else Image.fromarray(arr)
    m = binarise_mask(img)
    assert m.dtype == bool and m.sum() == 12 and m[2:5, 3:7].all()


def test_binarise_ignores_faint_noise_and_reads_16_bit() -> None:
    arr = np.zeros((8, 8), np.uint8)
    arr[0, 0] = 2  # compression noise far below the mask level
    arr[4:6, 4:6] = 200
    assert binarise_mask(Image.fromarray(arr)).sum() == 4
    wide = Image.fromarray(arr.astype(np.int32) * 257).convert("I")
    assert binarise_mask(wide).sum() == 4
    assert not binarise_mask(Image.fromarray(np.zeros((4, 4), np.uint8))).any()


def test_multichannel_mask_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "rgb_mask.png"
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(path)
    with pytest.raises(MaskError, match="single-channel"):
        read_mask(path)


def test_truncated_mask_is_refused(tmp_path: Path) -> None:
    path = save_mask(
        tmp_path / "m.png", np.random.default_rng(0).integers(0, 256, (64, 64), np.uint8)
    )
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(ImageReadError, match=r"m\.png"):
        read_mask(path)


def test_grouping_rules_order_and_patterns() -> None:
    rules = GroupingRules()
    assert rules.category("capsule", "crack", 50) == "crack"
    assert rules.category("bottle", "broken_small", 50) == "crack"
    assert rules.category("zipper", "broken_teeth", 50) == "irregular"  # qualified rule first
    assert rules.category("screw", "thread_side", 50) == "irregular"
    assert rules.category("carpet", "thread", 50) == "scratch"
    assert rules.category("metal_nut", "scratch", 50) == "scratch"
    assert rules.category("tile", "gray_stroke", 50) == "scratch"
    assert rules.category("wood", "liquid", 50) == "irregular"  # default
    assert rules.category("metal_nut", "scratch", 401) == "mixed_large"  # area rule first
    custom = GroupingRules(name_rules={"scratch": ["hole"]}, default_category="crack")
    assert custom.category("hazelnut", "hole", 10) == "scratch"
    assert custom.category("hazelnut", "crack", 10) == "crack"
    with pytest.raises(ValueError, match="mixed_large"):
        GroupingRules(name_rules={"mixed_large": ["*"]})


def test_area_rule_threshold_and_reference_resolution(tmp_path: Path) -> None:
    root = tmp_path / "mvtec"
    # At the reference size itself: exactly 400 px is not large, 420 px is.
    save_mask(root / "a" / "ground_truth" / "hole" / "000_mask.png", _square(128, 20))
    arr = np.zeros((128, 128), np.uint8)
    arr[:20, :21] = 255
    save_mask(root / "a" / "ground_truth" / "hole" / "001_mask.png", arr)
    # A 512 px mask of 60x60 = 3600 px is 15x15 = 225 px at 128: small, by the reference rule.
    save_mask(root / "b" / "ground_truth" / "hole" / "000_mask.png", _square(512, 60))
    lib = load_mvtec_masks(root, GroupingRules(), size=64)
    got = {r.source: (r.category, r.area_ref, r.area_native) for c in lib.by_category.values()
           for r in c}  # fmt: skip
    assert got["a/ground_truth/hole/000_mask.png"] == ("irregular", 400, 400)
    assert got["a/ground_truth/hole/001_mask.png"] == ("mixed_large", 420, 420)
    assert got["b/ground_truth/hole/000_mask.png"] == ("irregular", 225, 3600)
    # The rule is applied at the reference size, not at the output size or native size.
    lib256 = load_mvtec_masks(root, GroupingRules(reference_size=256), size=64)
    assert {r.source for r in lib256.by_category["mixed_large"]} == {
        "a/ground_truth/hole/000_mask.png",
        "a/ground_truth/hole/001_mask.png",
        "b/ground_truth/hole/000_mask.png",
    }


def test_mask_size_must_match_its_image(tmp_path: Path) -> None:
    root = tmp_path / "mvtec"
    save_mask(root / "cat" / "ground_truth" / "cut" / "000_mask.png", _square(64, 10))
    save_mask(root / "cat" / "test" / "cut" / "000.png", np.zeros((32, 32), np.uint8))
    with pytest.raises(MaskError, match=r"64x64 but its image .*32x32"):
        load_mvtec_masks(root, GroupingRules(), size=32)


def test_mvtec_layout_errors(tmp_path: Path) -> None:
    with pytest.raises(LayoutError, match=r"does not exist.*ground_truth/<defect_type>"):
        load_mvtec_masks(tmp_path / "nope", GroupingRules(), 32)
    (tmp_path / "flat").mkdir()
    save_mask(tmp_path / "flat" / "x" / "000_mask.png", _square(8, 2))
    with pytest.raises(LayoutError, match=r"no <category>/ground_truth folder.*found: \['x'\]"):
        load_mvtec_masks(tmp_path / "flat", GroupingRules(), 32)
    (tmp_path / "nomasks" / "cat" / "ground_truth" / "cut").mkdir(parents=True)
    with pytest.raises(LayoutError, match="contains no mask files"):
        load_mvtec_masks(tmp_path / "nomasks", GroupingRules(), 32)


def test_empty_masks_are_skipped_and_reported(tmp_path: Path) -> None:
    root = tmp_path / "mvtec"
    save_mask(root / "c" / "ground_truth" / "cut" / "000_mask.png", np.zeros((64, 64), np.uint8))
    one = np.zeros((256, 256), np.uint8)
    one[1, 1] = 255  # one pixel: vanishes under a nearest resize to 16 px
    save_mask(root / "c" / "ground_truth" / "cut" / "001_mask.png", one)
    save_mask(root / "c" / "ground_truth" / "cut" / "002_mask.png", _square(64, 8))
    lib = load_mvtec_masks(root, GroupingRules(), size=16)
    assert [s["reason"] for s in lib.skipped] == ["empty mask", "empty after resize to 16px"]
    assert [r.source for r in lib.by_category["scratch"]] == ["c/ground_truth/cut/002_mask.png"]


def test_grouping_of_the_real_shared_masks(real_mvtec_root: Path) -> None:
    lib = load_mvtec_masks(real_mvtec_root, GroupingRules(), size=64)
    got = {
        cat: {
            f"{r.mvtec_category}/{r.defect_type}": sum(
                1 for q in recs if (q.mvtec_category, q.defect_type) == (r.mvtec_category,
                                                                         r.defect_type))
            for r in recs
        }
        for cat, recs in lib.by_category.items()
    }  # fmt: skip
    assert got == EXPECTED_REAL
    assert not lib.skipped
    recs = {r.source: r for c in lib.by_category.values() for r in c}
    assert len(recs) == 27
    # 1-bit masks (hazelnut, transistor) and {0,255} masks (grid) are both read correctly.
    assert recs["hazelnut/ground_truth/crack/000_mask.png"].area_native == 4140
    assert recs["grid/ground_truth/thread/001_mask.png"].area_native == 14256
    assert recs["grid/ground_truth/thread/001_mask.png"].native_size == (1024, 1024)
    for r in recs.values():
        assert r.mask.shape == (64, 64) and r.mask.sum() == r.area_out > 0
        assert (r.area_ref > 400) == (r.category == "mixed_large")


def test_single_category_folder_as_root(real_mvtec_root: Path) -> None:
    lib = load_mvtec_masks(real_mvtec_root / "hazelnut", GroupingRules(), size=32)
    assert sum(lib.counts().values()) == 8
    assert all(r.source.startswith("hazelnut/ground_truth/") for c in lib.by_category.values()
               for r in c)  # fmt: skip
