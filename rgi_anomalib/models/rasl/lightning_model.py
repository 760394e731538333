"""RASL baseline (Peng et al., 2012) as an anomalib model.

Training keeps normal images (no optimiser, like PaDiM's memory bank); at test time each batch is
stacked under the kept references and split by RASL into an aligned low-rank background and a
sparse part, whose magnitude is the anomaly map.

Example:
    >>> from anomalib.engine import Engine
    >>> from rgi_anomalib.models.rasl import Rasl
    >>> model = Rasl(working_size=64, n_reference=32, transform="similarity")
    >>> Engine().train(model=model, datamodule=datamodule)  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any, ClassVar

import torch
from anomalib import LearningType
from anomalib.data import Batch
from anomalib.metrics import Evaluator
from anomalib.models.components import AnomalibModule, MemoryBankMixin
from anomalib.post_processing import PostProcessor
from anomalib.pre_processing import PreProcessor
from anomalib.visualization import Visualizer
from lightning.pytorch.utilities.types import STEP_OUTPUT
from torch import nn
from torchvision.transforms.v2 import Resize

from rgi_anomalib.models.export import ExportRefusalMixin

from .params import RaslParams
from .torch_model import RaslModel

logger = logging.getLogger(__name__)

__all__ = ["Rasl"]

_DEFAULTS = RaslParams()  # the defaults, declared once (params.py)


class Rasl(ExportRefusalMixin, MemoryBankMixin, AnomalibModule):
    """RASL: robust alignment by sparse and low-rank decomposition, as an anomaly detector.

    Args:
        working_size: the decomposition runs at ``working_size x working_size``. The default
            pre-processor resizes to it (values stay in [0, 1]: no ImageNet normalisation, the
            decomposition wants raw intensities); with a pre-processor of another size (e.g.
            the benchmark runner's), the model resizes internally and returns maps at the
            pre-processed size.
        n_reference: at most this many normal training images are kept (seeded random choice).
        transform: ``"similarity"`` (default), ``"translation"``, ``"affine"`` or ``"none"``
            (plain RPCA, no alignment).
        lam: explicit weight of ``||E||_1``. Default ``lambda_scale / sqrt(max(m, n))`` for the
            m x n (pixels x images) data matrix.
        lambda_scale: multiplies the default lambda.
        rank: optional upper bound on the rank of the low-rank part (<= ``n_reference``).
        test_chunk: test images decomposed together with the references; ``None`` = the whole
            test batch at once, ``1`` = one image at a time.
        align_references: align the kept references among themselves at fit time.
        grayscale: decompose luminance instead of RGB.
        sigma: Gaussian smoothing of the anomaly map in pixels (0 = none); the image score is
            the maximum of the smoothed map.
        max_outer: outer (re-linearisation) iterations of RASL.
        max_inner: inner IALM iterations per outer iteration.
        inner_tol: IALM stopping tolerance (relative constraint violation; float32 cannot
            go much below 1e-6).
        svd: ``"gram"`` (default, fastest here), ``"full"`` (torch.linalg.svd) or
            ``"lowrank"`` (torch.svd_lowrank).
        precision: ``"float32"`` (default, ~2x faster) or ``"float64"`` solver arithmetic.
        num_threads: torch CPU threads while solving, restored afterwards (``None``: leave as
            is). 1 by default: the ops are small, and on a shared machine two OpenMP threads
            spin-wait (measured 29 s vs 3.3 s per image).
        seed: seed for the choice of references.
        pre_processor, post_processor, evaluator, visualizer: as in every anomalib model.
    """

    # anomalib export: ``torch`` (a pickled module that runs the same solve) works; a static
    # graph (ONNX, OpenVINO) cannot hold the decomposition. See rgi_anomalib/models/export.py.
    refused_exports: ClassVar[tuple[str, ...]] = ("onnx", "openvino")
    export_reason: ClassVar[str] = (
        "its inference is an iterative decomposition of each test batch stacked under the kept "
        "references (SVDs, alignment, data-dependent stopping), not a static graph"
    )

    def _export_advice(self) -> str:
        return (
            "use `--export_type torch` (a pickled module that runs the same solve; loading it "
            f"needs rgi_anomalib installed), or {super()._export_advice()}"
        )

    def __init__(
        self,
        working_size: int = 64,  # the default pre-processor's size (RaslModel's default: none)
        n_reference: int = _DEFAULTS.n_reference,
        transform: str = _DEFAULTS.transform,
        lam: float | None = _DEFAULTS.lam,
        lambda_scale: float = _DEFAULTS.lambda_scale,
        rank: int | None = _DEFAULTS.rank,
        test_chunk: int | None = _DEFAULTS.test_chunk,
        align_references: bool = _DEFAULTS.align_references,
        grayscale: bool = _DEFAULTS.grayscale,
        sigma: float = _DEFAULTS.sigma,
        max_outer: int = _DEFAULTS.max_outer,
        max_inner: int = _DEFAULTS.max_inner,
        inner_tol: float = _DEFAULTS.inner_tol,
        svd: str = _DEFAULTS.svd,
        precision: str = _DEFAULTS.precision,
        num_threads: int | None = _DEFAULTS.num_threads,
        seed: int = _DEFAULTS.seed,
        pre_processor: nn.Module | bool = True,
        post_processor: nn.Module | bool = True,
        evaluator: Evaluator | bool = True,
        visualizer: Visualizer | bool = True,
    ) -> None:
        # Flat arguments (anomalib's CLI and YAML see each one), gathered into the checked
        # parameters dataclass (whose defaults the signature repeats by reference).
        given = locals()
        params = RaslParams(**{f.name: given[f.name] for f in dataclasses.fields(RaslParams)})
        if working_size is None:
            msg = "working_size must be an integer >= 4, got None."
            raise ValueError(msg)
        if pre_processor is True:
            # The base class would call configure_pre_processor() without our working size.
            pre_processor = self.configure_pre_processor((working_size, working_size))
        super().__init__(
            pre_processor=pre_processor,
            post_processor=post_processor,
            evaluator=evaluator,
            visualizer=visualizer,
        )
        self.model: RaslModel = RaslModel(params)
        self._train_images: list[torch.Tensor] = []
        self._train_paths: list[str] = []

    @staticmethod
    def configure_pre_processor(image_size: tuple[int, int] | None = None) -> PreProcessor:
        """Resize only: the data loaders already give [0, 1] images, which RASL decomposes."""
        return PreProcessor(transform=Resize(image_size or (64, 64), antialias=True))

    @staticmethod
    def configure_optimizers() -> None:
        """RASL has nothing to optimise at training time."""
        return

    def training_step(self, batch: Batch, *args, **kwargs) -> torch.Tensor:
        """Collect the (pre-processed) normal images; CPU keeps device memory free."""
        del args, kwargs
        self._train_images.append(batch.image.detach().float().cpu())
        paths = getattr(batch, "image_path", None)
        if paths is not None:
            self._train_paths.extend(str(path) for path in paths)
        # Dummy loss, as in PaDiM: Lightning wants something from training_step.
        return torch.tensor(0.0, requires_grad=True, device=self.device)

    def fit(self) -> None:
        """Keep at most ``n_reference`` training images and align them (MemoryBankMixin hook)."""
        if not self._train_images:
            msg = "Rasl saw no training images; cannot fit."
            raise RuntimeError(msg)
        images = torch.cat(self._train_images)
        if len(self._train_paths) == len(images):
            # Path order first, so the seeded choice does not depend on the loader's shuffling.
            order = sorted(range(len(images)), key=self._train_paths.__getitem__)
            images = images[torch.tensor(order)]
        self._train_images, self._train_paths = [], []
        kept = min(self.model.n_reference, len(images))
        logger.info("RASL: keeping %d of %d normal images.", kept, len(images))
        # Lightning may call this under inference mode (validation start): the buffer must be a
        # normal tensor so later steps can use it freely.
        with torch.inference_mode(False):
            self.model.fit(images.clone().to(self.device))

    def validation_step(self, batch: Batch, *args, **kwargs) -> STEP_OUTPUT:
        """Anomaly maps for validation images, so the post-processor can fit thresholds."""
        del args, kwargs
        predictions = self.model(batch.image)
        return batch.update(**predictions._asdict())

    @property
    def trainer_arguments(self) -> dict[str, Any]:
        """One pass over the training data, no sanity validation, one device."""
        return {"max_epochs": 1, "val_check_interval": 1.0, "num_sanity_val_steps": 0, "devices": 1}

    @property
    def learning_type(self) -> LearningType:
        """One-class: trained on normal images only."""
        return LearningType.ONE_CLASS

    @staticmethod
    def configure_post_processor() -> PostProcessor:
        """Default one-class post-processor (F1-adaptive thresholds, min-max normalisation)."""
        return PostProcessor()
