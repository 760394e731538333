"""ELPV base images (``bases="elpv"``): the defect-free polycrystalline cells of ``elpv-dataset``.

Tests that read the cells skip when the optional package is absent (``pip install -e '.[elpv]'``);
the missing-package error is tested without it.
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sbtad_helpers import leftovers, make_btad_root, tree_hash

from synthetic_btad import MissingDependencyError, build_dataset, load_summary
from synthetic_btad.bases import ELPV_LABEL, elpv_pool, load_base, resolve_counts
from synthetic_btad.cli import main

TINY = {"size": 32, "n_train": 3, "n_test_per_category": 2}


def _rows(root: Path) -> list[dict[str, str]]:
    with (root / "manifest.csv").open(newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def elpv() -> None:
    pytest.importorskip("elpv_dataset")


@pytest.mark.usefixtures("elpv")
def test_pool_is_the_defect_free_poly_cells_of_load_dataset() -> None:
    from elpv_dataset.utils import load_dataset

    pool = elpv_pool()
    images, probs, types = load_dataset()  # the package's own reader (decodes all 2,624 cells)
    keep = (probs == 0) & (types == "poly")
    assert len(pool.paths) == int(keep.sum()) == 920 and pool.n_cells == len(probs) == 2624
    assert pool.paths == sorted(pool.paths) and len(set(pool.paths)) == 920
    # Same cells in the same order: compare a few at full size (grey replicated to RGB).
    cells = images[keep]
    for k in (0, 1, 457, 919):
        rgb = load_base(pool.paths[k], 300)
        assert rgb.shape == (300, 300, 3)
        for c in range(3):
            np.testing.assert_array_equal(rgb[..., c], cells[k])


@pytest.mark.usefixtures("elpv")
def test_bases_are_resized_rgb_cells_and_deterministic(tmp_path: Path) -> None:
    notices: list[str] = []
    s = build_dataset(tmp_path / "a", bases="elpv", seed=2, notice=notices.append, **TINY)
    assert s.stand_ins == {"bases": False, "masks": True}
    bases = s.data["sources"]["bases"]
    assert bases["kind"] == "elpv" and bases["label"] == ELPV_LABEL
    assert bases["license"] == "CC BY-NC-SA 4.0" and bases["pool_size"] == 920
    assert bases["package"].startswith("elpv-dataset ")
    assert s.data["parameters"]["bases"] == "elpv" and s.data["parameters"]["btad_root"] is None
    assert "CC BY-NC-SA 4.0" in notices[0] and "920 defect-free polycrystalline" in notices[0]
    assert s.counts["train/good"] == 3 and s.counts["test/crack"] == 2
    pool = elpv_pool()
    allowed = {p.relative_to(pool.data_dir).as_posix() for p in pool.paths}
    rows = _rows(tmp_path / "a")
    assert {r["base_kind"] for r in rows} == {"elpv"}
    assert {r["base_source"] for r in rows} <= allowed
    assert len({r["base_source"] for r in rows if r["category"] in ("good", "crack")}) == 5
    for r in rows:
        img = np.asarray(Image.open(tmp_path / "a" / r["file"]))
        assert img.shape == (32, 32, 3) and img.dtype == np.uint8
        assert (img[..., 0] == img[..., 1]).all() and (img[..., 1] == img[..., 2]).all()
    # train/good holds the Lanczos-resized cell, as for BTAD photos.
    first = rows[0]
    cell = Image.open(pool.data_dir / first["base_source"]).convert("RGB")
    expected = np.asarray(cell.resize((32, 32), Image.Resampling.LANCZOS))
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "a" / first["file"])), expected)
    build_dataset(tmp_path / "b", bases="elpv", seed=2, **TINY)
    build_dataset(tmp_path / "c", bases="elpv", seed=3, **TINY)
    assert tree_hash(tmp_path / "a") == tree_hash(tmp_path / "b")
    assert tree_hash(tmp_path / "a") != tree_hash(tmp_path / "c")


@pytest.mark.usefixtures("elpv")
def test_default_counts_keep_the_papers_100_test_images(tmp_path: Path) -> None:
    notices: list[str] = []
    s = build_dataset(tmp_path / "d", bases="elpv", size=8, categories=["crack"],
                      notice=notices.append)  # fmt: skip
    c = s.counts
    assert (c["train/good"], c["test/good"], c["test/crack"]) == (820, 100, 100)
    assert (
        "the paper's 100 defect bases, the other 820 for training"
        in (s.data["sources"]["bases"]["count_rule"])
    )
    assert any("820 train, 100 defect bases" in n for n in notices)
    rows = _rows(tmp_path / "d")
    assert len({r["base_source"] for r in rows if r["category"] != "crack"}) == 920  # disjoint


def test_resolve_counts_keep_paper_test() -> None:
    assert resolve_counts(920, None, None, keep_paper_test=True)[:2] == (820, 100)
    assert resolve_counts(920, None, None)[:2] == (828, 92)  # the BTAD rule for small pools
    assert resolve_counts(1500, None, None, keep_paper_test=True)[:2] == (900, 100)
    assert resolve_counts(60, None, None, keep_paper_test=True)[:2] == (54, 6)
    assert resolve_counts(920, None, 50, keep_paper_test=True)[:2] == (870, 50)


def test_missing_package_is_one_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.setitem(sys.modules, "elpv_dataset", None)  # makes `import elpv_dataset` fail
    monkeypatch.setitem(sys.modules, "elpv_dataset.utils", None)
    with pytest.raises(MissingDependencyError, match=r"elpv-dataset.*pip install elpv-dataset"):
        build_dataset(tmp_path / "o", bases="elpv", **TINY)
    assert not (tmp_path / "o").exists() and leftovers(tmp_path, "o") == []
    assert main(["--bases", "elpv", "--out", str(tmp_path / "o"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "error: bases='elpv' needs the elpv-dataset package" in err
    assert "pip install elpv-dataset" in err and "Traceback" not in err


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"bases": "mvtec"}, "bases must be one of"),
        ({"bases": "btad"}, "needs btad_root"),
        ({"bases": "elpv", "btad_root": "x"}, "only used with bases='btad'"),
        ({"bases": "standin", "btad_root": "x"}, "only used with bases='btad'"),
    ],
)
def test_bad_bases(tmp_path: Path, kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        build_dataset(tmp_path / "o", **{**TINY, **kwargs})
    assert not (tmp_path / "o").exists()


def test_explicit_standin_is_the_default(tmp_path: Path) -> None:
    build_dataset(tmp_path / "a", **TINY)
    s = build_dataset(tmp_path / "b", bases="standin", **TINY)
    assert tree_hash(tmp_path / "a") == tree_hash(tmp_path / "b")
    assert load_summary(tmp_path / "a").data["parameters"]["bases"] == "standin"
    assert s.data["sources"]["bases"]["kind"] == "generated_stand_in"


def test_btad_root_implies_bases_btad(tmp_path: Path) -> None:
    root = make_btad_root(tmp_path / "btad", 6, size=16)
    kw = {"size": 16, "n_train": 3, "n_test_per_category": 2, "categories": ["scratch"]}
    build_dataset(tmp_path / "a", btad_root=root, **kw)
    s = build_dataset(tmp_path / "b", bases="btad", btad_root=root, **kw)
    assert tree_hash(tmp_path / "a") == tree_hash(tmp_path / "b")
    assert s.data["parameters"]["bases"] == "btad" and s.data["sources"]["bases"]["kind"] == "btad"
