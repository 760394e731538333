"""Benchmark metrics on hand-made maps with known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from rgi_anomalib.benchmark import metrics as M


def _square(size: int = 8, lo: int = 2, hi: int = 5) -> np.ndarray:
    gt = np.zeros((size, size), bool)
    gt[lo:hi, lo:hi] = True
    return gt


def test_dice_known_values() -> None:
    gt = _square()  # 9 pixels
    pred = np.zeros_like(gt)
    pred[2:5, 2:4] = True  # 6 pixels, all inside
    assert M.dice(pred, gt) == pytest.approx(2 * 6 / (6 + 9))
    assert M.dice(gt, gt) == 1.0
    assert M.dice(np.zeros_like(gt), np.zeros_like(gt)) == 1.0
    assert M.dice(np.zeros_like(gt), gt) == 0.0


def test_oracle_dice_perfect_map_and_scale_invariance() -> None:
    gt = _square()
    amap = gt.astype(float) * 0.3 + 5.0  # offset and scale do not matter (min-max)
    assert M.oracle_dice(amap, gt) == 1.0
    assert M.oracle_dice(amap * 100 - 7, gt) == 1.0


def test_oracle_dice_picks_best_threshold() -> None:
    gt = _square()
    amap = np.zeros(gt.shape)
    amap[gt] = 1.0
    amap[0, 0:3] = 0.5  # 3 false positives above 0.5 only
    # thresholds < 0.5 add the 3 FP (Dice 18/21); thresholds in [0.5, 1) give the exact mask
    assert M.oracle_dice(amap, gt) == 1.0
    amap2 = np.zeros(gt.shape)
    amap2[2:5, 2:4] = 1.0  # covers 6 of 9 defect pixels, no FP
    assert M.oracle_dice(amap2, gt) == pytest.approx(12 / 15)


def test_oracle_dice_constant_map_is_zero() -> None:
    gt = _square()
    assert M.oracle_dice(np.full(gt.shape, 0.7), gt) == 0.0


def test_best_pooled_threshold_matches_anomalib_f1max() -> None:
    import torch
    from anomalib.metrics.f1_score import _F1Max

    rng = np.random.default_rng(0)
    gts = [_square(16, 3, 9), _square(16, 5, 7), np.zeros((16, 16), bool)]
    maps = [g * 0.6 + rng.random(g.shape) for g in gts]
    f1, thr = M.best_pooled_threshold(maps, gts)
    ref = _F1Max()
    ref.update(
        torch.tensor(np.concatenate([m.ravel() for m in maps])),
        torch.tensor(np.concatenate([g.ravel() for g in gts]).astype(int)),
    )
    assert f1 == pytest.approx(float(ref.compute()), abs=1e-5)
    # the threshold reproduces the pooled F1
    pred = np.concatenate([(m >= thr).ravel() for m in maps])
    assert M.dice(pred, np.concatenate([g.ravel() for g in gts])) == pytest.approx(f1)


def test_best_pooled_threshold_without_positives_is_nan() -> None:
    f1, thr = M.best_pooled_threshold([np.ones((4, 4))], [np.zeros((4, 4), bool)])
    assert math.isnan(f1) and math.isnan(thr)


def test_auroc_matches_torchmetrics() -> None:
    import torch
    from torchmetrics.functional.classification import binary_auroc

    rng = np.random.default_rng(1)
    labels = rng.random(200) > 0.7
    scores = np.round(rng.random(200) * 0.7 + labels * 0.3, 1)  # in [0, 1], with ties
    ref = float(binary_auroc(torch.tensor(scores), torch.tensor(labels.astype(int))))
    assert M.binary_auroc(scores, labels) == pytest.approx(ref, abs=1e-6)
    assert M.binary_auroc(np.array([0.1, 0.9]), np.array([False, True])) == 1.0
    assert math.isnan(M.binary_auroc(np.array([0.1, 0.9]), np.array([True, True])))


def test_label_free_threshold_and_mask_rule() -> None:
    gt = _square()
    normal = [np.linspace(0, 1, 64).reshape(8, 8)]
    thr = M.label_free_threshold(normal, 100.0)
    assert thr == 1.0
    defect = np.zeros(gt.shape)
    defect[gt] = 2.0
    assert M.dice_at([defect], [gt], thr, strict=True) == [1.0]
    out = M.category_metrics(
        [defect], [gt], [np.zeros(gt.shape)], [], [2.0], [0.0], percentile=100.0, mask_map=True
    )
    assert out["dice_mask_rule_mean"] == 1.0  # M̂ > 0
    assert out["dice_oracle_mean"] == 1.0
    assert out["dice_dataset_mean"] == 1.0
    assert out["pixel_auroc"] == 1.0
    assert out["aupro"] == pytest.approx(1.0)
    assert out["image_auroc"] == 1.0


def test_aupro_orders_maps_and_needs_regions() -> None:
    gt = _square()
    rng = np.random.default_rng(0)
    noise = rng.random(gt.shape)
    assert M.aupro([gt.astype(float)], [gt]) == pytest.approx(1.0)
    assert M.aupro([1.0 - gt], [gt]) == pytest.approx(0.0)
    assert 0.0 < M.aupro([noise + 0.5 * gt], [gt]) < 1.0
    assert math.isnan(M.aupro([noise], [np.zeros_like(gt)]))


def test_category_metrics_without_masks_keeps_image_metrics() -> None:
    out = M.category_metrics([np.ones((4, 4))], None, [np.zeros((4, 4))], [], [1.0], [0.0])
    assert math.isnan(out["dice_oracle_mean"]) and math.isnan(out["pixel_auroc"])
    assert out["image_auroc"] == 1.0
    assert math.isnan(out["dice_mask_rule_mean"])


def test_mean_std_ignores_nan() -> None:
    assert M.mean_std([1.0, math.nan, 3.0]) == (2.0, 1.0)
    assert all(math.isnan(x) for x in M.mean_std([math.nan]))
