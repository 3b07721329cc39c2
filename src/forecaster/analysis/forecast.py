"""A forecast: config -> snapshot as of D -> model -> kernel inputs -> simulated trials -> summary.

``prepare`` builds a ``Base`` (everything a forecast needs before the kernel); scenarios change its
tables (analysis.levers) and run on the same streams. ``run_forecast`` is the library call behind
`forecaster forecast` and `forecaster demo`; it writes nothing (report.outputs writes the files).
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np

from forecaster.calendar import calendar_days, period_bounds, to_date
from forecaster.config import DEFAULT_WINDOW_DAYS, Config
from forecaster.crm import CRMData, Snapshot, load, resample, snapshot
from forecaster.errors import ConfigError, ModelError
from forecaster.model import ArrivalTables, OpenDeals, PipelineModel, StageTables, apply_stale, fit
from forecaster.analysis.rollups import rollups
from forecaster.analysis.summary import summarize_base
from forecaster.sim import SimResult, merge_results, open_deals, simulate

MAX_HORIZON_DAYS = 3660  # ten years: far past any sales forecast, far below the kernel's day limit
UNCERTAINTY_BLOCKS = 20


@dataclass(frozen=True)
class Forecast:
    """A finished forecast: the resolved config, the snapshot and model it used, raw results, summary."""

    config: Config
    data: Snapshot
    model: PipelineModel
    sim: SimResult
    open_idx: np.ndarray
    cell: np.ndarray
    age: np.ndarray
    summary: dict[str, Any]
    rollups: tuple[Any, ...] = ()  # analysis.rollups.Rollup per report_by column


def resolve_window(config: Config, as_of: dt.date) -> tuple[dt.date, dt.date]:
    """The forecast window [start, end] (inclusive): the config's, or as_of + 90 days."""
    fc = config.forecast
    start = fc.start or as_of
    end = fc.end or (start + dt.timedelta(days=DEFAULT_WINDOW_DAYS - 1))
    if start < as_of:
        raise ConfigError(f"forecast window starts {start}, before as_of {as_of}: the past is not forecast")
    if end < start:
        raise ConfigError(f"forecast window ends {end}, before it starts {start}")
    if (end - as_of).days >= MAX_HORIZON_DAYS:
        raise ConfigError(f"forecast window ends {end}, more than {MAX_HORIZON_DAYS:,} days after as_of {as_of}; "
                          f"forecast a shorter window")
    return start, end


@dataclass(frozen=True)
class Base:
    """Everything a forecast needs before the kernel: the config with as_of and window resolved, the
    snapshot, the model, the window in day offsets, the open deals and the (stale-adjusted) tables.
    Scenarios start from a Base and change its tables (analysis.levers); the baseline is the Base itself."""

    config: Config
    data: Snapshot
    model: PipelineModel
    start: dt.date
    end: dt.date
    periods: list[tuple[dt.date, dt.date]]
    period_start: np.ndarray
    start_off: int
    end_off: int
    open_idx: np.ndarray
    deals: OpenDeals
    stage: StageTables
    weekday: np.ndarray
    moq: np.ndarray
    timing: dict[str, float]

    @property
    def as_of(self) -> dt.date:
        return to_date(self.data.as_of)

    @property
    def arrivals(self) -> ArrivalTables | None:
        return self.model.arrivals if self.config.forecast.new_deals else None


def model_tables(model: PipelineModel, config: Config) -> StageTables:
    """The model's stage tables with the config's stale rule applied."""
    if config.fit.stale_after_days is not None:
        return apply_stale(model.stage, config.fit.stale_after_days)
    return model.stage


def _snapshot_and_model(config: Config, full: CRMData, model_dir: Path | None
                        ) -> tuple[Snapshot, PipelineModel | None]:
    if model_dir is None:
        return snapshot(full, config, config.forecast.as_of), None
    model = PipelineModel.load(model_dir, expect_fingerprint=full.fingerprint, expect_config=config.fit_identity())
    model_as_of = to_date(model.as_of)
    if config.forecast.as_of is not None and config.forecast.as_of != model_as_of:
        raise ModelError(
            f"{model_dir}: the model was fitted as of {model_as_of}, the forecast is as of "
            f"{config.forecast.as_of}; refit with --as-of {config.forecast.as_of} or drop --as-of"
        )
    return snapshot(full, config, model_as_of), model


def prepare(config: Config, *, model_dir: Path | None = None, full: CRMData | None = None) -> Base:
    """Load the snapshot as of (``full``: the export already loaded, e.g. by a backtest), fit (or load) the
    model, resolve the window and build the kernel inputs."""
    t_start = time.perf_counter()
    full = full if full is not None else load(config)
    snap, model = _snapshot_and_model(config, full, model_dir)
    as_of = snap.as_of_date
    config = config.with_forecast(as_of=as_of)
    start, end = resolve_window(config, as_of)
    config = config.with_forecast(start=start, end=end)
    t_loaded = time.perf_counter()
    if model is None:
        model = fit(snap, config)
    t_fitted = time.perf_counter()

    open_idx, deals = open_deals(snap, model)
    start_off, end_off = (start - as_of).days, (end - as_of).days
    periods = period_bounds(start, end, config.forecast.period)
    period_start = np.array([(a - as_of).days for a, _ in periods] + [end_off + 1], np.int32)
    weekday, moq = calendar_days(snap.as_of, end_off)
    return Base(config, snap, model, start, end, periods, period_start, start_off, end_off, open_idx, deals,
                model_tables(model, config), weekday, moq,
                {"load_s": t_loaded - t_start, "fit_s": t_fitted - t_loaded})


def simulate_base(base: Base, *, stage: StageTables | None = None, deals: OpenDeals | None = None,
                  arrivals: ArrivalTables | None | bool = True, amount_multiplier_new: float = 1.0,
                  n_trials: int | None = None, seed: int | None = None,
                  progress: Callable[[int, int], None] | None = None) -> SimResult:
    """Run the kernel on the base's inputs, or on changed tables (scenarios); same seed, same streams."""
    return simulate(stage if stage is not None else base.stage, deals if deals is not None else base.deals,
                    n_trials=n_trials or base.config.forecast.trials,
                    seed=base.config.forecast.seed if seed is None else seed,
                    start_off=base.start_off, end_off=base.end_off, period_start=base.period_start,
                    arrivals=base.arrivals if arrivals is True else (arrivals or None),
                    day_weekday=base.weekday, day_moq=base.moq,
                    amount_multiplier_new=amount_multiplier_new, progress=progress)


def block_seed(seed: int, block: int) -> int:
    """A seed per block of trials, derived from the user's seed only."""
    return int((seed * 0x9E3779B97F4A7C15 + 0xD1B54A32D192ED03 * (block + 1)) % (1 << 63))


@dataclass(frozen=True)
class Block:
    """A block of trials under parameter uncertainty: its refitted tables and arrivals, size and seed."""

    stage: StageTables
    arrivals: ArrivalTables | None
    n_trials: int
    seed: int


BlockPlan = list[Block]


def block_plan(base: Base) -> BlockPlan | None:
    """With ``forecast.parameter_uncertainty``: the trials cut into blocks, each with a model refitted to a
    bootstrap resample of the deals known at as-of and its own derived seed (None without it)."""
    cfg = base.config
    if not cfg.forecast.parameter_uncertainty:
        return None
    n_blocks = min(UNCERTAINTY_BLOCKS, cfg.forecast.trials)
    sizes = np.full(n_blocks, cfg.forecast.trials // n_blocks)
    sizes[: cfg.forecast.trials % n_blocks] += 1
    rng = np.random.default_rng([cfg.forecast.seed, 0x0B007])
    plan = []
    for b in range(n_blocks):
        idx = rng.integers(0, base.data.n_deals, base.data.n_deals)
        model = fit(resample(base.data, idx), cfg, base.model.groups)
        plan.append(Block(model_tables(model, cfg), model.arrivals if cfg.forecast.new_deals else None,
                          int(sizes[b]), block_seed(cfg.forecast.seed, b)))
    return plan


def simulate_forecast(base: Base, progress: Callable[[int, int], None] | None = None, *,
                      deals: OpenDeals | None = None, new_deals: bool = True,
                      plan: BlockPlan | None = None) -> SimResult:
    """The forecast's trials (``deals``: only these open deals; ``new_deals=False``: no arrivals). With
    ``forecast.parameter_uncertainty``, each block of trials runs on its refitted model (``plan``, made
    once by ``block_plan`` and reused), so the spread carries the estimation error of the tables and
    arrival rates too."""
    cfg = base.config
    if not cfg.forecast.parameter_uncertainty:
        return simulate_base(base, deals=deals, arrivals=True if new_deals else None, progress=progress)
    parts, done = [], 0
    for block in plan if plan is not None else block_plan(base) or []:
        parts.append(simulate_base(base, stage=block.stage, deals=deals,
                                   arrivals=block.arrivals if new_deals else None,
                                   n_trials=block.n_trials, seed=block.seed))
        done += block.n_trials
        if progress is not None:
            progress(done, cfg.forecast.trials)
    return replace(merge_results(parts), seed=cfg.forecast.seed)


def run_forecast(config: Config, *, model_dir: Path | None = None,
                 progress: Callable[[int, int], None] | None = None) -> Forecast:
    """Forecast revenue and won deals in the config's window (flags already merged into ``config``)."""
    t_start = time.perf_counter()
    base = prepare(config, model_dir=model_dir)
    t_prepared = time.perf_counter()
    plan = block_plan(base)
    sim = simulate_forecast(base, progress=progress, plan=plan)
    groups = rollups(base, sim, lambda deals: simulate_forecast(base, deals=deals, new_deals=False, plan=plan))
    t_simulated = time.perf_counter()
    summary = summarize_base(base, sim, rollups=groups)
    summary["timing"] = {**base.timing, "simulate_s": t_simulated - t_prepared,
                         "total_s": time.perf_counter() - t_start}
    d = base.deals
    return Forecast(base.config, base.data, base.model, sim, base.open_idx, d.cell, d.age, summary, tuple(groups))
