"""RASL in pure torch: align a stack of images and split it into low-rank and sparse parts.

RASL (Peng, Ganesh, Wright, Xu, Ma: "RASL: Robust Alignment by Sparse and Low-rank Decomposition
for Linearly Correlated Images", TPAMI 2012) splits a stack of images, each warped by its own
transformation tau_i, into a low-rank part A and a sparse part E::

    min ||A||_* + lambda ||E||_1   s.t.   D o tau = A + E

The constraint is non-linear in tau, so an outer loop linearises it around the current tau
(``D o (tau + dtau) ~ D o tau + sum_i J_i dtau_i e_i^T``) and an inexact augmented Lagrangian method
(IALM) solves the resulting convex problem for A, E and dtau jointly. With no transformation
(``transform="none"``) this is plain RPCA (robust PCA / principal component pursuit).

Layout: each image is one ROW of an ``(n, m)`` matrix here (n images, m = C*H*W pixels); the paper
writes the transpose. ``rpca``/``rasl`` solve in float64 by default (exact recovery, see
``_svt``); ``RaslModel`` uses float32, twice as fast and ample for anomaly maps.

Example:
    >>> images = torch.rand(8, 1, 32, 32)
    >>> result = rasl(images, transform="translation")
    >>> result.sparse.shape
    torch.Size([8, 1, 32, 32])
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import NamedTuple

import torch

from .rpca import _ialm, check_lambda, check_precision, check_rank, check_svd, default_lambda
from .warps import TRANSFORMS, _warp_with_jacobian, check_transform, params_to_theta, warp


class RaslResult(NamedTuple):
    """Outcome of :func:`rasl`. Images are in the aligned (canonical) frame, intensity units."""

    aligned: torch.Tensor  # (n, C, H, W): D o tau
    low_rank: torch.Tensor  # (n, C, H, W): A
    sparse: torch.Tensor  # (n, C, H, W): E
    params: torch.Tensor  # (n, p): transform parameters, see ``params_to_theta``
    theta: torch.Tensor  # (n, 2, 3): affine_grid matrices (normalised coordinates)
    outer_iterations: int
    inner_iterations: int  # summed over outer iterations


# One function on purpose: the outer re-linearisation loop and the final exact decomposition
# share the normalisation state; split, they would pass half a dozen arrays around.
def rasl(
    images: torch.Tensor,
    transform: str = "similarity",
    lam: float | None = None,
    lambda_scale: float = 1.0,
    rank: int | None = None,
    fixed: torch.Tensor | None = None,
    init_params: torch.Tensor | None = None,
    max_outer: int = 15,
    outer_tol: float = 0.01,
    max_inner: int = 300,
    inner_tol: float = 1e-6,
    svd: str = "gram",
    precision: str = "float64",
) -> RaslResult:
    """RASL on a stack of images (n, C, H, W); with ``transform="none"`` this is RPCA on images.

    Args:
        images: the stack; solved and returned in ``precision`` ("float64" default, "float32").
        transform: ``"none" | "translation" | "similarity" | "affine"``.
        lam: weight of ``||E||_1``; default ``lambda_scale / sqrt(max(m, n))``, m = C*H*W.
        lambda_scale: multiplies the default lambda.
        rank: optional hard upper bound on rank(A).
        fixed: (n,) bool, images whose transformation stays at ``init_params`` (e.g. already
            aligned references). If nothing is fixed, the mean parameter update is removed at every
            outer step: otherwise the whole stack may drift together (RASL's gauge freedom).
        init_params: (n, p) starting parameters (default identity).
        max_outer, outer_tol: stop re-linearising when the largest parameter change, expressed
            in pixels (translation parts; linear parts times half the image size), is below
            ``outer_tol``.
        max_inner, inner_tol: IALM budget and tolerance per outer step.
        svd: SVD method for singular value thresholding, see ``_svt``.

    Each image is scaled to unit norm before the decomposition (as in RASL: it rules out the
    trivial solution of warping onto a dark or tiny region); A and E are scaled back to intensity
    units afterwards.
    """
    transform = check_transform(transform)
    check_lambda(lam, lambda_scale)
    check_svd(svd)
    if images.ndim != 4:
        msg = f"rasl expects images of shape (n, C, H, W), got {tuple(images.shape)}."
        raise ValueError(msg)
    n, c, h, w = images.shape
    check_rank(rank, min(n, c * h * w))
    lam = lam if lam is not None else lambda_scale * default_lambda(c * h * w, n)
    dtype = check_precision(precision)
    x = images.to(dtype)
    p = TRANSFORMS[transform]
    params = (
        torch.zeros(n, p, dtype=dtype, device=x.device)
        if init_params is None
        else init_params.to(x.device, dtype).clone()
    )
    free = (
        torch.ones(n, dtype=torch.bool, device=x.device)
        if fixed is None
        else ~fixed.to(x.device, torch.bool)
    )
    # Parameter change -> pixels: translations are in units of w/2 pixels; a change of the linear
    # part by d moves the image corners by about d * w/2 pixels too.
    to_pixels = max(h, w) / 2

    inner_total = 0
    outer = 0
    if p > 0 and bool(free.any()):
        for outer in range(1, max_outer + 1):  # noqa: B007 (``outer`` is reported)
            warped, jac = _warp_with_jacobian(x, params_to_theta(params, transform), transform)
            norms = torch.linalg.norm(warped, dim=1, keepdim=True).clamp_min(1e-12)
            data = warped / norms
            # Jacobian of the normalised image v/||v||: (I - u u^T) J / ||v||.
            jac = jac / norms[..., None]
            jac = jac - data[..., None] * torch.einsum("nm,nmp->np", data, jac)[:, None, :]
            qmat, rmat = torch.linalg.qr(jac[free])
            qmat = qmat.contiguous()
            sol = _ialm(
                data, lam, qmat, free, rank=rank, max_iter=max_inner, tol=inner_tol, svd=svd
            )
            inner_total += sol.iterations
            delta = torch.linalg.solve_triangular(rmat, sol.dtau[..., None], upper=True)[..., 0]
            if fixed is None or not bool((~free).any()):
                delta = delta - delta.mean(dim=0, keepdim=True)
            params[free] += delta
            if float(delta.abs().max()) * to_pixels < outer_tol:
                break

    # Final decomposition at the final transformations, without linearisation, so that
    # aligned == A + E holds exactly (up to the IALM tolerance).
    theta = params_to_theta(params, transform)
    warped = warp(x, theta) if p > 0 else x
    flat = warped.reshape(n, -1)
    norms = torch.linalg.norm(flat, dim=1, keepdim=True).clamp_min(1e-12)
    sol = _ialm(flat / norms, lam, rank=rank, max_iter=max_inner, tol=inner_tol, svd=svd)
    inner_total += sol.iterations
    shape = (n, c, h, w)
    return RaslResult(
        aligned=warped.reshape(shape),
        low_rank=(sol.low_rank * norms).reshape(shape),
        sparse=(sol.sparse * norms).reshape(shape),
        params=params,
        theta=theta,
        outer_iterations=outer,
        inner_iterations=inner_total,
    )


@contextmanager
def cpu_threads(num_threads: int | None, device: torch.device) -> Iterator[None]:
    """Temporarily set torch's intra-op CPU threads (no-op for None or a non-CPU device).

    The solver runs hundreds of small ops (a 64 x 12288 matrix each) per image. On the shared
    2-core machine, with another process busy, two OpenMP threads spin-wait for each other:
    one similarity-RASL test image took 29 s with 2 threads and 3.3 s with 1 thread.
    """
    if num_threads is None or device.type != "cpu" or torch.get_num_threads() == num_threads:
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(num_threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
