"""build_dataset: layout, manifest/summary, determinism, real data, bad input, atomic output."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sbtad_helpers import leftovers, make_btad_root, save_mask, tree_hash

from synthetic_btad import (
    ImageReadError,
    LayoutError,
    MaskError,
    NotEnoughDataError,
    OutputExistsError,
    build_dataset,
    is_dataset,
    load_summary,
)

TINY = {"size": 32, "n_train": 4, "n_test_per_category": 3}


def _rows(root: Path) -> list[dict[str, str]]:
    with (root / "manifest.csv").open(newline="") as fh:
        return list(csv.DictReader(fh))


def _px(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path))


def test_generated_layout_manifest_and_fill(tmp_path: Path) -> None:
    notices: list[str] = []
    out = tmp_path / "ds"
    summary = build_dataset(out, seed=3, notice=notices.append, **TINY)
    assert len(notices) == 2 and all("generated" in n for n in notices)
    assert is_dataset(out) and load_summary(out).data == summary.data
    assert summary.stand_ins == {"bases": True, "masks": True}
    assert summary.counts == {
        "train/good": 4, "test/good": 3, "test/crack": 3, "test/irregular": 3,
        "test/scratch": 3, "test/mixed_large": 3, "total_images": 19,
    }  # fmt: skip
    assert sorted(p.name for p in out.iterdir()) == [
        "ground_truth", "manifest.csv", "summary.json", "test", "train",
    ]  # fmt: skip
    assert leftovers(tmp_path, "ds") == []
    rows = _rows(out)
    assert len(rows) == 19
    assert {r["base_kind"] for r in rows} == {"generated_stand_in"}
    for r in rows:
        img = _px(out / r["file"])
        assert img.shape == (32, 32, 3) and img.dtype == np.uint8
        if r["category"] == "good":
            assert r["mask_file"] == ""
            continue
        assert r["mask_kind"] == "generated_stand_in" and r["mask_source"].startswith("generated:")
        mask = _px(out / r["mask_file"])
        assert mask.ndim == 2 and set(np.unique(mask)) == {0, 255}
        m = mask > 0
        assert int(r["area"]) == m.sum() and int(r["area_ref"]) > 0
        # Defect image = its clean base (test/good/<same index>) outside M, the fill colour inside.
        base = _px(out / "test" / "good" / Path(r["file"]).name)
        np.testing.assert_array_equal(img[~m], base[~m])
        colour = [int(r["fill_r"]), int(r["fill_g"]), int(r["fill_b"])]
        assert (img[m] == colour).all()
        np.testing.assert_array_equal(colour, np.rint(base[m].mean(axis=0)))
        assert Path(r["mask_file"]).stem == Path(r["file"]).stem + "_mask"
    text = (out / "summary.json").read_text() + (out / "manifest.csv").read_text()
    assert str(tmp_path) not in text  # no absolute (temporary) paths when no roots are given
    data = json.loads((out / "summary.json").read_text())
    assert data["parameters"]["grouping"]["reference_size"] == 128
    assert data["sources"]["bases"]["count_rule"] == "generated: as requested"
    assert data["layout"]["abnormal_dirs"]["crack"] == "test/crack"


def test_determinism_by_hashing_the_whole_output(tmp_path: Path) -> None:
    a = build_dataset(tmp_path / "a", seed=11, **TINY)
    b = build_dataset(tmp_path / "b", seed=11, **TINY)
    build_dataset(tmp_path / "c", seed=12, **TINY)
    assert a.data == b.data
    assert tree_hash(tmp_path / "a") == tree_hash(tmp_path / "b")
    assert tree_hash(tmp_path / "a") != tree_hash(tmp_path / "c")


def test_random_fill_keeps_masks_and_paints_one_colour(tmp_path: Path) -> None:
    build_dataset(tmp_path / "mean", seed=3, **TINY)
    summary = build_dataset(tmp_path / "loud", seed=3, fill="random", **TINY)
    assert "random" in summary.data["sources"]["fill"]
    for rel in ("train/good/0001.png", "test/good/0001.png", "ground_truth/crack/0001_mask.png"):
        assert (tmp_path / "mean" / rel).read_bytes() == (tmp_path / "loud" / rel).read_bytes()
    mask = _px(tmp_path / "loud/ground_truth/crack/0001_mask.png") > 0
    loud, clean = (
        _px(tmp_path / "loud/test/crack/0001.png"),
        _px(tmp_path / "loud/test/good/0001.png"),
    )
    assert len(np.unique(loud[mask].reshape(-1, 3), axis=0)) == 1
    assert np.array_equal(loud[~mask], clean[~mask])
    assert (tmp_path / "mean/test/crack/0001.png").read_bytes() != (
        tmp_path / "loud/test/crack/0001.png"
    ).read_bytes()


def test_category_subset_keeps_other_images_unchanged(tmp_path: Path) -> None:
    build_dataset(tmp_path / "all", seed=1, **TINY)
    build_dataset(tmp_path / "two", seed=1, categories=["scratch", "crack"], **TINY)
    assert sorted(p.name for p in (tmp_path / "two" / "test").iterdir()) == [
        "crack", "good", "scratch",
    ]  # fmt: skip
    for rel in ("test/scratch/0002.png", "ground_truth/crack/0001_mask.png", "train/good/0003.png"):
        assert (tmp_path / "all" / rel).read_bytes() == (tmp_path / "two" / rel).read_bytes()


def test_real_bases_and_real_masks(tmp_path: Path, real_btad_root: Path,
                                   real_mvtec_root: Path) -> None:  # fmt: skip
    notices: list[str] = []
    kw = {"btad_root": real_btad_root, "mvtec_root": real_mvtec_root, "size": 32, "seed": 5}
    s = build_dataset(tmp_path / "r1", notice=notices.append, **kw)
    # 24 photos < 1000: the paper's 90/10 split is used, and said so.
    assert (s.data["parameters"]["n_train"], s.data["parameters"]["n_test_per_category"]) == (22, 2)
    assert "90/10" in s.data["sources"]["bases"]["count_rule"]
    assert any("22 train, 2 defect bases" in n for n in notices)
    assert s.stand_ins == {"bases": False, "masks": False}
    rows = _rows(tmp_path / "r1")
    assert {r["base_kind"] for r in rows} == {"btad"}
    bases = {r["base_source"] for r in rows}
    assert all(b.startswith("03/train/ok/") for b in bases)
    assert len({r["base_source"] for r in rows if r["split"] == "train"}) == 22
    assert any(b.endswith(".bmp") for b in bases)
    defect_rows = [r for r in rows if r["mask_file"]]
    assert {r["mask_kind"] for r in defect_rows} == {"mvtec"}
    for r in defect_rows:
        assert (real_mvtec_root / r["mask_source"]).is_file()
        assert (int(r["area_ref"]) > 400) == (r["category"] == "mixed_large")
    # train/good holds the resized photo itself.
    first = next(r for r in rows if r["split"] == "train")
    photo = Image.open(real_btad_root / first["base_source"]).convert("RGB")
    expected = np.asarray(photo.resize((32, 32), Image.Resampling.LANCZOS))
    np.testing.assert_array_equal(_px(tmp_path / "r1" / first["file"]), expected)
    per_cat = s.data["sources"]["masks"]["per_category"]
    assert per_cat["crack"]["defect_types"] == {"grid/broken": 2}
    build_dataset(tmp_path / "r2", **kw)
    assert tree_hash(tmp_path / "r1") == tree_hash(tmp_path / "r2")


def test_paper_split_when_enough_images(tmp_path: Path) -> None:
    root = make_btad_root(tmp_path / "btad", 12, size=8)
    s = build_dataset(tmp_path / "o", btad_root=root, size=8, n_train=9, n_test_per_category=3,
                      categories=["irregular"])  # fmt: skip
    assert s.counts["train/good"] == 9 and s.counts["test/irregular"] == 3
    assert s.data["sources"]["bases"]["pool_size"] == 12


# ----------------------------------------------------------------- bad input, atomic output


def test_btad_root_missing_or_wrong_layout(tmp_path: Path) -> None:
    with pytest.raises(LayoutError, match=r"does not exist; expected <root>/<product>/train/ok"):
        build_dataset(tmp_path / "o", btad_root=tmp_path / "missing", **TINY)
    product_dir = make_btad_root(tmp_path / "b", 3) / "03"
    with pytest.raises(LayoutError, match=r"no 03/train/ok folder.*pass its parent"):
        build_dataset(tmp_path / "o", btad_root=product_dir, **TINY)
    with pytest.raises(LayoutError, match=r"product '02'"):
        build_dataset(tmp_path / "o", btad_root=tmp_path / "b", btad_product="02", **TINY)
    assert not (tmp_path / "o").exists() and leftovers(tmp_path, "o") == []


def test_fewer_base_images_than_requested(tmp_path: Path) -> None:
    root = make_btad_root(tmp_path / "b", 5, size=8)
    with pytest.raises(NotEnoughDataError, match=r"fewer base images than requested.*6 > 5"):
        build_dataset(tmp_path / "o", btad_root=root, size=8, n_train=4, n_test_per_category=2)
    with pytest.raises(NotEnoughDataError, match="fewer base images"):
        build_dataset(tmp_path / "o", btad_root=root, size=8, n_test_per_category=5)
    empty = tmp_path / "e" / "03" / "train" / "ok"
    empty.mkdir(parents=True)
    with pytest.raises(NotEnoughDataError, match="contains no images"):
        build_dataset(tmp_path / "o", btad_root=tmp_path / "e", size=8)
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("kind", ["truncated", "not_an_image"])
def test_unreadable_base_image_leaves_nothing(tmp_path: Path, kind: str) -> None:
    root = make_btad_root(tmp_path / "b", 6, size=24)
    bad = root / "03" / "train" / "ok" / "0004.bmp"
    if kind == "truncated":
        bad.write_bytes(bad.read_bytes()[:200])
    else:
        bad.write_bytes(b"this is not a bitmap")
    with pytest.raises(ImageReadError, match=r"0004\.bmp"):
        build_dataset(tmp_path / "o", btad_root=root, size=16, n_train=4, n_test_per_category=2)
    assert not (tmp_path / "o").exists() and leftovers(tmp_path, "o") == []


def test_category_without_masks_after_grouping(tmp_path: Path) -> None:
    root = tmp_path / "mvtec"
    arr = np.zeros((64, 64), np.uint8)
    arr[:5, :5] = 255
    save_mask(root / "wood" / "ground_truth" / "hole" / "000_mask.png", arr)
    with pytest.raises(NotEnoughDataError, match=r"no masks in categories \['crack', 'scratch', "):
        build_dataset(tmp_path / "o", mvtec_root=root, **TINY)
    s = build_dataset(tmp_path / "o", mvtec_root=root, categories=["irregular"], **TINY)
    assert s.counts["test/irregular"] == 3


def test_bad_mask_in_mvtec_root(tmp_path: Path) -> None:
    root = tmp_path / "mvtec"
    save_mask(root / "cat" / "ground_truth" / "cut" / "000_mask.png",
              np.zeros((8, 8, 3), np.uint8))  # fmt: skip
    with pytest.raises(MaskError, match="single-channel"):
        build_dataset(tmp_path / "o", mvtec_root=root, **TINY)
    assert not (tmp_path / "o").exists()


def test_existing_output_and_overwrite(tmp_path: Path) -> None:
    out = tmp_path / "ds"
    out.mkdir()  # an empty directory is fine
    build_dataset(out, seed=1, **TINY)
    before = tree_hash(out)
    with pytest.raises(OutputExistsError, match="already exists"):
        build_dataset(out, seed=2, **TINY)
    assert tree_hash(out) == before
    build_dataset(out, seed=2, overwrite=True, **TINY)
    assert tree_hash(out) != before and load_summary(out).data["parameters"]["seed"] == 2
    assert leftovers(tmp_path, "ds") == []
    user = tmp_path / "mydata"
    user.mkdir()
    (user / "precious.txt").write_text("keep")
    with pytest.raises(OutputExistsError, match="not a synthetic_btad dataset"):
        build_dataset(user, overwrite=True, **TINY)
    assert (user / "precious.txt").read_text() == "keep"


def test_interrupted_run_leaves_no_dataset(tmp_path: Path) -> None:
    def boom(done: int, total: int) -> None:
        if done == 5:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        build_dataset(tmp_path / "ds", progress=boom, **TINY)
    assert not (tmp_path / "ds").exists() and leftovers(tmp_path, "ds") == []
    # An interrupted overwrite keeps the old dataset intact.
    build_dataset(tmp_path / "ds", seed=1, **TINY)
    before = tree_hash(tmp_path / "ds")
    with pytest.raises(KeyboardInterrupt):
        build_dataset(tmp_path / "ds", seed=2, overwrite=True, progress=boom, **TINY)
    assert tree_hash(tmp_path / "ds") == before and leftovers(tmp_path, "ds") == []


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"size": 4}, "size"),
        ({"seed": -1}, "seed"),
        ({"categories": ["dent"]}, "categories"),
        ({"n_train": 0}, "n_train"),
        ({"fill": "blue"}, "fill must be one of"),
    ],
)
def test_bad_parameters(tmp_path: Path, kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        build_dataset(tmp_path / "o", **{**TINY, **kwargs})
    assert not (tmp_path / "o").exists()
