"""The CPU anomalib ``Engine`` of the benchmark harness and the research scripts, built in one
place: one CPU device, no logger, no model summary, no checkpoint unless asked.

On a terminal Lightning's own bar is drawn or not (``progress_bar``); when the output is not a
terminal (CI, ``nohup ... > log``) a ``plain_progress.PlainProgressBar`` writes one plain line per
step instead, so that a log shows a fit of tens of minutes as it goes.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lightning.pytorch.callbacks import Callback

from .plain_progress import PlainProgressBar


def output_is_terminal() -> bool:
    return sys.stdout.isatty()


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

    ``label`` names the run in the plain progress lines ("fit LABEL: epoch 3/40");
    ``keep_checkpoints``: let anomalib write its ``weights/lightning/model.ckpt`` (off: a DRAEM
    checkpoint alone is 1.1 GB); ``progress_bar``: draw Lightning's bar on a terminal;
    ``trainer_args``: any other Trainer argument (``max_epochs``, ``limit_val_batches`` ...).
    """
    from anomalib.engine import Engine

    callbacks = [*callbacks]
    if not keep_checkpoints:
        from anomalib.callbacks.checkpoint import ModelCheckpoint

        # anomalib's Engine adds a ModelCheckpoint unless one is given: this one saves nothing
        callbacks.append(ModelCheckpoint(save_top_k=0, save_last=False))
    plain = not output_is_terminal()
    if plain:
        callbacks.append(PlainProgressBar(label))
    # The benchmark's trainer_args may name a GPU (``accelerator: gpu``); CPU otherwise.
    accelerator = trainer_args.pop("accelerator", "cpu")
    return Engine(
        default_root_dir=str(root),
        logger=False,
        accelerator=accelerator,
        devices=1,
        enable_progress_bar=plain or progress_bar,
        enable_model_summary=False,
        callbacks=callbacks,
        **trainer_args,
    )
