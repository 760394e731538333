"""Progress within one batch's solve (validation, test, predict).

Lightning's progress bar advances once per batch, but one batch's inversion runs hundreds of
iterations (times several tile chunks): tens of seconds to minutes. ``SolveProgress`` is the
solver's ``progress(done, total)`` callback for one batch. On a terminal it writes
"solve 40% (120/300 it)" beside the running bar (Lightning's rich or tqdm bar); otherwise (output
redirected, CI, no progress bar) it logs one INFO line at most every ``log_every_s`` seconds, so a
short solve prints nothing. It only observes: the solve's results do not change.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from typing import Any, ClassVar

logger = logging.getLogger(__name__)


class _RichBar:
    """A task of Lightning's ``RichProgressBar``: the text goes after its description (Lightning
    redraws only when asked: ``refresh``)."""

    def __init__(self, callback: Any, task_id: Any) -> None:
        self._callback, self._task_id = callback, task_id
        self._description = callback.progress.tasks[task_id].description

    def _describe(self, description: str) -> None:
        self._callback.progress.update(self._task_id, description=description)
        self._callback.refresh()

    def show(self, text: str) -> None:
        self._describe(f"{self._description} {text}")

    def clear(self) -> None:
        self._describe(self._description)


class _TqdmBar:
    """A bar of Lightning's ``TQDMProgressBar``: the text is its postfix."""

    def __init__(self, bar: Any) -> None:
        self._bar = bar

    def show(self, text: str) -> None:
        self._bar.set_postfix_str(text, refresh=True)

    def clear(self) -> None:
        self._bar.set_postfix_str("", refresh=False)


# Lightning's stage -> (name in messages, rich task id attribute, tqdm bar attribute)
_STAGES = {
    "validate": ("validation", "val_progress_bar_id", "val_progress_bar"),
    "test": ("test", "test_progress_bar_id", "test_progress_bar"),
    "predict": ("predict", "predict_progress_bar_id", "predict_progress_bar"),
}


def _stage(trainer: Any) -> str:
    if trainer.testing:
        return "test"
    if trainer.predicting:
        return "predict"
    return "validate"  # validating, sanity checking, or validation inside fit


def _terminal_bar(trainer: Any, stage: str) -> _RichBar | _TqdmBar | None:
    """The running progress bar of ``stage`` if it draws on a terminal, else None."""
    from lightning.pytorch.callbacks import RichProgressBar, TQDMProgressBar

    callback = trainer.progress_bar_callback
    if callback is None or not callback.is_enabled:
        return None
    _, rich_id, tqdm_bar = _STAGES[stage]
    if isinstance(callback, RichProgressBar):
        progress = callback.progress
        task_id = getattr(callback, rich_id, None)
        if progress is None or task_id is None or not progress.console.is_terminal:
            return None
        return _RichBar(callback, task_id)
    if isinstance(callback, TQDMProgressBar) and sys.stderr.isatty():
        try:
            return _TqdmBar(getattr(callback, tqdm_bar))
        except TypeError:  # that bar is not created yet
            return None
    return None


class SolveProgress:
    """The solver's ``progress(done, total)`` callback for one batch (see the module docstring).

    Use ``SolveProgress.for_batch(module, batch_idx)`` inside a Lightning step, pass it to the
    solve, and call ``close()`` afterwards (it restores the bar's text).
    """

    bar_every_s: ClassVar[float] = 0.5  # at most this often on the bar
    log_every_s: ClassVar[float] = 10.0  # at most this often as a log line (nothing sooner)

    def __init__(
        self,
        label: str,
        bar: _RichBar | _TqdmBar | None = None,
        log: bool = True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.label, self._bar, self._log, self._clock = label, bar, log, clock
        self._last = clock()

    @classmethod
    def for_batch(cls, module: Any, batch_idx: int) -> SolveProgress:
        """For the batch ``batch_idx`` of the stage ``module``'s trainer is running."""
        trainer = module.trainer
        stage = _stage(trainer)
        label = f"{module.__class__.__name__}: {_STAGES[stage][0]} batch {batch_idx + 1}"
        # Only global rank zero shows anything (every rank solves its own batches).
        return cls(
            label,
            bar=_terminal_bar(trainer, stage) if trainer.is_global_zero else None,
            log=trainer.is_global_zero,
        )

    def __call__(self, done: int, total: int) -> None:
        now = self._clock()
        if now - self._last < (self.bar_every_s if self._bar is not None else self.log_every_s):
            return
        self._last = now
        percent = 100 * done // max(total, 1)
        if self._bar is not None:
            self._bar.show(f"solve {percent}% ({done}/{total} it)")
        elif self._log:
            logger.info("%s: solve %d%% (%d/%d iterations)", self.label, percent, done, total)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.clear()
