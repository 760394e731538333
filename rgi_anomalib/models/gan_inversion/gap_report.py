"""The reconstruction gap at the end of fit: logged over the normal validation images, with a
grid image (input | G(ẑ) | residual) written next to the checkpoint."""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from anomalib.data import Batch
from torchvision.utils import make_grid, save_image

from rgi_anomalib.utils import atomic_path

from .anomaly_map import to_grey

logger = logging.getLogger(__name__)

# Validation's reconstruction grid: up to this many normal and as many defect images, one per
# row (input | G(ẑ) | residual); the residual is amplified so that a small gap stays visible.
GRID_IMAGES = 4
RESIDUAL_GAIN = 4
GRID_NAME = f"validation_grid_input_restored_residual_x{RESIDUAL_GAIN}.png"


class ReconstructionReportMixin:
    """Validation hooks of ``GanInversionModule`` (validation runs once, after the last epoch).

    Reads the batch extras its steps attach (``restored_image``, ``reconstruction_rmse``, ...).
    """

    def _reset_validation_gap(self) -> None:
        # Sums of per-image RMSE and p99 and the count of normal images, on this rank.
        self._gap_totals = torch.zeros(3, device=self.device)
        self._grid_pairs: dict[str, list[tuple[torch.Tensor, torch.Tensor]]] = {
            "normal": [],
            "defect": [],
        }

    def _collect_validation_gap(self, batch: Batch) -> None:
        """Add the gap of the batch's normal images; keep a few (input, G(ẑ)) pairs."""
        if batch.gt_label is None:  # unlabelled: no image is known to be normal
            return
        normal = batch.gt_label.reshape(-1) == 0
        rmse, p99 = batch.reconstruction_rmse[normal], batch.reconstruction_p99[normal]
        sums = torch.stack([rmse.sum(), p99.sum(), normal.sum().float()])
        self._gap_totals = self._gap_totals.to(sums.device) + sums
        for i, is_normal in enumerate(normal.tolist()):
            pairs = self._grid_pairs["normal" if is_normal else "defect"]
            if len(pairs) < GRID_IMAGES:
                image = (batch.image[i].detach() * 0.5 + 0.5).clamp(0, 1)
                pairs.append((image.cpu(), batch.restored_image[i].detach().cpu()))

    def _report_validation_gap(self) -> None:
        # Sums, not means, are reduced: ranks may hold different numbers of normal images.
        totals = self.trainer.strategy.reduce(self._gap_totals.clone(), reduce_op="sum")
        root = self._output_dir()  # on every rank (a broadcast under DDP)
        self._log_validation_gap(totals)
        self._save_reconstruction_grid(root)

    def _log_validation_gap(self, totals: torch.Tensor) -> None:
        name = self.__class__.__name__
        count = int(totals[2].item())
        if count == 0:
            if self.trainer.is_global_zero:
                logger.info(
                    "%s: no normal validation images (gt_label == 0); reconstruction gap not "
                    "logged",
                    name,
                )
            return
        rmse, p99 = totals[0] / count, totals[1] / count
        # Equal on every rank after the reduction; sync_dist keeps Lightning's DDP contract.
        self.log("reconstruction_gap_rmse", rmse, sync_dist=True)
        self.log("reconstruction_gap_p99", p99, sync_dist=True)
        if self.trainer.is_global_zero:
            logger.info(
                "%s: reconstruction gap over %d normal validation images: RMSE %.4f, p99 %.4f "
                "([0, 1] pixel units)",
                name,
                count,
                rmse.item(),
                p99.item(),
            )

    def _save_reconstruction_grid(self, root: Path) -> None:
        """Rows: normal then defect images (this rank's first ones); columns: input | G(ẑ) |
        |x − G(ẑ)| × RESIDUAL_GAIN (grey, clipped to 1)."""
        pairs = self._grid_pairs["normal"] + self._grid_pairs["defect"]
        if not self.trainer.is_global_zero or not pairs:
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
        if self.logger is not None and hasattr(self.logger.experiment, "add_image"):
            self.logger.experiment.add_image(
                f"reconstruction/{Path(GRID_NAME).stem}", grid, self.current_epoch
            )
        normal, defect = len(self._grid_pairs["normal"]), len(self._grid_pairs["defect"])
        logger.info(
            "%s: reconstruction grid (%d normal, then %d defect rows; input | G(ẑ) | "
            "|x − G(ẑ)| × %d, grey, clipped): %s",
            self.__class__.__name__,
            normal,
            defect,
            RESIDUAL_GAIN,
            path,
        )
