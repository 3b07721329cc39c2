"""A forecast: config -> snapshot as of D -> model -> kernel inputs -> simulated trials -> summary.

``prepare`` builds a ``Base`` (everything a forecast needs before the kernel); scenarios change its
tables (analysis.levers) and run on the same streams. ``run_forecast`` is the library call behind
`forecaster forecast` and `forecaster demo`; it writes nothing (report.outputs writes the files).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np

from forecaster.analysis.rollups import rollups
from forecaster.analysis.summary import summarize_base
from forecaster.calendar import calendar_days, period_bounds, quarter_bounds, to_date
from forecaster.config import Config
from forecaster.crm import CRMData, Snapshot, load, resample, snapshot
from forecaster.errors import ConfigError, ModelError
from forecaster.model import ArrivalTables, MixEffects, OpenDeals, PipelineModel, StageTables, apply_stale, fit
from forecaster.sim import SimResult, merge_results, open_deals
from forecaster.sim.engines import LOCAL, Engine, SimSpec, trial_blocks

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
    base: Base | None = None  # the prepared inputs (a report reruns its trials with weekly periods)
    rollups: tuple[Any, ...] = ()  # analysis.rollups.Rollup per report_by column


def resolve_window(config: Config, as_of: dt.date) -> tuple[dt.date, dt.date]:
    """The forecast window [start, end] (inclusive): the config's, or the rest of the fiscal quarter that
    contains the start (as_of by default: a revenue team forecasts the quarter)."""
    fc = config.forecast
    start = fc.start or as_of
    end = fc.end or quarter_bounds(start, config.calendar.fiscal_year_start)[1]
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
    refits: dict[int, Any] = field(default_factory=dict, compare=False, repr=False)  # bootstrap_tables' cache

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
        window_days = (end - as_of).days + 1
        drift: dict | None = None
        if config.fit.half_life_days == "auto":
            from forecaster.analysis.drift import choose_half_life

            chosen, drift = choose_half_life(full, config, as_of, window_days)
            config = dataclasses.replace(config, fit=dataclasses.replace(config.fit, half_life_days=chosen))
        model = fit(snap, config, window_days=window_days)
        if drift is not None:
            model.meta["half_life_auto"] = {"chosen": config.fit.half_life_days or "off", **drift}
    t_fitted = time.perf_counter()

    open_idx, deals = open_deals(snap, model)
    start_off, end_off = (start - as_of).days, (end - as_of).days
    fiscal = config.calendar.fiscal_year_start
    periods = period_bounds(start, end, config.forecast.period, fiscal)
    period_start = np.array([(a - as_of).days for a, _ in periods] + [end_off + 1], np.int32)
    weekday, moq = calendar_days(snap.as_of, end_off, fiscal)
    return Base(config, snap, model, start, end, periods, period_start, start_off, end_off, open_idx, deals,
                model_tables(model, config), weekday, moq,
                {"load_s": t_loaded - t_start, "fit_s": t_fitted - t_loaded})


def base_effects(base: Base) -> MixEffects:
    """The model's calendar shifts and shared shock, less what the config switches off (fit.calendar_effects,
    fit.shared_shocks)."""
    fc = base.config.fit
    return base.model.effects.without(calendar=not fc.calendar_effects, frailty=not fc.shared_shocks)


def base_spec(base: Base, *, stage: StageTables | None = None, deals: OpenDeals | None = None,
              arrivals: ArrivalTables | None | bool = True, amount_multiplier_new: float = 1.0,
              n_trials: int | None = None, seed: int | None = None, effects: MixEffects | None | bool = True
              ) -> SimSpec:
    """The kernel run on the base's inputs, or on changed tables (scenarios); same seed, same streams.
    ``effects``: True for the base's (``base_effects``), None for none, or others (ablations)."""
    return SimSpec(stage if stage is not None else base.stage, deals if deals is not None else base.deals,
                   n_trials=n_trials or base.config.forecast.trials,
                   seed=base.config.forecast.seed if seed is None else seed,
                   start_off=base.start_off, end_off=base.end_off, period_start=base.period_start,
                   arrivals=base.arrivals if arrivals is True else (arrivals or None),
                   day_weekday=base.weekday, day_moq=base.moq, amount_multiplier_new=amount_multiplier_new,
                   effects=base_effects(base) if effects is True else (effects or None))


def simulate_base(base: Base, *, progress: Callable[[int, int], None] | None = None, engine: Engine = LOCAL,
                  **changes: Any) -> SimResult:
    """Run ``base_spec(base, **changes)`` on the engine (default: this process)."""
    return engine.simulate(base_spec(base, **changes), progress)


def block_seed(seed: int, block: int) -> int:
    """A seed per block of trials, derived from the user's seed only."""
    return int((seed * 0x9E3779B97F4A7C15 + 0xD1B54A32D192ED03 * (block + 1)) % (1 << 63))


def bootstrap_blocks(n_trials: int) -> list[tuple[int, int]]:
    return trial_blocks(n_trials, min(UNCERTAINTY_BLOCKS, n_trials))


def resample_indices(base: Base, block: int) -> np.ndarray:
    """int64 [deals known at as-of]: the bootstrap resample of block ``block``, the block-th draw of the
    run's bootstrap stream, drawn again from the start so that a block needs only its index (no worker
    receives or draws anything else)."""
    rng = np.random.default_rng([base.config.forecast.seed, 0x0B007])
    for _ in range(block):
        rng.integers(0, base.data.n_deals, base.data.n_deals)
    return rng.integers(0, base.data.n_deals, base.data.n_deals)


def posterior_arrivals(base: Base, block: int) -> ArrivalTables:
    """The fitted arrivals with each group's rate times a draw of its posterior multiplier Gamma(n, 1/n)
    for n deals seen (block ``block``'s own stream)."""
    a = base.model.arrivals
    n = a.rate * max(int(base.model.meta.get("arrival_window", {}).get("days", 1)), 1)
    rng = np.random.default_rng([base.config.forecast.seed, 0xA771, block])
    mult = np.where(n > 0, rng.gamma(np.maximum(n, 1e-9), 1.0 / np.maximum(n, 1e-9)), 1.0)
    return ArrivalTables(a.rate * mult, a.weekday_factor, a.moq_factor, a.gamma_shape, a.entry_p, a.amount_pool,
                         a.amount_off).check()


def bootstrap_tables(base: Base, block: int) -> tuple[StageTables, ArrivalTables | None]:
    """Block ``block``'s stage tables, refitted to its bootstrap resample of the deals known at as-of, and
    its arrivals, drawn from their posterior (a resample of deals would put copies on the same days and
    invent overdispersion); made once per process and kept on the base (report_by reruns the same blocks
    for each group's deals)."""
    if block not in base.refits:
        cfg = base.config
        model = fit(resample(base.data, resample_indices(base, block)), cfg, base.model.groups,
                    window_days=base.end_off + 1)
        base.refits[block] = (model_tables(model, cfg), posterior_arrivals(base, block) if cfg.forecast.new_deals
                              else None)
    return base.refits[block]


@dataclass(frozen=True)
class BootstrapBlock:
    """One block of trials under parameter uncertainty: its index (which resample, which seed), its size,
    and which open deals (None: all) and whether new deals run in it."""

    index: int
    n_trials: int
    deals: OpenDeals | None = None
    new_deals: bool = True


def bootstrap_block(base: Base, unit: BootstrapBlock) -> SimResult:
    """One bootstrap block: its trials on the refitted model, on the block's seed."""
    stage, arrivals = bootstrap_tables(base, unit.index)
    return simulate_base(base, stage=stage, deals=unit.deals, arrivals=arrivals if unit.new_deals else None,
                         n_trials=unit.n_trials, seed=block_seed(base.config.forecast.seed, unit.index))


def simulate_forecast(base: Base, progress: Callable[[int, int], None] | None = None, engine: Engine = LOCAL, *,
                      deals: OpenDeals | None = None, new_deals: bool = True) -> SimResult:
    """The forecast's trials (``deals``: only these open deals; ``new_deals=False``: no arrivals). With
    ``forecast.parameter_uncertainty``, the trials are cut into blocks and each block runs on a model
    refitted to a bootstrap resample of the deals known at as-of (its own derived seed), so the spread
    carries the estimation error of the tables and arrival rates too. On a Dask engine the trials (or the
    bootstrap blocks) run on the workers, with the same result."""
    cfg = base.config
    if not cfg.forecast.parameter_uncertainty:
        return simulate_base(base, deals=deals, arrivals=True if new_deals else None, progress=progress,
                             engine=engine)
    units = [BootstrapBlock(b, n, deals, new_deals) for b, (_, n) in enumerate(bootstrap_blocks(cfg.forecast.trials))]
    done = [0]

    def step(b: int) -> None:  # blocks may finish in any order on a Dask engine
        done[0] += units[b].n_trials
        if progress is not None:
            progress(done[0], cfg.forecast.trials)

    parts = engine.map(bootstrap_block, units, base, progress=step)
    return replace(merge_results(parts), seed=cfg.forecast.seed)


def subset_simulator(base: Base, engine: Engine = LOCAL) -> Callable[[OpenDeals], SimResult]:
    """The forecast's trials of some of its open deals, without new deals: the same seed, blocks and models,
    so each deal does exactly what it did in the full forecast (its own stream; report_by and spread)."""
    return lambda deals: simulate_forecast(base, engine=engine, deals=deals, new_deals=False)


def run_forecast(config: Config, *, model_dir: Path | None = None,
                 progress: Callable[[int, int], None] | None = None, engine: Engine = LOCAL) -> Forecast:
    """Forecast revenue and won deals in the config's window (flags already merged into ``config``)."""
    t_start = time.perf_counter()
    base = prepare(config, model_dir=model_dir)
    t_prepared = time.perf_counter()
    sim = simulate_forecast(base, progress=progress, engine=engine)
    groups = rollups(base, sim, subset_simulator(base, engine))
    t_simulated = time.perf_counter()
    summary = summarize_base(base, sim, rollups=groups)
    summary["timing"] = {**base.timing, "simulate_s": t_simulated - t_prepared,
                         "total_s": time.perf_counter() - t_start, "engine": engine.describe()}
    d = base.deals
    return Forecast(base.config, base.data, base.model, sim, base.open_idx, d.cell, d.age, summary, base,
                    tuple(groups))
