"""Hatch build hook: ship `rgi_anomalib.pth` in normal and editable wheels alike."""

from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

PTH = {"rgi_anomalib/rgi_anomalib.pth": "rgi_anomalib.pth"}


class CustomBuildHook(BuildHookInterface):
    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        key = "force_include_editable" if version == "editable" else "force_include"
        build_data.setdefault(key, {}).update(PTH)
