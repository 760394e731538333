"""The CPU anomalib ``Engine`` of the benchmark harness and the research scripts, built in one
place: one CPU device, no logger, no model summary, no checkpoint unless asked.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lightning.pytorch.callbacks import Callback


def cpu_engine(
    root: str | Path,
    *,
    label: str = "",
    keep_checkpoints: bool = False,
    progress_bar: bool = False,
    callbacks: Sequence[Callback] = (),
    **trainer_args: Any,
) -> Any:
    """An anomalib ``Engine`` on one CPU writing under ``root``.

    ``label`` names the run (for its progress lines, to come);
    ``keep_checkpoints``: let anomalib write its ``weights/lightning/model.ckpt`` (off: a DRAEM
    checkpoint alone is 1.1 GB); ``progress_bar``: draw Lightning's bar;
    ``trainer_args``: any other Trainer argument (``max_epochs``, ``limit_val_batches`` ...).
    """
    from anomalib.engine import Engine

    callbacks = [*callbacks]
    if not keep_checkpoints:
        from anomalib.callbacks.checkpoint import ModelCheckpoint

        # anomalib's Engine adds a ModelCheckpoint unless one is given: this one saves nothing
        callbacks.append(ModelCheckpoint(save_top_k=0, save_last=False))
    return Engine(
        default_root_dir=str(root),
        logger=False,
        accelerator="cpu",
        devices=1,
        enable_progress_bar=progress_bar,
        enable_model_summary=False,
        callbacks=callbacks,
        **trainer_args,
    )
