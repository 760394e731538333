"""rgi_anomalib.data.SyntheticBTAD: an anomalib Folder datamodule over the built dataset."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from sbtad_helpers import tree_hash

from synthetic_btad import build_dataset, load_summary

pytest.importorskip("anomalib")

from rgi_anomalib.data import SyntheticBTAD

TINY = {"image_size": 32, "n_train": 6, "n_test_per_category": 3}


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("dm") / "ds"
    build_dataset(root, size=32, n_train=6, n_test_per_category=3, seed=0)
    return root


def test_builds_on_first_use_in_an_empty_directory(tmp_path: Path, built: Path) -> None:
    root = tmp_path / "empty"
    root.mkdir()
    dm = SyntheticBTAD(root=root, seed=0, val_split_mode="none", **TINY)
    dm.prepare_data()
    dm.setup()
    assert load_summary(root).counts["total_images"] == 6 + 3 + 4 * 3
    assert tree_hash(root) == tree_hash(built)  # same arguments as the fixture: same bytes
    assert len(dm.train_data) == 6
    assert len(dm.test_data) == 3 + 4 * 3


def test_builds_loud_defects_with_fill_random(tmp_path: Path) -> None:
    dm = SyntheticBTAD(root=tmp_path / "loud", seed=0, val_split_mode="none", fill="random", **TINY)
    dm.prepare_data()
    assert "random" in load_summary(tmp_path / "loud").data["sources"]["fill"]


def test_folder_pairs_every_image_with_its_own_mask(built: Path) -> None:
    dm = SyntheticBTAD(root=built, val_split_mode="none", build_if_missing=False)
    dm.setup()
    samples = dm.test_data.samples
    assert dm.test_data.task.value == "segmentation"
    for image, mask, label in zip(samples.image_path, samples.mask_path, samples.label_index,
                                  strict=True):  # fmt: skip
        image, mask = Path(image), mask and Path(mask)
        if image.parent.name == "good":
            assert label == 0 and not mask
        else:
            assert label == 1
            assert mask.parent.name == image.parent.name  # same category folder
            assert mask.parent.parent.name == "ground_truth"
            assert mask.name == image.stem + "_mask.png"
    batch = next(iter(dm.test_dataloader()))
    assert batch.image.shape[1:] == (3, 32, 32) and batch.gt_mask.shape[1:] == (32, 32)


def test_plain_anomalib_folder_reads_the_layout(built: Path) -> None:
    from anomalib.data import Folder

    layout = load_summary(built).layout
    dm = Folder(
        name="sbtad",
        root=built,
        normal_dir=layout["normal_dir"],
        abnormal_dir=list(layout["abnormal_dirs"].values()),
        mask_dir=list(layout["mask_dirs"].values()),
        normal_test_dir=layout["normal_test_dir"],
        val_split_mode="none",
    )
    dm.setup()
    s = dm.test_data.samples
    assert len(dm.train_data) == 6 and len(s) == 15
    defects = s[s.label_index == 1]
    assert all(Path(m).parent.name == Path(i).parent.name
               for i, m in zip(defects.image_path, defects.mask_path, strict=True))  # fmt: skip


@pytest.mark.parametrize("category", ["crack", "mixed_large"])
def test_single_category(built: Path, category: str) -> None:
    dm = SyntheticBTAD(root=built, category=category, val_split_mode="none")
    dm.setup()
    dirs = {Path(p).parent.name for p in dm.test_data.samples.image_path}
    assert dirs == {category, "good"}
    assert dm.category == category
    dm2 = SyntheticBTAD(root=built, category=category, include_normal_test=False,
                        val_split_mode="none", test_split_mode="none")  # fmt: skip
    dm2.setup()
    assert {Path(p).parent.name for p in dm2.test_data.samples.image_path} == {category}


def test_default_val_split_from_test(built: Path) -> None:
    dm = SyntheticBTAD(root=built, seed=0)
    dm.setup()
    assert len(dm.val_data) + len(dm.test_data) == 15 and len(dm.val_data) > 0


def test_errors(tmp_path: Path, built: Path) -> None:
    with pytest.raises(ValueError, match="category must be"):
        SyntheticBTAD(root=built, category="dent")
    with pytest.raises(FileNotFoundError, match="build_if_missing"):
        SyntheticBTAD(root=tmp_path / "none", build_if_missing=False).setup()
    other = tmp_path / "other"
    other.mkdir()
    (other / "file.txt").write_text("x")
    with pytest.raises(FileNotFoundError, match="not a synthetic_btad dataset"):
        SyntheticBTAD(root=other).setup()
    sub = tmp_path / "sub"
    build_dataset(sub, size=32, n_train=2, n_test_per_category=1, categories=["scratch"])
    with pytest.raises(ValueError, match=r"has no category \['crack'\]"):
        SyntheticBTAD(root=sub, category="crack").setup()


def test_jsonargparse_class_path_and_yaml(tmp_path: Path) -> None:
    """What `anomalib train --data rgi_anomalib.data.SyntheticBTAD --data.root ...` does."""
    import yaml
    from anomalib.data import AnomalibDataModule
    from jsonargparse import ArgumentParser

    parser = ArgumentParser()
    parser.add_subclass_arguments(AnomalibDataModule, "data")
    cfg = parser.parse_args(["--data", "rgi_anomalib.data.SyntheticBTAD",
                             "--data.root", str(tmp_path / "a"), "--data.category", "scratch",
                             "--data.n_train", "4"])  # fmt: skip
    dm = parser.instantiate_classes(cfg).data
    assert isinstance(dm, SyntheticBTAD) and dm.category == "scratch" and dm.n_train == 4
    text = yaml.safe_dump(
        {
            "data": {
                "class_path": "rgi_anomalib.data.SyntheticBTAD",
                "init_args": {"root": str(tmp_path / "b"), "seed": 3},
            }
        }
    )
    dm = parser.instantiate_classes(parser.parse_string(text)).data
    assert isinstance(dm, SyntheticBTAD) and dm.seed == 3
    with pytest.raises(SystemExit):
        parser.parse_args(["--data", "rgi_anomalib.data.SyntheticBTAD", "--data.category", "x"])
    cfg = parser.parse_args(["--data", "rgi_anomalib.data.SyntheticBTAD", "--data.bases", "elpv"])
    assert parser.instantiate_classes(cfg).data.bases == "elpv"
    with pytest.raises(SystemExit):
        parser.parse_args(["--data", "rgi_anomalib.data.SyntheticBTAD", "--data.bases", "x"])


def test_builds_with_elpv_bases(tmp_path: Path) -> None:
    pytest.importorskip("elpv_dataset")
    dm = SyntheticBTAD(root=tmp_path / "elpv", bases="elpv", category="crack", seed=0,
                       val_split_mode="none", **TINY)  # fmt: skip
    dm.setup()
    summary = load_summary(tmp_path / "elpv")
    assert summary.data["sources"]["bases"]["kind"] == "elpv" and summary.counts["test/crack"] == 3
    assert len(dm.train_data) == 6 and len(dm.test_data) == 3 + 3


def test_register_exposes_class_in_anomalib_data() -> None:
    import anomalib.data

    import rgi_anomalib.data

    rgi_anomalib.data.register()
    assert anomalib.data.SyntheticBTAD is SyntheticBTAD


def test_packages_stay_light() -> None:
    """synthetic_btad never imports torch or the GAN models; rgi_anomalib.data is lazy."""
    code = (
        "import sys, synthetic_btad, synthetic_btad.cli, rgi_anomalib.data; "
        "bad = [m for m in ('torch', 'anomalib', 'rgi_anomalib.models') if m in sys.modules]; "
        "sys.exit(1 if bad else 0)"
    )
    env = {**os.environ, "RGI_ANOMALIB_NO_HOOK": "1"}
    assert subprocess.run([sys.executable, "-c", code], env=env, timeout=60).returncode == 0


@pytest.mark.slow
def test_engine_fit_and_test_padim(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A real anomalib Engine run (PaDiM, random backbone, 32 px) on a tiny generated dataset."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from anomalib.engine import Engine
    from anomalib.models import Padim

    dm = SyntheticBTAD(root=tmp_path / "ds", train_batch_size=8, eval_batch_size=8, **TINY)
    model = Padim(
        backbone="resnet18",
        layers=["layer1", "layer2"],
        pre_trained=False,
        visualizer=False,
        pre_processor=Padim.configure_pre_processor(image_size=(32, 32)),
    )
    engine = Engine(
        max_epochs=1, accelerator="cpu", devices=1, logger=False,
        default_root_dir=tmp_path / "results", enable_progress_bar=False,
        enable_model_summary=False,
    )  # fmt: skip
    engine.fit(model=model, datamodule=dm)
    assert load_summary(tmp_path / "ds").counts["train/good"] == 6  # built by prepare_data
    (metrics,) = engine.test(model=model, datamodule=dm)
    for key in ("image_AUROC", "pixel_AUROC"):
        assert 0.0 <= metrics[key] <= 1.0
