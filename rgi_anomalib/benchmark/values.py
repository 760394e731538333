"""Checks of YAML values (type and range), each error naming the key's path in the config."""

from __future__ import annotations

import enum
import inspect
import os
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any


class ConfigError(ValueError):
    """A benchmark configuration that cannot be run; the message says what to change."""


# --- value checks: every key's type and range, named by its path in the config --------------


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def check_int(
    value: Any, where: str, minimum: int | None = None, maximum: int | None = None
) -> int:
    """``value`` if it is an integer (not a bool) in [minimum, maximum], else a ConfigError
    naming ``where`` (the key's path, e.g. ``models[2].trainer_args.max_epochs``)."""
    if (
        not is_int(value)
        or (minimum is not None and value < minimum)
        or (maximum is not None and value > maximum)
    ):
        bounds = (
            f" in [{minimum}, {maximum}]"
            if minimum is not None and maximum is not None
            else f" >= {minimum}"
            if minimum is not None
            else ""
        )
        raise ConfigError(f"{where} must be an integer{bounds}, got {value!r}")
    return value


def check_str(value: Any, where: str, *, empty: bool = False) -> str:
    if not isinstance(value, str) or (not empty and not value.strip()):
        kind = "a string" if empty else "a non-empty string"
        raise ConfigError(f"{where} must be {kind}, got {value!r}")
    return value


def check_bool(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{where} must be true or false, got {value!r}")
    return value


def check_mapping(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ConfigError(f"{where} must be a mapping (key: value), got {value!r}")
    return value


def _resolve_annotation(annotation: Any, namespace: dict[str, Any]) -> Any:
    """A string annotation (``from __future__ import annotations``) evaluated in ``namespace``;
    Any when it cannot be (a name imported only for type checking): such a value is not judged."""
    if not isinstance(annotation, str):
        return annotation
    try:
        return eval(annotation, dict(namespace))  # the class's own annotation text
    except Exception:
        return Any


def _accepts(value: Any, tp: Any) -> bool:
    """Whether a YAML value fits the annotation ``tp``. Only what YAML can write is judged
    (numbers, strings, booleans, null, lists, mappings, Literal choices); a value for any other
    type (a class, a callable) is accepted: the class itself decides."""
    if tp is Any or tp is inspect.Parameter.empty:
        return True
    origin = typing.get_origin(tp)
    if origin is typing.Annotated:
        return _accepts(value, typing.get_args(tp)[0])
    if origin is typing.Union or origin is types.UnionType:
        return any(_accepts(value, arg) for arg in typing.get_args(tp))
    if origin is typing.Literal:
        return any(value == a and type(value) is type(a) for a in typing.get_args(tp))
    if tp is None or tp is type(None):
        return value is None
    if origin is not None:
        tp = origin
    if not isinstance(tp, type):
        return True
    if tp is bool:
        return isinstance(value, bool)
    if tp is int:
        return is_int(value)
    if tp is float:
        return is_number(value)
    if tp is str:
        return isinstance(value, str)
    if issubclass(tp, enum.Enum):
        return isinstance(value, tp) or value in {m.value for m in tp} or value in tp.__members__
    if tp is os.PathLike or issubclass(tp, Path):
        return isinstance(value, str | Path)
    if tp in (list, tuple, set, frozenset, Sequence):
        return isinstance(value, list | tuple | set | frozenset)
    if tp in (dict, Mapping):
        return isinstance(value, dict)
    return True  # any other class: not judged here


def describe_type(tp: Any) -> str:
    """How a message names an annotation ("an integer or null", "one of 'a', 'b'")."""
    origin = typing.get_origin(tp)
    if origin is typing.Annotated:
        return describe_type(typing.get_args(tp)[0])
    if origin is typing.Union or origin is types.UnionType:
        parts = [describe_type(a) for a in typing.get_args(tp)]
        return " or ".join(dict.fromkeys(parts))
    if origin is typing.Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if tp is None or tp is type(None):
        return "null"
    names = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}
    base = origin or tp
    if base in names:
        return names[base]
    if base in (list, tuple, set, frozenset):
        return "a list"
    if base is dict:
        return "a mapping"
    return getattr(base, "__name__", str(base))


def check_annotated(value: Any, annotation: Any, where: str, namespace: dict | None = None) -> None:
    """A ConfigError naming ``where`` when ``value`` does not fit ``annotation`` (a type or its
    text, evaluated in ``namespace``)."""
    tp = _resolve_annotation(annotation, namespace or {})
    if not _accepts(value, tp):
        raise ConfigError(f"{where} must be {describe_type(tp)}, got {value!r}")


# Trainer arguments the harness sets itself (rgi_anomalib.engine.cpu_engine): a config cannot
# set them too.
# A model trains and scores on the CPU unless its trainer_args say "gpu" (one device; with
# --workers its unit then asks Ray for a GPU).
ACCELERATORS = ("cpu", "gpu", "cuda")
HARNESS_TRAINER_ARGS = (
    "callbacks",
    "default_root_dir",
    "devices",
    "enable_model_summary",
    "enable_progress_bar",
    "logger",
)
# Integer trainer arguments and their least value (the rest are checked against the Trainer's
# signature when the models are checked, before anything runs).
_TRAINER_INT_MIN = {
    "max_epochs": 1,
    "min_epochs": 0,
    "max_steps": -1,
    "min_steps": 0,
    "accumulate_grad_batches": 1,
    "log_every_n_steps": 1,
    "num_sanity_val_steps": -1,
}
_TRAINER_FRACTIONS = (
    "limit_train_batches",
    "limit_val_batches",
    "limit_test_batches",
    "limit_predict_batches",
    "overfit_batches",
)


def check_trainer_args(args: Any, where: str) -> dict[str, Any]:
    args = check_mapping(args, where)
    for key, value in args.items():
        path = f"{where}.{key}"
        if key in HARNESS_TRAINER_ARGS:
            raise ConfigError(
                f"{path}: set by the benchmark itself (one device, no logger, its own "
                f"callbacks and folders); trainer_args cannot set {', '.join(HARNESS_TRAINER_ARGS)}"
            )
        if key == "accelerator" and value not in ACCELERATORS:
            raise ConfigError(
                f"{path} must be one of {', '.join(ACCELERATORS)} (one device), got {value!r}"
            )
        if key in _TRAINER_INT_MIN:
            check_int(value, path, _TRAINER_INT_MIN[key])
        elif key in _TRAINER_FRACTIONS and not (
            (is_int(value) and value >= 0) or (is_number(value) and 0 <= value <= 1)
        ):
            raise ConfigError(
                f"{path} must be an integer >= 0 (batches) or a number in [0, 1] (a fraction), "
                f"got {value!r}"
            )
    return dict(args)


def check_keys(mapping: Any, allowed: dict[str, str], where: str) -> None:
    if not isinstance(mapping, dict):
        raise ConfigError(f"{where} must be a mapping, got {type(mapping).__name__}")
    unknown = [k for k in mapping if k not in allowed]
    if unknown:
        raise ConfigError(
            f"unknown key {unknown[0]!r} in {where}; allowed keys: {', '.join(sorted(allowed))}"
        )


MAX_SEED = 2**32 - 1  # Lightning's seed_everything (numpy's seed range)


def parse_seeds(seeds: Any, where: str = "seeds") -> list[int]:
    """A non-empty list of distinct integer seeds in [0, 2**32 - 1] (one integer: a list of it)."""
    if is_int(seeds):
        seeds = [seeds]
    if not isinstance(seeds, list) or not seeds:
        raise ConfigError(f"{where} must be a non-empty list of integers, got {seeds!r}")
    for k, seed in enumerate(seeds):
        check_int(seed, f"{where}[{k}]", 0, MAX_SEED)
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"{where} must be distinct, got {seeds!r}")
    return list(seeds)
