"""RASL / RPCA in pure torch, and the nn.Module that turns it into an anomaly detector.

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

import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import NamedTuple

import torch
from anomalib.data import InferenceBatch
from anomalib.models.components import GaussianBlur2d
from torch import nn
from torch.nn import functional as F

__all__ = ["TRANSFORMS", "RaslModel", "RaslResult", "RpcaResult", "rasl", "rpca"]

# Number of parameters of each transformation family (all parametrised linearly around identity).
TRANSFORMS: dict[str, int] = {"none": 0, "translation": 2, "similarity": 4, "affine": 6}
SVD_METHODS = ("gram", "full", "lowrank")

PRECISIONS: dict[str, torch.dtype] = {"float32": torch.float32, "float64": torch.float64}


class RpcaResult(NamedTuple):
    """Outcome of one IALM solve: ``low_rank + sparse ~= data (+ J dtau)``."""

    low_rank: torch.Tensor  # (n, m)
    sparse: torch.Tensor  # (n, m)
    dtau: torch.Tensor | None  # (n_free, p), in the coordinates of the Q factor of J
    iterations: int
    residual: float  # ||constraint violation||_F / ||data||_F at exit


class RaslResult(NamedTuple):
    """Outcome of :func:`rasl`. Images are in the aligned (canonical) frame, intensity units."""

    aligned: torch.Tensor  # (n, C, H, W): D o tau
    low_rank: torch.Tensor  # (n, C, H, W): A
    sparse: torch.Tensor  # (n, C, H, W): E
    params: torch.Tensor  # (n, p): transform parameters, see ``params_to_theta``
    theta: torch.Tensor  # (n, 2, 3): affine_grid matrices (normalised coordinates)
    outer_iterations: int
    inner_iterations: int  # summed over outer iterations


# ----------------------------------------------------------------------------------------------
# Argument checks (shared by the solver, the nn.Module and the Lightning module)
# ----------------------------------------------------------------------------------------------


def check_transform(transform: str) -> str:
    """Return ``transform`` lower-cased, or raise ValueError listing the allowed names."""
    name = str(transform).lower()
    if name not in TRANSFORMS:
        msg = f"Unknown transform {transform!r}; allowed: {', '.join(TRANSFORMS)}."
        raise ValueError(msg)
    return name


def check_lambda(lam: float | None, lambda_scale: float = 1.0) -> None:
    """Raise ValueError (naming ``lambda``) unless lambda and its scale are positive and finite."""
    for name, value in (("lambda", lam), ("lambda_scale", lambda_scale)):
        if value is None:
            continue
        if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
            msg = f"{name} must be a positive finite number, got {value!r} (lambda > 0 required)."
            raise ValueError(msg)


def check_rank(rank: int | None, upper: int | None = None) -> None:
    """Raise ValueError unless ``rank`` is None or an int in ``[1, upper]``."""
    if rank is None:
        return
    if isinstance(rank, bool) or not isinstance(rank, int) or rank < 1:
        msg = f"rank must be None (no limit) or a positive integer, got {rank!r}."
        raise ValueError(msg)
    if upper is not None and rank > upper:
        msg = f"rank={rank} is too large: at most {upper} for this data (min(pixels, images))."
        raise ValueError(msg)


def default_lambda(n_pixels: int, n_images: int) -> float:
    """The RPCA/RASL default ``1 / sqrt(max(m, n))`` for an m x n data matrix."""
    return 1.0 / math.sqrt(max(n_pixels, n_images))


# ----------------------------------------------------------------------------------------------
# IALM: the convex inner problem
# ----------------------------------------------------------------------------------------------


def _spectral_norm(x: torch.Tensor) -> torch.Tensor:
    # Largest singular value through the n x n Gram matrix (n = number of images, small).
    return torch.linalg.eigvalsh(x @ x.T)[-1].clamp_min(0).sqrt()


def _svt(
    x: torch.Tensor, tau: float, rank: int | None, method: str, out: torch.Tensor | None = None
) -> torch.Tensor:
    """Singular value thresholding ``U max(S - tau, 0) V^T`` (keeping at most ``rank`` values).

    ``x`` is (n, m) with n (images) << m (pixels). Measured per call, one thread, on the shared
    2-core CPU machine (load ~1), for the quick-benchmark shape m = 64*64*3 = 12288 (median of
    25; svd_lowrank with q = 15, niter = 2):

        n = 40, float32: gram 1.2 ms, linalg.svd 15 ms, svd_lowrank 6.4 ms
        n = 64, float32: gram 3.0 ms, linalg.svd 31 ms, svd_lowrank 10.4 ms
        n = 40, float64: gram 2.7 ms, linalg.svd 20 ms, svd_lowrank 17 ms
        n = 64, float64: gram 5.9 ms, linalg.svd 40 ms, svd_lowrank 30 ms

    so the default ``"gram"`` wins by 3-12x; the randomised SVD (q = rank + 5) does not pay at
    these sizes (its power iterations cost more than the n x n Gram matrix; it would for
    thousands of images) and SVT needs every singular value above tau anyway. ``"gram"`` is
    exact: with ``x x^T = V diag(s^2) V^T``, ``SVT(x) = (V diag(max(1 - tau/s, 0)) V^T) x``: U
    is never formed, and the only m-sized product is one (n x n) @ (n x m) matrix product, into
    ``out``, so the IALM loop allocates no large tensor. Squaring the singular values limits
    their relative resolution to sqrt(eps) * s_max (float64 1.5e-8, float32 3.5e-4): enough for
    anomaly maps in float32, and why ``rpca``/``rasl`` default to float64 for exact recovery.
    """
    if method == "gram":
        evals, evecs = torch.linalg.eigh(x @ x.T)  # ascending
        s = evals.clamp_min(0).sqrt()
        factor = (1 - tau / s.clamp_min(torch.finfo(s.dtype).tiny)).clamp_min(0)
        if rank is not None and rank < s.numel():
            factor[: s.numel() - rank] = 0  # keep the largest ``rank`` (eigh sorts ascending)
        return torch.mm((evecs * factor) @ evecs.T, x, out=out)
    if method == "full":
        u, s, vh = torch.linalg.svd(x, full_matrices=False)
    else:  # "lowrank": randomised, q = rank + oversampling
        q = min(min(x.shape), (rank or min(x.shape)) + 5)
        u, s, v = torch.svd_lowrank(x, q=q, niter=2)
        vh = v.T
    s = (s - tau).clamp_min(0)
    if rank is not None:
        s[rank:] = 0
    return torch.mm(u * s, vh, out=out)


def _ialm(
    data: torch.Tensor,
    lam: float,
    q: torch.Tensor | None = None,
    free: torch.Tensor | None = None,
    rank: int | None = None,
    max_iter: int = 500,
    tol: float = 1e-7,
    rho: float = 1.25,
    svd: str = "gram",
) -> RpcaResult:
    """Inexact ALM for ``min ||A||_* + lam ||E||_1  s.t.  data + J dtau = A + E``.

    ``q`` (n_free, m, p) is the orthonormal Q factor of the Jacobians of the rows ``free`` (bool,
    n); without it the problem is plain RPCA. Working with Q (not J) makes the dtau update an
    orthogonal projection, as in the authors' MATLAB code; the caller maps back with R^-1.
    """
    # The relative residual cannot go much below the rounding error (float32: stalls near 1e-7).
    tol = max(tol, 10 * torch.finfo(data.dtype).eps)
    norm_data = torch.linalg.norm(data)
    spec = _spectral_norm(data)
    # Dual initialisation and penalty schedule from Lin, Chen, Ma (2010) / the RASL code.
    y = data / torch.maximum(spec, data.abs().max() / lam)
    mu = 1.25 / float(spec)
    mu_max = mu * 1e7
    # Every (n, m) tensor is allocated once and updated in place (``out=``, ``*_``): fresh
    # multi-megabyte tensors per op are slow when malloc serves them by mmap -- the benchmark
    # runner sets M_MMAP_THRESHOLD = 1 MB for PatchCore, which made this loop 4.5x slower at
    # 64 px (fit 2.7 -> 9.9 s) before it worked in place.
    sparse = torch.zeros_like(data)
    low_rank = torch.zeros_like(data)
    shifted = torch.empty_like(data)  # D + J dtau + Y/mu, used by every update
    tmp = torch.empty_like(data)
    z = torch.empty_like(data)
    j_dtau = dtau = free_idx = qt = r = jrows = None
    if q is not None:
        j_dtau = torch.zeros_like(data)
        free_idx = free.nonzero()[:, 0]
        # (f, p, m) copy: both products below are then row-vector x contiguous matrix, the
        # fastest bmm layout (3-10x faster than einsum here).
        qt = q.transpose(1, 2).contiguous()
        r = data.new_empty(len(free_idx), data.shape[1])
        jrows = data.new_empty(len(free_idx), 1, data.shape[1])
    residual = float("inf")
    it = 0
    for it in range(1, max_iter + 1):  # noqa: B007 (``it`` is reported)
        torch.div(y, mu, out=shifted)
        shifted.add_(data)
        if j_dtau is not None:
            shifted.add_(j_dtau)
        torch.sub(shifted, sparse, out=tmp)
        _svt(tmp, 1 / mu, rank, svd, out=low_rank)
        # Soft thresholding S_k(t) = t - clamp(t, -k, k), in place.
        torch.sub(shifted, low_rank, out=tmp)
        torch.clamp(tmp, -lam / mu, lam / mu, out=sparse)
        torch.sub(tmp, sparse, out=sparse)
        if q is not None:
            # Least-squares dtau for the current A, E: an orthogonal projection onto span(Q_i).
            torch.add(low_rank, sparse, out=tmp)
            tmp.sub_(shifted).add_(j_dtau)
            torch.index_select(tmp, 0, free_idx, out=r)
            dtau = torch.bmm(r[:, None, :], q)[:, 0]
            torch.bmm(dtau[:, None, :], qt, out=jrows)
            j_dtau.index_copy_(0, free_idx, jrows[:, 0])
        torch.sub(data, low_rank, out=z)
        z.sub_(sparse)
        if j_dtau is not None:
            z.add_(j_dtau)
        y.add_(z, alpha=mu)
        mu = min(mu * rho, mu_max)
        residual = float(torch.linalg.norm(z) / norm_data)
        if residual < tol:
            break
    return RpcaResult(low_rank, sparse, dtau, it, residual)


def rpca(
    data: torch.Tensor,
    lam: float | None = None,
    lambda_scale: float = 1.0,
    rank: int | None = None,
    max_iter: int = 500,
    tol: float = 1e-7,
    svd: str = "gram",
    precision: str = "float64",
) -> RpcaResult:
    """Robust PCA of ``data`` (n samples as rows, m features): ``data = low_rank + sparse``.

    Args:
        data: (n, m) matrix; solved and returned in ``precision`` (float64 by default).
        lam: weight of ``||E||_1``; default ``lambda_scale / sqrt(max(m, n))``.
        lambda_scale: multiplies the default lambda (ignored when ``lam`` is given).
        rank: optional hard upper bound on the rank of the low-rank part.
        max_iter, tol: IALM stopping rule on ``||data - A - E||_F / ||data||_F``.
        svd: ``"gram"`` (default), ``"full"`` or ``"lowrank"``; see ``_svt``.
    """
    if data.ndim != 2:
        msg = f"rpca expects an (n, m) matrix, got shape {tuple(data.shape)}."
        raise ValueError(msg)
    check_lambda(lam, lambda_scale)
    check_rank(rank, min(data.shape))
    _check_svd(svd)
    lam = lam if lam is not None else lambda_scale * default_lambda(data.shape[1], data.shape[0])
    dtype = _check_precision(precision)
    return _ialm(data.to(dtype), lam, rank=rank, max_iter=max_iter, tol=tol, svd=svd)


def _check_svd(svd: str) -> None:
    if svd not in SVD_METHODS:
        msg = f"Unknown svd method {svd!r}; allowed: {', '.join(SVD_METHODS)}."
        raise ValueError(msg)


def _check_precision(precision: str) -> torch.dtype:
    if precision not in PRECISIONS:
        msg = f"Unknown precision {precision!r}; allowed: {', '.join(PRECISIONS)}."
        raise ValueError(msg)
    return PRECISIONS[precision]


# ----------------------------------------------------------------------------------------------
# Transformations: linear parametrisation of affine_grid's 2x3 matrix around identity
# ----------------------------------------------------------------------------------------------


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
    _check_svd(svd)
    if images.ndim != 4:
        msg = f"rasl expects images of shape (n, C, H, W), got {tuple(images.shape)}."
        raise ValueError(msg)
    n, c, h, w = images.shape
    check_rank(rank, min(n, c * h * w))
    lam = lam if lam is not None else lambda_scale * default_lambda(c * h * w, n)
    dtype = _check_precision(precision)
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


# ----------------------------------------------------------------------------------------------
# The anomaly detector
# ----------------------------------------------------------------------------------------------


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


class RaslModel(nn.Module):
    """RASL anomaly detector: decompose [normal references; test images], score with |E|.

    Args:
        transform: transformation family for alignment (``"none"`` = plain RPCA).
        n_reference: at most this many normal images are kept by :meth:`fit`.
        working_size: decompose at ``working_size x working_size`` (inputs of another size are
            resized, maps resized back to the input size); ``None`` = the input size. This keeps
            the solver size fixed even when a pipeline supplies its own pre-processor.
        lam, lambda_scale, rank: see :func:`rasl`.
        test_chunk: how many test images are decomposed together with the references. ``None``
            (default) = the whole batch given to ``forward`` at once; ``1`` = each test image alone.
            The low-rank part is shared by everything in the stack, so results depend (weakly) on
            this choice; see docs/rasl.md.
        align_references: align the kept references among themselves once in :meth:`fit`. At test
            time the references are then held fixed (they anchor the canonical frame) and only
            the test images are aligned to them.
        grayscale: decompose luminance instead of RGB (3x fewer pixels, 3x faster).
        sigma: Gaussian smoothing of the anomaly map (pixels); 0 disables.
        max_outer, max_inner, inner_tol, svd, precision: solver settings, see :func:`rasl`.
        num_threads: torch CPU threads while solving (restored afterwards); ``None`` leaves
            torch's setting alone. Default 1, see :func:`cpu_threads`.
        seed: seed of the generator that picks the kept references.
    """

    reference: torch.Tensor

    def __init__(
        self,
        transform: str = "similarity",
        n_reference: int = 32,
        working_size: int | None = None,
        lam: float | None = None,
        lambda_scale: float = 1.0,
        rank: int | None = None,
        test_chunk: int | None = None,
        align_references: bool = True,
        grayscale: bool = False,
        sigma: float = 1.0,
        max_outer: int = 10,
        max_inner: int = 300,
        inner_tol: float = 1e-5,
        svd: str = "gram",
        precision: str = "float32",
        num_threads: int | None = 1,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.transform = check_transform(transform)
        check_lambda(lam, lambda_scale)
        if isinstance(n_reference, bool) or not isinstance(n_reference, int) or n_reference < 1:
            msg = f"n_reference must be a positive integer, got {n_reference!r}."
            raise ValueError(msg)
        # A rank >= the number of references lets A absorb a test image entirely.
        check_rank(rank, n_reference)
        if test_chunk is not None and (not isinstance(test_chunk, int) or test_chunk < 1):
            msg = f"test_chunk must be None or a positive integer, got {test_chunk!r}."
            raise ValueError(msg)
        if sigma < 0:
            msg = f"sigma must be >= 0, got {sigma!r}."
            raise ValueError(msg)
        if working_size is not None and (
            isinstance(working_size, bool) or not isinstance(working_size, int) or working_size < 4
        ):
            msg = f"working_size must be None or an integer >= 4, got {working_size!r}."
            raise ValueError(msg)
        _check_svd(svd)
        _check_precision(precision)
        if num_threads is not None and (not isinstance(num_threads, int) or num_threads < 1):
            msg = f"num_threads must be None or a positive integer, got {num_threads!r}."
            raise ValueError(msg)
        self.precision = precision
        self.num_threads = num_threads
        self.n_reference = n_reference
        self.working_size = working_size
        self.lam = lam
        self.lambda_scale = lambda_scale
        self.rank = rank
        self.test_chunk = test_chunk
        self.align_references = align_references
        self.grayscale = grayscale
        self.max_outer = max_outer
        self.max_inner = max_inner
        self.inner_tol = inner_tol
        self.svd = svd
        self.seed = seed
        self.blur = GaussianBlur2d(sigma=sigma, channels=1) if sigma > 0 else None
        # Empty until fit(); _load_from_state_dict resizes it to the checkpoint's shape.
        self.register_buffer("reference", torch.empty(0))

    @property
    def is_fitted(self) -> bool:
        """Whether reference images are stored."""
        return self.reference.numel() > 0

    def _prepare(self, images: torch.Tensor) -> torch.Tensor:
        size = self.working_size
        if size is not None and tuple(images.shape[-2:]) != (size, size):
            images = F.interpolate(
                images, size=(size, size), mode="bilinear", antialias=True, align_corners=False
            )
        if self.grayscale and images.shape[1] == 3:
            weights = images.new_tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
            return (images * weights).sum(dim=1, keepdim=True)
        return images

    @torch.no_grad()
    def fit(self, images: torch.Tensor) -> None:
        """Keep at most ``n_reference`` of ``images`` (seeded choice) and align them."""
        if images.ndim != 4 or images.shape[0] == 0:
            msg = f"fit expects a non-empty (n, C, H, W) batch, got {tuple(images.shape)}."
            raise ValueError(msg)
        images = self._prepare(images.float())
        n = images.shape[0]
        if n > self.n_reference:
            gen = torch.Generator().manual_seed(self.seed)
            keep = torch.randperm(n, generator=gen)[: self.n_reference].sort().values
            images = images[keep.to(images.device)]
        if self.rank is not None and self.rank > images.shape[0]:
            msg = f"rank={self.rank} is too large for {images.shape[0]} reference images."
            raise ValueError(msg)
        if self.align_references and self.transform != "none" and images.shape[0] > 1:
            images = self._solve(images).aligned.to(images.dtype)
        self.reference = images.contiguous()

    def _solve(self, images: torch.Tensor, fixed: torch.Tensor | None = None) -> RaslResult:
        with cpu_threads(self.num_threads, images.device):
            return rasl(
                images,
                transform=self.transform,
                lam=self.lam,
                lambda_scale=self.lambda_scale,
                rank=self.rank,
                fixed=fixed,
                max_outer=self.max_outer,
                max_inner=self.max_inner,
                inner_tol=self.inner_tol,
                svd=self.svd,
                precision=self.precision,
            )

    @torch.no_grad()
    def anomaly_map(self, images: torch.Tensor) -> torch.Tensor:
        """|E| of ``images`` (B, C, H, W), mapped back to the image frame: (B, 1, H, W)."""
        if not self.is_fitted:
            msg = "RaslModel has no reference images: call fit() (train the model) first."
            raise RuntimeError(msg)
        input_size = tuple(images.shape[-2:])
        images = self._prepare(images.float())
        if images.shape[1:] != self.reference.shape[1:]:
            msg = (
                f"Test images have shape {tuple(images.shape[1:])} but the references "
                f"{tuple(self.reference.shape[1:])}; use the same pre-processing (working size)."
            )
            raise ValueError(msg)
        n_ref = self.reference.shape[0]
        chunk = self.test_chunk or images.shape[0]
        maps = []
        for batch in images.split(chunk):
            stack = torch.cat([self.reference.to(batch), batch])
            fixed = torch.zeros(stack.shape[0], dtype=torch.bool, device=stack.device)
            fixed[:n_ref] = True  # references are the canonical frame
            result = self._solve(stack, fixed=fixed)
            sparse = result.sparse[n_ref:].abs().mean(dim=1, keepdim=True)
            if self.transform != "none":
                # E lives in the aligned frame; bring it back to where the defect is in the image.
                sparse = warp(sparse, invert_theta(result.theta[n_ref:]))
            maps.append(sparse)
        anomaly_map = torch.cat(maps).to(images.dtype)
        if self.blur is not None:
            anomaly_map = self.blur(anomaly_map)
        if tuple(anomaly_map.shape[-2:]) != input_size:
            anomaly_map = F.interpolate(
                anomaly_map, size=input_size, mode="bilinear", align_corners=False
            )
        return anomaly_map

    def forward(self, images: torch.Tensor) -> InferenceBatch:
        """Anomaly map (B, 1, H, W) and image score (B,) = max of the map."""
        anomaly_map = self.anomaly_map(images)
        pred_score = anomaly_map.flatten(1).amax(dim=1)
        return InferenceBatch(pred_score=pred_score, anomaly_map=anomaly_map)

    def _load_from_state_dict(self, state_dict: dict, prefix: str, *args, **kwargs) -> None:
        # The reference buffer's shape is only known after fit: adopt the checkpoint's shape.
        key = prefix + "reference"
        if key in state_dict:
            self.reference = torch.empty_like(state_dict[key], device=self.reference.device)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
