"""RGI / R-RGI robust GAN-inversion and an AnoGAN baseline as anomalib models.

Importing this package is cheap (no torch): models load on first attribute access.
"""

__version__ = "0.1.0"

_LAZY = {"Rgi", "RRgi", "AnoGan", "Rasl"}


def __getattr__(name: str) -> object:
    if name in _LAZY:
        from rgi_anomalib import models

        return getattr(models, name)
    raise AttributeError(f"module 'rgi_anomalib' has no attribute {name!r}")
