"""Datasets of a benchmark run: which images train, calibrate and test, and their masks.

Three sources give one ``DatasetInfo``: an anomalib datamodule named in the config (``MVTecAD``,
``BTech``, ``Visa``, ``Folder``, our ``SyntheticBTAD``; its own sample lists are used), a
synthetic_btad dataset built by the harness, or any Folder-layout root (``train/good``,
``test/<category>``, ``ground_truth/<category>/<stem>_mask.png``).
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..utils import IMAGE_EXTENSIONS
from .config import BenchmarkConfig, ConfigError, DatasetSpec, ModelSpec, check_annotated
from .trusted import import_trusted


@dataclass
class DatasetInfo:
    name: str
    root: Path
    train: list[Path]
    calibration: list[Path]
    normal_test: list[Path]
    categories: dict[str, list[Path]]
    masks: dict[str, list[Path] | None]
    notes: list[str] = field(default_factory=list)
    square: str = "resize"  # how a non-square image meets a square model: resize or pad
    # square="pad": every image is first brought to this (median) height × width, so that all
    # share one padding box and their cropped maps one shape.
    pad_shape: tuple[int, int] | None = None


def median_shape(paths: list[Path], limit: int = 64) -> tuple[int, int]:
    """Median (height, width) of up to ``limit`` images (file headers only)."""
    from PIL import Image

    sizes = []
    for path in paths[:limit]:
        with Image.open(path) as image:
            sizes.append(image.size[::-1])
    heights, widths = zip(*sizes, strict=True)
    return int(sorted(heights)[len(heights) // 2]), int(sorted(widths)[len(widths) // 2])


def _images(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)


def _find_mask(folder: Path, image: Path) -> Path | None:
    for cand in (folder / f"{image.stem}_mask.png", folder / f"{image.stem}.png"):
        if cand.is_file():
            return cand
    return None


def split_calibration(
    train: list[Path], n_calibration: int, name: str
) -> tuple[list[Path], list[Path]]:
    """The last ``n_calibration`` normal training images (name order) are held out to fit the
    label-free threshold; the rest train."""
    n_cal = max(0, n_calibration)
    if n_cal >= len(train):
        raise ConfigError(
            f"dataset {name!r}: calibration_images={n_cal} leaves no training images "
            f"({len(train)} normal training images)"
        )
    return train[: len(train) - n_cal], train[len(train) - n_cal :]


def discover_categories(root: Path) -> list[str]:
    """Defect categories of a Folder-layout dataset: the folders under ``test/`` except ``good``
    (synthetic_btad datasets: in their summary's order)."""
    import synthetic_btad

    if synthetic_btad.is_dataset(root):
        return list(synthetic_btad.load_summary(root).categories)
    test = root / "test"
    if not test.is_dir():
        raise ConfigError(f"{root}: no test/ folder (expected test/good and test/<category>/)")
    names = sorted(p.name for p in test.iterdir() if p.is_dir() and p.name != "good")
    if not names:
        raise ConfigError(f"{test}: no defect category folders (test/<category>/ besides good)")
    return names


def validate_dataset(info: DatasetInfo) -> None:
    """One ConfigError naming every unreadable image or mask of the dataset and every mask of
    another size than its image (``rgi_anomalib.data.validate``), before anything trains."""
    from rgi_anomalib.data.validate import DatasetError, validate_samples

    pairs: list[tuple[Path, Path | None]] = [
        (p, None) for p in [*info.train, *info.calibration, *info.normal_test]
    ]
    for cat, images in info.categories.items():
        masks = info.masks.get(cat) or [None] * len(images)
        pairs += list(zip(images, masks, strict=True))
    try:
        validate_samples(pairs, f"dataset {info.name!r} ({info.root})")
    except DatasetError as exc:
        raise ConfigError(f"{exc}\nnothing was trained") from exc


def prepare_dataset(
    spec: DatasetSpec, cfg: BenchmarkConfig, log: Callable[[str], None]
) -> DatasetInfo:
    """The file lists of one dataset (from an anomalib datamodule, a built synthetic dataset or
    a Folder-layout root), after every file in them was read (``validate_dataset``)."""
    info = _file_lists(spec, cfg, log)
    validate_dataset(info)
    return info


def _file_lists(spec: DatasetSpec, cfg: BenchmarkConfig, log: Callable[[str], None]) -> DatasetInfo:
    if spec.datamodule is not None:
        return from_datamodule(spec, cfg)
    root = cfg.dataset_root(spec)
    if spec.build is not None:
        import synthetic_btad

        if not synthetic_btad.is_dataset(root):
            log(f"building dataset {spec.name!r} in {root}")
            synthetic_btad.build_dataset(root, **spec.build)
    if not root.is_dir():
        raise ConfigError(f"dataset {spec.name!r}: root {root} does not exist")
    train = _images(root / "train" / "good")
    if not train:
        raise ConfigError(f"dataset {spec.name!r}: no training images in {root / 'train/good'}")
    train, calibration = split_calibration(train, cfg.calibration_images, spec.name)
    info = DatasetInfo(spec.name, root, train, calibration, _images(root / "test" / "good"), {}, {})
    info.square = spec.square
    info.pad_shape = median_shape(train) if spec.square == "pad" else None
    for cat in spec.categories or cfg.categories or discover_categories(root):
        images = _images(root / "test" / cat)
        if not images:
            raise ConfigError(
                f"dataset {spec.name!r}: category {cat!r} has no images in "
                f"{root / 'test' / cat}; remove it from 'categories' or add images"
            )
        info.categories[cat] = images
        mask_dir = root / "ground_truth" / cat
        masks = [_find_mask(mask_dir, p) for p in images]
        if any(m is None for m in masks):
            missing = sum(m is None for m in masks)
            info.masks[cat] = None
            info.notes.append(
                f"{spec.name}/{cat}: {missing} of {len(images)} images have no mask in {mask_dir}; "
                "pixel metrics are impossible, only image metrics are reported"
            )
        else:
            info.masks[cat] = masks  # type: ignore[assignment]
    if not info.normal_test:
        info.notes.append(f"{spec.name}: no test/good images; image AUROC is not defined")
    return info


def check_per_category(models: list[ModelSpec], datasets: list[DatasetInfo]) -> None:
    """``init_args_per_category`` may only name categories that some dataset has."""
    known = {c for d in datasets for c in d.categories}
    for spec in models:
        unknown = [c for c in spec.init_args_per_category if c not in known]
        if unknown:
            raise ConfigError(
                f"model {spec.name!r}: init_args_per_category names {unknown[0]!r}, which no "
                f"dataset has; categories: {', '.join(sorted(known))}"
            )


def resolve_datamodule_class(class_path: str) -> type:
    """``Folder`` / ``MVTecAD`` / ... (anomalib.data, any case) or a dotted path."""
    from anomalib.data import AnomalibDataModule

    if "." in class_path:
        cls = import_trusted(class_path, "datamodule")
    else:
        import anomalib.data

        names = {n.lower(): n for n in dir(anomalib.data)}
        if class_path.lower() == "syntheticbtad":
            from rgi_anomalib.data import SyntheticBTAD

            cls = SyntheticBTAD
        elif class_path.lower() in names:
            cls = getattr(anomalib.data, names[class_path.lower()])
        else:
            raise ConfigError(
                f"unknown datamodule {class_path!r}; give an anomalib.data class (MVTecAD, BTech, "
                "Visa, Folder, ...), SyntheticBTAD or a dotted class path"
            )
    if not (isinstance(cls, type) and issubclass(cls, AnomalibDataModule)):
        raise ConfigError(f"datamodule {class_path!r} is not an anomalib AnomalibDataModule")
    return cls


def _build_datamodule(spec: DatasetSpec) -> Any:
    entry = spec.datamodule or {}
    cls = resolve_datamodule_class(str(entry["class_path"]))
    params = inspect.signature(cls.__init__).parameters
    kwargs = dict(entry.get("init_args") or {})
    where = f"dataset {spec.name!r}: datamodule {cls.__name__}"
    unknown = [k for k in kwargs if k not in params]
    if unknown:
        allowed = ", ".join(k for k in params if k != "self")
        raise ConfigError(f"{where}: unknown init_arg {unknown[0]!r}; allowed: {allowed}")
    namespace = inspect.unwrap(cls.__init__).__globals__
    for key, value in kwargs.items():
        check_annotated(value, params[key].annotation, f"{where}: init_args.{key}", namespace)
    # The harness scores the whole test split itself: no validation split taken from it, no
    # worker processes, and a fixed seed for any random normal/abnormal split.
    for key, value in (("val_split_mode", "none"), ("num_workers", 0), ("seed", 0)):
        if key in params:
            kwargs.setdefault(key, value)
    if "name" in params and params["name"].default is inspect.Parameter.empty:
        kwargs.setdefault("name", spec.name)
    root = kwargs.get("root")
    if root is not None and not Path(root).is_dir():
        # Never let anomalib's prepare_data() download: point at data on disk.
        raise ConfigError(f"{where}: root {root} is not a directory")
    try:
        datamodule = cls(**kwargs)
        datamodule.setup()
    except (TypeError, ValueError, FileNotFoundError, RuntimeError) as exc:
        raise ConfigError(f"{where} could not be built from {kwargs}: {exc}") from exc
    return datamodule


def _mask_or_none(value: Any) -> Path | None:
    if value is None or (isinstance(value, float) and math.isnan(value)) or str(value) == "":
        return None
    return Path(str(value))


def from_datamodule(spec: DatasetSpec, cfg: BenchmarkConfig) -> DatasetInfo:
    """Train, calibration, normal-test and per-category defect lists from a datamodule's samples.

    A defect image's category is the name of its folder (MVTec AD's defect types; for a
    ``Folder`` dataset the abnormal directory's name), renamed by ``rename_categories``."""
    datamodule = _build_datamodule(spec)
    train_samples = datamodule.train_data.samples
    train = sorted(Path(p) for p in train_samples.image_path[train_samples.label_index == 0])
    if not train:
        raise ConfigError(f"dataset {spec.name!r}: the datamodule has no normal training images")
    train, calibration = split_calibration(train, cfg.calibration_images, spec.name)
    test = datamodule.test_data.samples.sort_values("image_path")
    normal = [Path(p) for p in test.image_path[test.label_index == 0]]
    by_cat: dict[str, list[tuple[Path, Path | None]]] = {}
    for path, mask in zip(
        test.image_path[test.label_index == 1], test.mask_path[test.label_index == 1], strict=True
    ):
        cat = spec.rename_categories.get(Path(path).parent.name, Path(path).parent.name)
        by_cat.setdefault(cat, []).append((Path(path), _mask_or_none(mask)))
    root = Path(getattr(datamodule, "root", "") or ".")
    info = DatasetInfo(spec.name, root, train, calibration, normal, {}, {})
    info.square = spec.square
    info.pad_shape = median_shape(info.train) if spec.square == "pad" else None
    wanted = spec.categories or cfg.categories or list(by_cat)
    for cat in wanted:
        if cat not in by_cat:
            raise ConfigError(
                f"dataset {spec.name!r}: category {cat!r} has no images in the datamodule; "
                f"its categories: {', '.join(by_cat) or 'none'}"
            )
        info.categories[cat] = [p for p, _ in by_cat[cat]]
        masks = [m for _, m in by_cat[cat]]
        if any(m is None or not m.is_file() for m in masks):
            info.masks[cat] = None
            info.notes.append(
                f"{spec.name}/{cat}: not every image has a mask; only image metrics are reported"
            )
        else:
            info.masks[cat] = masks  # type: ignore[assignment]
    if not normal:
        info.notes.append(f"{spec.name}: no normal test images; image AUROC is not defined")
    return info
