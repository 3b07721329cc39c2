"""Orchestration of a forecast: config -> data as of D -> model -> kernel inputs -> simulate -> summary.

``run_forecast`` is the library call behind `forecaster forecast` and `forecaster demo`; it writes
nothing. ``write_outputs`` writes summary.json, trials.parquet, deals.parquet and config.resolved.yaml,
each atomically.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from forecaster import __version__
from forecaster.config import DEFAULT_WINDOW_DAYS, Config, dump_config
from forecaster.data import CRMData, load, load_as_of_data, resample, to_date
from forecaster.engine import SimResult, calendar_days, simulate
from forecaster.errors import ConfigError, ModelError
from forecaster.files import write_atomic, write_with
from forecaster.model import PipelineModel, apply_stale, deal_cells, fit
from forecaster.results import period_bounds, summarize
from forecaster.tables import ArrivalTables, OpenDeals, StageTables


MAX_HORIZON_DAYS = 3660  # ten years: far past any sales forecast, far below the kernel's day limit


@dataclass(frozen=True)
class Forecast:
    """A finished forecast: the resolved config, the data and model it used, raw results, summary."""

    config: Config
    data: CRMData
    model: PipelineModel
    sim: SimResult
    open_idx: np.ndarray
    cell: np.ndarray
    age: np.ndarray
    summary: dict[str, Any]


def stream_ids(deal_ids: np.ndarray) -> np.ndarray:
    """A stable random-stream key per deal (64-bit hash of its id, below 2**63): a deal sees the same
    draws whatever other deals exist, in every scenario and as-of run (common random numbers)."""
    out = np.fromiter(
        (int.from_bytes(hashlib.blake2b(str(d).encode(), digest_size=8).digest(), "little") >> 1 for d in deal_ids),
        dtype=np.int64, count=len(deal_ids),
    )
    if len(np.unique(out)) != len(out):  # pragma: no cover - 2**-63 per pair
        raise ModelError("two deal ids hash to the same random stream; rename one")
    return out


def resolve_window(config: Config, as_of: dt.date) -> tuple[dt.date, dt.date]:
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
    data as of, the model, the window in day offsets, the open deals and the (stale-adjusted) tables.
    Scenarios start from a Base and change its tables (levers.py); the baseline is the Base itself."""

    config: Config
    data: CRMData
    model: PipelineModel
    start: dt.date
    end: dt.date
    periods: list[tuple[dt.date, dt.date]]
    period_start: np.ndarray
    start_off: int
    end_off: int
    open_idx: np.ndarray
    cell: np.ndarray
    age: np.ndarray
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


def prepare(config: Config, *, model_dir: Path | None = None, full: CRMData | None = None) -> Base:
    """Load the data as of (``full``: the export already loaded, e.g. by a backtest), fit (or load) the
    model, resolve the window and build the kernel inputs."""
    t_start = time.perf_counter()
    full = full if full is not None else load(config)
    if model_dir is not None:
        model = PipelineModel.load(model_dir, expect_fingerprint=full.fingerprint)
        model_as_of = to_date(model.as_of)
        if config.forecast.as_of is not None and config.forecast.as_of != model_as_of:
            raise ModelError(
                f"{model_dir}: the model was fitted as of {model_as_of}, the forecast is as of "
                f"{config.forecast.as_of}; refit with --as-of {config.forecast.as_of} or drop --as-of"
            )
        data = load_as_of_data(full, config, model_as_of)
    else:
        data = load_as_of_data(full, config, config.forecast.as_of)
    as_of = to_date(data.as_of)
    config = config.with_forecast(as_of=as_of)
    start, end = resolve_window(config, as_of)
    config = config.with_forecast(start=start, end=end)
    t_loaded = time.perf_counter()
    if model_dir is None:
        model = fit(data, config)
    t_fitted = time.perf_counter()

    stage = model.stage
    if config.fit.stale_after_days is not None:
        stage = apply_stale(stage, config.fit.stale_after_days)
    open_idx, cell, age, group = deal_cells(data, model)
    deals = OpenDeals(cell=cell, age=age, amount=data.amount[open_idx].astype(np.float64), group=group,
                      stream_id=stream_ids(data.deal_id[open_idx]))
    start_off, end_off = (start - as_of).days, (end - as_of).days
    periods = period_bounds(start, end, config.forecast.period)
    period_start = np.array([(a - as_of).days for a, _ in periods] + [end_off + 1], np.int32)
    weekday, moq = calendar_days(data.as_of, end_off)
    return Base(config, data, model, start, end, periods, period_start, start_off, end_off, open_idx, cell, age,
                deals, stage, weekday, moq, {"load_s": t_loaded - t_start, "fit_s": t_fitted - t_loaded})


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


def summarize_base(base: Base, sim: SimResult, deals: OpenDeals | None = None) -> dict[str, Any]:
    deals = deals if deals is not None else base.deals
    model = base.model
    summary = summarize(
        sim, as_of=base.as_of, start=base.start, end=base.end, periods=base.periods,
        segment_names=[model.group_name(g) for g in range(model.n_groups)],
        quota=base.config.forecast.quota, open_deals=deals.n_deals, open_amount=float(deals.amount.sum()),
        stage_names=list(model.stages),
    )
    summary["new_deals"] = bool(base.config.forecast.new_deals)
    summary["config_sha256"] = base.config.sha256
    summary["version"] = __version__
    summary["data_warnings"] = base.data.warning_counts()
    return summary


UNCERTAINTY_BLOCKS = 20


def block_seed(seed: int, block: int) -> int:
    """A seed per block of trials, derived from the user's seed only."""
    return int((seed * 0x9E3779B97F4A7C15 + 0xD1B54A32D192ED03 * (block + 1)) % (1 << 63))


def merge_results(parts: list[SimResult]) -> SimResult:
    """Blocks of trials (in order) as one result: per-trial arrays concatenated, per-deal counts added."""
    first = parts[0]
    cat = {f: np.concatenate([getattr(p, f) for p in parts]) for f in (
        "revenue", "won_deals", "period_revenue", "period_wins", "group_revenue", "group_wins", "new_revenue",
        "new_wins", "lost_deals", "carried_deals", "carried_amount")}
    add = {f: sum(getattr(p, f) for p in parts) for f in (
        "deal_won_trials", "deal_lost_trials", "deal_win_hist", "deal_trials", "deal_steps")}
    return dataclasses.replace(first, n_trials=sum(p.n_trials for p in parts), **cat, **add)


def simulate_forecast(base: Base, progress: Callable[[int, int], None] | None = None) -> SimResult:
    """The forecast's trials. With ``forecast.parameter_uncertainty``, the trials are cut into blocks and
    each block runs on a model refitted to a bootstrap resample of the deals known at as-of (its own
    derived seed), so the spread carries the estimation error of the tables and arrival rates too."""
    cfg = base.config
    if not cfg.forecast.parameter_uncertainty:
        return simulate_base(base, progress=progress)
    n_blocks = min(UNCERTAINTY_BLOCKS, cfg.forecast.trials)
    sizes = np.full(n_blocks, cfg.forecast.trials // n_blocks)
    sizes[: cfg.forecast.trials % n_blocks] += 1
    rng = np.random.default_rng([cfg.forecast.seed, 0x0B007])
    parts, done = [], 0
    for b in range(n_blocks):
        idx = rng.integers(0, base.data.n_deals, base.data.n_deals)
        model = fit(resample(base.data, idx), cfg, base.model.groups)
        stage = model.stage
        if cfg.fit.stale_after_days is not None:
            stage = apply_stale(stage, cfg.fit.stale_after_days)
        parts.append(simulate_base(base, stage=stage, arrivals=model.arrivals if cfg.forecast.new_deals else None,
                                   n_trials=int(sizes[b]), seed=block_seed(cfg.forecast.seed, b)))
        done += int(sizes[b])
        if progress is not None:
            progress(done, cfg.forecast.trials)
    return dataclasses.replace(merge_results(parts), seed=cfg.forecast.seed)


def run_forecast(config: Config, *, model_dir: Path | None = None,
                 progress: Callable[[int, int], None] | None = None) -> Forecast:
    """Forecast revenue and won deals in the config's window (flags already merged into ``config``)."""
    t_start = time.perf_counter()
    base = prepare(config, model_dir=model_dir)
    t_prepared = time.perf_counter()
    sim = simulate_forecast(base, progress=progress)
    t_simulated = time.perf_counter()
    summary = summarize_base(base, sim)
    summary["timing"] = {**base.timing, "simulate_s": t_simulated - t_prepared,
                         "total_s": time.perf_counter() - t_start}
    return Forecast(base.config, base.data, base.model, sim, base.open_idx, base.cell, base.age, summary)


def trials_table(f: Forecast) -> pa.Table:
    """One row per trial: trial, revenue, won_deals, and per period its revenue and wins."""
    sim = f.sim
    cols: dict[str, Any] = {"trial": np.arange(sim.n_trials, dtype=np.int64), "revenue": sim.revenue,
                            "won_deals": sim.won_deals, "new_deal_revenue": sim.new_revenue}
    for p, period in enumerate(f.summary["periods"]):
        cols[f"revenue_{period['start']}"] = sim.period_revenue[:, p]
    for p, period in enumerate(f.summary["periods"]):
        cols[f"won_deals_{period['start']}"] = sim.period_wins[:, p]
    return pa.table(cols)


def deals_table(f: Forecast) -> pa.Table:
    """One row per open deal: its state at as_of, segment and what the trials say about it."""
    sim, data, model = f.sim, f.data, f.model
    idx = f.open_idx
    amount = data.amount[idx]
    med = sim.deal_median_win_off()
    med_day = np.where(med >= 0, data.as_of + med, 0).astype(np.int32)
    med_dates = pa.array(med_day, pa.date32()).to_pylist()
    cols: dict[str, Any] = {
        "deal_id": pa.array(data.deal_id[idx].tolist(), pa.string()),
        "stage": pa.array([model.stages[s] for s in (f.cell % model.n_stages).tolist()], pa.string()),
        "age_days": f.age,
        "amount": amount,
    }
    for col in model.segment_by:
        cols[col] = data.attrs[col].take(pa.array(idx))
    cols.update({
        "p_win": sim.deal_p_win,
        "p_lost": sim.deal_p_lost,
        "expected_revenue": sim.deal_p_win * amount,
        "median_close_date": pa.array([d if m >= 0 else None for d, m in zip(med_dates, med.tolist())], pa.date32()),
    })
    return pa.table(cols)


def _parquet_writer(table: pa.Table) -> Callable[[str], None]:
    return lambda tmp: pq.write_table(table, tmp)


def write_outputs(f: Forecast, out_dir: Path) -> list[Path]:
    """summary.json, trials.parquet, deals.parquet, config.resolved.yaml (each written atomically)."""
    from forecaster.report import dumps

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    return [
        write_with(out_dir / "trials.parquet", _parquet_writer(trials_table(f))),
        write_with(out_dir / "deals.parquet", _parquet_writer(deals_table(f))),
        write_atomic(out_dir / "config.resolved.yaml", dump_config(f.config)),
        write_atomic(out_dir / "summary.json", dumps(f.summary)),
    ]


__all__ = ["Base", "Forecast", "prepare", "simulate_base", "summarize_base", "run_forecast", "write_outputs", "deals_table", "trials_table", "stream_ids"]
