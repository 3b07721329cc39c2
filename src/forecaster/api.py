"""The public API: one function per job, each the library call behind one CLI command.

    import forecaster
    config = forecaster.load_config("configs/example.yaml")
    snap = forecaster.load(config, as_of=datetime.date(2025, 4, 1))   # CRM files -> snapshot as of
    model = forecaster.fit(snap, config)                               # -> fitted PipelineModel
    result = forecaster.forecast(config)                               # -> Forecast (summary, trials)

Every function raises a ``ForecasterError`` (``ConfigError``, ``DataError``, ``ModelError``,
``EngineError``) whose ``problems`` are one line each; nothing here prints or writes files. The model,
simulation and analysis are imported by the calls that need them: ``load`` reads an export without
loading numba.

``forecast``, ``compare``, ``plan`` and ``backtest`` run their simulations on ``config.engine`` (local
threads, or Dask workers: the same results), connected before any work and closed after the call;
pass ``engine=forecaster.open_engine(config.engine)`` to reuse one across calls.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator

import pyarrow as pa

from forecaster import crm
from forecaster.config import Config, load_config
from forecaster.crm import Snapshot
from forecaster.errors import ConfigError

if TYPE_CHECKING:
    from forecaster.analysis.diff import Diff
    from forecaster.analysis.forecast import Forecast
    from forecaster.model import PipelineModel
    from forecaster.sim.engines import Engine

PLAN_MAX_TRIALS = 4000


def _config(config: Config | str | Path) -> Config:
    return config if isinstance(config, Config) else load_config(config)


@contextlib.contextmanager
def _engine(cfg: Config, engine: Engine | None) -> Iterator[Engine]:
    """The caller's engine, or the config's for this call (connected now, before any work; closed after)."""
    if engine is not None:
        yield engine
        return
    from forecaster.sim.engines import open_engine

    with open_engine(cfg.engine) as opened:
        yield opened


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
    from forecaster.model import fit as _fit

    return _fit(snapshot, _config(config))


def forecast(config: Config | str | Path, *, model_dir: str | Path | None = None,
             progress: Callable[[int, int], None] | None = None, engine: Engine | None = None,
             explain: bool = False) -> Forecast:
    """Forecast revenue and won deals in the config's window (as_of, start, end, trials, seed, quota from
    ``config.forecast``; override with ``config.with_forecast(...)``). ``model_dir``: reuse a saved model.
    ``engine``: an open engine to run on (default: ``config.engine``'s, for this call). ``explain``: add
    the summary's ``spread`` (what makes the range wide) and ``inspect`` (the deals to look at).
    Returns a ``Forecast``: ``summary`` (the layout of summary.json), ``sim`` (per-trial and per-deal raw
    results), the snapshot and the model."""
    from forecaster.analysis.forecast import run_forecast

    cfg = _config(config)
    with _engine(cfg, engine) as eng:
        result = run_forecast(cfg, model_dir=Path(model_dir) if model_dir is not None else None,
                              progress=progress, engine=eng)
        return with_explanation(result, eng) if explain else result


def with_explanation(result: Forecast, engine: Engine | None = None) -> Forecast:
    """The forecast with ``spread`` and ``inspect`` in its summary (computed once; timing under
    ``timing.explain_s``)."""
    import dataclasses
    import time

    from forecaster.analysis.explain import explain as _explain
    from forecaster.sim.engines import LOCAL

    if "spread" in result.summary:
        return result
    t0 = time.perf_counter()
    parts = _explain(result, engine or LOCAL)
    summary = {**result.summary, **parts}
    if "timing" in summary:
        summary["timing"] = {**summary["timing"], "explain_s": time.perf_counter() - t0}
    return dataclasses.replace(result, summary=summary)


@dataclass(frozen=True)
class Comparison:
    """``result``: the compare.json object (baseline and every scenario with paired deltas);
    ``trials``: per scenario and trial revenue and won deals (compare_trials.parquet)."""

    result: dict[str, Any]
    trials: pa.Table


def compare(config: Config | str | Path, *, progress: Callable[[str], None] | None = None,
            engine: Engine | None = None) -> Comparison:
    """Run the config's scenarios against the baseline on common random numbers (docs/scenarios.md);
    ``engine`` as for ``forecast``."""
    from forecaster.analysis import compare as _compare
    from forecaster.analysis.forecast import prepare
    from forecaster.analysis.scenarios import parse_scenarios

    cfg = _config(config)
    scenarios = parse_scenarios(cfg)
    if not scenarios:
        raise ConfigError(f"{cfg.path or 'config'}: no scenarios to compare (add a 'scenarios:' list; "
                          f"see configs/scenarios.yaml)")
    with _engine(cfg, engine) as eng:
        base = prepare(cfg)
        values = _compare.segment_values(base)
        for sc in scenarios:  # every problem before any simulation
            sc.check(values, base.start, base.end)
        result, table = _compare.compare(base, scenarios, progress, eng)
    return Comparison(result, table)


def plan(config: Config | str | Path, target: float, *, confidence: float = 0.8, lever: str = "new_deals",
         stage: str | None = None, trials: int | None = None, engine: Engine | None = None) -> dict[str, Any]:
    """How much of one lever (new_deals, conversion, duration, amount) makes P(revenue >= target) reach
    ``confidence``, answered in revenue-ops terms, with the reverse funnel. ``trials`` per evaluation
    (default: the config's, at most 4,000); ``engine`` as for ``forecast``."""
    from forecaster.analysis import plan as _plan
    from forecaster.analysis.forecast import prepare

    cfg = _config(config)
    n = trials or min(cfg.forecast.trials, PLAN_MAX_TRIALS)
    with _engine(cfg, engine) as eng:
        base = prepare(cfg.with_forecast(trials=n))
        return _plan.explain(base, _plan.solve(base, target, confidence, lever, stage, n, eng))


@dataclass(frozen=True)
class Backtest:
    """``summary``: the backtest.json object (scores per method and target); ``rows``: one per cutoff,
    method and target (backtest.parquet)."""

    summary: dict[str, Any]
    rows: list[dict[str, Any]]

    def table(self) -> pa.Table:
        from forecaster.analysis import backtest as _backtest

        return _backtest.rows_table(self.rows, self.summary.get("currency"))


def backtest(config: Config | str | Path, start: dt.date, end: dt.date, *, every: str = "month",
             window: str = "quarter", progress: Callable[[dt.date], None] | None = None,
             engine: Engine | None = None) -> Backtest:
    """Rolling-origin backtest: forecasts as of each cutoff from ``start`` to ``end`` (every week, month or
    quarter) over ``window`` (e.g. '90d', 'month', 'quarter'), scored against what happened; ``engine``
    as for ``forecast`` (the cutoffs run on its workers)."""
    from forecaster.analysis import backtest as _backtest

    cfg = _config(config)
    with _engine(cfg, engine) as eng:
        rows, summary = _backtest.backtest(cfg, start, end, every, window, progress, eng)
    return Backtest(summary, rows)


def diff(config: Config | str | Path, d_from: dt.date, d_to: dt.date, *, start: dt.date | None = None,
         end: dt.date | None = None) -> Diff:
    """What moved between the forecast of one window as of ``d_from`` and as of ``d_to`` (the window:
    ``start`` .. ``end``, default the fiscal quarter that contains ``d_to``), split into won, lost,
    created, progressed, moved back, aged, amount, pushed, pulled in and model parts that add up to the
    change of the expected revenue and won deals (docs/explain.md). Returns a ``Diff``: ``result``
    (diff.json) and ``rows`` (diff.parquet, one row per deal and part). Runs in this process."""
    from forecaster.analysis.diff import run_diff

    return run_diff(_config(config), d_from, d_to, start, end)


def funnel(model: PipelineModel, snapshot: Snapshot, segment: tuple[str, ...] = ()) -> dict[str, Any]:
    """Funnel metrics per stage of a model on the snapshot it was fitted on: conversion, win rate, time in
    stage, stale deals, velocity and the bottleneck; ``segment``: 'COL=VALUE' items to select."""
    from forecaster.analysis import funnel as _funnel

    return _funnel.funnel(model, snapshot, segment)


def html_report(*, forecast: Forecast | None = None, comparison: Comparison | None = None,
           backtest: Backtest | None = None, config: Config | None = None, previous: dict[str, Any] | None = None,
           diff: dict[str, Any] | None = None, command: str = "", generated_at: str | None = None) -> str:
    """The HTML report of finished results (one self-contained page, docs/outputs.md): the forecast's
    headline, distribution, fan chart (its trials rerun with weekly periods), breakdowns, what makes the
    range wide, top deals, the deals to inspect (both computed here unless the forecast was explained)
    and funnel; the scenarios of a ``comparison``; the scores of a ``backtest``; the change since a
    ``previous`` summary.json; the waterfall of a ``diff`` (diff.json); provenance with the ``command``
    that reproduces it. Sections without data are left out. ``config``: for provenance when no forecast is
    given. Returns the HTML text."""
    from forecaster.analysis import funnel as _funnel
    from forecaster.analysis import report_data as _report_data
    from forecaster.analysis.summary import deals_table
    from forecaster.report.html import ReportData, render_report, timestamp

    parts: dict[str, Any] = {}
    summary = None
    if forecast is not None:
        f = with_explanation(forecast)
        config = config or f.config
        summary = f.summary
        deals = deals_table(f)
        parts.update(revenue_histogram=_report_data.revenue_histogram(f.sim.revenue),
                     cumulative=_report_data.cumulative_by_week(f), deals=_report_data.top_deals(deals),
                     open_deals=deals.num_rows, segment_by=tuple(f.model.segment_by),
                     funnel=_funnel.funnel(f.model, f.data), warnings=[w.line() for w in f.data.warnings],
                     spread=summary["spread"], inspect=summary["inspect"])
    elif comparison is not None:
        summary = comparison.result["baseline"]
        baseline = _report_data.scenario_revenue(comparison.trials, "baseline")
        parts.update(revenue_histogram=_report_data.revenue_histogram(baseline),
                     warnings=[f"warning: {k} ({n})" for k, n in summary.get("data_warnings", {}).items()])
    if comparison is not None:
        parts["compare"] = comparison.result
    if backtest is not None:
        parts.update(backtest=backtest.summary, backtest_rows=backtest.rows)
    if diff is not None:
        parts["diff"] = diff
    if previous is not None and summary is not None:
        parts["change"] = _report_data.change_since(previous, summary)
    prov: dict[str, Any] = {"command": command, "version": (summary or {}).get("version")}
    if config is not None:
        prov.update(config=str(config.path) if config.path else None, config_sha256=config.sha256)
    if summary is not None:
        prov.update(data_fingerprint=summary.get("data_fingerprint"), seed=summary["seed"], trials=summary["trials"])
    if summary is None and diff is not None:
        prov.update(seed=diff["seed"], trials=diff["trials"])
    if prov["version"] is None:
        from forecaster._version import __version__

        prov["version"] = __version__
    name = config.path.name if config is not None and config.path else "forecast"
    kind = "Forecast" if summary is not None else "Backtest" if backtest is not None else "Change"
    return render_report(ReportData(title=f"{kind} report: {name}", summary=summary, provenance=prov,
                                    generated_at=generated_at or timestamp(), **parts))


def funnel_change(snapshot: Snapshot, *, periods: tuple[str, ...] = (), split_by: str | None = None,
                  segment: tuple[str, ...] = (), seed: int = 0) -> dict[str, Any]:
    """Did a process change help? Per stage, the spells that entered it in each period ('START:END', at
    least two) or in each group of the deal column ``split_by`` (optionally within one period), followed up
    to as_of with censoring: shares of exits forward, back and lost and median days in stage with 95%
    intervals, the difference from the first period or group, and a verdict ("different" at most 5% of
    the time when nothing changed). ``segment``: 'COL=VALUE' items (deal columns) to select."""
    from forecaster.analysis import periods as _periods

    seg = {}
    for item in segment:
        if "=" not in item:
            raise ConfigError(f"--segment '{item}': expected COLUMN=VALUE")
        col, value = item.split("=", 1)
        seg[col] = value
    return _periods.compare_periods(snapshot, [_periods.parse_period(p) for p in periods], split_by, seg, seed)
