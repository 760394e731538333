"""Register our models with anomalib's name lookups (CLI, ``get_model``, benchmark pipeline)."""

from __future__ import annotations

import functools
import importlib
import re

import jsonargparse._from_config
import jsonargparse._typehints


def _normalise(name: str) -> str:
    return re.sub(r"[_\-]", "", name).lower()


@functools.cache
def _patch_jsonargparse() -> None:
    """Make bare class names resolve case- and underscore-insensitively (``rgi``, ``r_rgi``).

    jsonargparse matches a bare name against the imported subclasses of the expected type,
    case-sensitively. We add a fallback that is only used when the exact lookup found nothing and
    exactly one subclass matches the normalised name, so exact names keep their old meaning.
    """
    original = jsonargparse._typehints.resolve_class_path_by_name

    def resolve_class_path_by_name(cls, name: str) -> str:
        class_path = original(cls, name)
        if "." in class_path or isinstance(cls, tuple):
            return class_path
        wanted = _normalise(name)
        matches = sorted(
            {
                path
                for path in jsonargparse._typehints.get_all_subclass_paths(cls)
                if _normalise(path.rsplit(".", 1)[-1]) == wanted
            }
        )
        return matches[0] if len(matches) == 1 else class_path

    resolve_class_path_by_name.__wrapped__ = original  # type: ignore[attr-defined]
    jsonargparse._typehints.resolve_class_path_by_name = resolve_class_path_by_name
    jsonargparse._from_config.resolve_class_path_by_name = resolve_class_path_by_name


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
