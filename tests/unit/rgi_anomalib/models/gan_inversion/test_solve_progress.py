"""Progress within one batch's solve (issue 32): the solver's ``progress`` callback, its tiled
count, and ``SolveProgress`` (the bar text or a throttled log line) in a real Lightning run."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import pytest
import torch
from model_helpers import FAST_RGI, nested
from torch import nn

from rgi_anomalib.models import Rgi
from rgi_anomalib.models.gan_inversion.networks import Generator
from rgi_anomalib.models.gan_inversion.solve_progress import SolveProgress
from rgi_anomalib.models.gan_inversion.solver import InversionConfig, InversionResult, invert
from rgi_anomalib.models.gan_inversion.tiling import invert_tiled

LATENT = 16


def small_generator() -> Generator:
    torch.manual_seed(0)
    return Generator(32, latent_dim=LATENT, base_width=8, max_width=32).eval()


def images(n: int = 2, size: int = 32) -> torch.Tensor:
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(1)) * 2 - 1


def assert_same(a: InversionResult, b: InversionResult) -> None:
    for field in dataclasses.fields(InversionResult):
        x, y = getattr(a, field.name), getattr(b, field.name)
        if isinstance(x, torch.Tensor):
            assert torch.equal(x, y), field.name
        else:
            assert x == y, field.name


@pytest.mark.parametrize(
    "config",
    [
        InversionConfig(iterations=12, init_candidates=8),  # RGI, M updated by Adam
        # R-RGI: per-image generator copies join for the last 5 iterations
        InversionConfig(iterations=12, init_candidates=8, finetune_iterations=5, lam=0.12),
    ],
    ids=["rgi", "rrgi"],
)
def test_solver_reports_every_iteration_and_changes_no_result(config: InversionConfig) -> None:
    generator = small_generator()
    calls: list[tuple[int, int]] = []
    with_progress = invert(generator, images(), config, progress=lambda *c: calls.append(c))
    without = invert(generator, images(), config)
    assert calls == [(i, 12) for i in range(1, 13)]
    assert_same(with_progress, without)


def test_solver_progress_stops_with_an_early_stop() -> None:
    config = InversionConfig(
        objective="l2", iterations=200, init_candidates=8, early_stop_patience=2, lr_latent=1e-9
    )
    calls: list[tuple[int, int]] = []
    result = invert(small_generator(), images(), config, progress=lambda *c: calls.append(c))
    assert result.iterations_run < 200
    assert calls == [(i, 200) for i in range(1, result.iterations_run + 1)]


class PixelGenerator(nn.Module):
    """G(z) = tanh(z) as an 8 px tile (as in test_tiling.py)."""

    latent_dim = 3 * 8 * 8

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.scale * z).view(z.shape[0], 3, 8, 8)


@pytest.mark.parametrize(
    ("patience", "expected"),
    [
        (0, list(range(1, 16))),
        # Every chunk stops after 2 iterations (no progress at this learning rate) and then
        # counts as done.
        (1, [1, 2, 5, 6, 7, 10, 11, 12, 15]),
    ],
)
def test_tiled_progress_counts_over_all_chunks(patience: int, expected: list[int]) -> None:
    # 2 images of 16 px, 8 px tiles at stride 4: 18 tiles, 3 chunks of <= 8 tiles.
    config = InversionConfig(
        objective="l2",
        iterations=5,
        init_candidates=4,
        early_stop_patience=patience,
        lr_latent=1e-9 if patience else 0.1,
    )
    calls: list[tuple[int, int]] = []

    def solve(progress: object) -> InversionResult:
        return invert_tiled(
            PixelGenerator(), images(2, 16), config, 8, 4, chunk=8, progress=progress
        )

    result = solve(lambda *c: calls.append(c))
    assert {t for _, t in calls} == {15}  # 3 chunks x 5 iterations
    assert [d for d, _ in calls] == expected  # strictly increasing, to the end
    assert_same(result, solve(None))


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_log_lines_are_throttled(caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    progress = SolveProgress("Rgi: test batch 3", clock=clock)
    with caplog.at_level(logging.INFO, "rgi_anomalib.models.gan_inversion.solve_progress"):
        for done in range(1, 301):
            clock.now = done * 0.1  # 30 s in all
            progress(done, 300)
        progress.close()
    messages = [r.getMessage() for r in caplog.records]
    # Nothing in the first 10 s, then at most one line per 10 s.
    assert messages == [
        "Rgi: test batch 3: solve 33% (100/300 iterations)",
        "Rgi: test batch 3: solve 66% (200/300 iterations)",
        "Rgi: test batch 3: solve 100% (300/300 iterations)",
    ]


class FakeBar:
    def __init__(self) -> None:
        self.shown: list[str] = []
        self.cleared = False

    def show(self, text: str) -> None:
        self.shown.append(text)

    def clear(self) -> None:
        self.cleared = True


def test_bar_text_is_throttled_and_cleared(caplog: pytest.LogCaptureFixture) -> None:
    clock, bar = FakeClock(), FakeBar()
    progress = SolveProgress("Rgi: validation batch 1", bar=bar, clock=clock)  # type: ignore[arg-type]
    with caplog.at_level(logging.INFO):
        for done in range(1, 11):
            clock.now = done * 0.25
            progress(done, 10)
        progress.close()
    assert bar.shown == [f"solve {p}% ({p // 10}/10 it)" for p in (20, 40, 60, 80, 100)]
    assert bar.cleared
    assert caplog.records == []  # the bar, not the log


def test_lightning_run_logs_solve_progress_without_a_progress_bar(
    tiny_datamodule: object,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from anomalib.engine import Engine

    monkeypatch.setattr(SolveProgress, "log_every_s", 0.0)  # every iteration, for the test
    model = Rgi(**nested(**{**FAST_RGI, "iterations": 4}))
    engine = Engine(default_root_dir=tmp_path, logger=False, enable_progress_bar=False)
    with caplog.at_level(logging.INFO, "rgi_anomalib.models.gan_inversion.solve_progress"):
        engine.validate(model=model, datamodule=tiny_datamodule)
    messages = [r.getMessage() for r in caplog.records if r.name.endswith("solve_progress")]
    # 32 px images and 32 px tiles: one chunk per batch, 4 iterations.
    assert "Rgi: validation batch 1: solve 25% (1/4 iterations)" in messages
    assert "Rgi: validation batch 1: solve 100% (4/4 iterations)" in messages
