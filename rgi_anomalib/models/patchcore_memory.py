"""PatchCore's coreset selection without a fresh ``(n, d)`` tensor per step.

anomalib's ``KCenterGreedy.update_distances`` computes, once per selected centre (``n / 10`` times
at the default coreset ratio), ``torch.linalg.norm(self.features - center, dim=1)``: every step
allocates and frees a new ``(n, d)`` float32 temporary (``d`` = the random projection's
Johnson-Lindenstrauss dimension, about 250 for 10^4-10^5 patches whatever the backbone), e.g.
24.5 MB for 24 images at 256 px. glibc serves that temporary in one of two bad ways:

- below its dynamic mmap threshold (which rises, up to 32 MiB, each time a large block is freed;
  the backbone's activations raise it during feature extraction) it comes from the main heap. A
  few small allocations made between two steps are carved out of the hole the freed temporary
  left, so the next temporary no longer fits there and extends the heap: the heap's free bytes
  grow by about one temporary per step while the bytes in use stay flat -- 23 GB after ~1,000
  steps, killed;
- above the threshold (always above 32 MiB, e.g. 40 images at 256 px) it is a fresh ``mmap``
  every step, page-faulted in and unmapped again: bounded memory, but most of the fit's CPU time
  is then spent in the kernel.

Setting ``M_MMAP_THRESHOLD`` to 1 MB process-wide forced the second behaviour everywhere, which
bounds PatchCore's memory but makes every multi-megabyte tensor of every other model a fresh
mmap as well (about 2x slower GAN fits). Instead, :class:`BufferedKCenterGreedy` does the same
arithmetic into two buffers allocated once per selection (``torch.sub(..., out=)``,
``vector_norm(..., out=)``, ``torch.minimum(..., out=)``), so the loop allocates nothing large and
selects bit-identical indices. :func:`install` makes PatchCore's module use it; it replaces only the
name ``KCenterGreedy`` inside ``anomalib.models.image.patchcore.torch_model`` (anomalib's class
and its other users are untouched) and runs when our models are registered with anomalib, i.e.
for the plain ``anomalib`` command, ``rgi-anomalib benchmark`` and Python code alike.
"""

from __future__ import annotations

import torch
from anomalib.models.components.sampling import KCenterGreedy


class BufferedKCenterGreedy(KCenterGreedy):
    """anomalib's k-centre-greedy coreset sampler, with the per-step ``(n, d)`` difference and
    ``(n, 1)`` distances written into buffers reused across steps (same results)."""

    _diff: torch.Tensor | None = None
    _distances: torch.Tensor | None = None

    def update_distances(self, cluster_center: int | torch.Tensor | None) -> None:
        if cluster_center is None:
            return
        features = self.features
        if self._diff is None or self._diff.shape != features.shape:
            self._diff = torch.empty_like(features)
            self._distances = features.new_empty(features.shape[0], 1)
        center = features[cluster_center].squeeze()
        torch.sub(features, center, out=self._diff)
        torch.linalg.vector_norm(self._diff, ord=2, dim=1, keepdim=True, out=self._distances)
        if self.min_distances is None:
            # Owned copy: the caller zeroes the chosen entry of min_distances in place.
            self.min_distances = self._distances.clone()
        else:
            torch.minimum(self.min_distances, self._distances, out=self.min_distances)

    def select_coreset_idxs(self) -> list[int]:
        try:
            return super().select_coreset_idxs()
        finally:
            self._diff = self._distances = None


def install() -> None:
    """Make anomalib's PatchCore select its coreset with :class:`BufferedKCenterGreedy`."""
    from anomalib.models.image.patchcore import torch_model

    if torch_model.KCenterGreedy is KCenterGreedy:
        torch_model.KCenterGreedy = BufferedKCenterGreedy


def installed() -> bool:
    """Whether PatchCore currently uses :class:`BufferedKCenterGreedy`."""
    from anomalib.models.image.patchcore import torch_model

    return torch_model.KCenterGreedy is BufferedKCenterGreedy


def uninstall() -> None:
    """Give PatchCore anomalib's own sampler back (for before/after measurements)."""
    from anomalib.models.image.patchcore import torch_model

    torch_model.KCenterGreedy = KCenterGreedy
