"""The RASL detector's parameters, declared and checked once (the nn.Module and the Lightning
model both take them from here)."""

from __future__ import annotations

from dataclasses import dataclass

from .rpca import check_lambda, check_precision, check_rank, check_svd
from .warps import check_transform


def _check_optional_int(name: str, value: int | None, minimum: int) -> None:
    if value is not None and (
        isinstance(value, bool) or not isinstance(value, int) or value < minimum
    ):
        msg = f"{name} must be None or an integer >= {minimum}, got {value!r}."
        raise ValueError(msg)


@dataclass(frozen=True)
class RaslParams:
    """Parameters of ``RaslModel`` (meanings: its docstring). Solver settings differ from
    ``rasl()``'s exact-recovery defaults on purpose: float32, a looser IALM tolerance and fewer
    outer steps are twice as fast and ample for anomaly maps (docs/rasl.md)."""

    transform: str = "similarity"
    n_reference: int = 32
    working_size: int | None = None
    lam: float | None = None
    lambda_scale: float = 1.0
    rank: int | None = None
    test_chunk: int | None = None
    align_references: bool = True
    grayscale: bool = False
    sigma: float = 1.0
    max_outer: int = 10
    max_inner: int = 300
    inner_tol: float = 1e-5
    svd: str = "gram"
    precision: str = "float32"
    num_threads: int | None = 1
    seed: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "transform", check_transform(self.transform))
        check_lambda(self.lam, self.lambda_scale)
        n_ref = self.n_reference
        if isinstance(n_ref, bool) or not isinstance(n_ref, int) or n_ref < 1:
            msg = f"n_reference must be a positive integer, got {n_ref!r}."
            raise ValueError(msg)
        # A rank >= the number of references lets A absorb a test image entirely.
        check_rank(self.rank, n_ref)
        _check_optional_int("test_chunk", self.test_chunk, 1)
        if self.sigma < 0:
            msg = f"sigma must be >= 0, got {self.sigma!r}."
            raise ValueError(msg)
        _check_optional_int("working_size", self.working_size, 4)
        check_svd(self.svd)
        check_precision(self.precision)
        _check_optional_int("num_threads", self.num_threads, 1)
