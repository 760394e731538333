"""Train each model once per dataset and seed, test it on every category, score the maps."""

from __future__ import annotations

import ctypes
import dataclasses
import importlib
import inspect
import json
import logging
import math
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..utils import silence_known_warnings
from .config import BenchmarkConfig, ConfigError, DatasetSpec, ModelSpec
from .metrics import category_metrics

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
RGI_FAMILY = ("Rgi", "RRgi")
DEFAULT_FORMS = {"Draem": "Perlin anomalies (no DTD)"}


def set_malloc_mmap_threshold(threshold: int = 1 << 20) -> bool:
    """glibc: serve allocations above ``threshold`` with mmap (keeps PatchCore's memory low)."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        return bool(libc.mallopt(-3, threshold))  # M_MMAP_THRESHOLD
    except (OSError, AttributeError):
        return False


# --- models ----------------------------------------------------------------------------------
def resolve_model_class(class_path: str) -> type:
    """An anomalib model name (``rgi``, ``patchcore``) or a dotted class path."""
    from anomalib.models.components import AnomalibModule

    import rgi_anomalib.models  # noqa: F401 - registers Rgi, RRgi, AnoGan

    if "." in class_path:
        module_name, _, attr = class_path.rpartition(".")
        try:
            cls = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as exc:
            raise ConfigError(f"cannot import model class {class_path!r}: {exc}") from exc
    else:
        from anomalib.models import _get_model_class_by_name

        try:
            cls = _get_model_class_by_name(class_path)
        except Exception as exc:  # anomalib's UnknownModelError
            known = sorted(c.__name__.lower() for c in AnomalibModule.__subclasses__())
            raise ConfigError(
                f"unknown model {class_path!r}; known names: {', '.join(known)} "
                "(or give a dotted class_path)"
            ) from exc
    if not (isinstance(cls, type) and issubclass(cls, AnomalibModule)):
        raise ConfigError(f"{class_path!r} is not an anomalib AnomalibModule subclass")
    return cls


def _init_params(cls: type) -> dict[str, inspect.Parameter]:
    return dict(inspect.signature(cls.__init__).parameters)


def check_model_spec(spec: ModelSpec) -> type:
    cls = resolve_model_class(spec.class_path)
    params = _init_params(cls)
    if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        unknown = [k for k in spec.init_args if k not in params]
        if unknown:
            allowed = ", ".join(k for k in params if k != "self")
            raise ConfigError(
                f"model {spec.name!r}: unknown init_arg {unknown[0]!r} for {cls.__name__}; "
                f"allowed: {allowed}"
            )
    if spec.init_args_per_category and cls.__name__ not in (*RGI_FAMILY, "AnoGan"):
        raise ConfigError(
            f"model {spec.name!r}: init_args_per_category needs a GAN-inversion model "
            f"(rgi, rrgi, anogan), not {cls.__name__}"
        )
    if spec.init_args_per_category:
        from rgi_anomalib.models.gan_inversion.solver import InversionConfig

        fields = {f.name for f in dataclasses.fields(InversionConfig)}
        for cat, args in spec.init_args_per_category.items():
            bad = [k for k in args if k not in fields]
            if bad:
                raise ConfigError(
                    f"model {spec.name!r}: init_args_per_category.{cat}.{bad[0]} is not a solver "
                    f"setting; allowed: {', '.join(sorted(fields))}"
                )
    return cls


def build_model(cls: type, spec: ModelSpec, cfg: BenchmarkConfig, seed: int, work: Path) -> Any:
    params = _init_params(cls)
    kwargs = dict(spec.init_args)
    for key, value in (("visualizer", False), ("evaluator", False), ("post_processor", False)):
        if key in params:
            kwargs.setdefault(key, value)
    size = spec.input_size or cfg.image_size
    if "image_size" in params:
        kwargs.setdefault("image_size", size)
    elif "pre_processor" in params and "pre_processor" not in kwargs:
        kwargs["pre_processor"] = cls.configure_pre_processor(image_size=(size, size))
    if "seed" in params:
        kwargs.setdefault("seed", seed)
    if "dtd_dir" in params and not kwargs.get("dtd_dir"):
        empty = work / "empty_dtd"
        empty.mkdir(parents=True, exist_ok=True)
        kwargs["dtd_dir"] = str(empty)
    return cls(**kwargs)


def _count_images(folder: Path) -> int:
    return sum(1 for p in folder.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS)


def model_form(cls: type, spec: ModelSpec) -> str:
    """How a row's method was run, derived from its arguments (``spec.form`` overrides)."""
    if spec.form:
        return spec.form
    parts: list[str] = []
    if cls.__name__ == "Patchcore":
        backbone = str(spec.init_args.get("backbone", "wide_resnet50_2"))
        if spec.init_args.get("pre_trained") is False:
            parts.append(f"random-init {backbone}")
        elif backbone.endswith("_pypi"):
            parts.append(f"ImageNet {backbone.removesuffix('_pypi')} (PyPI wheel)")
        else:
            parts.append(f"pretrained {backbone}")
    dtd = spec.init_args.get("dtd_dir")
    if "dtd_dir" in _init_params(cls):
        n = _count_images(Path(dtd)) if dtd else 0
        parts.append(f"DTD textures, {n} images" if n else DEFAULT_FORMS.get(cls.__name__, ""))
    if "max_epochs" in spec.trainer_args and "max_epochs" not in _init_params(cls):
        parts.append(f"{spec.trainer_args['max_epochs']} epochs")
    if spec.input_size is not None:
        parts.append(f"input {spec.input_size} px")
    return ", ".join(p for p in parts if p)


# --- data ------------------------------------------------------------------------------------
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


def _images(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)


def _find_mask(folder: Path, image: Path) -> Path | None:
    for cand in (folder / f"{image.stem}_mask.png", folder / f"{image.stem}.png"):
        if cand.is_file():
            return cand
    return None


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


def prepare_dataset(
    spec: DatasetSpec, cfg: BenchmarkConfig, log: Callable[[str], None]
) -> DatasetInfo:
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
    n_cal = max(0, cfg.calibration_images)
    if n_cal >= len(train):
        raise ConfigError(
            f"dataset {spec.name!r}: calibration_images={n_cal} leaves no training images "
            f"({len(train)} in train/good)"
        )
    calibration = train[len(train) - n_cal :] if n_cal else []
    train = train[: len(train) - n_cal]
    info = DatasetInfo(spec.name, root, train, calibration, _images(root / "test" / "good"), {}, {})
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


class _ImageList:
    """A map-style dataset of ImageItems (images in [0, 1], masks bool)."""

    def __init__(
        self, images: list[Path], masks: list[Path | None] | None, label: int | list[int]
    ) -> None:
        self.images, self.masks = images, masks
        self.labels = label if isinstance(label, list) else [label] * len(images)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> Any:
        import torch
        from anomalib.data import ImageItem
        from anomalib.data.utils import read_image, read_mask

        path = self.images[index]
        image = read_image(path, as_tensor=True)
        mask_path = self.masks[index] if self.masks else None
        if mask_path is not None:
            mask = read_mask(mask_path, as_tensor=True).bool()
        else:
            mask = torch.zeros(image.shape[-2:], dtype=torch.bool)
        return ImageItem(
            image=image,
            gt_label=torch.tensor(self.labels[index]),
            gt_mask=mask,
            image_path=str(path),
            mask_path=str(mask_path) if mask_path else None,
        )


def _loader(
    images: list[Path],
    masks: list[Path | None] | None,
    label: int,
    batch_size: int,
    shuffle: bool = False,
) -> Any:
    from anomalib.data import ImageBatch
    from torch.utils.data import DataLoader

    return DataLoader(
        _ImageList(images, masks, label),
        batch_size=batch_size,
        shuffle=shuffle,
        collate_fn=ImageBatch.collate,
        num_workers=0,
    )


# --- prediction ------------------------------------------------------------------------------
@dataclass
class Predictions:
    paths: list[str] = field(default_factory=list)
    maps: list[np.ndarray] = field(default_factory=list)
    gts: list[np.ndarray] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)
    restored: list[np.ndarray | None] = field(default_factory=list)
    # Per-image reconstruction gap ([0, 1] units); NaN where the model reports none.
    gap_rmse: list[float] = field(default_factory=list)
    gap_p99: list[float] = field(default_factory=list)
    seconds: float = 0.0


def _per_image(values: Any, count: int) -> list[float]:
    """A batch attribute of shape B as floats; NaN for a model that does not set it."""
    if values is None:
        return [math.nan] * count
    return [float(v) for v in values.detach().float().cpu().reshape(-1)]


def _mean(values: list[float]) -> float:
    return float(np.mean(values)) if values else math.nan


def gap_columns(normal: Predictions, defect: Predictions) -> dict[str, float]:
    """Reconstruction gap of a row: means over the normal test images (the headline) and over
    the category's defect images (informational: it includes the defects); NaN without one."""
    return {
        "gap_rmse": _mean(normal.gap_rmse),
        "gap_p99": _mean(normal.gap_p99),
        "gap_rmse_defect": _mean(defect.gap_rmse),
    }


def _predict(
    engine: Any, model: Any, loader: Any, keep_restored: int = 0, score_size: int | None = None
) -> Predictions:
    """Predict ``loader``; maps are resized (bilinear) to ``score_size`` when given."""
    out = Predictions()
    if len(loader.dataset) == 0:
        return out
    start = time.perf_counter()
    batches = engine.predict(model=model, dataloaders=loader, return_predictions=True) or []
    out.seconds = time.perf_counter() - start
    for batch in batches:
        maps = batch.anomaly_map.detach().float().cpu()
        if maps.ndim == 3:
            maps = maps[:, None]
        if score_size is not None and maps.shape[-2:] != (score_size, score_size):
            import torch.nn.functional as F

            maps = F.interpolate(maps, size=(score_size, score_size), mode="bilinear")
        maps = maps[:, 0]
        gts = batch.gt_mask.detach().cpu().bool() if batch.gt_mask is not None else None
        if gts is not None and gts.ndim == 4:
            gts = gts[:, 0]
        scores = batch.pred_score
        restored = getattr(batch, "restored_image", None)
        # Set by models that restore the image (GAN inversion); no model is special-cased.
        out.gap_rmse += _per_image(getattr(batch, "reconstruction_rmse", None), maps.shape[0])
        out.gap_p99 += _per_image(getattr(batch, "reconstruction_p99", None), maps.shape[0])
        for i in range(maps.shape[0]):
            amap = maps[i].numpy()
            out.maps.append(amap)
            if gts is not None and gts[i].shape != maps[i].shape:
                import torch.nn.functional as F

                g = F.interpolate(gts[i][None, None].float(), size=amap.shape, mode="nearest")
                out.gts.append(g[0, 0].bool().numpy())
            else:
                out.gts.append(gts[i].numpy() if gts is not None else np.zeros(amap.shape, bool))
            out.scores.append(
                float(scores.reshape(-1)[i]) if scores is not None else float(amap.max())
            )
            keep = restored is not None and len(out.restored) < keep_restored
            out.restored.append(
                restored[i].detach().cpu().permute(1, 2, 0).numpy() if keep else None
            )
            out.paths.append(str(batch.image_path[i]))
    return out


def _predict_groups(
    engine: Any,
    model: Any,
    groups: list[tuple[list[Path], list[Path | None] | None, int]],
    batch_size: int,
    keep_restored: int,
    score_size: int | None = None,
) -> list[Predictions]:
    """One ``engine.predict`` call over several image lists (each call costs seconds of set-up);
    the wall time is shared evenly over the images."""
    images = [p for g in groups for p in g[0]]
    masks = [m for g in groups for m in (g[1] if g[1] is not None else [None] * len(g[0]))]
    labels = [g[2] for g in groups for _ in g[0]]
    loader = _loader(images, masks, labels, batch_size)
    allp = _predict(engine, model, loader, len(images), score_size)
    per_image = allp.seconds / max(len(images), 1)
    out, start = [], 0
    for g in groups:
        n = len(g[0])
        part = Predictions(
            paths=allp.paths[start : start + n],
            maps=allp.maps[start : start + n],
            gts=allp.gts[start : start + n],
            scores=allp.scores[start : start + n],
            restored=[
                r if k < keep_restored else None
                for k, r in enumerate(allp.restored[start : start + n])
            ],
            gap_rmse=allp.gap_rmse[start : start + n],
            gap_p99=allp.gap_p99[start : start + n],
            seconds=per_image * n,
        )
        out.append(part)
        start += n
    return out


# --- the run ---------------------------------------------------------------------------------
@dataclass
class RunResult:
    rows: list[dict[str, Any]]
    qualitative: dict[str, dict[str, list[dict[str, Any]]]]  # model -> category -> samples
    notes: list[str]
    seconds: float


def _quiet_lightning() -> None:
    names = ["lightning", "lightning.pytorch", "lightning.fabric", "anomalib", "pytorch_lightning"]
    names += [n for n in logging.root.manager.loggerDict if n.startswith(("lightning", "anomalib"))]
    for name in names:
        logging.getLogger(name).setLevel(logging.ERROR)
    silence_known_warnings()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")


def _checkpoint_callbacks(keep: bool) -> list[Any]:
    """anomalib's Engine adds a ModelCheckpoint writing ``weights/lightning/model.ckpt`` unless
    one is given; one that saves nothing (``save_top_k=0``) keeps disk use bounded by default."""
    if keep:
        return []
    from anomalib.callbacks.checkpoint import ModelCheckpoint

    return [ModelCheckpoint(save_top_k=0, save_last=False)]


def _set_inversion(model: Any, overrides: dict[str, Any]) -> None:
    model.model.inversion = dataclasses.replace(model.model.inversion, **overrides)


def _load_fitted(model: Any, source: Any, spec: ModelSpec) -> None:
    """Give ``model`` the fitted weights of ``source`` (``fit_from``); strict: same architecture."""
    try:
        model.load_state_dict(source.state_dict())
    except RuntimeError as err:
        first = str(err).strip().splitlines()[0]
        msg = (
            f"model {spec.name!r}: fit_from {spec.fit_from!r} needs the same architecture "
            f"(init_args such as image_size, latent_dim, widths); loading failed: {first}"
        )
        raise ConfigError(msg) from err


def run_benchmark(cfg: BenchmarkConfig, console: Any = None) -> RunResult:
    """Run every model × dataset × seed. ``cfg.run_dir`` must already exist."""
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    console = console or Console()
    log = console.log
    t0 = time.perf_counter()
    _quiet_lightning()
    classes = {m.name: check_model_spec(m) for m in cfg.models}
    datasets = [prepare_dataset(d, cfg, log) for d in cfg.datasets]
    check_per_category(cfg.models, datasets)
    notes = [n for m in cfg.models for n in m.notes] + [n for d in datasets for n in d.notes]
    for note in notes:
        console.print(f"[yellow]note:[/] {note}")

    from anomalib.engine import Engine
    from lightning.pytorch import seed_everything

    _quiet_lightning()  # again: importing lightning resets its loggers' levels

    rows: list[dict[str, Any]] = []
    qualitative: dict[str, dict[str, list[dict[str, Any]]]] = {}
    n_steps = sum(len(cfg.models) * len(cfg.seeds) * (2 + len(d.categories)) for d in datasets)
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    ) as progress:
        task = progress.add_task("benchmark", total=n_steps)
        for data in datasets:
            for seed in cfg.seeds:
                fitted: dict[str, tuple[Any, float]] = {}  # name -> (model, fit seconds)
                for spec in cfg.models:
                    cls = classes[spec.name]
                    tag = f"{spec.name} · {data.name} · seed {seed}"
                    work = cfg.run_dir / "work" / f"{spec.name}_{data.name}_seed{seed}"
                    work.mkdir(parents=True, exist_ok=True)
                    seed_everything(seed, verbose=False)
                    model = build_model(cls, spec, cfg, seed, work)
                    engine = Engine(
                        default_root_dir=str(work),
                        logger=False,
                        accelerator="cpu",
                        devices=1,
                        enable_progress_bar=False,
                        enable_model_summary=False,
                        callbacks=_checkpoint_callbacks(cfg.keep_checkpoints),
                        **spec.trainer_args,
                    )
                    progress.update(task, description=f"fit  {tag}")
                    if spec.fit_from is None:
                        start = time.perf_counter()
                        engine.fit(
                            model=model,
                            train_dataloaders=_loader(
                                data.train, None, 0, cfg.train_batch_size, True
                            ),
                        )
                        fit_seconds = time.perf_counter() - start
                    else:
                        source, fit_seconds = fitted[spec.fit_from]
                        _load_fitted(model, source, spec)
                    if any(m.fit_from == spec.name for m in cfg.models):
                        fitted[spec.name] = (model, fit_seconds)  # kept only when reused
                    progress.advance(task)
                    mask_map = (
                        spec.mask_map if spec.mask_map is not None else (cls.__name__ in RGI_FAMILY)
                    )
                    base_inversion = getattr(getattr(model, "model", None), "inversion", None)

                    progress.update(task, description=f"test {tag}")
                    form = model_form(cls, spec)
                    bs, keep = cfg.eval_batch_size, cfg.qualitative_images
                    score_size = cfg.image_size if spec.input_size else None
                    normals = [(data.normal_test, None, 0), (data.calibration, None, 0)]
                    shared = [c for c in data.categories if not spec.init_args_per_category.get(c)]
                    results = _predict_groups(
                        engine,
                        model,
                        normals + [(data.categories[c], data.masks[c], 1) for c in shared],
                        bs,
                        keep,
                        score_size,
                    )
                    normal, calib = results[0], results[1]
                    by_cat = {
                        c: (normal, calib, r) for c, r in zip(shared, results[2:], strict=True)
                    }
                    progress.advance(task)
                    for cat in data.categories:
                        progress.update(task, description=f"test {cat} {tag}")
                        overrides = spec.init_args_per_category.get(cat, {})
                        masks = data.masks[cat]
                        if overrides:
                            _set_inversion(model, overrides)
                            cat_normal, cat_calib, pred = _predict_groups(
                                engine,
                                model,
                                [*normals, (data.categories[cat], masks, 1)],
                                bs,
                                keep,
                                score_size,
                            )
                            model.model.inversion = base_inversion
                        else:
                            cat_normal, cat_calib, pred = by_cat[cat]
                        metrics = category_metrics(
                            pred.maps,
                            pred.gts if masks is not None else None,
                            cat_normal.maps,
                            cat_calib.maps,
                            pred.scores,
                            cat_normal.scores,
                            percentile=cfg.label_free_percentile,
                            mask_map=mask_map,
                        )
                        row = {
                            "model": spec.name,
                            "model_class": cls.__name__,
                            "form": form,
                            "dataset": data.name,
                            "category": cat,
                            "seed": seed,
                            "image_size": cfg.image_size,
                            "n_defect": len(pred.maps),
                            "n_normal": len(cat_normal.maps),
                            "n_calibration": len(cat_calib.maps),
                            "pixel_metrics": masks is not None,
                            **metrics,
                            **gap_columns(cat_normal, pred),
                            "fit_seconds": fit_seconds,
                            "fit_from": spec.fit_from or "",
                            "test_seconds_per_image": pred.seconds / max(len(pred.maps), 1),
                            "init_args": json.dumps({**spec.init_args, **overrides}, default=str),
                        }
                        rows.append(row)
                        if seed == cfg.seeds[0] and data is datasets[0]:
                            thr = metrics["dataset_threshold"]
                            samples = qualitative.setdefault(spec.name, {}).setdefault(cat, [])
                            for i in range(min(cfg.qualitative_images, len(pred.maps))):
                                samples.append(
                                    {
                                        "path": pred.paths[i],
                                        "gt": pred.gts[i],
                                        "map": pred.maps[i],
                                        "pred": pred.maps[i] >= thr
                                        if not math.isnan(thr)
                                        else None,
                                        "restored": pred.restored[i],
                                    }
                                )
                        dice = metrics["dice_oracle_mean"]
                        log(
                            f"{tag} {cat}: Dice oracle {dice:.3f}, "
                            f"pixel AUROC {metrics['pixel_auroc']:.3f}, "
                            f"AUPRO {metrics['aupro']:.3f}"
                        )
                        progress.advance(task)
                    shutil.rmtree(work / "empty_dtd", ignore_errors=True)
    return RunResult(rows, qualitative, notes, time.perf_counter() - t0)
