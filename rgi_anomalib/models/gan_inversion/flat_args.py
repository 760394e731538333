"""The flat arguments of the models before 2026-12 (one 41-argument ``__init__``), mapped to
the nested ones: to load checkpoints written then, and for scripts that still speak flat."""

from __future__ import annotations

from typing import Any

# Old flat name -> (group, new name). Names not listed here stayed top-level (image_size,
# preset, seed, anomalib's processors).
FLAT_TO_NESTED: dict[str, tuple[str, str]] = {
    **{
        name: ("architecture", name)
        for name in (
            "backbone",
            "latent_dim",
            "base_width",
            "max_width",
            "spectral_norm",
            "tile_size",
            "tile_stride",
        )
    },
    **{
        name: ("training", name)
        for name in (
            "max_epochs",
            "lr_gan",
            "ema_decay",
            "gan_loss",
            "r1_gamma",
            "diff_augment",
            "crops_per_image",
            "encoder_weight",
            "sample_every_n_epochs",
        )
    },
    **{
        name: ("inversion", name)
        for name in (
            "lam",
            "lam_normal_rate",
            "compile_generator",
            "iterations",
            "lr_latent",
            "lr_mask",
            "mask_update",
            "mask_per_channel",
            "discriminator_weight",
            "finetune_iterations",
            "finetune_params",
            "lr_schedule",
            "init_candidates",
            "init_distribution",
            "start_objective",
            "early_stop_patience",
            "holdout_phases",
            "holdout_cell",
            "residual",
        )
    },
    # One name per setting: the solver's names won.
    "lr_finetune": ("inversion", "lr_generator"),
    "tile_finetune": ("inversion", "finetune_per"),
}
GROUPS = ("architecture", "training", "inversion")


def is_flat(hparams: dict[str, Any]) -> bool:
    """Whether ``hparams`` (a checkpoint's hyper-parameters) use the old flat names."""
    return any(name in hparams for name in FLAT_TO_NESTED)


def nest_flat_args(flat: dict[str, Any]) -> dict[str, Any]:
    """Flat arguments (old names) as nested ones: ``{"max_epochs": 2, "lr_finetune": 1e-3}`` ->
    ``{"training": {"max_epochs": 2}, "inversion": {"lr_generator": 1e-3}}``. Nested groups
    given as dicts are merged; other names pass through."""
    nested: dict[str, Any] = {}
    for name, value in flat.items():
        if name in FLAT_TO_NESTED:
            group, new = FLAT_TO_NESTED[name]
            nested.setdefault(group, {})[new] = value
        elif name in GROUPS and isinstance(value, dict):
            nested.setdefault(name, {}).update(value)
        else:
            nested[name] = value
    return nested


def nest_checkpoint_hparams(hparams: dict[str, Any]) -> dict[str, Any]:
    """A flat checkpoint's hyper-parameters in the nested form. Checkpoints written before
    ``encoder_weight`` existed (its default is 10 now) were trained without an encoder."""
    if not is_flat(hparams):
        return dict(hparams)
    nested = nest_flat_args(dict(hparams))
    nested.setdefault("training", {}).setdefault("encoder_weight", 0.0)
    return nested


def flatten_nested_args(nested: dict[str, Any]) -> dict[str, Any]:
    """The inverse of ``nest_flat_args``: nested groups spelled with the old flat names. The
    benchmark hashes this form to recognise units that a run finished before the nested form."""
    old_name = {place: name for name, place in FLAT_TO_NESTED.items()}
    flat: dict[str, Any] = {}
    for name, value in nested.items():
        if name in GROUPS and isinstance(value, dict):
            flat.update({old_name.get((name, key), key): item for key, item in value.items()})
        else:
            flat[name] = value
    return flat
