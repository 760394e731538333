"""GAN-inversion anomaly models: AnoGAN, RGI and R-RGI on one solver (README.md)."""

from .lightning_model import AnoGan, GanInversionModule, Rgi, RRgi
from .settings import GanArchitecture, GanTraining, InversionSettings
from .solver import InversionConfig, InversionResult, invert
from .torch_model import GanInversionModel

__all__ = [
    "AnoGan",
    "GanArchitecture",
    "GanInversionModel",
    "GanInversionModule",
    "GanTraining",
    "InversionConfig",
    "InversionResult",
    "InversionSettings",
    "RRgi",
    "Rgi",
    "invert",
]
