"""rgi_anomalib data modules. ``SyntheticBTAD`` is imported on first access (needs anomalib).

``validate_samples`` / ``validate_datamodule``: read every image and mask of a dataset before
training; one ``DatasetError`` names every unreadable file and every mask of another size than
its image."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rgi_anomalib.data.validate import DatasetError, validate_datamodule, validate_samples

if TYPE_CHECKING:
    from rgi_anomalib.data.synthetic_btad import SyntheticBTAD

__all__ = ["DatasetError", "SyntheticBTAD", "register", "validate_datamodule", "validate_samples"]


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
