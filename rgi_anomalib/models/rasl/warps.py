"""RASL's transformations: a linear parametrisation of affine_grid's 2x3 matrix around identity,
warping, and the Jacobian of a warped image with respect to the parameters."""

from __future__ import annotations

import torch
from torch.nn import functional as F

# Number of parameters of each transformation family (all parametrised linearly around identity).
TRANSFORMS: dict[str, int] = {"none": 0, "translation": 2, "similarity": 4, "affine": 6}


def check_transform(transform: str) -> str:
    """Return ``transform`` lower-cased, or raise ValueError listing the allowed names."""
    name = str(transform).lower()
    if name not in TRANSFORMS:
        msg = f"Unknown transform {transform!r}; allowed: {', '.join(TRANSFORMS)}."
        raise ValueError(msg)
    return name


def _generators(transform: str, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """(p, 2, 3) basis so that ``theta = I + sum_k params_k G_k``.

    Coordinates are affine_grid's normalised ones ([-1, 1] across the image). ``similarity`` is
    ``[[1+a, -b, tx], [b, 1+a, ty]]`` -- exactly the rotation+scale+translation group, written
    linearly so that the Jacobian is exact and the additive update of RASL applies. On a
    non-square image, normalised-coordinate rotations are not rigid in pixels; the model uses
    square working sizes.
    """
    g = torch.zeros(TRANSFORMS[transform], 2, 3, device=device, dtype=dtype)
    if transform == "translation":
        g[0, 0, 2] = g[1, 1, 2] = 1
    elif transform == "similarity":
        g[0, 0, 0] = g[0, 1, 1] = 1  # scale
        g[1, 0, 1], g[1, 1, 0] = -1, 1  # rotation
        g[2, 0, 2] = g[3, 1, 2] = 1  # translation
    elif transform == "affine":
        g.view(6, 6)[torch.arange(6), torch.arange(6)] = 1
    return g


def params_to_theta(params: torch.Tensor, transform: str) -> torch.Tensor:
    """(n, p) parameters -> (n, 2, 3) affine_grid matrices (output -> input coordinates)."""
    transform = check_transform(transform)
    eye = torch.eye(2, 3, device=params.device, dtype=params.dtype)
    if transform == "none":
        return eye.expand(params.shape[0], 2, 3).clone()
    g = _generators(transform, params.device, params.dtype)
    return eye + torch.einsum("np,pij->nij", params, g)


def invert_theta(theta: torch.Tensor) -> torch.Tensor:
    """Inverse of (n, 2, 3) affine maps, as (n, 2, 3)."""
    bottom = torch.tensor([0.0, 0.0, 1.0], device=theta.device, dtype=theta.dtype)
    full = torch.cat([theta, bottom.expand(theta.shape[0], 1, 3)], dim=1)
    return torch.linalg.inv(full)[:, :2]


def warp(images: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """``out(x) = images(theta [x; 1])`` by bilinear sampling; borders replicate."""
    grid = F.affine_grid(theta.to(images.dtype), list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)


def _image_gradients(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """d/dx, d/dy in affine_grid's normalised units (central differences, replicated edges)."""
    h, w = images.shape[-2:]
    padded = F.pad(images, (1, 1, 1, 1), mode="replicate")
    gx = (padded[..., 1:-1, 2:] - padded[..., 1:-1, :-2]) / 2 * (w / 2)  # 1 px = 2/w normalised
    gy = (padded[..., 2:, 1:-1] - padded[..., :-2, 1:-1]) / 2 * (h / 2)
    return gx, gy


def _warp_with_jacobian(
    images: torch.Tensor, theta: torch.Tensor, transform: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """Warped images (n, m) and Jacobians d vec(warped) / d params, (n, m, p).

    Chain rule: ``d I(T(x)) / dp_k = grad I(T(x)) . (G_k [x; 1])``; the image gradient is taken
    on the original image and warped with the same grid (as in the RASL code).
    """
    n, c, h, w = images.shape
    gx, gy = _image_gradients(images)
    stacked = warp(torch.cat([images, gx, gy], dim=1), theta)
    warped, wgx, wgy = stacked.split(c, dim=1)
    base = F.affine_grid(
        torch.eye(2, 3, device=images.device, dtype=images.dtype)[None], [1, c, h, w], False
    )[0]  # (h, w, 2) output coordinates
    homog = torch.cat([base, torch.ones_like(base[..., :1])], dim=-1)  # (h, w, 3)
    g = _generators(transform, images.device, images.dtype)
    dxy = torch.einsum("pij,hwj->phwi", g, homog)  # (p, h, w, 2): dT(x)/dp_k
    jac = wgx[..., None] * dxy[..., 0].permute(1, 2, 0) + wgy[..., None] * dxy[..., 1].permute(
        1, 2, 0
    )  # (n, c, h, w, p)
    return warped.reshape(n, -1), jac.reshape(n, c * h * w, -1)
