"""PatchCore's coreset step reuses its buffers (issue 32, rgi_anomalib/models/patchcore_memory)."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import torch

pytest.importorskip("anomalib")

from anomalib.models.components.sampling import KCenterGreedy

from rgi_anomalib.models import patchcore_memory
from rgi_anomalib.models.patchcore_memory import BufferedKCenterGreedy


def _select(cls: type, embedding: torch.Tensor, seed: int) -> list[int]:
    torch.manual_seed(seed)
    np.random.seed(seed)  # anomalib's random projection draws from numpy's global generator
    return cls(embedding, sampling_ratio=0.1).select_coreset_idxs()


@pytest.mark.parametrize(("n", "d"), [(600, 152), (300, 1536), (97, 7)])
def test_same_coreset_as_anomalib(n: int, d: int) -> None:
    embedding = torch.randn(n, d, generator=torch.Generator().manual_seed(n))
    assert _select(BufferedKCenterGreedy, embedding, 3) == _select(KCenterGreedy, embedding, 3)


def test_no_large_allocation_per_step() -> None:
    """The (n, d) difference and the (n, 1) distances live in the same storage every step."""
    sampler = BufferedKCenterGreedy(torch.randn(500, 64), sampling_ratio=0.1)
    pointers: set[tuple[int, int, int]] = set()
    update = sampler.update_distances

    def record(cluster_center: torch.Tensor) -> None:
        update(cluster_center)
        assert sampler._diff is not None and sampler._distances is not None
        pointers.add(
            (
                sampler._diff.data_ptr(),
                sampler._distances.data_ptr(),
                sampler.min_distances.data_ptr(),
            )
        )

    sampler.update_distances = record  # type: ignore[method-assign]
    assert len(sampler.select_coreset_idxs()) == 50
    assert len(pointers) == 1
    assert sampler._diff is None  # buffers released after the selection


def test_installed_for_patchcore_only() -> None:
    from anomalib.models.components import sampling
    from anomalib.models.image.patchcore import torch_model

    assert patchcore_memory.installed()
    assert torch_model.KCenterGreedy is BufferedKCenterGreedy
    assert sampling.KCenterGreedy is KCenterGreedy  # anomalib's class and other users untouched


def test_installed_by_the_import_hook() -> None:
    """A fresh interpreter that imports only anomalib (as the plain ``anomalib`` command does)
    gets the fix, and sets no process-wide malloc option."""
    code = (
        "import anomalib.models\n"
        "from anomalib.models.image.patchcore import torch_model\n"
        "print(type(torch_model.KCenterGreedy).__name__, torch_model.KCenterGreedy.__name__)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "RGI_ANOMALIB_NO_HOOK"}
    out = subprocess.run(
        [sys.executable, "-W", "ignore", "-c", code],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=True,
    )
    assert out.stdout.split()[-1] == "BufferedKCenterGreedy"


def test_benchmark_cli_sets_no_malloc_option() -> None:
    from rgi_anomalib.benchmark import cli

    assert not hasattr(cli, "set_malloc_mmap_threshold")
