"""Which rows, categories and fits a unit of work can reuse from an earlier run (``--resume``).

The unit of work is one model on one dataset and seed; what it keeps on disk is
``unit_store``'s. A resumed run reuses a finished unit, category or fit only when its key
matches: a digest of everything that decides its rows (the model entry, the dataset entry, the
seed, the evaluation settings and, for ``fit_from``, the source's key). A fit that was
interrupted starts again: the unit is a whole fit, not an epoch.

Rows scored with shared weights (a source's own rows and those of every model that loads them)
also record the SHA-256 of those weights. ``fitted.pt`` can then be thrown away: a source that
trains again and reproduces the digest (the same data, seed and CPU) keeps every row scored with
it; one that does not (another CPU or thread count) reruns them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import BenchmarkConfig, DatasetSpec, ModelSpec
from .unit_store import (
    Scored,
    load_categories,
    load_done,
    load_fitted_state,
    save_fitted,
    weights_digest,
)

# The settings of a config that change a unit's rows (run_dir, seeds, models, datasets and the
# free-text fields do not: the unit's own entries and seed are hashed separately).
_EVAL_FIELDS = (
    "image_size",
    "categories",
    "train_batch_size",
    "eval_batch_size",
    "calibration_images",
    "label_free_percentile",
    "qualitative_images",
)


def unit_key(
    cfg: BenchmarkConfig, data: DatasetSpec, spec: ModelSpec, seed: int, source_key: str = ""
) -> str:
    """Digest of what decides one unit's rows; ``source_key``: the key of its ``fit_from``."""
    content = {
        "model": dataclasses.asdict(spec),
        "dataset": dataclasses.asdict(data),
        "seed": seed,
        "eval": {name: getattr(cfg, name) for name in _EVAL_FIELDS},
        "source": source_key,
    }
    text = json.dumps(content, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def unit_keys(
    cfg: BenchmarkConfig, data: DatasetSpec, seed: int, *, flat_names: bool = False
) -> dict[str, str]:
    """Model name -> the key of its unit on this dataset and seed. ``flat_names``: the key the
    unit had before the nested ``init_args`` (2026-12), hashed from the old flat spelling."""
    # Imported here: the model package imports torch and anomalib, which the command line
    # (errors, --help) does not need.
    from ..models.gan_inversion.flat_args import flatten_nested_args

    keys: dict[str, str] = {}
    for model in cfg.models:
        if flat_names:
            model = dataclasses.replace(model, init_args=flatten_nested_args(model.init_args))
        source = keys[model.fit_from] if model.fit_from else ""
        keys[model.name] = unit_key(cfg, data, model, seed, source)
    return keys


def accepted_keys(cfg: BenchmarkConfig, data: DatasetSpec, seed: int) -> dict[str, tuple[str, ...]]:
    """Model name -> the keys under which an earlier run's unit counts: today's, and the one it
    had when it was written with flat init_args (the same settings, spelled the old way), so
    that runs finished before the nested form resume instead of training again."""
    keys, flat = unit_keys(cfg, data, seed), unit_keys(cfg, data, seed, flat_names=True)
    return {name: tuple(dict.fromkeys((keys[name], flat[name]))) for name in keys}


def work_dir(run_dir: Path, model: str, dataset: str, seed: int) -> Path:
    """The folder of one unit of work."""
    return run_dir / "work" / f"{model}_{dataset}_seed{seed}"


@dataclass(frozen=True)
class ResumeOptions:
    """What the command line says about reuse (not YAML keys)."""

    enabled: bool = False  # --resume: reuse what an earlier run finished
    # Models whose fitted weights another model of the config loads (fit_from), also when
    # --models leaves that one out: their weights are saved for a later --resume that runs it.
    fit_sources: frozenset[str] = frozenset()


@dataclass
class SharedWeights:
    """Fitted weights that later models load (``fit_from``), and the fit time they report."""

    state_dict: dict[str, Any]
    seconds: float
    sha256: str  # weights_digest(state_dict)
    trained_now: bool  # by this run, not loaded from an earlier run's fitted.pt


class UnitResume:
    """The resume policy of one dataset and seed: for each model's unit, whether an earlier
    run's rows, scored categories or fitted weights count in this run.

    ``rows_before_fit`` answers before anything is trained; a finished source whose weights were
    not kept trains first and ``rows_after_fit`` answers with the new weights' digest. What this
    run fits and shares goes through ``share_fit``. ``log`` gets one line per decision."""

    def __init__(
        self,
        cfg: BenchmarkConfig,
        data: DatasetSpec,
        seed: int,
        options: ResumeOptions,
        log: Callable[[str], None] = print,
    ) -> None:
        self.cfg, self.data, self.seed, self.options, self.log = cfg, data, seed, options, log
        self.keys = unit_keys(cfg, data, seed)
        self.accepted = accepted_keys(cfg, data, seed)
        self.shared: dict[str, SharedWeights] = {}
        self._done: dict[str, Scored] = {}
        self._partial: dict[str, dict[str, Scored]] = {}
        self._retrain: set[str] = set()  # finished sources whose weights were not kept
        self.reused = 0  # units whose rows were reused
        if options.enabled:
            self._read_earlier_run()

    def work(self, spec: ModelSpec) -> Path:
        return work_dir(self.cfg.run_dir, spec.name, self.data.name, self.seed)

    def _tag(self, spec: ModelSpec) -> str:
        return f"{spec.name} · {self.data.name} · seed {self.seed}"

    def _read_earlier_run(self) -> None:
        """The units finished earlier with the same key; the saved weights of those that a
        pending unit loads and of pending units whose fit finished; the categories that pending
        units scored already."""
        models = self.cfg.models
        for spec in models:
            found = load_done(self.work(spec), self.accepted[spec.name])
            if found is not None:
                self._done[spec.name] = found
        for spec in models:
            loaded_later = any(m.fit_from == spec.name and m.name not in self._done for m in models)
            refit = spec.name not in self._done and spec.fit_from is None
            if not (loaded_later or refit):
                continue
            saved = load_fitted_state(self.work(spec), self.accepted[spec.name])
            if saved is not None:
                state, seconds = saved
                self.shared[spec.name] = SharedWeights(state, seconds, weights_digest(state), False)
            elif spec.name in self._done:
                self._retrain.add(spec.name)
        for spec in models:
            if spec.name not in self._done:
                scored = load_categories(self.work(spec), self.accepted[spec.name])
                if scored:
                    self._partial[spec.name] = scored

    def load_source_fit(self, spec: ModelSpec, trained_now: bool = False) -> None:
        """For a unit run apart from its source (a parallel run): the weights of its
        ``fit_from`` from the source unit's ``fitted.pt``, unless they are not needed (no
        source, already held, or this unit finished by an earlier run). ``trained_now``: the
        source's unit trained them in this run (not an earlier one)."""
        source = spec.fit_from
        if source is None or source in self.shared or spec.name in self._done:
            return
        work = work_dir(self.cfg.run_dir, source, self.data.name, self.seed)
        saved = load_fitted_state(work, self.keys[source])
        if saved is None:
            msg = f"{spec.name}: the fit of {source} is not in {work} (its unit must run first)"
            raise RuntimeError(msg)
        state, seconds = saved
        self.shared[source] = SharedWeights(state, seconds, weights_digest(state), trained_now)

    def weights_to_load(self, spec: ModelSpec) -> SharedWeights | None:
        """What ``spec`` loads instead of training: its source's weights (``fit_from``), or its
        own fit kept by an earlier run that stopped while testing; None: it trains."""
        if spec.fit_from is not None:
            return self.shared[spec.fit_from]
        return self.shared.get(spec.name)

    def weights_of(self, spec: ModelSpec) -> SharedWeights | None:
        """The shared weights ``spec`` is scored with this run: its source's, or its own."""
        return self.shared.get(spec.fit_from or spec.name)

    def _scored_with_these_weights(self, spec: ModelSpec, saved: Scored) -> bool:
        """Whether saved rows of ``spec`` came from the shared weights this run holds. A source
        that trains again may not reproduce its weights bit for bit (another CPU, another thread
        count); rows saved without a digest count only with the weights kept on disk."""
        weights = self.weights_of(spec)
        if weights is None:  # nothing shared was loaded or trained: the unit's key decides
            return True
        if saved.weights_sha256 is None:
            return not weights.trained_now
        return saved.weights_sha256 == weights.sha256

    def _reuse(self, spec: ModelSpec, saved: Scored, why: str) -> Scored:
        self.log(f"{self._tag(spec)}: {why} (--resume)")
        self.reused += 1
        return saved

    def rows_before_fit(self, spec: ModelSpec) -> Scored | None:
        """The rows of a unit finished by an earlier run, if they count without a fit."""
        saved = self._done.get(spec.name)
        if saved is None or spec.name in self._retrain:
            return None
        if self._scored_with_these_weights(spec, saved):
            return self._reuse(spec, saved, "finished by an earlier run, its rows reused")
        self.log(f"{self._tag(spec)}: {spec.fit_from} trained again to other weights: runs again")
        return None

    def rows_after_fit(self, spec: ModelSpec) -> Scored | None:
        """For a finished source whose weights were not kept, now trained again: its rows, if
        the weights came out the same."""
        saved = self._done.get(spec.name)
        if saved is None or spec.name not in self._retrain:
            return None
        weights = self.shared[spec.name]
        sha = weights.sha256[:12]
        if self._scored_with_these_weights(spec, saved):
            # what loads these weights reports the fit time of the rows kept, as before
            weights.seconds = saved.rows[0]["fit_seconds"]
            return self._reuse(spec, saved, f"trained again to the same weights ({sha})")
        self.log(f"{self._tag(spec)}: trained again to other weights ({sha}): tested again")
        return None

    def scored_categories(self, spec: ModelSpec) -> dict[str, Scored]:
        """Category -> its row scored by an earlier run of this unfinished unit, with the
        weights this run holds."""
        kept = {
            cat: scored
            for cat, scored in self._partial.get(spec.name, {}).items()
            if self._scored_with_these_weights(spec, scored)
        }
        if kept:
            scored = ", ".join(kept)
            self.log(f"{self._tag(spec)}: {scored} scored by an earlier run, kept (--resume)")
        return kept

    def share_fit(self, spec: ModelSpec, state_dict: dict[str, Any], seconds: float) -> None:
        """Keep (and save, for a later --resume) the fitted weights while a later model loads
        them: a copy taken before testing, so a resumed run loads exactly what an uninterrupted
        one does."""
        if spec.name in self.shared:  # loaded from this unit's own fitted.pt
            return
        models = self.cfg.models
        if spec.name in self.options.fit_sources or any(m.fit_from == spec.name for m in models):
            state = {k: v.detach().clone() for k, v in state_dict.items()}
            self.shared[spec.name] = SharedWeights(state, seconds, weights_digest(state), True)
            save_fitted(self.work(spec), self.keys[spec.name], state, seconds)

    def trained_now(self, spec: ModelSpec) -> bool:
        """Whether this run trained the weights ``spec`` shares (its own fit)."""
        weights = self.shared.get(spec.name)
        return weights is not None and weights.trained_now

    def weights_sha256(self, spec: ModelSpec) -> str | None:
        """The digest recorded with the rows of ``spec`` (None: no shared weights)."""
        weights = self.weights_of(spec)
        return weights.sha256 if weights is not None else None


def describe_kept(cfg: BenchmarkConfig) -> list[str]:
    """What a later ``--resume`` of this config reuses from ``cfg.run_dir``: one line per model,
    dataset and seed with something kept (its rows, its fitted weights, scored categories)."""
    lines = []
    for spec in cfg.datasets:
        for seed in cfg.seeds:
            keys = accepted_keys(cfg, spec, seed)
            for model in cfg.models:
                work = work_dir(cfg.run_dir, model.name, spec.name, seed)
                tag = f"{model.name} · {spec.name} · seed {seed}"
                if work.is_dir():
                    lines += _kept_in(work, keys[model.name], tag)
    return lines


def _kept_in(work: Path, key: tuple[str, ...], tag: str) -> list[str]:
    done = load_done(work, key)
    if done is not None:
        return [f"{tag}: finished ({len(done.rows)} categories scored)"]
    kept = []
    if load_fitted_state(work, key) is not None:
        kept.append("its fit")
    scored = load_categories(work, key)
    if scored:
        kept.append(f"categories {', '.join(scored)} scored")
    return [f"{tag}: {' and '.join(kept)} kept, the rest runs again"] if kept else []
