"""Settings shared by the tests that train a GAN-inversion model (a uniquely named module, not
``conftest``): a 2-epoch 32 px GAN and a 20-iteration closed-form solve, seconds on a CPU."""

from __future__ import annotations

FAST_RGI = {
    "image_size": 32,
    "max_epochs": 2,
    "iterations": 20,
    "mask_update": "closed_form",
    "init_candidates": 16,
    "sample_every_n_epochs": 0,
    "visualizer": False,
}
