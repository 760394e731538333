"""Register our models with anomalib's name lookups (CLI, ``get_model``, benchmark pipeline).

Two mechanisms, one public and one not:

- anomalib's own lookups are public behaviour: ``get_model("rgi")`` searches the direct
  subclasses of ``AnomalibModule`` by snake-case name, ``get_model({"class_path": "Rgi"})`` and
  the YAML ``class_path: anomalib.models.Rgi`` read attributes of ``anomalib.models``, so we set
  those attributes.
- lowercase names on the command line (``--model rgi``, ``--model r_rgi``) have no public hook:
  jsonargparse resolves a bare class name case-sensitively in the private function
  ``jsonargparse._typehints.resolve_class_path_by_name`` (also bound by name in
  ``jsonargparse._from_config``), and we wrap it.
  tests/unit/rgi_anomalib/test_registry_guard.py fails, saying what changed, when a
  jsonargparse or anomalib upgrade moves, renames or bypasses it; should that
  happen, the import still works (a warning, exact class names only) rather than breaking every
  ``import anomalib.models`` through the start-up hook.
"""

from __future__ import annotations

import functools
import importlib
import re
import warnings

# The private jsonargparse names we patch (the guard test reads these too).
PATCHED_MODULES = ("jsonargparse._typehints", "jsonargparse._from_config")
PATCHED_FUNCTION = "resolve_class_path_by_name"


def _normalise(name: str) -> str:
    return re.sub(r"[_\-]", "", name).lower()


@functools.cache
def _patch_jsonargparse() -> None:
    """Make bare class names resolve case- and underscore-insensitively (``rgi``, ``r_rgi``).

    jsonargparse matches a bare name against the imported subclasses of the expected type,
    case-sensitively. We add a fallback that is only used when the exact lookup found nothing and
    exactly one subclass matches the normalised name, so exact names keep their old meaning.
    """
    try:
        modules = [importlib.import_module(name) for name in PATCHED_MODULES]
        typehints = modules[0]
        original = typehints.resolve_class_path_by_name
        get_all_subclass_paths = typehints.get_all_subclass_paths
    except (ImportError, AttributeError) as error:
        warnings.warn(
            f"jsonargparse changed ({error}): lowercase model names such as `--model rgi` are "
            "unavailable, use the class names (`--model Rgi`, `--model RRgi`)",
            RuntimeWarning,
            stacklevel=2,
        )
        return

    def resolve_class_path_by_name(cls, name: str) -> str:
        class_path = original(cls, name)
        if "." in class_path or isinstance(cls, tuple):
            return class_path
        wanted = _normalise(name)
        matches = sorted(
            {
                path
                for path in get_all_subclass_paths(cls)
                if _normalise(path.rsplit(".", 1)[-1]) == wanted
            }
        )
        return matches[0] if len(matches) == 1 else class_path

    resolve_class_path_by_name.__wrapped__ = original  # type: ignore[attr-defined]
    for module in modules:
        setattr(module, PATCHED_FUNCTION, resolve_class_path_by_name)


def register(*classes: type) -> None:
    """Expose ``classes`` as ``anomalib.models.<Name>`` and enable lowercase class names."""
    # import_module, not attribute access: this may run while ``anomalib.models`` is still being
    # bound to its parent package (see _anomalib_hook).
    anomalib_models = importlib.import_module("anomalib.models")
    for cls in classes:
        setattr(anomalib_models, cls.__name__, cls)
        if cls.__name__ not in anomalib_models.__all__:
            anomalib_models.__all__.append(cls.__name__)
    _patch_jsonargparse()
