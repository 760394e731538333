"""RASL (robust alignment by sparse and low-rank decomposition) baseline as an anomalib model."""

from .decomposition import rasl
from .lightning_model import Rasl
from .params import RaslParams
from .rpca import rpca
from .torch_model import RaslModel

__all__ = ["Rasl", "RaslModel", "RaslParams", "rasl", "rpca"]
