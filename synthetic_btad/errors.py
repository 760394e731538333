"""Errors raised for bad input. All derive from :class:`SyntheticBTADError` (a ``ValueError``)."""

from __future__ import annotations


class SyntheticBTADError(ValueError):
    """Base class: the input cannot produce a dataset. The message says what was expected."""


class LayoutError(SyntheticBTADError):
    """A root does not exist or does not have the expected folder layout."""


class ImageReadError(SyntheticBTADError):
    """An image or mask file cannot be decoded (unreadable, truncated, not an image)."""


class MaskError(SyntheticBTADError):
    """A mask is not single-channel, is empty, or does not match its image's size."""


class NotEnoughDataError(SyntheticBTADError):
    """Fewer base images than requested, or a category without masks after grouping."""


class OutputExistsError(SyntheticBTADError):
    """The output directory exists and is not empty, and overwriting was not requested."""


class MissingDependencyError(SyntheticBTADError):
    """An optional package that the requested source needs is not installed."""
