"""Lightning wrappers: ``Rgi``, ``RRgi`` and ``AnoGan`` share one GAN trainer and one solver.

The three classes differ only in their method (``METHOD``: the solver preset they start from).
Each is a *direct* subclass of ``AnomalibModule`` because anomalib looks models up by name
through direct subclasses only; the shared behaviour lives in the ``GanInversionModule`` mixin.
"""

from __future__ import annotations

import dataclasses
import re
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar

import torch
from anomalib import LearningType
from anomalib.data import Batch
from anomalib.models.components import AnomalibModule
from anomalib.pre_processing import PreProcessor
from lightning.pytorch.utilities.types import STEP_OUTPUT
from torchvision.transforms.v2 import Compose, Normalize, Resize

from rgi_anomalib.data.validate import validate_datamodule
from rgi_anomalib.models.export import ExportRefusalMixin

from .augment import parse_policy
from .gan_training import GanTrainingMixin
from .gap_report import ReconstructionReportMixin
from .inversion_config import Residual
from .lam_calibration import AUTO, LamCalibrationMixin, check_lam
from .networks import Backbone, check_image_size
from .solve_progress import SolveProgress
from .solver import InversionConfig, LatentInit, LrSchedule, MaskUpdate, Method, Objective
from .torch_model import GanInversionModel, attach_restoration

PRESETS = ("fast", "paper")


def preset_config(
    preset: str, method: Method, tiles: bool = False, **changes: Any
) -> InversionConfig:
    """``InversionConfig.fast`` (for a tile generator with ``tiles``) or ``.paper`` (the
    paper's protocol, tiles or not) of ``method``, with ``changes``."""
    if preset not in PRESETS:
        msg = f"preset must be one of {', '.join(PRESETS)}, got {preset!r}"
        raise ValueError(msg)
    if preset == "fast":
        return InversionConfig.fast(method, tiles, **changes)
    return InversionConfig.paper(method, **changes)


# Hyper-parameters that fix the network shapes: a checkpoint only fits a model that agrees on them.
ARCHITECTURE_KEYS = (
    "image_size",
    "latent_dim",
    "backbone",
    "base_width",
    "max_width",
    "tile_size",
)

# Checkpoint entry naming the class that wrote it (Rgi, RRgi or AnoGan).
CHECKPOINT_CLASS_KEY = "rgi_anomalib_model"


def _check_training_args(
    image_size: int,
    tile_size: int | None,
    crops_per_image: int,
    gan_loss: str,
    max_epochs: int,
    encoder_weight: float,
    diff_augment: str = "",
) -> None:
    check_image_size(image_size)
    parse_policy(diff_augment)
    if not encoder_weight >= 0:
        msg = f"encoder_weight must be >= 0, got {encoder_weight!r}"
        raise ValueError(msg)
    if tile_size is not None:
        check_image_size(tile_size)
    if crops_per_image < 1:
        msg = f"crops_per_image must be >= 1, got {crops_per_image!r}"
        raise ValueError(msg)
    if gan_loss not in ("nonsaturating", "hinge"):
        msg = f"gan_loss must be 'nonsaturating' or 'hinge', got {gan_loss!r}"
        raise ValueError(msg)
    if max_epochs < 1:
        msg = f"max_epochs must be >= 1, got {max_epochs!r}"
        raise ValueError(msg)


class GanInversionModule(
    ExportRefusalMixin, GanTrainingMixin, ReconstructionReportMixin, LamCalibrationMixin
):
    """Shared implementation of the GAN-inversion anomaly models (a mixin for AnomalibModule).

    Args:
        image_size: Working resolution (power of two, 32-256); inputs are resized to it.
        latent_dim: Size of the latent vector z (per tile with ``tile_size``).
        backbone: ``"fastgan"`` (default: GLU blocks with skip-layer excitation, networks.py),
            ``"dcgan"`` (transposed convolutions) or ``"progan"`` (equalised lr, pixel norm,
            minibatch std). The defaults (FastGAN, ``base_width`` 16, ``latent_dim`` 64, 32 px
            tiles) are the recipe measured best on textured surfaces (docs/generator.md).
        base_width: Generator/discriminator channels at full resolution (doubling per halving).
        max_width: Upper bound on channels at low resolution.
        spectral_norm: Spectral normalisation in the discriminator (keeps training stable).
        gan_loss: ``"nonsaturating"`` (logistic) or ``"hinge"``.
        r1_gamma: Weight of the R1 gradient penalty on real images (0 disables; not with DDP).
        diff_augment: DiffAugment policy for GAN training, comma-separated operations from
            ``color``, ``translation``, ``cutout`` ("" disables): the discriminator sees real
            and generated images through the same random differentiable transformations.
        lr_gan: Adam learning rate of generator and discriminator training.
        ema_decay: Decay of the generator's exponential moving average (the inverted copy).
        max_epochs: GAN training epochs; validation (threshold fitting) runs after the last one.
        sample_every_n_epochs: Save a grid of EMA-generator samples every n epochs (0: never).
        preset: ``"fast"`` (default) or ``"paper"``: where the solver settings left at None
            come from.
        lam: Mask sparsity weight λ (None: the method's default). ``"auto"``: set after fit
            from the normal validation images so that the rule M̂ > 0 flags
            ``lam_normal_rate`` of their pixels (lam_calibration.py); stored in the checkpoint.
            Implies ``mask_update="closed_form"`` unless given.
        lam_normal_rate: Target fraction of normal pixels flagged, for ``lam="auto"``.
        iterations: Solver iterations per test batch (None: the method's default).
        lr_latent: Adam learning rate of z.
        lr_mask: Adam learning rate of M (``mask_update="adam"``).
        mask_update: ``"adam"`` (M as a free variable, the paper) or ``"closed_form"``
            (None: the method's default).
        mask_per_channel: One mask value per colour channel instead of one per pixel.
        discriminator_weight: Weight of the realism term −D(G(z)) (the authors used 0.1).
        finetune_iterations: Last iterations in which the generator weights are fine-tuned per
            image (R-RGI); None: the method's default.
        lr_finetune: Adam learning rate of the generator weights during fine-tuning
            (None: the method's default).
        finetune_params: Name prefixes of the generator weights fine-tuned per image, e.g.
            ``["to_image", "blocks.3"]``, and ``"norm_affine"``: the scale and shift of every
            normalisation layer (a per-channel modulation of each feature map, as cheap as a
            plain solve). Empty: all of them. None: all of them, and with ``tile_size`` only
            ``["norm_affine", "to_image"]`` at ``lr_finetune`` 1e-2 (per-tile copies of every
            weight cost 4-6x; the DCGAN tile generator was measured with ``["stem"]``, the
            first layer, at 1e-3; docs/generator.md).
        lr_schedule: ``"constant"`` or ``"cosine"`` (z and M learning rates decay to 0 over the
            solve); None: the method's default.
        init_candidates: Size of the seeded pool from which each image's z starts.
        init_distribution: ``"normal"`` or ``"uniform"`` (U[0,1), as the authors' code) pool.
        start_objective: The data term that picks each image's start from the pool (and E(x)):
            ``"l2"``, the best fit of every pixel, or the method's own. None: the method's own,
            and ``"l2"`` with ``tile_size`` (measured: RGI's gap 0.055 -> 0.032 on ELPV).
        early_stop_patience: Stop once the loss has not improved for this many iterations
            (0: never; None: the method's default).
        seed: Seed of the latent pool and of GAN training noise.
        compile_generator: Run the solve's generator through ``torch.compile`` (needs a C++
            compiler; compiles on the first test batch, ~5-25 s). Measured 1.6x faster per image
            at 128 px on CPU (BENCHMARKS_backends.md); off by default.
        tile_size: Train a generator of ``tile_size`` crops (power of two, >= 32) and invert
            each image as overlapping tiles, one latent and mask per tile (32 by default;
            None: whole images, e.g. for an object whose defect is a missing part: a tile
            generator is measured on textured surfaces only).
        tile_stride: Step between tiles (None: the largest step <= 3/4 of a tile that tiles the
            image exactly); seams are averaged over the overlap.
        crops_per_image: Random crops taken from each training image per step (tiling only).
        tile_finetune: R-RGI with tiles: fine-tune one generator copy per tile (``"tile"``) or
            one per image, shared by all its tiles (``"image"``: less freedom, cheaper).
        encoder_weight: Train an encoder E with the GAN and add this weight times the
            reconstruction error ‖x − G(E(x))‖² of training images (tiles) to the generator's
            loss, so that its manifold covers the training images, not only looks like them;
            E(x) is also a start candidate of the solve. 10 by default: it lowered the
            reconstruction gap at equal training time for whole-image and tile generators
            (docs/generator.md). 0: a plain GAN without an encoder, as in the paper.
        holdout_phases: 0 (off), 2 or 4: restore every pixel from a solve that did not see it
            (cells of ``holdout_cell`` px hidden in turn; that many solves per image), so that
            the latent cannot copy the defect (holdout.py).
        holdout_cell: Side of the hold-out cells in pixels.
        residual: Score this residual of x and G(ẑ) instead of the paper's map (|M̂| for RGI
            and R-RGI, |x − G(ẑ)| for AnoGAN): ``"pixel"``, or a structural one that compares
            texture rather than grain: ``"gms"``, ``"ssim_cs"``, ``"features"`` (residual.py).
            None (default) keeps the paper's map; with hold-out it is ``"pixel"``.

    Solver settings left at None come from the preset of the class's ``METHOD``: ``"fast"`` (the
    configuration measured in BENCHMARKS.md) or ``"paper"`` (Appendix G: 2000 Adam iterations,
    M a free variable), both defined once in ``InversionConfig`` (solver.py).
    """

    METHOD: ClassVar[Method] = "rgi"  # which preset of InversionConfig (solver.py)

    def __init__(
        self,
        image_size: int = 64,
        latent_dim: int = 64,
        backbone: Backbone = "fastgan",
        base_width: int = 16,
        max_width: int = 256,
        spectral_norm: bool = True,
        gan_loss: str = "nonsaturating",
        r1_gamma: float = 0.0,
        diff_augment: str = "",
        lr_gan: float = 2e-4,
        ema_decay: float = 0.999,
        max_epochs: int = 100,
        sample_every_n_epochs: int = 10,
        preset: str = "fast",
        lam: float | str | None = None,
        lam_normal_rate: float = 0.005,
        iterations: int | None = None,
        lr_latent: float = 0.1,
        lr_mask: float = 0.1,
        mask_update: MaskUpdate | None = None,
        mask_per_channel: bool = False,
        discriminator_weight: float = 0.0,
        finetune_iterations: int | None = None,
        lr_finetune: float | None = None,
        finetune_params: list[str] | tuple[str, ...] | None = None,
        lr_schedule: LrSchedule | None = None,
        init_candidates: int = 512,
        init_distribution: LatentInit = "normal",
        start_objective: Objective | None = None,
        early_stop_patience: int | None = None,
        seed: int = 0,
        compile_generator: bool = False,
        tile_size: int | None = 32,
        tile_stride: int | None = None,
        crops_per_image: int = 4,
        tile_finetune: str = "tile",
        encoder_weight: float = 10.0,
        holdout_phases: int = 0,
        holdout_cell: int = 8,
        residual: Residual | None = None,
        pre_processor: PreProcessor | bool = True,
        post_processor: torch.nn.Module | bool = True,
        evaluator: Any = True,
        visualizer: Any = True,
    ) -> None:
        # A long signature: anomalib's CLI and YAML configs need every argument by name.
        _check_training_args(
            image_size,
            tile_size,
            crops_per_image,
            gan_loss,
            max_epochs,
            encoder_weight,
            diff_augment,
        )
        check_lam(lam, InversionConfig.fast(self.METHOD).objective)
        if lam == AUTO and mask_update is None:
            # The rule λ is set for, M̂ > 0, needs a mask that is exactly 0 below 2r² = λ: the
            # closed form. An Adam-updated M hovers around 0 (|M| ~ its learning rate) and
            # flags every pixel.
            mask_update = "closed_form"
        # The preset (fast or paper) of this class's method; arguments given override it.
        given = {
            "lam": None if lam == AUTO else lam,
            "iterations": iterations,
            "mask_update": mask_update,
            "finetune_iterations": finetune_iterations,
            "lr_generator": lr_finetune,
            "finetune_params": None if finetune_params is None else tuple(finetune_params),
            "early_stop_patience": early_stop_patience,
            "lr_schedule": lr_schedule,
            "start_objective": start_objective,
        }
        inversion = preset_config(
            preset,
            self.METHOD,
            tile_size is not None,
            **{k: v for k, v in given.items() if v is not None},
            lr_latent=lr_latent,
            lr_mask=lr_mask,
            mask_per_channel=mask_per_channel,
            discriminator_weight=discriminator_weight,
            init_candidates=init_candidates,
            init_distribution=init_distribution,
            seed=seed,
            holdout_phases=holdout_phases,
            holdout_cell=holdout_cell,
            residual=residual,
        )
        if pre_processor is True:
            pre_processor = self.configure_pre_processor((image_size, image_size))
        super().__init__(
            pre_processor=pre_processor,
            post_processor=post_processor,
            evaluator=evaluator,
            visualizer=visualizer,
        )
        # Store resolved values so a checkpoint reproduces inference even if defaults change.
        self.hparams.update(
            lam=AUTO if lam == AUTO else inversion.lam,
            iterations=inversion.iterations,
            mask_update=inversion.mask_update,
            finetune_iterations=inversion.finetune_iterations,
            lr_finetune=inversion.lr_generator,
            finetune_params=list(inversion.finetune_params),
            lr_schedule=inversion.lr_schedule,
            early_stop_patience=inversion.early_stop_patience,
            start_objective=inversion.start_objective,
        )
        self.automatic_optimization = False
        self.model = GanInversionModel(
            image_size=image_size,
            inversion=inversion,
            latent_dim=latent_dim,
            base_width=base_width,
            max_width=max_width,
            backbone=backbone,
            spectral_norm=spectral_norm,
            compile_generator=compile_generator,
            tile_size=tile_size,
            tile_stride=tile_stride,
            tile_finetune=tile_finetune,
            encoder=encoder_weight > 0,
        )
        self._sample_latents = torch.randn(
            16, latent_dim, generator=torch.Generator().manual_seed(seed)
        )
        self._reset_validation_gap()
        self._reset_lam_residuals()

    # --- anomalib contract -------------------------------------------------------------------
    @classmethod
    def configure_pre_processor(cls, image_size: tuple[int, int] | None = None) -> PreProcessor:
        """Resize and map pixels to [-1, 1], the tanh generator's range."""
        image_size = image_size or (64, 64)
        return PreProcessor(
            transform=Compose(
                [Resize(image_size, antialias=True), Normalize(mean=[0.5] * 3, std=[0.5] * 3)]
            )
        )

    @property
    def trainer_arguments(self) -> dict[str, Any]:
        epochs = self.hparams.max_epochs
        return {
            "max_epochs": epochs,
            # Validation inverts images (costly): run it once, after the last epoch, to fit the
            # post-processor's thresholds.
            "check_val_every_n_epoch": epochs,
            "num_sanity_val_steps": 0,
            # The solver needs autograd at validation/test/predict time.
            "inference_mode": False,
        }

    @property
    def learning_type(self) -> LearningType:
        return LearningType.ONE_CLASS

    def on_fit_start(self) -> None:
        super().on_fit_start()
        self._expect_eval_mode_warning()
        # Every image and mask of the datamodule is read before the first step: a truncated
        # file or a mask of another size is one error naming all of them, not a failure
        # minutes (or, for masks, a whole training) later. No datamodule (bare loaders): skip.
        validate_datamodule(getattr(self.trainer, "datamodule", None))

    def _expect_eval_mode_warning(self) -> None:
        """Silence Lightning's "Found N module(s) in eval mode at the start of training" when
        those N modules are exactly the EMA generator's: it is the inverted copy, updated by
        ``update_ema`` and never by gradients, so eval mode is by design. The filter matches that
        exact message (this N), so any other module left in eval mode is still reported."""
        in_eval = [name for name, module in self.named_modules() if not module.training]
        if in_eval and all(name.startswith("model.generator_ema") for name in in_eval):
            warnings.filterwarnings(
                "ignore",
                message=re.escape(f"Found {len(in_eval)} module(s) in eval mode at the start"),
            )

    @property
    def inversion(self) -> InversionConfig:
        return self.model.inversion

    # --- export (anomalib export / Engine.export): refused, see rgi_anomalib/models/export.py --
    export_reason: ClassVar[str] = (
        "its inference is a per-image optimisation (hundreds of Adam steps on the latent z and "
        "the mask M through the generator), not a static graph"
    )

    def _export_advice(self) -> str:
        return (
            f"{super()._export_advice()}; to restore images, `rgi-anomalib inpaint "
            "--ckpt_path MODEL.ckpt --input IMAGES --output DIR`"
        )

    # --- benchmark hooks (rgi_anomalib.benchmark.models.BenchmarkHooks) ----------------------
    @property
    def anomaly_map_is_mask(self) -> bool:
        """The map is the mask M̂ in [0, 1] (RGI, R-RGI without hold-out or another residual):
        the harness also scores the rule M̂ > 0."""
        return self.model.inversion.scores_mask

    # Solver settings a benchmark may change per defect category (the paper tunes λ per type).
    per_category_settings: ClassVar[frozenset[str]] = frozenset(
        f.name for f in dataclasses.fields(InversionConfig)
    )

    @contextmanager
    def solver_settings(self, **settings: Any) -> Iterator[None]:
        """Invert with ``settings`` replacing the solver's (``InversionConfig`` fields) inside the
        block; the fitted generator is untouched."""
        base = self.model.inversion
        self.model.inversion = dataclasses.replace(base, **settings)
        try:
            yield
        finally:
            self.model.inversion = base

    # --- inversion at validation / test / predict ----------------------------------------------
    def _invert_step(self, batch: Batch, batch_idx: int) -> Batch:
        # One batch's solve is long: its progress goes beside Lightning's bar, or to the log.
        progress = SolveProgress.for_batch(self, batch_idx)
        try:
            return attach_restoration(batch, self.model(batch.image, progress=progress))
        finally:
            progress.close()

    def validation_step(self, batch: Batch, batch_idx: int = 0, *args, **kwargs) -> STEP_OUTPUT:
        del args, kwargs
        batch = self._invert_step(batch, batch_idx)
        self._collect_validation_gap(batch)
        self._collect_lam_residuals(batch)
        return batch

    def on_validation_epoch_start(self) -> None:
        self._reset_validation_gap()
        self._reset_lam_residuals()

    def on_validation_epoch_end(self) -> None:
        # λ from this pass's normal residuals; the gap logged is that of this (preset-λ) pass.
        self._calibrate_lam()
        self._report_validation_gap()

    def test_step(self, batch: Batch, batch_idx: int = 0, *args, **kwargs) -> STEP_OUTPUT:
        del args, kwargs
        return self._invert_step(batch, batch_idx)

    def predict_step(self, batch: Batch, batch_idx: int = 0, *args, **kwargs) -> STEP_OUTPUT:
        del args, kwargs
        return self._invert_step(batch, batch_idx)

    def _output_dir(self) -> Path:
        """Lightning's log dir, else its root dir. Call it on every rank: under DDP
        ``trainer.log_dir`` is a broadcast, which hangs when only global zero asks."""
        return Path(self.trainer.log_dir or self.trainer.default_root_dir)

    # --- checkpoints ---------------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # Which of Rgi / RRgi / AnoGan wrote it: `rgi-anomalib inpaint` loads the right class.
        checkpoint[CHECKPOINT_CLASS_KEY] = self.__class__.__name__
        self._save_lam(checkpoint)
        super().on_save_checkpoint(checkpoint)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        saved = checkpoint.get("hyper_parameters", {})
        mismatched = {
            key: (saved[key], self.hparams[key])
            for key in ARCHITECTURE_KEYS
            if key in saved and saved[key] != self.hparams[key]
        }
        if mismatched:
            detail = ", ".join(
                f"{key}={ckpt!r} in the checkpoint but {mine!r} here"
                for key, (ckpt, mine) in mismatched.items()
            )
            options = " ".join(f"--model.{key} {ckpt}" for key, (ckpt, _) in mismatched.items())
            msg = (
                f"{self.__class__.__name__}: checkpoint does not fit this model ({detail}). "
                f"Create the model with the checkpoint's settings, e.g. `{options}`."
            )
            raise ValueError(msg)
        self._check_encoder(checkpoint)
        self._load_lam(checkpoint)
        super().on_load_checkpoint(checkpoint)

    def _check_encoder(self, checkpoint: dict[str, Any]) -> None:
        """One clear error when the checkpoint and this model disagree on having an encoder
        (checkpoints written before ``encoder_weight`` existed have none)."""
        has_encoder = any(key.startswith("model.encoder.") for key in checkpoint["state_dict"])
        if has_encoder == hasattr(self.model, "encoder"):
            return
        weight = checkpoint.get("hyper_parameters", {}).get("encoder_weight", 0.0)
        msg = (
            f"{self.__class__.__name__}: the checkpoint was trained "
            f"{'with' if has_encoder else 'without'} an encoder, this model "
            f"{'has none' if has_encoder else 'has one'} (encoder_weight="
            f"{self.hparams.encoder_weight!r}). Create the model with the checkpoint's "
            f"setting, e.g. `--model.encoder_weight {weight}`."
        )
        raise ValueError(msg)


class Rgi(GanInversionModule, AnomalibModule):
    """Robust GAN-inversion (eq. 3): the anomaly map is the learned sparse mask M̂."""

    METHOD: ClassVar[Method] = "rgi"


class RRgi(GanInversionModule, AnomalibModule):
    """Relaxed RGI (eq. 4): RGI plus per-image generator fine-tuning late in the solve."""

    METHOD: ClassVar[Method] = "rrgi"


class AnoGan(GanInversionModule, AnomalibModule):
    """AnoGAN baseline: plain l2 inversion; the anomaly map is the residual |x − G(ẑ)|."""

    METHOD: ClassVar[Method] = "anogan"
