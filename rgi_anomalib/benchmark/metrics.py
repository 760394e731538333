"""Segmentation and detection metrics of the benchmark (numpy; definitions in docs/benchmark.md).

Inputs are per-image anomaly maps (H×W float, higher = more anomalous) and ground-truth masks
(H×W bool) at the model's resolution.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from types import SimpleNamespace

import numpy as np

N_THRESHOLDS = 101
MASK_EPS = 1e-6  # "M̂ > 0": mask values above this count as anomalous


def dice(pred: np.ndarray, gt: np.ndarray) -> float:
    """Dice = 2|P∩G| / (|P|+|G|); 1.0 when both are empty."""
    pred, gt = np.asarray(pred, bool), np.asarray(gt, bool)
    denom = pred.sum() + gt.sum()
    return 1.0 if denom == 0 else float(2 * np.logical_and(pred, gt).sum() / denom)


def minmax(amap: np.ndarray) -> np.ndarray:
    """Per-image min-max normalisation to [0, 1] (a constant map becomes all zeros)."""
    amap = np.asarray(amap, np.float64)
    lo, hi = amap.min(), amap.max()
    return np.zeros_like(amap) if hi <= lo else (amap - lo) / (hi - lo)


def oracle_dice(amap: np.ndarray, gt: np.ndarray, n_thresholds: int = N_THRESHOLDS) -> float:
    """The paper's protocol for one image: best Dice of ``minmax(map) > t`` over t in
    linspace(0, 1, n_thresholds)."""
    norm = minmax(amap).ravel()
    gt = np.asarray(gt, bool).ravel()
    thresholds = np.linspace(0.0, 1.0, n_thresholds)
    pred = norm[None, :] > thresholds[:, None]  # T×N
    inter = (pred & gt[None, :]).sum(axis=1)
    denom = pred.sum(axis=1) + gt.sum()
    scores = np.where(denom == 0, 1.0, 2 * inter / np.maximum(denom, 1))
    return float(scores.max())


def best_pooled_threshold(
    maps: Sequence[np.ndarray], gts: Sequence[np.ndarray]
) -> tuple[float, float]:
    """Pixel F1-max over all pixels pooled (== pooled Dice at the best single threshold).

    Returns ``(f1max, threshold)``; a pixel is predicted anomalous when ``map >= threshold``.
    Equal to anomalib's ``F1Max`` on the same pixels.
    """
    scores = np.concatenate([np.asarray(m, np.float64).ravel() for m in maps])
    labels = np.concatenate([np.asarray(g, bool).ravel() for g in gts])
    n_pos = labels.sum()
    if n_pos == 0:
        return math.nan, math.nan
    order = np.argsort(-scores, kind="stable")
    scores, labels = scores[order], labels[order]
    tp = np.cumsum(labels)
    fp = np.cumsum(~labels)
    # Only the last index of each run of equal scores is a valid cut.
    last = np.r_[scores[1:] != scores[:-1], True]
    tp, fp, thr = tp[last], fp[last], scores[last]
    f1 = 2 * tp / (tp + fp + n_pos)
    best = int(np.argmax(f1))
    return float(f1[best]), float(thr[best])


def label_free_threshold(normal_maps: Sequence[np.ndarray], percentile: float) -> float:
    """Threshold from normal images only: the ``percentile`` of their pooled map values."""
    if not len(normal_maps):
        return math.nan
    values = np.concatenate([np.asarray(m, np.float64).ravel() for m in normal_maps])
    return float(np.percentile(values, percentile))


def dice_at(
    maps: Sequence[np.ndarray], gts: Sequence[np.ndarray], threshold: float, *, strict: bool = False
) -> list[float]:
    """Per-image Dice of ``map >= threshold`` (``map > threshold`` when ``strict``)."""
    if math.isnan(threshold):
        return [math.nan] * len(maps)
    out = []
    for amap, gt in zip(maps, gts, strict=True):
        amap = np.asarray(amap)
        out.append(dice(amap > threshold if strict else amap >= threshold, gt))
    return out


def binary_auroc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve (ties count one half); NaN when a class is missing."""
    scores = np.asarray(scores, np.float64).ravel()
    labels = np.asarray(labels, bool).ravel()
    n_pos, n_neg = labels.sum(), (~labels).sum()
    if n_pos == 0 or n_neg == 0:
        return math.nan
    # Mann-Whitney U with average ranks.
    order = np.argsort(scores, kind="mergesort")
    sorted_scores = scores[order]
    ranks = np.empty(len(scores), np.float64)
    _, first, counts = np.unique(sorted_scores, return_index=True, return_counts=True)
    avg = first + (counts - 1) / 2.0 + 1.0
    ranks[order] = np.repeat(avg, counts)
    u = ranks[labels].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def aupro(maps: Sequence[np.ndarray], gts: Sequence[np.ndarray], fpr_limit: float = 0.3) -> float:
    """Area under the per-region-overlap curve up to ``fpr_limit``, normalised to [0, 1].

    anomalib's ``AUPRO`` (connected components of the masks, MVTec's definition). NaN without any
    defect region.
    """
    if not any(np.any(g) for g in gts):
        return math.nan
    import torch  # lazy: keeps this module numpy-only until AUPRO is asked for
    from anomalib.metrics import AUPRO

    metric = AUPRO(fields=("anomaly_map", "gt_mask"), fpr_limit=fpr_limit)
    batch = SimpleNamespace(
        anomaly_map=torch.from_numpy(np.stack([np.asarray(m, np.float32) for m in maps])),
        gt_mask=torch.from_numpy(np.stack([np.asarray(g, bool) for g in gts])).int(),
    )
    metric.update(batch)
    return float(metric.compute())


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and population std ignoring NaN; (NaN, NaN) when nothing is left."""
    arr = np.asarray([v for v in values if not math.isnan(v)], np.float64)
    if arr.size == 0:
        return math.nan, math.nan
    return float(arr.mean()), float(arr.std())


# One place for every metric of a row, each a line or two (definitions: docs/benchmark.md).
def category_metrics(
    defect_maps: Sequence[np.ndarray],
    defect_gts: Sequence[np.ndarray] | None,
    normal_maps: Sequence[np.ndarray],
    calibration_maps: Sequence[np.ndarray],
    defect_scores: Sequence[float],
    normal_scores: Sequence[float],
    *,
    percentile: float = 99.5,
    mask_map: bool = False,
) -> dict[str, float]:
    """All metrics of one method on one category (see docs/benchmark.md).

    ``defect_gts`` None means the dataset has no masks: pixel metrics are NaN. Normal test images
    (masks all empty) join the pooled pixel metrics and the image AUROC.
    """
    nan = math.nan
    out: dict[str, float] = {}
    if defect_maps:
        d_scores = np.asarray(defect_scores, np.float64)
        n_scores = np.asarray(normal_scores, np.float64)
        out["image_auroc"] = binary_auroc(
            np.r_[d_scores, n_scores], np.r_[np.ones(len(d_scores)), np.zeros(len(n_scores))]
        )
    else:
        out["image_auroc"] = nan
    calib = calibration_maps if len(calibration_maps) else normal_maps
    lf_thr = label_free_threshold(calib, percentile)
    out["label_free_threshold"] = lf_thr
    keys = ("dice_oracle", "dice_dataset", "dice_label_free", "dice_mask_rule")
    if defect_gts is None or not defect_maps:
        for k in keys:
            out[f"{k}_mean"] = out[f"{k}_std"] = nan
        out.update(
            pixel_f1max=nan,
            dataset_threshold=nan,
            pixel_auroc=nan,
            pixel_auroc_per_image=nan,
            aupro=nan,
        )
        return out
    out["dice_oracle_mean"], out["dice_oracle_std"] = mean_std(
        [oracle_dice(m, g) for m, g in zip(defect_maps, defect_gts, strict=True)]
    )
    all_maps = list(defect_maps) + list(normal_maps)
    all_gts = list(defect_gts) + [np.zeros(np.shape(m), bool) for m in normal_maps]
    f1max, thr = best_pooled_threshold(all_maps, all_gts)
    out["pixel_f1max"], out["dataset_threshold"] = f1max, thr
    out["dice_dataset_mean"], out["dice_dataset_std"] = mean_std(
        dice_at(defect_maps, defect_gts, thr)
    )
    out["dice_label_free_mean"], out["dice_label_free_std"] = mean_std(
        dice_at(defect_maps, defect_gts, lf_thr, strict=True)
    )
    if mask_map:
        out["dice_mask_rule_mean"], out["dice_mask_rule_std"] = mean_std(
            dice_at(defect_maps, defect_gts, MASK_EPS, strict=True)
        )
    else:
        out["dice_mask_rule_mean"] = out["dice_mask_rule_std"] = nan
    out["pixel_auroc"] = binary_auroc(
        np.concatenate([np.ravel(m) for m in all_maps]),
        np.concatenate([np.ravel(g) for g in all_gts]),
    )
    out["aupro"] = aupro(all_maps, all_gts)
    out["pixel_auroc_per_image"] = mean_std(
        [binary_auroc(m, g) for m, g in zip(defect_maps, defect_gts, strict=True)]
    )[0]
    return out


# --- Restoration under the defect (issue 33) -------------------------------------------------
# Does the restoration G(ẑ) of a defect image show the clean surface under the defect (the
# paper's Theorem 1) or copy the defect? Measured where the clean twin c of a defect image x is
# known (a synthetic_btad build with its test/good: the base image before the defect was pasted).
# Every value is per image, over the pixels of its defect mask M, in [0, 1] pixel units, at the
# scoring resolution (the resolution of the anomaly maps and masks):
#
#   RMS_M(v)     = sqrt(mean over p in M and the C channels of v_c(p)²)
#   absorption   = RMS_M(G(ẑ) − c) / RMS_M(x − c): 0 = the surface restored under the defect,
#                  1 = the defect copied (G(ẑ) = x in the mask), 0.5 = halfway. Left out (NaN)
#                  where the defect changed the image by less than MIN_DEFECT_CONTRAST (no defect
#                  to absorb: the ratio would be noise over almost nothing).
#   absorption_delta = RMS_M(G(ẑ) − G(ĉ)) / RMS_M(x − c), G(ĉ) the model's restoration of the
#                  clean twin itself (predicted with the normal test images): how far the
#                  restoration moved with the defect. The plain absorption also counts the
#                  generator's own error on the clean surface (the reconstruction gap), which
#                  over a faint defect (ELPV's mean-colour fills: contrast near the gap) reads as
#                  absorption; this one cancels it. 0: the restoration ignores the defect.
#   PSNR_M       = 10·log10(1 / MSE_M(G(ẑ) − c)) dB, MSE_M = RMS_M²; capped at PSNR_CAP.
#   residual r(p) = sqrt(mean over channels of (x − G(ẑ))²(p)), the per-pixel residual of
#                  gap.py's reconstruction gap. residual ratio = mean of r over M divided by the
#                  99th percentile of r over every pixel of the normal test images (test/good),
#                  the grain floor a label-free threshold meets: above 1 the defect stands out of
#                  the normal residual, below 1 it is under it. Needs the mask, not the twin.
#
# A category aggregates its defect images by the median: the per-image absorption divides by
# the defect's own contrast, so a faint defect (a mean-colour fill on a flat patch) gives a
# ratio of noise over almost nothing, and a mean is led by those few; the median is the typical
# defect. The mean absorption is kept beside it (absorption_mean) as the sensitivity check.
MIN_DEFECT_CONTRAST = 1.0 / 255.0  # one 8-bit grey level, RMS over the mask
PSNR_CAP = 100.0  # dB: an exact restoration (MSE 0) reads 100, not inf (results.json has no inf)
NORMAL_PERCENTILE = 99.0
RESTORATION_KEYS = (
    "absorption",
    "absorption_mean",
    "absorption_delta",
    "restoration_psnr",
    "defect_residual_ratio",
)


def _as_hwc(image: np.ndarray) -> np.ndarray:
    array = np.asarray(image, np.float64)
    return array[..., None] if array.ndim == 2 else array


def masked_rms(values: np.ndarray, mask: np.ndarray) -> float:
    """RMS over the mask's pixels and every channel of an H×W(×C) array; NaN for an empty mask."""
    values, mask = _as_hwc(values), np.asarray(mask, bool)
    if not mask.any():
        return math.nan
    return float(np.sqrt(np.mean(values[mask] ** 2)))


def absorption_ratio(
    image: np.ndarray,
    restored: np.ndarray,
    clean: np.ndarray,
    mask: np.ndarray,
    restored_clean: np.ndarray | None = None,
) -> float:
    """RMS_M(G(ẑ) − c) / RMS_M(x − c) of one image (H×W×C arrays in [0, 1], mask H×W bool):
    0 = restored, 1 = copied; NaN for an empty mask or a defect fainter than
    ``MIN_DEFECT_CONTRAST``. With ``restored_clean`` (G(ĉ), the restoration of the clean twin)
    the numerator is RMS_M(G(ẑ) − G(ĉ)): the absorption_delta."""
    image, restored, clean = _as_hwc(image), _as_hwc(restored), _as_hwc(clean)
    defect = masked_rms(image - clean, mask)
    if math.isnan(defect) or defect < MIN_DEFECT_CONTRAST:
        return math.nan
    reference = clean if restored_clean is None else _as_hwc(restored_clean)
    return masked_rms(restored - reference, mask) / defect


def masked_psnr(restored: np.ndarray, clean: np.ndarray, mask: np.ndarray) -> float:
    """PSNR of the restoration against the clean twin over the mask ([0, 1] peak), in dB,
    capped at ``PSNR_CAP``; NaN for an empty mask."""
    rms = masked_rms(_as_hwc(restored) - _as_hwc(clean), mask)
    if math.isnan(rms):
        return math.nan
    return PSNR_CAP if rms <= 10 ** (-PSNR_CAP / 20) else min(PSNR_CAP, -20 * math.log10(rms))


def pixel_residual(image: np.ndarray, restored: np.ndarray) -> np.ndarray:
    """r(p): the channel RMS of x − G(ẑ), H×W (the residual of gap.py's reconstruction gap)."""
    return np.sqrt(np.mean((_as_hwc(image) - _as_hwc(restored)) ** 2, axis=-1))


def _median(values: Sequence[float]) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return float(np.median(finite)) if finite else math.nan


def restoration_metrics(
    absorption: Sequence[float],
    psnr: Sequence[float],
    defect_residual: Sequence[float],
    normal_residuals: Sequence[np.ndarray],
    absorption_delta: Sequence[float] = (),
) -> dict[str, float]:
    """A category's restoration metrics (RESTORATION_KEYS) from per-image values of its defect
    images (``absorption_ratio``, ``masked_psnr``, mean of ``pixel_residual`` over the mask,
    ``absorption_ratio`` with G(ĉ) for the clean image; NaN where not measured) and the residual
    maps of the normal test images. NaN where nothing was measured: a model without a
    restoration, a dataset without clean twins or masks."""
    floor = math.nan
    if len(normal_residuals):
        pooled = np.concatenate([np.ravel(r) for r in normal_residuals])
        floor = float(np.percentile(pooled, NORMAL_PERCENTILE))
    ratios = [r / floor if floor > 0 else math.nan for r in defect_residual]
    finite = [a for a in absorption if not math.isnan(a)]
    return {
        "absorption": _median(absorption),
        "absorption_mean": float(np.mean(finite)) if finite else math.nan,
        "absorption_delta": _median(absorption_delta),
        "restoration_psnr": _median(psnr),
        "defect_residual_ratio": _median(ratios),
    }
