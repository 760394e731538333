"""Which modules a benchmark config may import by a dotted ``class_path``.

Importing a module runs its code, so a config (a file that may come from anyone) names classes
only from anomalib and this project's packages. Other modules are imported only when the person
running the command names them (``--allow-module mypkg``); anything else is refused before the
import, with the flag to use in the message.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from typing import Any

from .config import ConfigError

TRUSTED_PACKAGES = ("anomalib", "rgi_anomalib", "synthetic_btad")

# Set by the command line (`--allow-module`), for this process.
_allowed: tuple[str, ...] = ()


def allow_modules(names: Iterable[str]) -> None:
    """Trust these modules (and their submodules) too, on top of :data:`TRUSTED_PACKAGES`."""
    global _allowed
    _allowed = tuple(dict.fromkeys(name.strip() for name in names if name.strip()))


def _within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def is_trusted(module: str) -> bool:
    return any(_within(module, package) for package in (*TRUSTED_PACKAGES, *_allowed))


def import_trusted(class_path: str, what: str) -> Any:
    """The attribute a dotted path names (``package.module.Class``), imported only from a trusted
    module; ``what`` names it in errors ("model class", "datamodule")."""
    module_name, _, attr = class_path.rpartition(".")
    if not module_name or not attr:
        raise ConfigError(f"{what} {class_path!r} is not a dotted path (package.module.Class)")
    if not is_trusted(module_name):
        top = module_name.split(".")[0]
        trusted = ", ".join((*TRUSTED_PACKAGES, *_allowed))
        msg = (
            f"{what} {class_path!r}: module {module_name!r} is not imported from a config "
            f"(importing runs its code); trusted: {trusted}. If you trust it, allow it on the "
            f"command line: --allow-module {top}"
        )
        raise ConfigError(msg)
    try:
        return getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"cannot import {what} {class_path!r}: {exc}") from exc


def allowed_modules() -> tuple[str, ...]:
    """The modules ``allow_modules`` trusts in this process (passed on to worker processes)."""
    return _allowed
