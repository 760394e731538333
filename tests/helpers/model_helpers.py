"""Settings shared by the tests that train a GAN-inversion model (a uniquely named module, not
``conftest``): a 2-epoch 32 px GAN and a 20-iteration closed-form solve, seconds on a CPU."""

from __future__ import annotations

from typing import Any

from rgi_anomalib.models.gan_inversion.flat_args import nest_flat_args

FAST_RGI: dict[str, Any] = {
    "image_size": 32,
    "training": {"max_epochs": 2, "sample_every_n_epochs": 0},
    "inversion": {"iterations": 20, "mask_update": "closed_form", "init_candidates": 16},
    "visualizer": False,
}


def nested(**args: Any) -> dict[str, Any]:
    """Model arguments with settings named flat where a test is shorter so (``max_epochs=1``,
    ``lr_finetune=1e-3``: the old names, flat_args.py) in the nested form; groups given as
    dicts are merged, later names win."""
    return nest_flat_args(args)


def old_flat_hparams(**changes: Any) -> dict[str, Any]:
    """The ``hyper_parameters`` of a checkpoint written before the nested settings, written out
    by hand in that code's exact format (``dict(RRgi(image_size=32).hparams)`` then: every
    ``__init__`` argument flat, solver settings resolved), with ``changes``."""
    return {
        "image_size": 32,
        "latent_dim": 64,
        "backbone": "fastgan",
        "base_width": 16,
        "max_width": 256,
        "spectral_norm": True,
        "gan_loss": "nonsaturating",
        "r1_gamma": 0.0,
        "diff_augment": "",
        "lr_gan": 0.0002,
        "ema_decay": 0.999,
        "max_epochs": 100,
        "sample_every_n_epochs": 10,
        "preset": "fast",
        "lam": 0.12,
        "lam_normal_rate": 0.005,
        "iterations": 30,
        "lr_latent": 0.1,
        "lr_mask": 0.1,
        "mask_update": "adam",
        "mask_per_channel": False,
        "discriminator_weight": 0.0,
        "finetune_iterations": 20,
        "lr_finetune": 0.01,
        "finetune_params": ["norm_affine", "to_image"],
        "lr_schedule": "cosine",
        "init_candidates": 512,
        "init_distribution": "normal",
        "start_objective": "l2",
        "early_stop_patience": 0,
        "seed": 0,
        "compile_generator": False,
        "tile_size": 32,
        "tile_stride": None,
        "crops_per_image": 4,
        "tile_finetune": "tile",
        "encoder_weight": 10.0,
        "holdout_phases": 0,
        "holdout_cell": 8,
        "residual": None,
        **changes,
    }
