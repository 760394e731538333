"""Bad dataset files are named in one error before anything is trained (issue 32)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from model_helpers import nested
from PIL import Image

from rgi_anomalib.data.validate import (
    MAX_LISTED,
    DatasetError,
    validate_datamodule,
    validate_samples,
)

SHARED_DATA = Path(__file__).resolve().parents[5] / "shared" / "data"


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _small_mask(path: Path, size: int = 16) -> None:
    Image.fromarray(np.zeros((size, size), dtype=np.uint8)).save(path)


def test_every_bad_file_is_named_once(tmp_path: Path, folder_dataset_factory) -> None:
    root = folder_dataset_factory(tmp_path / "d", n_train=6, n_test=3, n_good=1)
    train = sorted((root / "train/good").iterdir())
    images = sorted((root / "test/defect").iterdir())
    masks = sorted((root / "ground_truth/defect").iterdir())
    pairs = [(p, None) for p in train] + list(zip(images, masks, strict=True))
    validate_samples(pairs)  # a whole dataset passes
    _truncate(train[1])
    train[2].write_bytes(b"not an image")
    _small_mask(masks[0])
    missing = tmp_path / "d" / "train" / "good" / "gone.png"
    with pytest.raises(DatasetError) as info:
        validate_samples([*pairs, (missing, None), (train[1], None)], "dataset 'd'")
    text = str(info.value)
    assert isinstance(info.value, ValueError)
    assert text.startswith("4 bad file(s) in dataset 'd'")
    assert f"{train[1]}: cannot be read (image file is truncated" in text
    assert f"{train[2]}: cannot be read" in text
    assert f"{masks[0]}: mask is 16x16 (width x height), its image {images[0]} is 32x32" in text
    assert f"{missing}: cannot be read (no such file)" in text
    assert text.count(str(train[1])) == 1  # listed twice, read and reported once
    assert len(info.value.problems) == 4


def test_a_mask_that_cannot_be_read_and_a_long_list(tmp_path: Path) -> None:
    good = tmp_path / "good.png"
    Image.fromarray(np.zeros((8, 8, 3), dtype=np.uint8)).save(good)
    broken_mask = tmp_path / "mask.png"
    broken_mask.write_bytes(b"")
    with pytest.raises(DatasetError, match=r"mask of good\.png cannot be read"):
        validate_samples([(good, broken_mask)])
    bad = [(tmp_path / f"missing{i:02d}.png", None) for i in range(MAX_LISTED + 5)]
    with pytest.raises(DatasetError) as info:
        validate_samples(bad)
    lines = str(info.value).splitlines()
    assert len(lines) == 1 + MAX_LISTED + 1 and lines[-1] == "  ... and 5 more"


def test_samples_dataframe_with_missing_masks(tmp_path: Path) -> None:
    pd = pytest.importorskip("pandas")
    image = tmp_path / "a.png"
    Image.fromarray(np.zeros((8, 12, 3), dtype=np.uint8)).save(image)
    mask = tmp_path / "a_mask.png"
    Image.fromarray(np.zeros((8, 12), dtype=np.uint8)).save(mask)
    frame = pd.DataFrame({"image_path": [str(image)] * 3, "mask_path": ["", float("nan"), mask]})
    validate_samples(frame)  # empty and NaN: no mask; (12 x 8) mask of a (12 x 8) image
    _small_mask(mask, 8)
    with pytest.raises(DatasetError, match=r"mask is 8x8 .* is 12x8"):
        validate_samples(frame)


def test_a_changed_file_is_read_again(tmp_path: Path) -> None:
    image = tmp_path / "a.png"
    Image.fromarray(np.zeros((32, 32, 3), dtype=np.uint8)).save(image)
    validate_samples([(image, None)])
    _truncate(image)  # another size and time: not the cached result
    with pytest.raises(DatasetError, match="truncated"):
        validate_samples([(image, None)])


def test_datamodule_check(tiny_datamodule, tmp_path: Path, folder_dataset_factory) -> None:
    validate_datamodule(None)  # a model fitted on bare dataloaders
    tiny_datamodule.setup()
    validate_datamodule(tiny_datamodule)
    from anomalib.data import Folder

    root = folder_dataset_factory(tmp_path / "d", n_train=4, n_test=2, n_good=1)
    _truncate(root / "train/good/001.png")
    _small_mask(root / "ground_truth/defect/001_mask.png")
    module = Folder(
        name="bad",
        root=root,
        normal_dir="train/good",
        abnormal_dir="test/defect",
        mask_dir="ground_truth/defect",
        normal_test_dir="test/good",
        num_workers=0,
    )
    module.setup()
    with pytest.raises(DatasetError) as info:
        validate_datamodule(module)
    with pytest.raises(DatasetError, match="1 bad file"):  # the training images only
        validate_datamodule(module, subsets=("train_data",))
    assert str(info.value).startswith(f"2 bad file(s) in datamodule bad ({root})")
    assert "train/good/001.png: cannot be read" in str(info.value)
    assert "ground_truth/defect/001_mask.png: mask is 16x16" in str(info.value)


def test_synthetic_btad_setup_names_every_bad_file(tmp_path: Path) -> None:
    from rgi_anomalib.data import SyntheticBTAD
    from synthetic_btad import build_dataset

    root = tmp_path / "ds"
    build_dataset(root, size=32, n_train=4, n_test_per_category=2, seed=0)
    _truncate(root / "train/good/0002.png")
    _small_mask(root / "ground_truth/crack/0001_mask.png")
    module = SyntheticBTAD(root=root, val_split_mode="none", build_if_missing=False)
    with pytest.raises(DatasetError) as info:
        module.setup()
    text = str(info.value)
    assert "train/good/0002.png: cannot be read (image file is truncated" in text
    assert "ground_truth/crack/0001_mask.png: mask is 16x16 (width x height), its image" in text


# --- the benchmark command: one error, exit 2, no run directory left -------------------------


def _config(tmp_path: Path, dataset: dict) -> Path:
    config = {
        "run_dir": str(tmp_path / "run"),
        "image_size": 32,
        "calibration_images": 2,
        "datasets": [dataset],
        "models": [{"name": "rgi", "init_args": {"training": {"max_epochs": 1}}}],
    }
    path = tmp_path / "bench.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _main(config: Path, capsys: pytest.CaptureFixture) -> tuple[int, str]:
    from rgi_anomalib.benchmark.cli import main

    code = main(["--config", str(config)])
    return code, capsys.readouterr().err


def test_benchmark_root_dataset(
    tmp_path: Path, folder_dataset_factory, capsys: pytest.CaptureFixture
) -> None:
    root = folder_dataset_factory(tmp_path / "d", n_train=6, n_test=2, n_good=1)
    _truncate(root / "train/good/002.png")
    _small_mask(root / "ground_truth/defect/001_mask.png")
    code, err = _main(_config(tmp_path, {"name": "tiny", "root": str(root)}), capsys)
    assert code == 2
    assert err.startswith("rgi-anomalib benchmark: error: 2 bad file(s) in dataset 'tiny'")
    assert "train/good/002.png: cannot be read (image file is truncated" in err
    assert "ground_truth/defect/001_mask.png: mask is 16x16" in err
    assert not (tmp_path / "run").exists()


def test_benchmark_datamodule_dataset(
    tmp_path: Path, folder_dataset_factory, capsys: pytest.CaptureFixture
) -> None:
    root = folder_dataset_factory(tmp_path / "d", n_train=6, n_test=2, n_good=1)
    (root / "test/good/000.png").write_bytes(b"GIF89a")
    module = {
        "class_path": "Folder",
        "init_args": {
            "root": str(root),
            "normal_dir": "train/good",
            "abnormal_dir": "test/defect",
            "mask_dir": "ground_truth/defect",
            "normal_test_dir": "test/good",
        },
    }
    code, err = _main(_config(tmp_path, {"name": "dm", "datamodule": module}), capsys)
    assert code == 2 and "1 bad file(s) in dataset 'dm'" in err
    assert "test/good/000.png: cannot be read" in err
    assert not (tmp_path / "run").exists()


def test_benchmark_built_dataset_is_checked_and_its_run_dir_removed(
    tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A built dataset is checked right after it is built, before training; the run directory
    this command created (and the dataset in it) goes."""
    import synthetic_btad

    build = synthetic_btad.build_dataset

    def corrupt_build(root: Path, *args: object, **kwargs: object) -> object:
        summary = build(root, *args, **kwargs)
        _truncate(Path(root) / "train/good/0003.png")
        return summary

    monkeypatch.setattr(synthetic_btad, "build_dataset", corrupt_build)
    dataset = {"name": "b", "build": {"size": 32, "n_train": 6, "n_test_per_category": 2}}
    code, err = _main(_config(tmp_path, dataset), capsys)
    assert code == 2, err
    assert "1 bad file(s) in dataset 'b'" in err and "train/good/0003.png" in err
    assert f"(removed {tmp_path / 'run'}: nothing had run in it)" in err
    assert not (tmp_path / "run").exists()


@pytest.mark.skipif(not (SHARED_DATA / "INDEX.md").is_file(), reason="no ../shared/data")
def test_real_datasets_pass(tmp_path: Path) -> None:
    """The real data the shipped configs read: every image whole, every mask its image's size."""
    pairs = []
    for name in ("mvtec_ad_grid_otx", "mvtec_ad_ind_knn_ad", "kolektorsdd_half"):
        folder = SHARED_DATA / name
        if not folder.is_dir():
            continue
        pairs += [(p, None) for p in sorted(folder.rglob("*.png")) if "mask" not in p.name]
    if not pairs:
        pytest.skip("none of the real datasets is there")
    validate_samples(pairs)


def test_a_gan_inversion_fit_checks_its_datamodule_before_the_first_step(
    tmp_path: Path, folder_dataset_factory
) -> None:
    from anomalib.data import Folder
    from anomalib.engine import Engine

    from rgi_anomalib.models import Rgi

    root = folder_dataset_factory(tmp_path / "data", n_train=8, n_test=2, n_good=2)
    (root / "train/good/001.png").write_bytes((root / "train/good/001.png").read_bytes()[:60])
    mask = root / "ground_truth/defect/000_mask.png"
    Image.new("L", (16, 16)).save(mask)
    datamodule = Folder(
        name="bad", root=root, normal_dir="train/good", abnormal_dir="test/defect",
        mask_dir="ground_truth/defect", normal_test_dir="test/good", num_workers=0,
    )  # fmt: skip
    model = Rgi(**nested(image_size=32, max_epochs=1, sample_every_n_epochs=0, visualizer=False))
    engine = Engine(default_root_dir=tmp_path / "run", logger=False, accelerator="cpu")
    with pytest.raises(DatasetError) as err:
        engine.fit(model=model, datamodule=datamodule)
    assert len(err.value.problems) == 2
    assert "001.png" in str(err.value) and "000_mask.png" in str(err.value)
    assert model.global_step == 0
