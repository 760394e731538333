"""Shared fixtures: tiny generated datasets in anomalib's Folder layout."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing may be downloaded in tests
# Tiny tensors: one thread per process is faster than two and immune to OpenMP spin-waiting
# when another process shares the cores (measured 2.4 s vs 20 s for one small solve under load).
# Set before torch is imported so that CLI subprocesses inherit it too.
os.environ.setdefault("OMP_NUM_THREADS", "1")

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


def _texture(rng: np.random.Generator, size: int) -> np.ndarray:
    """A stripe texture with random phase and brightness: a 3-parameter image family."""
    yy, xx = np.mgrid[0:size, 0:size] / size
    phase, bright = rng.uniform(0, 2 * np.pi), rng.uniform(-0.1, 0.1)
    grey = 0.5 + bright + 0.25 * np.sin(2 * np.pi * 3 * (xx + 0.3 * yy) + phase)
    rgb = np.stack([grey, grey * 0.9 + 0.05, grey * 0.8 + 0.1], axis=-1)
    return (np.clip(rgb, 0, 1) * 255).astype(np.uint8)


def _defect(rng: np.random.Generator, size: int) -> np.ndarray:
    mask = np.zeros((size, size), dtype=bool)
    cy, cx = rng.integers(size // 4, 3 * size // 4, size=2)
    r = max(2, size // 8)
    yy, xx = np.mgrid[0:size, 0:size]
    mask[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = True
    return mask


def make_folder_dataset(
    root: Path, size: int = 32, n_train: int = 48, n_test: int = 8, n_good: int = 4, seed: int = 0
) -> Path:
    """Write train/good, test/defect, test/good, ground_truth/defect under ``root``."""
    rng = np.random.default_rng(seed)
    for sub in ("train/good", "test/defect", "test/good", "ground_truth/defect"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for i in range(n_train):
        Image.fromarray(_texture(rng, size)).save(root / "train/good" / f"{i:03d}.png")
    for i in range(n_good):
        Image.fromarray(_texture(rng, size)).save(root / "test/good" / f"{i:03d}.png")
    for i in range(n_test):
        image, mask = _texture(rng, size), _defect(rng, size)
        image[mask] = np.array([250, 30, 30], dtype=np.uint8)
        Image.fromarray(image).save(root / "test/defect" / f"{i:03d}.png")
        Image.fromarray(mask.astype(np.uint8) * 255).save(
            root / "ground_truth/defect" / f"{i:03d}_mask.png"
        )
    return root


@pytest.fixture(scope="session")
def folder_dataset_factory() -> object:
    """``make_folder_dataset`` as a fixture: test modules cannot import ``conftest`` by name
    (tests/unit/synthetic_btad has its own conftest, so the module name is ambiguous)."""
    return make_folder_dataset


@pytest.fixture(scope="session")
def tiny_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_folder_dataset(tmp_path_factory.mktemp("tiny_folder"))


@pytest.fixture
def tiny_datamodule(tiny_folder: Path) -> object:
    """anomalib's ``Folder`` datamodule on ``tiny_folder`` (normal + defect test images, masks)."""
    from anomalib.data import Folder

    return Folder(
        name="tiny",
        root=tiny_folder,
        normal_dir="train/good",
        abnormal_dir="test/defect",
        mask_dir="ground_truth/defect",
        normal_test_dir="test/good",
        train_batch_size=16,
        eval_batch_size=12,
        num_workers=0,
        seed=0,
    )
