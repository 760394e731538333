"""Lightning wrappers: ``Rgi``, ``RRgi`` and ``AnoGan`` share one GAN trainer and one solver.

The three classes differ only in their method (``METHOD``: the solver preset they start from).
Each is a *direct* subclass of ``AnomalibModule`` because anomalib looks models up by name
through direct subclasses only; the shared behaviour lives in the ``GanInversionModule`` mixin.
Their settings are three nested groups (settings.py): ``architecture``, ``training`` and
``inversion``; README.md lists them and the flat names they replace.
"""

from __future__ import annotations

import dataclasses
import re
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, ClassVar

import torch
from anomalib import LearningType
from anomalib.data import Batch
from anomalib.models.components import AnomalibModule
from anomalib.pre_processing import PreProcessor
from lightning.pytorch import Callback
from lightning.pytorch.utilities.types import STEP_OUTPUT
from torchvision.transforms.v2 import Compose, Normalize, Resize

from rgi_anomalib.data.validate import validate_datamodule
from rgi_anomalib.models.export import ExportRefusalMixin

from .checkpoint import (
    CHECKPOINT_CLASS_KEY,
    check_architecture,
    check_encoder,
    nested_checkpoint,
    split_overrides,
)
from .flat_args import FLAT_TO_NESTED
from .gan_training import GanTrainingMixin
from .gap_report import ReconstructionReport
from .lam_calibration import LamCalibrationMixin, check_lam
from .networks import check_image_size
from .sample_grid import GanSampleGrid, sample_latents
from .settings import (
    GanArchitecture,
    GanTraining,
    InversionSettings,
    as_settings,
    resolved,
    solver_config,
)
from .solve_progress import SolveProgress
from .solver import InversionConfig, Method
from .torch_model import GanInversionModel, attach_restoration

__all__ = ["CHECKPOINT_CLASS_KEY", "AnoGan", "GanInversionModule", "RRgi", "Rgi"]


class GanInversionModule(ExportRefusalMixin, GanTrainingMixin, LamCalibrationMixin):
    """Shared implementation of the GAN-inversion anomaly models (a mixin for AnomalibModule).

    Args:
        image_size: Working resolution (power of two, 32-256); inputs are resized to it.
        architecture: The networks (``GanArchitecture``: backbone, widths, latent size, tiles).
        training: GAN training (``GanTraining``: epochs, learning rate, losses, encoder term).
        inversion: The solver's settings (``InversionSettings``); each left at None comes from
            ``preset``.
        preset: ``"fast"`` (default; docs/results/fast_inversion.md) or ``"paper"`` (Appendix G:
            2000 Adam iterations, M a free variable), of the class's ``METHOD``, both defined
            once in ``InversionConfig`` (inversion_config.py).
        seed: Seed of the solver's latent pool and of GAN training samples.
        pre_processor, post_processor, evaluator, visualizer: anomalib's components.

    The groups take their dataclass or a dict of its fields (a YAML mapping, a checkpoint).
    """

    METHOD: ClassVar[Method] = "rgi"  # which preset of InversionConfig (inversion_config.py)

    def __init__(
        self,
        image_size: int = 64,
        # Frozen dataclasses: jsonargparse makes each a group of options (--model.training.*).
        architecture: GanArchitecture = GanArchitecture(),  # noqa: B008
        training: GanTraining = GanTraining(),  # noqa: B008
        inversion: InversionSettings = InversionSettings(),  # noqa: B008
        preset: str = "fast",
        seed: int = 0,
        pre_processor: PreProcessor | bool = True,
        post_processor: torch.nn.Module | bool = True,
        evaluator: Any = True,
        visualizer: Any = True,
    ) -> None:
        check_image_size(image_size)
        arch = as_settings(architecture, GanArchitecture)
        gan_training = as_settings(training, GanTraining)
        settings = as_settings(inversion, InversionSettings)
        check_lam(settings.lam, InversionConfig.fast(self.METHOD).objective)
        config = solver_config(settings, preset, self.METHOD, arch.tile_size is not None, seed)
        if pre_processor is True:
            pre_processor = self.configure_pre_processor((image_size, image_size))
        super().__init__(
            pre_processor=pre_processor,
            post_processor=post_processor,
            evaluator=evaluator,
            visualizer=visualizer,
        )
        self.architecture, self.gan_training = arch, gan_training
        # Resolved values, so a checkpoint reproduces inference even if a preset changes;
        # plain dicts, so that a weights_only load reads them.
        self.inversion_settings = resolved(settings, config)
        self.save_hyperparameters(
            {
                **self.hparams,
                "architecture": dataclasses.asdict(arch),
                "training": dataclasses.asdict(gan_training),
                "inversion": dataclasses.asdict(self.inversion_settings),
            }
        )
        self.automatic_optimization = False
        self.model = GanInversionModel(
            image_size=image_size,
            inversion=config,
            latent_dim=arch.latent_dim,
            base_width=arch.base_width,
            max_width=arch.max_width,
            backbone=arch.backbone,
            spectral_norm=arch.spectral_norm,
            compile_generator=settings.compile_generator,
            tile_size=arch.tile_size,
            tile_stride=arch.tile_stride,
            encoder=gan_training.encoder_weight > 0,
        )
        self._sample_latents = sample_latents(arch.latent_dim, seed)
        self._reset_lam_residuals()

    def configure_callbacks(self) -> Sequence[Callback] | Callback:
        """The gap report and the sample grid, then anomalib's components."""
        own = [
            ReconstructionReport(),
            GanSampleGrid(self.gan_training.sample_every_n_epochs, self._sample_latents),
        ]
        return [*own, *super().configure_callbacks()]

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
        epochs = self.gan_training.max_epochs
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

    # The flat init_args of before the nested settings -> their nested names (for errors).
    moved_init_args: ClassVar[dict[str, str]] = {
        old: f"{group}.{new}" for old, (group, new) in FLAT_TO_NESTED.items()
    }

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
        self._collect_lam_residuals(batch)
        return batch

    def on_validation_epoch_start(self) -> None:
        self._reset_lam_residuals()

    def on_validation_epoch_end(self) -> None:
        # λ from this pass's normal residuals (the gap report logs this preset-λ pass's gap).
        self._calibrate_lam()

    def test_step(self, batch: Batch, batch_idx: int = 0, *args, **kwargs) -> STEP_OUTPUT:
        del args, kwargs
        return self._invert_step(batch, batch_idx)

    def predict_step(self, batch: Batch, batch_idx: int = 0, *args, **kwargs) -> STEP_OUTPUT:
        del args, kwargs
        return self._invert_step(batch, batch_idx)

    # --- checkpoints ---------------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # Which of Rgi / RRgi / AnoGan wrote it: `rgi-anomalib inpaint` loads the right class.
        checkpoint[CHECKPOINT_CLASS_KEY] = self.__class__.__name__
        self._save_lam(checkpoint)
        super().on_save_checkpoint(checkpoint)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        name = self.__class__.__name__
        check_architecture(name, checkpoint.get("hyper_parameters", {}), dict(self.hparams))
        has_encoder = hasattr(self.model, "encoder")
        check_encoder(name, checkpoint, has_encoder, self.gan_training.encoder_weight)
        self._load_lam(checkpoint)
        super().on_load_checkpoint(checkpoint)

    @classmethod
    def load_from_checkpoint(  # type: ignore[override]
        cls,
        checkpoint_path: str | Path | IO[bytes],
        map_location: Any = None,
        hparams_file: str | Path | None = None,
        strict: bool | None = None,
        **kwargs: Any,
    ) -> Any:
        """Lightning's, for checkpoints with flat hyper-parameters too (written before the
        nested settings), and with settings given flat (``encoder_weight=0.0``) or by group
        (``training={"max_epochs": 1}``, merged into the checkpoint's group)."""
        overrides, rest = split_overrides(kwargs)
        weights_only = kwargs.get("weights_only")
        nested = nested_checkpoint(checkpoint_path, overrides, map_location, weights_only)
        return super().load_from_checkpoint(
            checkpoint_path if nested is None else nested,
            map_location=map_location,
            hparams_file=hparams_file,
            strict=strict,
            **(rest if nested is not None else kwargs),
        )


class Rgi(GanInversionModule, AnomalibModule):
    """Robust GAN-inversion (eq. 3): the anomaly map is the learned sparse mask M̂."""

    METHOD: ClassVar[Method] = "rgi"


class RRgi(GanInversionModule, AnomalibModule):
    """Relaxed RGI (eq. 4): RGI plus per-image generator fine-tuning late in the solve."""

    METHOD: ClassVar[Method] = "rrgi"


class AnoGan(GanInversionModule, AnomalibModule):
    """AnoGAN baseline: plain l2 inversion; the anomaly map is the residual |x − G(ẑ)|."""

    METHOD: ClassVar[Method] = "anogan"
