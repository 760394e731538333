"""Lightning's progress as plain lines, for output that is not a terminal (CI, ``nohup ... > log``).

Lightning's bars redraw one line in place: written to a file they are either off (the harness
turns them off) or a stream of control characters. This bar writes whole lines instead:
"fit rgi · elpv_s0 · seed 0: epoch 3/40 (95 s)".
"""

from __future__ import annotations

import time
from typing import Any

from lightning.pytorch.callbacks import ProgressBar
from lightning.pytorch.trainer.states import TrainerFn


class PlainProgressBar(ProgressBar):
    """Lightning's progress as plain lines on stdout, for output that is not a terminal.

    A fit writes a line at most every ``max(1, max_epochs // 20)`` epochs (and at its last), plus
    one within an epoch every ``every_s`` seconds; validation, test and predict write one line
    per tenth of their batches (a batch of GAN inversion is a solve of seconds to minutes)."""

    def __init__(self, label: str = "", every_s: float = 30.0) -> None:
        super().__init__()
        self.label = label
        self.every_s = every_s
        self._enabled = True
        self._start = self._last = time.monotonic()

    @property
    def is_enabled(self) -> bool:
        return self._enabled

    def disable(self) -> None:
        self._enabled = False

    def enable(self) -> None:
        self._enabled = True

    def _line(self, stage: str, text: str) -> None:
        if not self._enabled:
            return
        self._last = time.monotonic()
        elapsed = self._last - self._start
        name = f"{stage} {self.label}" if self.label else stage
        print(f"{name}: {text} ({elapsed:.0f} s)", flush=True)

    def _restart(self) -> None:
        self._start = self._last = time.monotonic()

    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        self._restart()

    def on_train_batch_end(
        self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if time.monotonic() - self._last >= self.every_s:
            epoch = f"epoch {trainer.current_epoch + 1}/{trainer.max_epochs}"
            self._line("fit", f"{epoch}, batch {batch_idx + 1}/{self.total_train_batches}")

    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        done, total = trainer.current_epoch + 1, trainer.max_epochs
        every = max(1, total // 20) if total and total > 0 else 1
        if done % every == 0 or done == total or trainer.should_stop:
            self._line("fit", f"epoch {done}/{total}")

    def _eval_batch(
        self, stage: str, batch_idx: int, totals: list[int | float], loader: int
    ) -> None:
        done, total = batch_idx + 1, totals[loader] if loader < len(totals) else float("inf")
        every = max(1, int(total) // 10) if total != float("inf") else 1
        if done % every == 0 or done == total:
            self._line(stage, f"batch {done}/{total}")

    def on_validation_start(self, trainer: Any, pl_module: Any) -> None:
        if trainer.state.fn != TrainerFn.FITTING:  # inside a fit: the fit's time goes on
            self._restart()

    def on_validation_batch_end(
        self,
        trainer: Any,
        pl_module: Any,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if not trainer.sanity_checking:
            self._eval_batch("validate", batch_idx, trainer.num_val_batches, dataloader_idx)

    def on_test_start(self, trainer: Any, pl_module: Any) -> None:
        self._restart()

    def on_test_batch_end(
        self,
        trainer: Any,
        pl_module: Any,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        self._eval_batch("test", batch_idx, trainer.num_test_batches, dataloader_idx)

    def on_predict_start(self, trainer: Any, pl_module: Any) -> None:
        self._restart()

    def on_predict_batch_end(
        self,
        trainer: Any,
        pl_module: Any,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        self._eval_batch("predict", batch_idx, trainer.num_predict_batches, dataloader_idx)
