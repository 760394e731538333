"""The RASL anomaly detector as a pure torch module: decompose [references; test images] and
score each test pixel by the magnitude of its sparse part."""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from anomalib.data import InferenceBatch
from anomalib.models.components import GaussianBlur2d
from torch import nn
from torch.nn import functional as F

from .decomposition import RaslResult, cpu_threads, rasl
from .params import RaslParams
from .warps import invert_theta, warp


class RaslModel(nn.Module):
    """RASL anomaly detector: decompose [normal references; test images], score with |E|.

    Takes a ``RaslParams`` and/or its fields as keyword arguments:
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

    def __init__(self, params: RaslParams | None = None, **changes: Any) -> None:
        super().__init__()
        # Every parameter is checked once, in RaslParams; ``changes`` override ``params``.
        self.params = dataclasses.replace(params or RaslParams(), **changes)
        for name, value in dataclasses.asdict(self.params).items():
            setattr(self, name, value)  # read as self.transform, self.n_reference, ...
        sigma = self.params.sigma
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
