"""The reconstruction gap at the end of fit (a Lightning callback): logged over the normal
validation images, with a grid image (input | G(ẑ) | residual) written next to the checkpoint."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from torchvision.utils import make_grid, save_image

from rgi_anomalib.utils import atomic_path

from .anomaly_map import to_grey

logger = logging.getLogger(__name__)

# Validation's reconstruction grid: up to this many normal and as many defect images, one per
# row (input | G(ẑ) | residual); the residual is amplified so that a small gap stays visible.
GRID_IMAGES = 4
RESIDUAL_GAIN = 4
GRID_NAME = f"validation_grid_input_restored_residual_x{RESIDUAL_GAIN}.png"


def output_dir(trainer: Trainer) -> Path:
    """Lightning's log dir, else its root dir. Call it on every rank: under DDP
    ``trainer.log_dir`` is a broadcast, which hangs when only global zero asks."""
    return Path(trainer.log_dir or trainer.default_root_dir)


class ReconstructionReport(Callback):
    """Logs ``reconstruction_gap_rmse`` / ``_p99`` (means over the normal validation images,
    all ranks) and writes ``reconstruction/GRID_NAME`` (validation runs once, after the last
    epoch). Reads the extras a GAN-inversion model's ``validation_step`` attaches to the batch
    it returns: ``restored_image``, ``reconstruction_rmse``, ``reconstruction_p99``."""

    def __init__(self) -> None:
        self._reset(torch.device("cpu"))

    def _reset(self, device: torch.device) -> None:
        # Sums of per-image RMSE and p99 and the count of normal images, on this rank.
        self._totals = torch.zeros(3, device=device)
        self._pairs: dict[str, list[tuple[torch.Tensor, torch.Tensor]]] = {
            "normal": [],
            "defect": [],
        }

    def on_validation_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._reset(pl_module.device)

    def on_validation_batch_end(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        """Add the gap of the batch's normal images; keep a few (input, G(ẑ)) pairs."""
        if outputs is None or outputs.gt_label is None:  # unlabelled: none known to be normal
            return
        normal = outputs.gt_label.reshape(-1) == 0
        rmse, p99 = outputs.reconstruction_rmse[normal], outputs.reconstruction_p99[normal]
        sums = torch.stack([rmse.sum(), p99.sum(), normal.sum().float()])
        self._totals = self._totals.to(sums.device) + sums
        for i, is_normal in enumerate(normal.tolist()):
            pairs = self._pairs["normal" if is_normal else "defect"]
            if len(pairs) < GRID_IMAGES:
                image = (outputs.image[i].detach() * 0.5 + 0.5).clamp(0, 1)
                pairs.append((image.cpu(), outputs.restored_image[i].detach().cpu()))

    def on_validation_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        # Sums, not means, are reduced: ranks may hold different numbers of normal images.
        totals = trainer.strategy.reduce(self._totals.clone(), reduce_op="sum")
        root = output_dir(trainer)  # on every rank (a broadcast under DDP)
        self._log_gap(trainer, pl_module, totals)
        self._save_grid(trainer, pl_module, root)

    def _log_gap(self, trainer: Trainer, pl_module: LightningModule, totals: torch.Tensor) -> None:
        name = pl_module.__class__.__name__
        count = int(totals[2].item())
        if count == 0:
            if trainer.is_global_zero:
                logger.info(
                    "%s: no normal validation images (gt_label == 0); reconstruction gap not "
                    "logged",
                    name,
                )
            return
        rmse, p99 = totals[0] / count, totals[1] / count
        # Equal on every rank after the reduction; sync_dist keeps Lightning's DDP contract.
        pl_module.log("reconstruction_gap_rmse", rmse, sync_dist=True)
        pl_module.log("reconstruction_gap_p99", p99, sync_dist=True)
        if trainer.is_global_zero:
            logger.info(
                "%s: reconstruction gap over %d normal validation images: RMSE %.4f, p99 %.4f "
                "([0, 1] pixel units)",
                name,
                count,
                rmse.item(),
                p99.item(),
            )

    def _save_grid(self, trainer: Trainer, pl_module: LightningModule, root: Path) -> None:
        """Rows: normal then defect images (this rank's first ones); columns: input | G(ẑ) |
        |x − G(ẑ)| × RESIDUAL_GAIN (grey, clipped to 1)."""
        pairs = self._pairs["normal"] + self._pairs["defect"]
        if not trainer.is_global_zero or not pairs:
            return
        images = torch.stack([image for image, _ in pairs])
        restored = torch.stack([restored for _, restored in pairs])
        residual = (to_grey((images - restored).abs()) * RESIDUAL_GAIN).clamp(0, 1)
        tiles = torch.stack([images, restored, residual.expand_as(images)], dim=1)
        grid = make_grid(tiles.flatten(end_dim=1), nrow=3, padding=2, pad_value=1.0)
        path = root / "reconstruction" / GRID_NAME
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            save_image(grid, tmp, format="png")
        if pl_module.logger is not None and hasattr(pl_module.logger.experiment, "add_image"):
            pl_module.logger.experiment.add_image(
                f"reconstruction/{Path(GRID_NAME).stem}", grid, pl_module.current_epoch
            )
        normal, defect = len(self._pairs["normal"]), len(self._pairs["defect"])
        logger.info(
            "%s: reconstruction grid (%d normal, then %d defect rows; input | G(ẑ) | "
            "|x − G(ẑ)| × %d, grey, clipped): %s",
            pl_module.__class__.__name__,
            normal,
            defect,
            RESIDUAL_GAIN,
            path,
        )
