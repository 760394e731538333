"""rgi_anomalib data modules. ``SyntheticBTAD`` is imported on first access (needs anomalib)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rgi_anomalib.data.synthetic_btad import SyntheticBTAD

__all__ = ["SyntheticBTAD", "register"]


def __getattr__(name: str) -> object:
    if name == "SyntheticBTAD":
        from rgi_anomalib.data.synthetic_btad import SyntheticBTAD

        return SyntheticBTAD
    raise AttributeError(f"module 'rgi_anomalib.data' has no attribute {name!r}")


def register() -> None:
    """Expose ``SyntheticBTAD`` as ``anomalib.data.SyntheticBTAD``.

    anomalib's ``get_datamodule`` (used by ``anomalib benchmark``) only looks up class names in
    ``anomalib.data``; after this call ``class_path: SyntheticBTAD`` works there too.
    """
    import anomalib.data

    from rgi_anomalib.data.synthetic_btad import SyntheticBTAD

    anomalib.data.SyntheticBTAD = SyntheticBTAD
