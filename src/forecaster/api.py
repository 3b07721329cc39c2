"""The public API: one function per job, each the library call behind one CLI command.

    import forecaster
    config = forecaster.load_config("configs/example.yaml")
    snap = forecaster.load(config, as_of=datetime.date(2025, 4, 1))   # CRM files -> snapshot as of
    model = forecaster.fit(snap, config)                               # -> fitted PipelineModel
    result = forecaster.forecast(config)                               # -> Forecast (summary, trials)

Every function raises a ``ForecasterError`` (``ConfigError``, ``DataError``, ``ModelError``) whose
``problems`` are one line each; nothing here prints or writes files.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import pyarrow as pa

from forecaster import crm
from forecaster.analysis import backtest as _backtest
from forecaster.analysis import compare as _compare
from forecaster.analysis import funnel as _funnel
from forecaster.analysis import periods as _periods
from forecaster.analysis import plan as _plan
from forecaster.analysis.forecast import Forecast, prepare, run_forecast
from forecaster.analysis.scenarios import parse_scenarios
from forecaster.config import Config, load_config
from forecaster.crm import Snapshot
from forecaster.errors import ConfigError
from forecaster.model import PipelineModel
from forecaster.model import fit as _fit

PLAN_MAX_TRIALS = 4000


def _config(config: Config | str | Path) -> Config:
    return config if isinstance(config, Config) else load_config(config)


def load(config: Config | str | Path, as_of: dt.date | None = None) -> Snapshot:
    """Read and validate the CRM export the config names, and cut it as of a date.

    ``as_of``: the first day of the future (nothing dated on or after it is seen); default the config's
    ``forecast.as_of``, else the day after the data's last date. Returns the ``Snapshot``: the deals and
    stage history known before as_of, each deal's current stage and age, the stage spells, the data
    warnings (``snap.warnings``) and what the whole export holds (``snap.export``).
    """
    cfg = _config(config)
    return crm.snapshot(crm.load(cfg), cfg, as_of)


def fit(snapshot: Snapshot, config: Config | str | Path) -> PipelineModel:
    """Fit the pipeline model on a snapshot: per stage and segment the censoring-aware time-in-stage and
    destination tables, the arrivals of new deals and their amounts. Returns the fitted ``PipelineModel``
    (``model.save(dir)`` / ``PipelineModel.load(dir)``)."""
    return _fit(snapshot, _config(config))


def forecast(config: Config | str | Path, *, model_dir: str | Path | None = None,
             progress: Callable[[int, int], None] | None = None) -> Forecast:
    """Forecast revenue and won deals in the config's window (as_of, start, end, trials, seed, quota from
    ``config.forecast``; override with ``config.with_forecast(...)``). ``model_dir``: reuse a saved model.
    Returns a ``Forecast``: ``summary`` (the layout of summary.json), ``sim`` (per-trial and per-deal raw
    results), the snapshot and the model."""
    return run_forecast(_config(config), model_dir=Path(model_dir) if model_dir is not None else None,
                        progress=progress)


@dataclass(frozen=True)
class Comparison:
    """``result``: the compare.json object (baseline and every scenario with paired deltas);
    ``trials``: per scenario and trial revenue and won deals (compare_trials.parquet)."""

    result: dict[str, Any]
    trials: pa.Table


def compare(config: Config | str | Path, *, progress: Callable[[str], None] | None = None) -> Comparison:
    """Run the config's scenarios against the baseline on common random numbers (docs/scenarios.md)."""
    cfg = _config(config)
    scenarios = parse_scenarios(cfg)
    if not scenarios:
        raise ConfigError(f"{cfg.path or 'config'}: no scenarios to compare (add a 'scenarios:' list; "
                          f"see configs/scenarios.yaml)")
    base = prepare(cfg)
    values = _compare.segment_values(base)
    for sc in scenarios:  # every problem before any simulation
        sc.check(values, base.start, base.end)
    result, table = _compare.compare(base, scenarios, progress)
    return Comparison(result, table)


def plan(config: Config | str | Path, target: float, *, confidence: float = 0.8, lever: str = "new_deals",
         stage: str | None = None, trials: int | None = None) -> dict[str, Any]:
    """How much of one lever (new_deals, conversion, duration, amount) makes P(revenue >= target) reach
    ``confidence``, answered in revenue-ops terms, with the reverse funnel. ``trials`` per evaluation
    (default: the config's, at most 4,000)."""
    cfg = _config(config)
    n = trials or min(cfg.forecast.trials, PLAN_MAX_TRIALS)
    base = prepare(cfg.with_forecast(trials=n))
    return _plan.explain(base, _plan.solve(base, target, confidence, lever, stage, n))


@dataclass(frozen=True)
class Backtest:
    """``summary``: the backtest.json object (scores per method and target); ``rows``: one per cutoff,
    method and target (backtest.parquet)."""

    summary: dict[str, Any]
    rows: list[dict[str, Any]]

    def table(self) -> pa.Table:
        return _backtest.rows_table(self.rows)


def backtest(config: Config | str | Path, start: dt.date, end: dt.date, *, every: str = "month",
             window: str = "quarter", progress: Callable[[dt.date], None] | None = None) -> Backtest:
    """Rolling-origin backtest: forecasts as of each cutoff from ``start`` to ``end`` (every week, month or
    quarter) over ``window`` (e.g. '90d', 'month', 'quarter'), scored against what happened."""
    rows, summary = _backtest.backtest(_config(config), start, end, every, window, progress)
    return Backtest(summary, rows)


def funnel(model: PipelineModel, snapshot: Snapshot, segment: tuple[str, ...] = ()) -> dict[str, Any]:
    """Funnel metrics per stage of a model on the snapshot it was fitted on: conversion, win rate, time in
    stage, stale deals, velocity and the bottleneck; ``segment``: 'COL=VALUE' items to select."""
    return _funnel.funnel(model, snapshot, segment)


def funnel_change(snapshot: Snapshot, *, periods: tuple[str, ...] = (), split_by: str | None = None,
                  segment: tuple[str, ...] = (), seed: int = 0) -> dict[str, Any]:
    """Did a process change help? Per stage, the spells that entered it in each period ('START:END', at
    least two) or in each group of the deal column ``split_by`` (optionally within one period), followed up
    to as_of with censoring: shares of exits forward, back and lost and median days in stage with 95%
    intervals, the difference from the first period or group, and a verdict ("different" at most 5% of
    the time when nothing changed). ``segment``: 'COL=VALUE' items (deal columns) to select."""
    seg = {}
    for item in segment:
        if "=" not in item:
            raise ConfigError(f"--segment '{item}': expected COLUMN=VALUE")
        col, value = item.split("=", 1)
        seg[col] = value
    return _periods.compare_periods(snapshot, [_periods.parse_period(p) for p in periods], split_by, seg, seed)
