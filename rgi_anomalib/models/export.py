"""``anomalib export`` for models whose inference is an optimisation: refused up front.

anomalib's export formats hold a fixed computation: ONNX and OpenVINO a static graph, ``torch`` a
pickled module (which fails for a module with parametrisations such as spectral norm). RGI, R-RGI
and AnoGAN infer by running hundreds of optimiser steps per image through the generator, and RASL
by an iterative decomposition with data-dependent stopping; no static graph reproduces either.

``ExportRefusalMixin`` overrides anomalib's ``to_torch`` / ``to_onnx`` / ``to_openvino`` (what
``Engine.export`` and the ``anomalib export`` command call) so that a refused format raises one
``ExportNotSupportedError`` before anything is written. Formats not refused go to anomalib's.
"""

from __future__ import annotations

from typing import Any, ClassVar, NoReturn

from rgi_anomalib.utils import OneLineError, print_uncaught_as_one_line

EXPORT_FORMATS = ("torch", "onnx", "openvino")


class ExportNotSupportedError(OneLineError, NotImplementedError):
    """The model's inference cannot be exported to this format (nothing was written)."""


class ExportRefusalMixin:
    """Refuse anomalib's export formats in ``refused_exports`` before any file is written.

    Put it before ``AnomalibModule`` in the bases; set ``export_reason`` (why a static export
    cannot hold the model's inference) and, optionally, ``refused_exports``.
    """

    refused_exports: ClassVar[tuple[str, ...]] = EXPORT_FORMATS
    export_reason: ClassVar[str] = "its inference is an optimisation, not a static graph"

    def _export_advice(self) -> str:
        name = self.__class__.__name__
        return (
            f"predict from the checkpoint instead: `anomalib predict --model {name} "
            "--ckpt_path MODEL.ckpt --data IMAGES` (plus the --model options it was trained "
            "with), or in Python "
            f"`Engine().predict(model={name}(...), ckpt_path=..., data_path=...)`"
        )

    def refuse_export(self, export_type: str) -> None:
        """Raise ``ExportNotSupportedError`` if ``export_type`` is refused; else return."""
        export_type = getattr(export_type, "value", export_type)
        if export_type not in self.refused_exports:
            return
        _raise_refusal(
            f"{self.__class__.__name__} cannot be exported to {export_type}: "
            f"{self.export_reason}, so no exported file could reproduce its results. "
            f"Nothing was written; {self._export_advice()}."
        )

    def to_torch(self, *args: Any, **kwargs: Any) -> Any:
        self.refuse_export("torch")
        return super().to_torch(*args, **kwargs)  # type: ignore[misc]

    def to_onnx(self, *args: Any, **kwargs: Any) -> Any:
        self.refuse_export("onnx")
        return super().to_onnx(*args, **kwargs)  # type: ignore[misc]

    def to_openvino(self, *args: Any, **kwargs: Any) -> Any:
        self.refuse_export("openvino")
        return super().to_openvino(*args, **kwargs)  # type: ignore[misc]


def _raise_refusal(message: str) -> NoReturn:
    print_uncaught_as_one_line()
    raise ExportNotSupportedError(message)
