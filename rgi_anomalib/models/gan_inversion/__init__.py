"""GAN-inversion anomaly models: AnoGAN, RGI and R-RGI on one solver."""

from .lightning_model import AnoGan, GanInversionModule, Rgi, RRgi
from .solver import InversionConfig, InversionResult, invert
from .torch_model import GanInversionModel

__all__ = [
    "AnoGan",
    "GanInversionModel",
    "GanInversionModule",
    "InversionConfig",
    "InversionResult",
    "RRgi",
    "Rgi",
    "invert",
]
