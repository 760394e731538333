"""RASL (robust alignment by sparse and low-rank decomposition) baseline as an anomalib model."""

from .lightning_model import Rasl
from .torch_model import RaslModel, rasl, rpca

__all__ = ["Rasl", "RaslModel", "rasl", "rpca"]
