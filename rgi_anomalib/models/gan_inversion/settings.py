"""The nested settings of ``Rgi``, ``RRgi`` and ``AnoGan``: the GAN's architecture, its training,
and the inversion (the solver's settings over a preset).

Plain dataclasses: jsonargparse turns each into a group of the CLI and of a YAML config
(``--model.training.max_epochs 2``, ``init_args: {inversion: {lam: 0.1}}``), and a checkpoint
stores each as a dict (``dataclasses.asdict``), which ``weights_only`` loading accepts.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from .augment import parse_policy
from .inversion_config import (
    FinetunePer,
    InversionConfig,
    LatentInit,
    LrSchedule,
    MaskUpdate,
    Method,
    Objective,
    Residual,
)
from .lam_calibration import AUTO
from .networks import Backbone, check_image_size

PRESETS = ("fast", "paper")


@dataclass(frozen=True)
class GanArchitecture:
    """The networks' shapes: a checkpoint fits only a model that agrees on them.

    Args:
        backbone: ``"fastgan"`` (GLU blocks with skip-layer excitation), ``"dcgan"``
            (transposed convolutions) or ``"progan"`` (equalised lr, pixel norm, minibatch std).
        latent_dim: Size of the latent vector z (per tile with ``tile_size``).
        base_width: Generator/discriminator channels at full resolution (doubling per halving).
        max_width: Upper bound on channels at low resolution.
        spectral_norm: Spectral normalisation in the discriminator (keeps training stable).
        tile_size: Train a generator of ``tile_size`` crops (power of two, >= 32) and invert
            each image as overlapping tiles, one latent and mask per tile. None: whole images
            (e.g. an object whose defect is a missing part).
        tile_stride: Step between tiles (None: the largest step <= 3/4 of a tile that tiles the
            image exactly); seams are averaged over the overlap.
    """

    backbone: Backbone = "fastgan"
    latent_dim: int = 64
    base_width: int = 16
    max_width: int = 256
    spectral_norm: bool = True
    tile_size: int | None = 32
    tile_stride: int | None = None

    def __post_init__(self) -> None:
        if self.tile_size is not None:
            check_image_size(self.tile_size)


@dataclass(frozen=True)
class GanTraining:
    """How the GAN is trained (``training_step``; the model sets the Trainer's ``max_epochs``).

    Args:
        max_epochs: GAN training epochs; validation (threshold fitting) runs after the last one.
        lr_gan: Adam learning rate of generator (and encoder) and discriminator.
        ema_decay: Decay of the generator's exponential moving average (the inverted copy).
        gan_loss: ``"nonsaturating"`` (logistic) or ``"hinge"``.
        r1_gamma: Weight of the R1 gradient penalty on real images (0 disables; not with DDP).
        diff_augment: DiffAugment policy, comma-separated operations from ``color``,
            ``translation``, ``cutout`` ("" disables): D sees real and generated images through
            the same random differentiable transformations.
        crops_per_image: Random crops taken from each training image per step (tiles only).
        encoder_weight: Train an encoder E with the GAN and add this weight times
            ‖x − G(E(x))‖² of training images (tiles) to the generator's loss, so that its
            manifold covers the training images; E(x) is also a start candidate of the solve.
            0: a plain GAN without an encoder, as in the paper (and no encoder in the network).
        sample_every_n_epochs: Save a grid of EMA-generator samples every n epochs (0: never).
    """

    max_epochs: int = 100
    lr_gan: float = 2e-4
    ema_decay: float = 0.999
    gan_loss: str = "nonsaturating"
    r1_gamma: float = 0.0
    diff_augment: str = ""
    crops_per_image: int = 4
    encoder_weight: float = 10.0
    sample_every_n_epochs: int = 10

    def __post_init__(self) -> None:
        parse_policy(self.diff_augment)
        if not self.encoder_weight >= 0:
            msg = f"encoder_weight must be >= 0, got {self.encoder_weight!r}"
            raise ValueError(msg)
        if self.crops_per_image < 1:
            msg = f"crops_per_image must be >= 1, got {self.crops_per_image!r}"
            raise ValueError(msg)
        if self.gan_loss not in ("nonsaturating", "hinge"):
            msg = f"gan_loss must be 'nonsaturating' or 'hinge', got {self.gan_loss!r}"
            raise ValueError(msg)
        if self.max_epochs < 1:
            msg = f"max_epochs must be >= 1, got {self.max_epochs!r}"
            raise ValueError(msg)


@dataclass(frozen=True)
class InversionSettings:
    """The solver's settings: each one left at None comes from the model's preset
    (``InversionConfig.fast`` or ``.paper`` of its method; README.md lists the values). The
    fields are those of ``InversionConfig`` (same names, same meaning, see inversion_config.py)
    except ``objective`` (the model class fixes it) and ``seed`` (the model's own ``seed``),
    plus three that are not the solve's: ``lam`` may be ``"auto"``, ``lam_normal_rate`` and
    ``compile_generator``.

    Args:
        lam: Mask sparsity weight λ. ``"auto"``: set after fit from the normal validation
            images so that M̂ > 0 flags ``lam_normal_rate`` of their pixels
            (lam_calibration.py); implies ``mask_update="closed_form"`` unless given.
        lam_normal_rate: Target fraction of normal pixels flagged, for ``lam="auto"``.
        compile_generator: Run the solve's generator through ``torch.compile`` (needs a C++
            compiler; compiles on the first test batch).
    """

    lam: float | Literal["auto"] | None = None
    lam_normal_rate: float = 0.005
    compile_generator: bool = False
    iterations: int | None = None
    lr_latent: float | None = None
    lr_mask: float | None = None
    mask_update: MaskUpdate | None = None
    mask_per_channel: bool | None = None
    discriminator_weight: float | None = None
    finetune_iterations: int | None = None
    lr_generator: float | None = None
    freeze_mask_during_finetune: bool | None = None
    finetune_params: list[str] | None = None
    finetune_per: FinetunePer | None = None
    init_candidates: int | None = None
    init_distribution: LatentInit | None = None
    start_objective: Objective | None = None
    early_stop_patience: int | None = None
    early_stop_tol: float | None = None
    lr_schedule: LrSchedule | None = None
    holdout_phases: int | None = None
    holdout_cell: int | None = None
    residual: Residual | None = None
    robust_residual: Residual | None = None

    def __post_init__(self) -> None:
        if isinstance(self.lam, str) and self.lam != AUTO:
            msg = f"lam must be a positive number, None or 'auto', got {self.lam!r}"
            raise ValueError(msg)


# InversionSettings fields that are not InversionConfig's (the others map one to one).
NOT_SOLVER_FIELDS = ("lam_normal_rate", "compile_generator")


def as_settings(value: Any, cls: type) -> Any:
    """``value`` as a ``cls`` dataclass: already one, a mapping of its fields (a checkpoint's
    hyper-parameters, a config) or None (the defaults)."""
    if value is None:
        return cls()
    if isinstance(value, cls):
        return value
    if isinstance(value, Mapping):  # a dict, or omegaconf's DictConfig (anomalib's pipelines)
        unknown = sorted(set(value) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            msg = f"{cls.__name__} has no setting {unknown[0]!r}"
            raise ValueError(msg)
        plain = {
            k: list(v) if isinstance(v, Sequence) and not isinstance(v, str) else v
            for k, v in value.items()
        }
        return cls(**plain)
    msg = f"expected {cls.__name__} or a dict of its fields, got {type(value).__name__}"
    raise TypeError(msg)


def solver_config(
    inversion: InversionSettings, preset: str, method: Method, tiles: bool, seed: int
) -> InversionConfig:
    """The preset (``fast``, for a tile generator with ``tiles``, or ``paper``) of ``method``
    with every setting ``inversion`` gives."""
    if preset not in PRESETS:
        msg = f"preset must be one of {', '.join(PRESETS)}, got {preset!r}"
        raise ValueError(msg)
    given = {
        f.name: getattr(inversion, f.name)
        for f in dataclasses.fields(inversion)
        if f.name not in NOT_SOLVER_FIELDS and getattr(inversion, f.name) is not None
    }
    if inversion.lam == AUTO:
        del given["lam"]  # the preset's λ until calibrated
        # The rule λ is set for, M̂ > 0, needs a mask that is exactly 0 below 2r² = λ: the
        # closed form. An Adam-updated M hovers around 0 (|M| ~ its learning rate) and flags
        # every pixel.
        given.setdefault("mask_update", "closed_form")
    if "finetune_params" in given:
        given["finetune_params"] = tuple(given["finetune_params"])
    if preset == "fast":
        return InversionConfig.fast(method, tiles, seed=seed, **given)
    return InversionConfig.paper(method, seed=seed, **given)


def resolved(inversion: InversionSettings, config: InversionConfig) -> InversionSettings:
    """``inversion`` with every solver setting filled in from ``config``, for the checkpoint:
    it then reproduces inference even if a preset changes."""
    values = {
        f.name: getattr(config, f.name)
        for f in dataclasses.fields(InversionSettings)
        if f.name not in NOT_SOLVER_FIELDS and f.name != "lam"
    }
    values["finetune_params"] = list(config.finetune_params)
    lam = AUTO if inversion.lam == AUTO else config.lam
    return dataclasses.replace(inversion, lam=lam, **values)
