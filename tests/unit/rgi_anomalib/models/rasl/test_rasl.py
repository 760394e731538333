"""Tests of the RASL / RPCA baseline (rgi_anomalib.models.rasl).

Tolerances are stated next to each check together with the value measured when they were set
(2-core CPU, torch 2.14.1); the margins are 10x or more unless noted.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from rgi_anomalib.models.rasl import Rasl, RaslModel, rasl, rpca
from rgi_anomalib.models.rasl.decomposition import cpu_threads
from rgi_anomalib.models.rasl.warps import invert_theta, params_to_theta, warp


@pytest.fixture(autouse=True)
def _one_thread():
    # The matrices here are tiny: on a shared 2-core machine a second BLAS/OpenMP thread only
    # adds contention (measured up to 100x slower per op when the other core is busy).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _low_rank_plus_sparse(n=40, m=1000, rank=3, frac=0.05, seed=0):
    gen = torch.Generator().manual_seed(seed)
    low = torch.randn(n, rank, generator=gen, dtype=torch.float64) @ torch.randn(
        rank, m, generator=gen, dtype=torch.float64
    )
    support = torch.rand(n, m, generator=gen) < frac
    sparse = torch.zeros(n, m, dtype=torch.float64)
    sparse[support] = (
        torch.rand(int(support.sum()), generator=gen, dtype=torch.float64) * 2 - 1
    ) * 10
    return low, sparse, support


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.linalg.norm(a.double() - b) / torch.linalg.norm(b))


def _smooth_noise(shape, sigma, gen):
    x = torch.randn(*shape, generator=gen, dtype=torch.float64)
    r = int(3 * sigma)
    k = torch.arange(-r, r + 1, dtype=torch.float64)
    g = torch.exp(-(k**2) / (2 * sigma**2))
    g = (g / g.sum()).repeat(shape[1], 1, 1, 1)
    x = F.conv2d(
        F.pad(x, (r, r, 0, 0), mode="circular"), g.view(shape[1], 1, 1, -1), groups=shape[1]
    )
    return F.conv2d(
        F.pad(x, (0, 0, r, r), mode="circular"), g.view(shape[1], 1, -1, 1), groups=shape[1]
    )


def _aligned_rank2_images(n=20, size=32, seed=0):
    """n images from a rank-2 family of smooth textures, values in [0, 1]."""
    gen = torch.Generator().manual_seed(seed)
    basis = _smooth_noise((2, 1, size, size), 2.0, gen)
    coef = torch.rand(n, 2, generator=gen, dtype=torch.float64) + 0.5
    images = torch.einsum("nk,kchw->nchw", coef, basis)
    return (images - images.min()) / (images.max() - images.min())


def _corner_error_px(theta_a: torch.Tensor, theta_b: torch.Tensor, size: int) -> torch.Tensor:
    """Largest displacement (pixels) between two warps over the image corners, per image."""
    corners = torch.tensor([[-1, -1, 1], [1, -1, 1], [-1, 1, 1], [1, 1, 1]], dtype=theta_a.dtype)
    diff = torch.einsum("nij,cj->nci", theta_a - theta_b, corners)
    return diff.norm(dim=-1).amax(dim=1) * size / 2


# ------------------------------------------------------------------------------------------
# RPCA: recovery of A and E
# ------------------------------------------------------------------------------------------


def test_rpca_recovers_low_rank_and_sparse() -> None:
    low, sparse, support = _low_rank_plus_sparse()
    # lambda_scale 1.5: for this tall-thin shape (n=40 << m=1000) the textbook 1/sqrt(m) is a
    # little small and lets E leak into A (measured below).
    res = rpca(low + sparse, lambda_scale=1.5)
    assert _rel(res.low_rank, low) < 1e-5  # measured 1.9e-8
    assert _rel(res.sparse, sparse) < 1e-5  # measured 1.0e-8
    # Support of E: measured 40000/40000 minus 1 entry (a corruption of size < 1e-3).
    assert ((res.sparse.abs() > 1e-3) == support).float().mean() > 0.999
    assert int(torch.linalg.matrix_rank(res.low_rank, rtol=1e-6)) == 3


def test_rpca_default_lambda_and_float32() -> None:
    low, sparse, support = _low_rank_plus_sparse()
    res = rpca(low + sparse)  # default lambda = 1/sqrt(max(m, n))
    assert _rel(res.low_rank, low) < 5e-2  # measured 1.1e-2
    assert ((res.sparse.abs() > 1e-3) == support).float().mean() > 0.995  # measured 0.9991
    res32 = rpca(low + sparse, lambda_scale=1.5, precision="float32", tol=1e-5)
    assert res32.low_rank.dtype == torch.float32
    assert _rel(res32.low_rank, low) < 1e-4  # measured 3.6e-6


def test_svd_methods_agree_and_rank_bound() -> None:
    low, sparse, _ = _low_rank_plus_sparse(n=30, m=400, rank=2)
    ref = rpca(low + sparse, lambda_scale=1.5, svd="gram")
    full = rpca(low + sparse, lambda_scale=1.5, svd="full")
    assert _rel(full.low_rank, ref.low_rank) < 1e-6
    capped = rpca(low + sparse, lambda_scale=1.5, rank=2, svd="lowrank")
    assert int(torch.linalg.matrix_rank(capped.low_rank, rtol=1e-6)) <= 2
    assert _rel(capped.low_rank, low) < 1e-4


# ------------------------------------------------------------------------------------------
# RASL: alignment
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("transform", "tol_px"),
    # Measured worst corner errors: translation 0.004 px, similarity 0.042 px, affine 0.049 px.
    [("translation", 0.05), ("similarity", 0.2), ("affine", 0.2)],
)
def test_rasl_recovers_known_transforms(transform: str, tol_px: float) -> None:
    n, k, size = 20, 10, 32
    base = _aligned_rank2_images(n, size)
    gen = torch.Generator().manual_seed(1)
    p = {"translation": 2, "similarity": 4, "affine": 6}[transform]
    true = torch.zeros(n, p, dtype=torch.float64)
    shift = (torch.rand(n - k, 2, generator=gen, dtype=torch.float64) * 2 - 1) * 1.5 * 2 / size
    if transform == "affine":
        true[k:, 2], true[k:, 5] = shift[:, 0], shift[:, 1]
        true[k:, [0, 1, 3, 4]] = (
            torch.rand(n - k, 4, generator=gen, dtype=torch.float64) - 0.5
        ) * 0.06
    else:
        true[k:, -2:] = shift  # up to 1.5 px
    if transform == "similarity":  # up to ~3 degrees and 5 % scale
        true[k:, :2] = (torch.rand(n - k, 2, generator=gen, dtype=torch.float64) * 2 - 1) * 0.05
    theta = params_to_theta(true, transform)
    images = warp(base, invert_theta(theta))  # so that warp(images, theta) ~= base
    fixed = torch.zeros(n, dtype=torch.bool)
    fixed[:k] = True  # first k images are the (unshifted) references
    res = rasl(images, transform=transform, fixed=fixed)
    err = _corner_error_px(res.theta[k:], theta[k:], size)
    assert float(err.max()) < tol_px
    # Aligned stack = A + E, A of rank ~2, E small: the decomposition is consistent.
    assert _rel(res.low_rank + res.sparse, res.aligned) < 1e-4


def test_rasl_all_free_recovers_relative_shifts() -> None:
    # No fixed image: only shifts relative to the mean are identifiable (gauge freedom).
    n, size = 16, 32
    base = _aligned_rank2_images(n, size, seed=2)
    gen = torch.Generator().manual_seed(3)
    true = (torch.rand(n, 2, generator=gen, dtype=torch.float64) * 2 - 1) * 1.5 * 2 / size
    images = warp(base, invert_theta(params_to_theta(true, "translation")))
    res = rasl(images, transform="translation")
    err_px = ((res.params - true) - (res.params - true).mean(0)).abs().max() * size / 2
    assert float(err_px) < 0.2  # measured 0.03 px


def test_rasl_none_is_rpca() -> None:
    images = _aligned_rank2_images(12, 16)
    res = rasl(images, transform="none")
    flat = images.reshape(12, -1)
    ref = rpca(flat / flat.norm(dim=1, keepdim=True), tol=1e-6, max_iter=300)  # rasl's defaults
    assert res.params.shape == (12, 0)
    assert res.outer_iterations == 0
    assert _rel(res.sparse.reshape(12, -1), ref.sparse * flat.norm(dim=1, keepdim=True)) < 1e-8


# ------------------------------------------------------------------------------------------
# Bad inputs
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kwargs", [{"lam": 0.0}, {"lam": -1.0}, {"lambda_scale": 0}])
def test_bad_lambda(kwargs: dict) -> None:
    data = torch.rand(5, 20)
    with pytest.raises(ValueError, match="lambda"):
        rpca(data, **kwargs)
    with pytest.raises(ValueError, match="lambda"):
        rasl(data.view(5, 1, 4, 5), **kwargs)
    with pytest.raises(ValueError, match="lambda"):
        RaslModel(**kwargs)


@pytest.mark.parametrize("rank", [0, -2, 6])
def test_bad_rank(rank: int) -> None:
    data = torch.rand(5, 20)  # min(m, n) = 5
    with pytest.raises(ValueError, match="rank"):
        rpca(data, rank=rank)
    with pytest.raises(ValueError, match="rank"):
        rasl(data.view(5, 1, 4, 5), rank=rank)


def test_bad_model_arguments() -> None:
    with pytest.raises(ValueError, match="rank"):
        RaslModel(n_reference=8, rank=9)  # more than the references: A could absorb a test image
    with pytest.raises(ValueError, match=r"none, translation, similarity, affine"):
        RaslModel(transform="rigid")
    with pytest.raises(ValueError, match="allowed"):
        rasl(torch.rand(4, 1, 8, 8), transform="projective")
    with pytest.raises(ValueError, match="lambda"):
        Rasl(lam=-0.1, visualizer=False)
    with pytest.raises(ValueError, match="transform"):
        Rasl(transform="bogus", visualizer=False)
    with pytest.raises(RuntimeError, match="fit"):
        RaslModel()(torch.rand(2, 3, 16, 16))


# ------------------------------------------------------------------------------------------
# The detector
# ------------------------------------------------------------------------------------------


def _toy_images(n, size=32, anomalous=False, seed=0, max_shift=1.5):
    """Crops of one smooth colour texture at random sub-pixel offsets; defects = bright blobs."""
    gen = torch.Generator().manual_seed(seed)
    big = _smooth_noise((1, 3, 2 * size, 2 * size), size / 16, torch.Generator().manual_seed(99))
    big = ((big - big.min()) / (big.max() - big.min()) * 0.6 + 0.2).float()
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0] = theta[:, 1, 1] = 0.5
    theta[:, :, 2] = (torch.rand(n, 2, generator=gen) * 2 - 1) * max_shift / size
    grid = F.affine_grid(theta, [n, 3, size, size], align_corners=False)
    images = F.grid_sample(big.expand(n, -1, -1, -1), grid, align_corners=False)
    images = images * (0.9 + 0.2 * torch.rand(n, 1, 1, 1, generator=gen))
    masks = torch.zeros(n, 1, size, size)
    if anomalous:
        yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
        for i in range(n):
            cy, cx = (torch.rand(2, generator=gen) * size * 0.6 + size * 0.2).tolist()
            blob = torch.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * (size / 12) ** 2))
            images[i] += 0.3 * blob
            masks[i, 0] = (blob > 0.5).float()
    return images.clamp(0, 1), masks


def _auroc(scores: torch.Tensor, labels: torch.Tensor) -> float:
    from torchmetrics.functional.classification import binary_auroc

    return float(binary_auroc(scores.flatten(), labels.flatten().long()))


def test_model_detects_defects_and_state_dict_roundtrip() -> None:
    train, _ = _toy_images(24, seed=1)
    normal, normal_masks = _toy_images(4, seed=2)
    defect, defect_masks = _toy_images(4, anomalous=True, seed=3)
    test = torch.cat([normal, defect])
    masks = torch.cat([normal_masks, defect_masks])
    model = RaslModel(transform="translation", n_reference=16)
    model.fit(train)
    assert model.reference.shape == (16, 3, 32, 32)
    out = model(test)
    assert out.anomaly_map.shape == (8, 1, 32, 32)
    assert out.pred_score.shape == (8,)
    assert _auroc(out.anomaly_map, masks) > 0.95  # measured 0.9999
    assert _auroc(out.pred_score, torch.tensor([0] * 4 + [1] * 4)) == 1.0

    # The reference buffer survives a state-dict round trip into an unfitted model.
    fresh = RaslModel(transform="translation", n_reference=16)
    fresh.load_state_dict(model.state_dict())
    assert torch.equal(fresh.reference, model.reference)
    assert torch.allclose(fresh(test).anomaly_map, out.anomaly_map, atol=1e-6)

    # One test image at a time vs the whole batch: nearly the same maps (see docs/rasl.md).
    single = RaslModel(transform="translation", n_reference=16, test_chunk=1)
    single.load_state_dict(model.state_dict())
    single_map = single(test).anomaly_map
    corr = torch.corrcoef(torch.stack([single_map.flatten(), out.anomaly_map.flatten()]))[0, 1]
    assert float(corr) > 0.95


def test_working_size_is_used_whatever_the_input_size() -> None:
    # The benchmark runner passes its own pre-processor (image_size); working_size still holds.
    train, _ = _toy_images(12, seed=1)
    defect, masks = _toy_images(2, anomalous=True, seed=3)
    model = RaslModel(transform="translation", n_reference=8, working_size=16)
    model.fit(train)  # 32 x 32 inputs
    assert model.reference.shape == (8, 3, 16, 16)
    out = model(defect)
    assert out.anomaly_map.shape == (2, 1, 32, 32)  # back at the input size
    assert _auroc(out.anomaly_map, masks) > 0.9  # measured 0.998
    with pytest.raises(ValueError, match="working_size"):
        RaslModel(working_size=2)


def test_cpu_threads_is_temporary() -> None:
    torch.set_num_threads(2)  # the autouse fixture restores the original count afterwards
    with cpu_threads(1, torch.device("cpu")):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == 2
    with cpu_threads(None, torch.device("cpu")):
        assert torch.get_num_threads() == 2


def test_rasl_is_a_direct_anomalib_module_with_own_preprocessor() -> None:
    from anomalib.models.components import AnomalibModule

    assert Rasl in AnomalibModule.__subclasses__()  # needed for anomalib's name lookup
    model = Rasl(working_size=48, visualizer=False)
    assert tuple(model.input_size) == (48, 48)
    out = model.pre_processor.transform(torch.rand(2, 3, 100, 80))
    assert out.shape == (2, 3, 48, 48)
    assert float(out.min()) >= 0  # no ImageNet normalisation
    assert model.trainer_arguments["max_epochs"] == 1
    assert model.configure_optimizers() is None


# ------------------------------------------------------------------------------------------
# End to end through anomalib's Engine
# ------------------------------------------------------------------------------------------


def _write_folder_dataset(root: Path) -> None:
    from PIL import Image

    def save(images, folder, masks=None, stem=""):
        folder.mkdir(parents=True, exist_ok=True)
        for i, image in enumerate(images):
            array = (image.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
            Image.fromarray(array).save(folder / f"{stem}{i:03d}.png")
            if masks is not None:
                mask_dir = root / "ground_truth" / "defect"
                mask_dir.mkdir(parents=True, exist_ok=True)
                mask = (masks[i, 0].numpy() * 255).astype(np.uint8)
                Image.fromarray(mask).save(mask_dir / f"{stem}{i:03d}_mask.png")

    save(_toy_images(32, seed=1)[0], root / "train" / "good")
    save(_toy_images(8, seed=2)[0], root / "test" / "good")
    defect, masks = _toy_images(8, anomalous=True, seed=3)
    save(defect, root / "test" / "defect", masks)


@pytest.mark.slow
def test_engine_fit_test_and_checkpoint(tmp_path: Path) -> None:
    from anomalib.data import Folder
    from anomalib.engine import Engine

    _write_folder_dataset(tmp_path / "data")

    def datamodule():
        return Folder(
            name="toy",
            root=tmp_path / "data",
            normal_dir="train/good",
            abnormal_dir="test/defect",
            mask_dir="ground_truth/defect",
            normal_test_dir="test/good",
            train_batch_size=16,
            eval_batch_size=16,
            num_workers=0,
            seed=0,
        )

    def engine():
        return Engine(
            accelerator="cpu",
            logger=False,
            default_root_dir=tmp_path / "results",
            enable_progress_bar=False,
        )

    model = Rasl(working_size=32, n_reference=16, transform="translation", visualizer=False)
    trainer = engine()
    trainer.fit(model=model, datamodule=datamodule())
    assert model.model.reference.shape == (16, 3, 32, 32)
    metrics = trainer.test(model=model, datamodule=datamodule())[0]
    assert metrics["pixel_AUROC"] > 0.9  # measured 0.99999; chance is 0.5
    assert metrics["image_AUROC"] > 0.9  # measured 1.0
    assert metrics["pixel_F1Score"] > 0.5  # thresholds were fitted on validation maps

    # Test from the checkpoint with a fresh, unfitted model: the references come from the file.
    ckpt = trainer.trainer.checkpoint_callback.best_model_path
    fresh = Rasl(working_size=32, n_reference=16, transform="translation", visualizer=False)
    again = engine().test(model=fresh, datamodule=datamodule(), ckpt_path=ckpt)[0]
    assert again["pixel_AUROC"] == pytest.approx(metrics["pixel_AUROC"], abs=1e-6)
    loaded = Rasl.load_from_checkpoint(ckpt, visualizer=False)
    assert torch.equal(loaded.model.reference, model.model.reference)
