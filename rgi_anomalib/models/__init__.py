"""Our anomalib models. Importing this module registers them with anomalib's name lookups."""

from rgi_anomalib._registry import register
from rgi_anomalib.models.gan_inversion import AnoGan, Rgi, RRgi

__all__ = ["AnoGan", "RRgi", "Rgi"]

register(Rgi, RRgi, AnoGan)
