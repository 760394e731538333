"""The on-disk format of a synthetic_btad dataset: file names, manifest columns, seed streams."""

from __future__ import annotations

import numpy as np

from synthetic_btad.masks import CATEGORIES

FORMAT = "synthetic_btad/1"
SUMMARY_FILE = "summary.json"
MANIFEST_FILE = "manifest.csv"
MASK_SUFFIX = "_mask"
STAND_IN = "generated_stand_in"
MANIFEST_COLUMNS = (
    "file", "split", "category", "base_kind", "base_source", "mask_file", "mask_kind",
    "mask_source", "defect_type", "area", "area_ref", "fill_r", "fill_g", "fill_b", "contrast",
    "seed",
)  # fmt: skip
_EMPTY_ROW = dict.fromkeys(MANIFEST_COLUMNS, "")

# Fixed stream ids: a category's images do not change when other categories are left out.
_STREAMS = {"split": 1, "train": 2, "base": 3, "defect": 4}
_CAT_INDEX = {cat: i for i, cat in enumerate(CATEGORIES)}


def derive_seed(seed: int, stream: str, *index: int) -> int:
    """Independent 32-bit seed for one random step, from the master seed and its position."""
    seq = np.random.SeedSequence([seed, _STREAMS[stream], *index])
    return int(seq.generate_state(1, dtype=np.uint32)[0])
