"""Fixtures for the synthetic_btad tests: tiny datasets and real-data roots built from symlinks.

The real files live in ``shared/data`` beside the repository (never copied into it). Tests that
need them skip cleanly when that directory is absent.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image
from script_loader import load_script  # tests/helpers, on pytest's pythonpath

REPO = Path(__file__).resolve().parents[3]
SHARED_DATA = REPO / ".." / "shared" / "data"
GRID = SHARED_DATA / "mvtec_ad_grid_otx" / "data" / "mvtec"
IND_KNN = SHARED_DATA / "mvtec_ad_ind_knn_ad" / "datasets"


def _require(path: Path) -> Path:
    if not path.is_dir():
        pytest.skip(f"shared real data not available: {path}")
    return path.resolve()


@pytest.fixture(scope="session")
def real_mvtec_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Standard MVTec AD layout (grid, hazelnut, transistor) of symlinks to the 27 shared masks,
    made by benchmarks/link_shared_data.py (the same layout the real-data benchmark uses)."""
    _require(GRID)
    _require(IND_KNN)
    linker = load_script("link_shared_data")
    out = tmp_path_factory.mktemp("shared") / "roots"
    linker.link_shared_data(SHARED_DATA.resolve(), out)
    return out / "mvtec"


@pytest.fixture(scope="session")
def real_btad_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """BTAD layout (<root>/03/train/ok, 4-digit names) of real 256x256 MVTec hazelnut photos.

    20 symlinked PNGs plus 4 converted to BMP (BTAD's format), 24 images in all.
    """
    photos = sorted((_require(IND_KNN) / "hazelnut_reduced" / "train" / "good").glob("*.png"))
    root = tmp_path_factory.mktemp("btad")
    ok = root / "03" / "train" / "ok"
    ok.mkdir(parents=True)
    for i, src in enumerate(photos[:24]):
        if i < 20:
            (ok / f"{i:04d}.png").symlink_to(src)
        else:
            Image.open(src).convert("RGB").save(ok / f"{i:04d}.bmp")
    for sub in ("test/ok", "test/ko", "ground_truth/ko"):
        (root / "03" / sub).mkdir(parents=True)
    return root
