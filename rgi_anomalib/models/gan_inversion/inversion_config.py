"""The settings of one inversion solve, with the two presets (fast and paper) defined once."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

Objective = Literal["l2", "l1", "rgi"]
MaskUpdate = Literal["adam", "closed_form"]
LatentInit = Literal["normal", "uniform"]
LrSchedule = Literal["constant", "cosine"]
Method = Literal["rgi", "rrgi", "anogan"]  # the presets' names
Residual = Literal["pixel", "gms", "ssim_cs", "features"]
RESIDUALS: tuple[str, ...] = ("pixel", "gms", "ssim_cs", "features")
# The residuals the robust data term can be computed on (differentiable and cheap).
ROBUST_RESIDUALS: tuple[str, ...] = ("pixel", "gms", "ssim_cs")
FinetunePer = Literal["tile", "image"]
FINETUNE_PER: tuple[str, ...] = ("tile", "image")


@dataclass(frozen=True)
class InversionConfig:
    """Hyper-parameters of one solve. Defaults are the paper's RGI protocol (Appendix G); the
    Lightning models' defaults are the fast configuration (docs/results/fast_inversion.md)."""

    objective: Objective = "rgi"
    lam: float = 0.4
    iterations: int = 2000
    lr_latent: float = 0.1
    lr_mask: float = 0.1
    mask_update: MaskUpdate = "adam"
    mask_per_channel: bool = False
    discriminator_weight: float = 0.0
    finetune_iterations: int = 0
    lr_generator: float = 1e-5
    freeze_mask_during_finetune: bool = False
    init_candidates: int = 512
    init_distribution: LatentInit = "normal"
    # Which data term picks each image's start (pool latent or E(x)): None, the solve's own;
    # "l2", the one that fits every pixel best, so a robust solve does not start from a
    # latent that already gave up on a structure it could fit (a busbar at the wrong height).
    start_objective: Objective | None = None
    early_stop_patience: int = 0
    early_stop_tol: float = 1e-4
    lr_schedule: LrSchedule = "constant"
    finetune_params: tuple[str, ...] = ()
    # With a tile generator, R-RGI fine-tunes one generator copy per tile, or one per image
    # shared by its tiles ("image": less freedom, cheaper); whole images: ignored.
    finetune_per: FinetunePer = "tile"
    seed: int = 0
    # How the solve is scored (issue: restore what lies under the defect). holdout_phases 2 or
    # 4: every pixel is restored by a solve that hid it (cells of holdout_cell px; that many
    # solves). residual: the map is that residual of x and G(ẑ) (residual.py) instead of |M̂|
    # (RGI, R-RGI) or |x − G(ẑ)| (AnoGAN); None keeps the paper's map (with hold-out: "pixel").
    holdout_phases: int = 0
    holdout_cell: int = 8
    residual: Residual | None = None
    # The residual whose square the mask M weighs in the RGI data term: "pixel" (the paper's
    # x − G(z)) or a structural one ("gms", "ssim_cs": residual.py), one map shared by the
    # channels, so the mask pays for structure G cannot draw rather than for sensor grain.
    robust_residual: Residual = "pixel"

    def __post_init__(self) -> None:
        errors = []
        if self.objective not in ("l2", "l1", "rgi"):
            errors.append(f"objective must be 'l2', 'l1' or 'rgi', got {self.objective!r}")
        if self.objective == "rgi" and not self.lam > 0:
            errors.append(f"lam (the mask sparsity weight λ) must be > 0, got {self.lam!r}")
        if not (isinstance(self.iterations, int) and self.iterations > 0):
            errors.append(f"iterations must be a positive integer, got {self.iterations!r}")
        elif not 0 <= self.finetune_iterations <= self.iterations:
            errors.append(
                f"finetune_iterations must be in [0, iterations={self.iterations}], "
                f"got {self.finetune_iterations!r}"
            )
        for name in ("lr_latent", "lr_mask", "lr_generator"):
            if not getattr(self, name) > 0:
                errors.append(f"{name} must be > 0, got {getattr(self, name)!r}")
        if self.mask_update not in ("adam", "closed_form"):
            errors.append(f"mask_update must be 'adam' or 'closed_form', got {self.mask_update!r}")
        if self.init_candidates < 1:
            errors.append(f"init_candidates must be >= 1, got {self.init_candidates!r}")
        if self.init_distribution not in ("normal", "uniform"):
            errors.append(
                f"init_distribution must be 'normal' or 'uniform', got {self.init_distribution!r}"
            )
        if self.start_objective not in (None, "l2", "l1", "rgi"):
            errors.append(
                f"start_objective must be None, 'l2', 'l1' or 'rgi', got {self.start_objective!r}"
            )
        if self.lr_schedule not in ("constant", "cosine"):
            errors.append(f"lr_schedule must be 'constant' or 'cosine', got {self.lr_schedule!r}")
        if isinstance(self.finetune_params, str):
            errors.append(
                "finetune_params must be a tuple of parameter-name prefixes, "
                f"got the string {self.finetune_params!r}"
            )
        if self.finetune_per not in FINETUNE_PER:
            errors.append(f"finetune_per must be one of {FINETUNE_PER}, got {self.finetune_per!r}")
        if self.holdout_phases not in (0, 2, 4):
            errors.append(f"holdout_phases must be 0 (off), 2 or 4, got {self.holdout_phases!r}")
        if not (isinstance(self.holdout_cell, int) and self.holdout_cell >= 1):
            errors.append(f"holdout_cell must be a positive integer, got {self.holdout_cell!r}")
        if self.residual not in (None, *RESIDUALS):
            errors.append(
                f"residual must be None or one of {', '.join(RESIDUALS)}, got {self.residual!r}"
            )
        if self.robust_residual not in ROBUST_RESIDUALS:
            errors.append(
                f"robust_residual must be one of {', '.join(ROBUST_RESIDUALS)}, "
                f"got {self.robust_residual!r}"
            )
        elif self.robust_residual != "pixel" and self.mask_per_channel:
            errors.append("robust_residual other than 'pixel' needs mask_per_channel=False")
        if self.discriminator_weight < 0:
            errors.append(f"discriminator_weight must be >= 0, got {self.discriminator_weight!r}")
        if errors:
            raise ValueError("; ".join(errors))

    # --- presets: the one definition of each protocol ----------------------------------------
    @classmethod
    def paper(cls, method: Method, **changes: Any) -> InversionConfig:
        """The paper's protocol (Appendix G): 2000 Adam iterations with M a free variable;
        R-RGI fine-tunes all generator weights for the last 1500 (lr 1e-5) with λ 0.12."""
        base = {"rgi": {}, "rrgi": _PAPER_RRGI, "anogan": {"objective": "l2"}}[method]
        return cls(**{**base, **changes})

    @classmethod
    def fast(cls, method: Method, tiles: bool = False, **changes: Any) -> InversionConfig:
        """The models' defaults, measured against the paper protocol in
        docs/results/inversion_speed.md (read in docs/results/fast_inversion.md): 50 iterations,
        cosine learning rate; R-RGI fine-tunes for the last 20 (lr 2e-4) with λ 0.12. With
        ``tiles`` (a tile generator), 30 iterations, RGI and R-RGI start from the best l2 fit and
        R-RGI fine-tunes only the normalisation layers' scales and shifts and the output layer per
        tile (lr 1e-2, still over the last 20)."""
        base = {"rgi": {}, "rrgi": _FAST_RRGI, "anogan": {"objective": "l2"}}[method]
        if tiles:
            base = {**base, **_FAST_TILES.get(method, {})}
        return cls(**{**_FAST, **base, **changes})

    @property
    def uses_mask(self) -> bool:
        return self.objective == "rgi"

    @property
    def scores_mask(self) -> bool:
        """Whether the anomaly map is |M̂| (the paper's RGI map), a sparse mask."""
        return self.uses_mask and self.residual is None and not self.holdout_phases


_PAPER_RRGI: dict[str, Any] = {"lam": 0.12, "finetune_iterations": 1500, "lr_generator": 1e-5}
_FAST: dict[str, Any] = {"iterations": 50, "lr_schedule": "cosine"}
_FAST_RRGI: dict[str, Any] = {"lam": 0.12, "finetune_iterations": 20, "lr_generator": 2e-4}
# Tile generators (measurements: README.md, "Results"). A tile that starts from the latent with
# the best robust fit has often given up on a structure it could fit (a busbar at the wrong
# height), and the robust solve never brings it back: start from the best l2 fit. Per tile, a
# copy of every generator weight is costly on a CPU (vmap turns per-tile convolution weights into
# grouped convolutions): R-RGI fine-tunes only the normalisation layers' scales and shifts
# (elementwise per-tile weights) and the 3-channel output layer. Fewer iterations: a tile
# generator starts close enough that the last ones gain little.
_FAST_TILES: dict[str, dict[str, Any]] = {
    "anogan": {"iterations": 30},
    "rgi": {"start_objective": "l2", "iterations": 30},
    "rrgi": {
        "start_objective": "l2",
        "iterations": 30,
        "finetune_params": ("norm_affine", "to_image"),
        "lr_generator": 1e-2,
    },
}
