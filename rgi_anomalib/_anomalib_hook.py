"""Teach the plain ``anomalib`` command about our models, at no start-up cost.

anomalib (through jsonargparse) resolves ``--model Rgi`` only when the module defining ``Rgi`` was
imported before argument parsing, and never resolves lowercase names. ``rgi_anomalib.pth`` imports
this module at every interpreter start, so it imports nothing beyond ``sys`` and ``os`` (already
loaded by ``site``): it merely puts a finder on ``sys.meta_path`` that waits for ``anomalib.models``
to be imported. Only then (torch is loaded by then anyway) does it import ``rgi_anomalib.models``,
which registers our classes with anomalib and makes class-name lookup case- and
underscore-insensitive (``rgi``, ``r_rgi``, ``patchcore``).

Set ``RGI_ANOMALIB_NO_HOOK=1`` to switch this off.
"""

import os
import sys

_TRIGGER = "anomalib.models"


class _RegisterAfterExec:
    """Wraps the real loader of ``anomalib.models``; registers our models once it has run."""

    def __init__(self, loader) -> None:
        self._loader = loader

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module) -> None:
        self._loader.exec_module(module)
        # When our models module is the one importing anomalib, it registers itself at its end.
        if "rgi_anomalib.models" not in sys.modules:
            __import__("rgi_anomalib.models")


class _AnomalibModelsFinder:
    """A ``sys.meta_path`` finder (duck-typed: importlib.abc costs ~9 ms at every start)."""

    def find_spec(self, fullname, path, target=None):
        if fullname != _TRIGGER:
            return None
        sys.meta_path.remove(self)  # one shot
        for finder in sys.meta_path:
            find_spec = getattr(finder, "find_spec", None)
            spec = find_spec(fullname, path, target) if find_spec else None
            if spec is not None:
                if spec.loader is not None:
                    spec.loader = _RegisterAfterExec(spec.loader)
                return spec
        return None


def install() -> None:
    """Put the finder on ``sys.meta_path`` unless disabled or anomalib is already imported."""
    if os.environ.get("RGI_ANOMALIB_NO_HOOK") or _TRIGGER in sys.modules:
        return
    if not any(isinstance(finder, _AnomalibModelsFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, _AnomalibModelsFinder())


install()
