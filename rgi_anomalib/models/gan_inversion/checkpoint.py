"""What a GAN-inversion checkpoint must agree on, and loading the ones with flat
hyper-parameters (written before the nested settings, README.md "Flat arguments")."""

from __future__ import annotations

import io
from pathlib import Path
from typing import IO, Any

import torch

from .flat_args import FLAT_TO_NESTED, GROUPS, is_flat, nest_checkpoint_hparams, nest_flat_args

# Checkpoint entry naming the class that wrote it (Rgi, RRgi or AnoGan).
CHECKPOINT_CLASS_KEY = "rgi_anomalib_model"
# Settings that fix the network shapes: a checkpoint only fits a model that agrees on them.
ARCHITECTURE_KEYS = (
    ("image_size",),
    ("architecture", "latent_dim"),
    ("architecture", "backbone"),
    ("architecture", "base_width"),
    ("architecture", "max_width"),
    ("architecture", "tile_size"),
)


def _lookup(hparams: dict[str, Any], path: tuple[str, ...]) -> tuple[bool, Any]:
    for key in path:
        if not isinstance(hparams, dict) or key not in hparams:
            return False, None
        hparams = hparams[key]
    return True, hparams


def check_architecture(name: str, saved: dict[str, Any], mine: dict[str, Any]) -> None:
    """One error listing every shape setting on which the checkpoint's hyper-parameters
    (``saved``, flat or nested) and this model's (``mine``) differ, with the options to fix it."""
    saved = nest_checkpoint_hparams(saved)
    mismatched = {}
    for path in ARCHITECTURE_KEYS:
        found, value = _lookup(saved, path)
        if found and value != _lookup(mine, path)[1]:
            mismatched[".".join(path)] = (value, _lookup(mine, path)[1])
    if not mismatched:
        return
    detail = ", ".join(
        f"{key}={ckpt!r} in the checkpoint but {here!r} here"
        for key, (ckpt, here) in mismatched.items()
    )
    options = " ".join(f"--model.{key} {ckpt}" for key, (ckpt, _) in mismatched.items())
    msg = (
        f"{name}: checkpoint does not fit this model ({detail}). "
        f"Create the model with the checkpoint's settings, e.g. `{options}`."
    )
    raise ValueError(msg)


def check_encoder(name: str, checkpoint: dict[str, Any], has_encoder: bool, weight: float) -> None:
    """One clear error when the checkpoint and this model (``has_encoder``, from its
    ``encoder_weight``) disagree on having an encoder."""
    in_checkpoint = any(key.startswith("model.encoder.") for key in checkpoint["state_dict"])
    if in_checkpoint == has_encoder:
        return
    saved = nest_checkpoint_hparams(checkpoint.get("hyper_parameters", {}))
    saved_weight = saved.get("training", {}).get("encoder_weight", 0.0)
    msg = (
        f"{name}: the checkpoint was trained {'with' if in_checkpoint else 'without'} an "
        f"encoder, this model {'has none' if in_checkpoint else 'has one'} (encoder_weight="
        f"{weight!r}). Create the model with the checkpoint's setting, e.g. "
        f"`--model.training.encoder_weight {saved_weight}`."
    )
    raise ValueError(msg)


def split_overrides(kwargs: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``load_from_checkpoint``'s keyword arguments: (settings, nested, to merge into the
    checkpoint's; everything else, for Lightning)."""
    settings = {k: v for k, v in kwargs.items() if k in FLAT_TO_NESTED or k in GROUPS}
    rest = {k: v for k, v in kwargs.items() if k not in settings}
    return nest_flat_args(settings), rest


def nested_checkpoint(
    path: str | Path | IO[bytes],
    overrides: dict[str, Any],
    map_location: Any = None,
    weights_only: bool | None = None,
) -> IO[bytes] | None:
    """The checkpoint at ``path`` with nested hyper-parameters and ``overrides`` merged into
    them (group by group), as an in-memory file; None when it needs neither. Read with
    ``weights_only=True`` unless ``weights_only`` is False: a checkpoint that needs arbitrary
    unpickling is refused."""
    if not isinstance(path, (str, Path)):
        return None  # a file object: Lightning reads it as it is
    safe = weights_only is not False
    checkpoint = torch.load(path, map_location=map_location or "cpu", weights_only=safe)
    hparams = checkpoint.get("hyper_parameters", {})
    if not overrides and not is_flat(hparams):
        return None
    nested = nest_checkpoint_hparams(hparams)
    for key, value in overrides.items():
        if key in GROUPS:
            nested[key] = {**nested.get(key, {}), **value}
        else:
            nested[key] = value
    checkpoint["hyper_parameters"] = nested
    buffer = io.BytesIO()
    torch.save(checkpoint, buffer)
    buffer.seek(0)
    return buffer
