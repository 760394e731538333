"""Benchmark datasets from anomalib datamodules, and square padding of non-square images."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from rgi_anomalib.benchmark.config import ConfigError, parse_config
from rgi_anomalib.benchmark.data import from_datamodule, resolve_datamodule_class
from rgi_anomalib.benchmark.images import Geometry, ImageListDataset, crop_to_box

SHARED_DATA = Path(__file__).resolve().parents[5] / "shared" / "data"


def _config(tmp_path: Path, dataset: dict, **extra: object) -> dict:
    return {
        "run_dir": str(tmp_path / "run"),
        "image_size": 32,
        "calibration_images": 2,
        "datasets": [dataset],
        "models": [{"name": "rasl", "init_args": {"working_size": 32, "n_reference": 4}}],
        **extra,
    }


def _folder_module(root: Path, **init: object) -> dict:
    args = {
        "root": str(root),
        "normal_dir": "train/good",
        "abnormal_dir": "test/defect",
        "mask_dir": "ground_truth/defect",
        "normal_test_dir": "test/good",
        **init,
    }
    return {"class_path": "Folder", "init_args": args}


def test_folder_datamodule_gives_the_lists_and_folder_named_categories(
    tmp_path: Path, folder_dataset_factory
) -> None:
    root = folder_dataset_factory(tmp_path / "data", n_train=6, n_test=3, n_good=2)
    entry = {"name": "f", "datamodule": _folder_module(root)}
    cfg = parse_config(_config(tmp_path, entry))
    info = from_datamodule(cfg.datasets[0], cfg)
    assert (len(info.train), len(info.calibration), len(info.normal_test)) == (4, 2, 2)
    assert list(info.categories) == ["defect"] and len(info.categories["defect"]) == 3
    assert all(m.name.endswith("_mask.png") for m in info.masks["defect"])
    entry["rename_categories"] = {"defect": "red spot"}
    cfg = parse_config(_config(tmp_path, entry))
    assert list(from_datamodule(cfg.datasets[0], cfg).categories) == ["red spot"]


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d["init_args"].update(normal_folder="x"), "unknown init_arg 'normal_folder'"),
        (lambda d: d["init_args"].update(root="/no/such/dir"), "root /no/such/dir is not a dir"),
        (lambda d: d.update(class_path="NoSuchData"), "unknown datamodule 'NoSuchData'"),
    ],
)
def test_bad_datamodule_is_one_clear_error(
    tmp_path: Path, folder_dataset_factory, edit, message: str
) -> None:
    root = folder_dataset_factory(tmp_path / "data", n_train=6, n_test=2, n_good=1)
    module = _folder_module(root)
    edit(module)
    cfg = parse_config(_config(tmp_path, {"name": "f", "datamodule": module}))
    with pytest.raises(ConfigError, match=message):
        from_datamodule(cfg.datasets[0], cfg)


def test_datamodule_cannot_be_combined_with_root(tmp_path: Path) -> None:
    entry = {"name": "f", "root": str(tmp_path), "datamodule": {"class_path": "Folder"}}
    with pytest.raises(ConfigError, match="'datamodule' cannot be combined with 'root'"):
        parse_config(_config(tmp_path, entry))


def test_known_datamodules_resolve_by_name() -> None:
    assert resolve_datamodule_class("mvtecad").__name__ == "MVTecAD"
    assert resolve_datamodule_class("Folder").__name__ == "Folder"
    assert resolve_datamodule_class("SyntheticBTAD").__name__ == "SyntheticBTAD"


def test_pad_to_square_keeps_the_aspect_and_crops_back(tmp_path: Path) -> None:
    """A tall image is padded (not squashed) to a square; maps are cropped to its box."""
    image = np.zeros((40, 16, 3), np.uint8)
    image[:, :, 0] = np.arange(40)[:, None] * 6  # a vertical ramp: squashing would show
    mask = np.zeros((40, 16), np.uint8)
    mask[10:20, 4:8] = 255
    Image.fromarray(image).save(tmp_path / "tall.png")
    Image.fromarray(mask).save(tmp_path / "tall_mask.png")
    items = ImageListDataset(
        [tmp_path / "tall.png"], [tmp_path / "tall_mask.png"], 1, Geometry("pad", size=20)
    )
    item = items[0]
    assert item.image.shape == (3, 20, 20) and item.gt_mask.shape == (20, 20)
    box = items.boxes[str(tmp_path / "tall.png")]
    assert box == (0.0, 0.3, 1.0, 0.4)  # 16 of 40 columns, centred
    cropped = crop_to_box(item.gt_mask.numpy(), box)
    assert cropped.shape == (20, 8)
    assert cropped.sum() == item.gt_mask.sum()  # the defect lies inside the original box
    # padding replicates the edge: the left margin copies the first column
    torch.testing.assert_close(item.image[:, :, 0], item.image[:, :, 5])


@pytest.mark.slow
@pytest.mark.skipif(
    not (SHARED_DATA / "kolektorsdd_half").is_dir(), reason="../shared/data not present"
)
def test_benchmark_on_real_cracks_through_a_folder_datamodule(tmp_path: Path) -> None:
    """KolektorSDD's tall photos, read by anomalib's Folder datamodule and padded to squares."""
    from rgi_anomalib.benchmark.cli import main

    kolektor = SHARED_DATA / "kolektorsdd_half"
    module = {
        "class_path": "Folder",
        "init_args": {
            "root": str(kolektor),
            "normal_dir": "train_good",
            "abnormal_dir": "defect/images",
            "mask_dir": "defect/masks",
            "normal_split_ratio": 0.1,
        },
    }
    entry = {
        "name": "kolektor",
        "datamodule": module,
        "square": "pad",
        "rename_categories": {"images": "crack"},
    }
    config = _config(tmp_path, entry, image_size=64)
    config["models"] = [{"name": "rasl", "init_args": {"working_size": 64, "n_reference": 8}}]
    path = tmp_path / "k.yaml"
    path.write_text(json.dumps(config))
    assert main(["--config", str(path)]) == 0
    rows = json.loads((tmp_path / "run" / "results.json").read_text())["rows"]
    assert [(r["category"], r["n_defect"]) for r in rows] == [("crack", 50)]
    assert 0 <= rows[0]["pixel_auroc"] <= 1 and rows[0]["n_normal"] > 0
