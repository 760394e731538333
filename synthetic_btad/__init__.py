"""synthetic_btad: the RGI paper's synthetic BTAD product-03 benchmark (Appendix F).

Builds an anomalib ``Folder``-readable dataset: defect-free training images, and per defect
category (crack, irregular, scratch, mixed_large) test images whose defect region is filled with
the region's mean colour, plus ground-truth masks, a manifest and a summary (with each defect's
in-mask contrast against its clean twin). Base images come from BTAD, from the ELPV solar cells
(optional ``elpv-dataset`` package) or from a generated stand-in; without MVTec AD on disk the
masks are generated stand-ins. Stand-ins are labelled as such.

Importing this package is cheap (numpy, Pillow); it never imports torch or the GAN models.
"""

from synthetic_btad._version import __version__ as __version__
from synthetic_btad.bases import BASE_SOURCES
from synthetic_btad.build import build_dataset
from synthetic_btad.contrast import DefectContrast, rms_contrast
from synthetic_btad.errors import (
    ImageReadError,
    LayoutError,
    MaskError,
    MissingDependencyError,
    NotEnoughDataError,
    OutputExistsError,
    SyntheticBTADError,
)
from synthetic_btad.fill import fill_defect, region_mean_colour
from synthetic_btad.layout import FORMAT, MANIFEST_FILE, SUMMARY_FILE, derive_seed
from synthetic_btad.masks import (
    CATEGORIES,
    DEFAULT_NAME_RULES,
    GroupingRules,
    load_mvtec_masks,
)
from synthetic_btad.params import BuildParams
from synthetic_btad.summary import Summary, defect_contrast, is_dataset, load_summary

__all__ = [
    "BASE_SOURCES",
    "CATEGORIES",
    "DEFAULT_NAME_RULES",
    "FORMAT",
    "MANIFEST_FILE",
    "SUMMARY_FILE",
    "BuildParams",
    "DefectContrast",
    "GroupingRules",
    "ImageReadError",
    "LayoutError",
    "MaskError",
    "MissingDependencyError",
    "NotEnoughDataError",
    "OutputExistsError",
    "Summary",
    "SyntheticBTADError",
    "build_dataset",
    "defect_contrast",
    "derive_seed",
    "fill_defect",
    "is_dataset",
    "load_mvtec_masks",
    "load_summary",
    "region_mean_colour",
    "rms_contrast",
]
