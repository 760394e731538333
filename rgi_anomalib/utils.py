"""Small shared helpers (no torch)."""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from types import TracebackType
from typing import Any


def current_umask() -> int:
    """The process's umask. POSIX can read it only by setting it, so it is set back at once."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary sibling of ``path``; it replaces ``path`` only if the block succeeds."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    # mkstemp creates the file 0600; give it the mode a plain open() would (0666 minus the
    # umask), so that results are as readable to a team as any other file its members write.
    os.fchmod(fd, 0o666 & ~current_umask())
    os.close(fd)
    try:
        yield Path(tmp)
        Path(tmp).replace(path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")

# Third-party warnings that every run of our commands triggers by design (deprecations inside
# anomalib/timm/Lightning at import; a harness that trains without a validation loader on small
# data in one CPU process). Only these are silenced; any other warning is still shown.
KNOWN_WARNINGS = (
    r".*Importing from timm.models.layers is deprecated.*",
    r".*anomalib.models.components.dinov2 package is deprecated.*",
    r".*isinstance\(treespec, LeafSpec\)` is deprecated.*",
    r".*configure_callbacks.*",
    r".*litlogger.*",
    r".*does not have many workers.*",
    r".*smaller than the logging interval.*",
    r".*module\(s\) in eval mode at the start of training.*",
    r".*defined a `validation_step` but have no `val_dataloader`.*",
)


def silence_known_warnings() -> None:
    """Ignore :data:`KNOWN_WARNINGS` (by message) in this process; call before importing
    anomalib so that its import-time deprecations are covered too."""
    for message in KNOWN_WARNINGS:
        warnings.filterwarnings("ignore", message=message)


class OneLineError(Exception):
    """An error about the user's input or request, not a crash: commands print its message as
    one line (no traceback), also under anomalib's CLI (``print_uncaught_as_one_line``)."""


def _one_line_excepthook(
    previous: Callable[[type[BaseException], BaseException, TracebackType | None], Any],
) -> Callable[[type[BaseException], BaseException, TracebackType | None], Any]:
    def excepthook(
        exc_type: type[BaseException], exc: BaseException, tb: TracebackType | None
    ) -> Any:
        if issubclass(exc_type, OneLineError):
            print(f"error: {exc}", file=sys.stderr)
            return None
        return previous(exc_type, exc, tb)

    excepthook.rgi_anomalib_one_line = True  # type: ignore[attr-defined]
    return excepthook


def print_uncaught_as_one_line() -> None:
    """Make an uncaught ``OneLineError`` (an export refusal, a bad dataset) print as its message
    alone (exit status 1) instead of a full traceback: anomalib's CLI installs rich's traceback
    printer at start, so this wraps whatever ``sys.excepthook`` is current when the error is
    raised. Every other exception still goes to that hook."""
    if not getattr(sys.excepthook, "rgi_anomalib_one_line", False):
        sys.excepthook = _one_line_excepthook(sys.excepthook)
