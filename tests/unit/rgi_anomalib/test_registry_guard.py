"""Guard for rgi_anomalib/_registry.py, which wraps a private jsonargparse function.

``--model rgi`` / ``--model r_rgi`` work only because we wrap
``jsonargparse._typehints.resolve_class_path_by_name`` (jsonargparse has no public hook for
case-insensitive class names). These tests fail, saying what changed, when a jsonargparse or
anomalib upgrade renames that function, changes its parameters, or stops calling it on the paths
our users take: anomalib's CLI parser, ``AnomalibModule.from_config``-style parsers,
jsonargparse's ``FromConfigMixin`` and anomalib's ``get_model``.
"""

from __future__ import annotations

import importlib
import inspect
from importlib.metadata import version

import jsonargparse
import pytest
from anomalib.cli import AnomalibCLI
from anomalib.models import AnomalibModule, get_model

import rgi_anomalib.models  # noqa: F401  (registers our models)
from rgi_anomalib import _registry

VERSIONS = f"jsonargparse {version('jsonargparse')}, anomalib {version('anomalib')}"
# name on the command line -> the class it must resolve to
NAMES = {"rgi": "Rgi", "Rgi": "Rgi", "r_rgi": "RRgi", "RRgi": "RRgi", "anogan": "AnoGan"}


def _changed(what: str) -> str:
    return (
        f"{VERSIONS}: {what}. rgi_anomalib/_registry.py relies on it to resolve lowercase model "
        "names (`--model rgi`); adapt the patch to the new jsonargparse internals, or drop "
        "lowercase names and say so in the README"
    )


@pytest.mark.parametrize("module_name", _registry.PATCHED_MODULES)
def test_the_patched_function_is_where_we_patch_it(module_name: str) -> None:
    module = importlib.import_module(module_name)
    function = getattr(module, _registry.PATCHED_FUNCTION, None)
    assert function is not None, _changed(f"{module_name}.{_registry.PATCHED_FUNCTION} is gone")
    assert hasattr(function, "__wrapped__"), _changed(
        f"{module_name}.{_registry.PATCHED_FUNCTION} is not our wrapper (was it re-bound?)"
    )
    original = inspect.unwrap(function)
    assert original.__module__ == "jsonargparse._typehints"
    params = list(inspect.signature(original).parameters)
    assert params == ["cls", "name"], _changed(
        f"{_registry.PATCHED_FUNCTION} now takes ({', '.join(params)}), we call it as (cls, name)"
    )


def test_the_helper_we_call_keeps_its_signature() -> None:
    from jsonargparse import _typehints

    helper = getattr(_typehints, "get_all_subclass_paths", None)
    assert helper is not None, _changed("jsonargparse._typehints.get_all_subclass_paths is gone")
    params = list(inspect.signature(helper).parameters)
    assert params == ["cls"], _changed(f"get_all_subclass_paths now takes ({', '.join(params)})")


def test_exact_and_unknown_names_keep_jsonargparse_s_meaning() -> None:
    from jsonargparse import _typehints

    resolve = _typehints.resolve_class_path_by_name
    assert resolve(AnomalibModule, "Padim").endswith(".Padim")
    assert resolve(AnomalibModule, "no_such_model") == "no_such_model"
    assert resolve(AnomalibModule, "x.Rgi") == "x.Rgi"


@pytest.mark.parametrize(("name", "expected"), NAMES.items())
def test_names_resolve_through_anomalib_s_cli_parser(name: str, expected: str) -> None:
    """The parser ``anomalib fit/test/train`` builds (AnomalibCLI.add_trainer_arguments)."""
    parser = AnomalibCLI.init_parser()
    parser.add_subclass_arguments(AnomalibModule, "model", fail_untyped=False, required=True)
    try:
        config = parser.parse_args(["--model", name])
    except SystemExit:
        pytest.fail(_changed(f"anomalib's CLI parser no longer accepts `--model {name}`"))
    assert config.model.class_path.rsplit(".", 1)[-1] == expected, _changed(
        f"`--model {name}` resolved to {config.model.class_path}"
    )


class _Configurable(jsonargparse.FromConfigMixin):
    """A FromConfigMixin hierarchy of our own: no anomalib class uses the mixin."""


class TwoWordName(_Configurable):
    pass


@pytest.mark.parametrize("name", ["TwoWordName", "two_word_name", "twowordname"])
def test_names_resolve_through_from_config_mixin(name: str) -> None:
    """jsonargparse's second caller of the function (``_from_config``), which we patch too."""
    try:
        obj = _Configurable.from_config({"class_path": name})
    except (TypeError, ImportError, ValueError) as error:
        pytest.fail(_changed(f"FromConfigMixin rejected class_path {name!r}: {error}"))
    assert type(obj) is TwoWordName


@pytest.mark.parametrize(("name", "expected"), NAMES.items())
def test_names_resolve_through_get_model(name: str, expected: str) -> None:
    """anomalib's Python lookup: snake-case names and ``class_path`` under anomalib.models."""
    model = get_model(name)
    assert type(model).__name__ == expected, f"{VERSIONS}: get_model({name!r}) gave {model!r}"
    for class_path in (expected, f"anomalib.models.{expected}"):
        model = get_model({"class_path": class_path})
        assert type(model).__name__ == expected, f"{VERSIONS}: get_model({class_path!r})"


def test_a_vanished_internal_warns_instead_of_breaking_the_import(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The start-up hook imports our models with every ``anomalib.models``: never crash it."""
    monkeypatch.setattr(_registry, "PATCHED_MODULES", ("jsonargparse._no_such_module",))
    with pytest.warns(RuntimeWarning, match="use the class names"):
        _registry._patch_jsonargparse.__wrapped__()  # the uncached function
