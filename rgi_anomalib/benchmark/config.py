"""Benchmark configuration: a small YAML schema, validated strictly (no torch import here)."""

from __future__ import annotations

import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from synthetic_btad import BuildParams

from .values import (
    ConfigError,
    check_annotated,
    check_bool,
    check_int,
    check_keys,
    check_mapping,
    check_str,
    check_trainer_args,
    is_number,
    parse_seeds,
)

TOP_KEYS = {
    "run_dir": "output directory (must not exist unless --overwrite)",
    "image_size": "model working resolution in pixels (maps and masks are scored at it)",
    "seeds": "list of seeds; each model is trained once per dataset and seed",
    "categories": "defect categories (folders under test/) of every dataset (default: each "
    "dataset's own, discovered on disk)",
    "datasets": "list of datasets",
    "models": "list of models",
    "train_batch_size": "training batch size (default 32)",
    "eval_batch_size": "test batch size (default 32)",
    "calibration_images": "train/good images held out to fit the label-free threshold (default 8)",
    "label_free_percentile": "percentile of normal-image map values used as threshold (99.5)",
    "qualitative_images": "images per category in qualitative.png (default 2)",
    "description": "free text, copied to the results",
    "keep_checkpoints": "keep each fitted model's Lightning checkpoint under run_dir/work "
    "(default false: a DRAEM checkpoint alone is 1.1 GB)",
}
MODEL_KEYS = {
    "name": "display name (unique); also the model to build when class_path is absent",
    "class_path": "anomalib model name (rgi, patchcore, ...) or dotted path to an AnomalibModule",
    "init_args": "keyword arguments of the model class",
    "init_args_per_category": "{category: {inversion field: value}} applied at test time",
    "trainer_args": "extra Lightning Trainer arguments, e.g. {max_epochs: 1} (the model's own "
    "trainer_arguments win)",
    "form": "how the method is run, printed in the tables (e.g. 'random-init backbone')",
    "mask_map": "anomaly map is a sparse mask, so also score the M̂ > 0 rule (auto for RGI)",
    "fit_from": "name of an earlier model whose fitted weights this one loads instead of "
    "training (same architecture), e.g. R-RGI and AnoGAN inverting RGI's generator",
    "backbone_weights": "a local weights file for init_args.backbone (timm key names), e.g. "
    "torchvision's wide_resnet50_2 .pth; registered as <backbone>_local and loaded strictly",
    "input_size": "resize images to this size for this model only (e.g. an ImageNet backbone "
    "on 32 px data); its maps are resized back to image_size for scoring",
}
DATASET_KEYS = {
    "name": "display name (unique)",
    "root": "existing synthetic_btad / Folder-layout dataset (built there when 'build' is set)",
    "build": "synthetic_btad.build_dataset arguments; built in <run_dir>/datasets/<name>",
    "categories": "this dataset's defect categories (default: the config's, else discovered)",
    "datamodule": "an anomalib datamodule {class_path, init_args} (MVTecAD, BTech, Visa, Folder, "
    "SyntheticBTAD or a dotted path) whose train/test samples the harness uses",
    "rename_categories": "{folder name: category name} for a datamodule's defect folders",
    "square": "how a non-square image meets a square model: 'resize' (default) or 'pad' (to a "
    "square with edge pixels; maps are cropped back before scoring)",
}
# synthetic_btad.build_dataset parameters, with their help (one definition: BuildParams).
BUILD_KEYS = BuildParams.describe()


@dataclass(frozen=True)
class ModelSpec:
    name: str
    class_path: str
    init_args: dict[str, Any] = field(default_factory=dict)
    init_args_per_category: dict[str, dict[str, Any]] = field(default_factory=dict)
    form: str = ""
    mask_map: bool | None = None
    trainer_args: dict[str, Any] = field(default_factory=dict)
    fit_from: str | None = None
    input_size: int | None = None
    notes: list[str] = field(default_factory=list)
    backbone_weights: Path | None = None


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    root: Path | None = None
    build: dict[str, Any] | None = None
    categories: list[str] | None = None  # None: the config's, else discovered
    datamodule: dict[str, Any] | None = None
    rename_categories: dict[str, str] = field(default_factory=dict)
    square: str = "resize"


@dataclass(frozen=True)
class BenchmarkConfig:
    """A benchmark YAML, validated (``load_config``); the command line's changes are applied to
    a copy (``overrides.Overrides``)."""

    run_dir: Path
    datasets: list[DatasetSpec]
    models: list[ModelSpec]
    image_size: int = 64
    seeds: list[int] = field(default_factory=lambda: [0])
    # None: every dataset's categories are discovered (the folders under test/ except good).
    categories: list[str] | None = None
    train_batch_size: int = 32
    eval_batch_size: int = 32
    calibration_images: int = 8
    label_free_percentile: float = 99.5
    qualitative_images: int = 2
    keep_checkpoints: bool = False
    description: str = ""
    source: str = ""
    raw: dict[str, Any] = field(default_factory=dict)

    def dataset_root(self, spec: DatasetSpec) -> Path:
        if spec.root is not None:
            return spec.root
        return self.run_dir / "datasets" / spec.name


def _categories(value: Any, where: str) -> list[str] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not value or not all(isinstance(c, str) for c in value):
        raise ConfigError(f"'{where}' must be a non-empty list of folder names, got {value!r}")
    if "good" in value:
        raise ConfigError(f"'{where}' lists 'good': normal test images are not a defect category")
    return list(value)


def _resolve(path: str | Path, base: Path) -> Path:
    path = Path(path).expanduser()
    return path if path.is_absolute() else base / path


def _model_notes(i: int, entry: dict, init_args: dict, base: Path) -> tuple[dict, list[str]]:
    """``init_args`` with ``dtd_dir`` resolved; a missing texture folder is a note, not fatal:
    the quick demo names the DTD copy in ../shared, which a fresh machine may lack (the row's
    form then says Perlin)."""
    if not init_args.get("dtd_dir"):
        return init_args, []
    dtd = _resolve(init_args["dtd_dir"], base)
    notes = []
    if not dtd.is_dir():
        notes.append(
            f"models[{i}] ({entry['name']}): dtd_dir {dtd} is not a directory; it runs on "
            "Perlin-noise anomalies only (point dtd_dir at a folder of DTD images)"
        )
    return {**init_args, "dtd_dir": str(dtd) if dtd.is_dir() else None}, notes


def _parse_model(i: int, entry: Any, base: Path) -> ModelSpec:
    if isinstance(entry, str):
        entry = {"name": entry}
    where = f"models[{i}]"
    check_keys(entry, MODEL_KEYS, where)
    if "name" not in entry:
        raise ConfigError(f"{where} needs a 'name'")
    check_str(entry["name"], f"{where}.name")
    for key in ("class_path", "fit_from", "backbone_weights"):
        if entry.get(key) is not None:
            check_str(entry[key], f"{where}.{key}")
    if entry.get("form") is not None:
        check_str(entry["form"], f"{where}.form", empty=True)
    if entry.get("mask_map") is not None:
        check_bool(entry["mask_map"], f"{where}.mask_map")
    init_args = entry.get("init_args") or {}
    per_cat = entry.get("init_args_per_category") or {}
    if not isinstance(init_args, dict):
        raise ConfigError(f"{where}.init_args must be a mapping")
    if not isinstance(per_cat, dict) or not all(isinstance(v, dict) for v in per_cat.values()):
        raise ConfigError(f"{where}.init_args_per_category must map category -> mapping")
    trainer_args = check_trainer_args(entry.get("trainer_args") or {}, f"{where}.trainer_args")
    init_args, notes = _model_notes(i, entry, init_args, base)
    input_size = entry.get("input_size")
    if input_size is not None:
        check_int(input_size, f"{where}.input_size", 8)
    weights = entry.get("backbone_weights")
    return ModelSpec(
        name=str(entry["name"]),
        class_path=str(entry.get("class_path") or entry["name"]),
        init_args=dict(init_args),
        init_args_per_category={k: dict(v) for k, v in per_cat.items()},
        form=str(entry.get("form") or ""),
        mask_map=entry.get("mask_map"),
        trainer_args=trainer_args,
        fit_from=str(entry["fit_from"]) if entry.get("fit_from") else None,
        input_size=input_size,
        notes=notes,
        backbone_weights=_resolve(weights, base) if weights else None,
    )


def _parse_list(raw: Any, key: str, parse: Any, base: Path) -> list[Any]:
    """``parse(i, entry, base)`` of each entry of the non-empty list ``key``; unique names."""
    if not isinstance(raw, list) or not raw:
        raise ConfigError(f"'{key}' must be a non-empty list")
    specs = [parse(i, entry, base) for i, entry in enumerate(raw)]
    names = [spec.name for spec in specs]
    if len(set(names)) != len(names):
        raise ConfigError(f"{key[:-1]} names must be unique, got {names}")
    return specs


def _parse_models(models_raw: Any, base: Path) -> list[ModelSpec]:
    models = _parse_list(models_raw, "models", _parse_model, base)
    names = [m.name for m in models]
    for i, spec in enumerate(models):
        if spec.fit_from is not None and spec.fit_from not in names[:i]:
            raise ConfigError(
                f"models[{i}] ({spec.name}): fit_from {spec.fit_from!r} must name an earlier "
                f"model; earlier models: {names[:i] or 'none'}"
            )
    return models


def _parse_datamodule(i: int, datamodule: Any, base: Path) -> dict[str, Any]:
    where = f"datasets[{i}].datamodule"
    check_keys(datamodule, {"class_path": "", "init_args": ""}, where)
    if "class_path" not in datamodule:
        raise ConfigError(f"{where} needs a 'class_path'")
    check_str(datamodule["class_path"], f"{where}.class_path")
    init = dict(check_mapping(datamodule.get("init_args") or {}, f"{where}.init_args"))
    if init.get("root"):
        init["root"] = str(_resolve(init["root"], base))
    return {"class_path": str(datamodule["class_path"]), "init_args": init}


# Least values of BuildParams' integer counts (BuildParams checks size, seed and the choices).
_BUILD_INT_MIN = {
    "n_train": 1,
    "n_test_per_category": 1,
    "large_area_threshold": 0,
    "area_reference_size": 8,
}


def _parse_build(i: int, build: Any, base: Path) -> dict[str, Any]:
    where = f"datasets[{i}].build"
    check_keys(build, BUILD_KEYS, where)
    build = dict(build)
    hints = typing.get_type_hints(BuildParams)
    for key, value in build.items():
        check_annotated(value, hints[key], f"{where}.{key}")
        if key in _BUILD_INT_MIN and value is not None:
            check_int(value, f"{where}.{key}", _BUILD_INT_MIN[key])
    for key in ("btad_root", "mvtec_root"):
        if build.get(key):
            build[key] = str(_resolve(build[key], base))
    try:  # BuildParams' own checks: size, seed, fill, categories, bases
        BuildParams(**build)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: {exc}") from exc
    return build


def _check_sources(i: int, entry: dict) -> None:
    sources = [k for k in ("root", "build", "datamodule") if k in entry]
    if not sources:
        raise ConfigError(f"datasets[{i}] ({entry['name']}) needs 'root', 'build' or 'datamodule'")
    if "datamodule" in entry and len(sources) > 1:
        raise ConfigError(
            f"datasets[{i}] ({entry['name']}): 'datamodule' cannot be combined with "
            f"{next(k for k in sources if k != 'datamodule')!r}"
        )


def _parse_dataset(i: int, entry: Any, base: Path) -> DatasetSpec:
    check_keys(entry, DATASET_KEYS, f"datasets[{i}]")
    if "name" not in entry:
        raise ConfigError(f"datasets[{i}] needs a 'name'")
    check_str(entry["name"], f"datasets[{i}].name")
    _check_sources(i, entry)
    if entry.get("root") is not None:
        check_str(entry["root"], f"datasets[{i}].root")
    square = entry.get("square", "resize")
    if square not in ("resize", "pad"):
        raise ConfigError(f"datasets[{i}].square must be 'resize' or 'pad', got {square!r}")
    rename = entry.get("rename_categories") or {}
    if not isinstance(rename, dict) or not all(isinstance(v, str) for v in rename.values()):
        raise ConfigError(f"datasets[{i}].rename_categories must map folder -> name")
    datamodule, build = entry.get("datamodule"), entry.get("build")
    return DatasetSpec(
        name=str(entry["name"]),
        root=_resolve(entry["root"], base) if entry.get("root") else None,
        build=_parse_build(i, build, base) if build is not None else None,
        categories=_categories(entry.get("categories"), f"datasets[{i}].categories"),
        datamodule=_parse_datamodule(i, datamodule, base) if datamodule is not None else None,
        rename_categories={str(k): str(v) for k, v in rename.items()},
        square=square,
    )


def _parse_datasets(datasets_raw: Any, base: Path) -> list[DatasetSpec]:
    return _parse_list(datasets_raw, "datasets", _parse_dataset, base)


def parse_config(data: Any, *, base_dir: Path | None = None, source: str = "") -> BenchmarkConfig:
    """Validate a loaded YAML mapping. Relative paths are taken relative to ``base_dir``
    (default: the current directory)."""
    base = Path.cwd() if base_dir is None else base_dir
    check_keys(data, TOP_KEYS, "the benchmark config")
    for key in ("run_dir", "datasets", "models"):
        if key not in data:
            raise ConfigError(f"missing required key {key!r} in the benchmark config")
    check_str(data["run_dir"], "run_dir")
    models = _parse_models(data["models"], base)
    datasets = _parse_datasets(data["datasets"], base)
    # Which sizes a model takes is the model's own check (a GAN generator: a power of two in
    # [32, 256]), run for every model before anything is trained (models.check_model_spec).
    image_size = check_int(data.get("image_size", 64), "image_size", 8)
    pct = data.get("label_free_percentile", 99.5)
    if not is_number(pct) or not 0 < pct <= 100:
        raise ConfigError(f"label_free_percentile must be a number in (0, 100], got {pct!r}")
    description = data.get("description")
    if description is not None:
        check_str(description, "description", empty=True)
    return BenchmarkConfig(
        run_dir=_resolve(data["run_dir"], base),
        datasets=datasets,
        models=models,
        image_size=image_size,
        seeds=parse_seeds(data.get("seeds", [0])),
        categories=_categories(data.get("categories"), "categories"),
        train_batch_size=check_int(data.get("train_batch_size", 32), "train_batch_size", 1),
        eval_batch_size=check_int(data.get("eval_batch_size", 32), "eval_batch_size", 1),
        # 0: the label-free threshold is fitted on the normal test images instead
        calibration_images=check_int(data.get("calibration_images", 8), "calibration_images", 0),
        label_free_percentile=float(pct),
        qualitative_images=check_int(data.get("qualitative_images", 2), "qualitative_images", 0),
        keep_checkpoints=check_bool(data.get("keep_checkpoints", False), "keep_checkpoints"),
        description=description or "",
        source=source,
        raw=data,
    )


def load_config(path: str | Path) -> BenchmarkConfig:
    """Read and validate a YAML config; relative paths are relative to the current directory."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    return parse_config(data, source=str(path))
