"""Rolling-origin backtest: forecasts as of past cutoffs, scored against what really happened.

For each cutoff D (from, from + every, ..., to): the model and pipeline as of D (the as-of cut: nothing
dated on or after D is seen), a forecast of the window [D, last], and the actual won revenue and won
deals with a close date in the window, read from the same export. Methods scored the same way:

- ``forecaster``: the full model (parameter uncertainty as configured);
- ``forecaster_no_calendar`` / ``forecaster_no_shock``: without the month-of-quarter shifts / the shared
  shock (model.shocks);
- ``forecaster_no_new_deals``: open pipeline only; ``forecaster_no_age``: every open deal as if it had
  just entered its stage (no age conditioning) - so the value of each modelling choice is visible;
- the baselines a revenue team would otherwise use (analysis.baselines): ``weighted_pipeline``,
  ``weighted_pipeline_all``, ``crm_forecast`` / ``crm_commit`` / ``crm_best_case`` (when the export
  carries the reps' probabilities and categories), ``seasonal_naive``, ``run_rate`` and ``ets``.

Per deal open at D: its predicted P(won inside the window) by the forecaster, by the stage win rate and by
the CRM's probability (the last two: for deals expected to close in the window, else 0), against whether
it was (analysis.deal_scores). Windows that end after the data's last date are left out (their outcome is
not known yet) and counted; a cutoff whose forecast fails is reported with its error.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from forecaster.analysis import baselines, scores
from forecaster.analysis.actuals import actuals
from forecaster.analysis.backtest_summary import rows_table, summarize_backtest
from forecaster.analysis.forecast import Base, base_effects, prepare, simulate_base, simulate_forecast
from forecaster.calendar import step, to_date, to_day, window_end
from forecaster.config import Config
from forecaster.crm import WON, CRMData, load
from forecaster.errors import ConfigError, ForecasterError
from forecaster.sim.engines import LOCAL, Engine

TARGETS = ("revenue", "won_deals")


def window_last_day(d: dt.date, window: str) -> dt.date:
    """Last day of the window starting on d: 'Nd' days, or one calendar month / quarter."""
    last = window_end(d, window)
    if last is None:
        raise ConfigError(f"--window '{window}': expected a number of days like 90d, or month, or quarter")
    return last


def cutoffs(start: dt.date, end: dt.date, every: str) -> list[dt.date]:
    if end < start:
        raise ConfigError(f"--to {end} is before --from {start}")
    out, d = [], start
    while d <= end:
        out.append(d)
        d = step(d, every)
    return out


def _score_rows(cutoff: dt.date, method: str, target: str, sample: np.ndarray | None, point: float | None,
                y: float) -> dict[str, Any]:
    row: dict[str, Any] = {"cutoff": cutoff, "method": method, "target": target, "actual": y}
    if sample is not None and len(sample):
        q = scores.quantiles(sample, [0.05, 0.1, 0.5, 0.9, 0.95])
        row.update(mean=float(np.mean(sample)), p5=q[0], p10=q[1], p50=q[2], p90=q[3], p95=q[4],
                   pit=scores.pit(sample, y), crps=scores.crps_sample(sample, y))
    elif point is not None:
        row.update(mean=point, p5=None, p10=None, p50=point, p90=None, p95=None, pit=None,
                   crps=scores.crps_point(point, y))
    else:
        return {**row, "mean": None, "p5": None, "p10": None, "p50": None, "p90": None, "p95": None, "pit": None,
                "crps": None, "pinball_10": None, "pinball_50": None, "pinball_90": None, "ape_median": None}
    for tau, key in ((0.1, "pinball_10"), (0.5, "pinball_50"), (0.9, "pinball_90")):
        qv = row["p10" if tau == 0.1 else "p50" if tau == 0.5 else "p90"]
        row[key] = None if qv is None else scores.pinball(qv, y, tau)
    row["ape_median"] = abs(row["p50"] - y) / abs(y) if y else None
    return row


@dataclass
class DealRecords:
    """Per deal open at a cutoff, pooled over cutoffs: the outcome (1 won inside the window) and each
    method's predicted probability (NaN where a method has none for that deal)."""

    won: list[np.ndarray] = field(default_factory=list)
    p: dict[str, list[np.ndarray]] = field(default_factory=dict)

    def add(self, won: np.ndarray, predictions: dict[str, np.ndarray | None]) -> None:
        self.won.append(won.astype(np.float64))
        for name, p in predictions.items():
            self.p.setdefault(name, [])
            self.p[name].append(np.full(len(won), np.nan) if p is None else np.asarray(p, np.float64))

    def arrays(self) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        won = np.concatenate(self.won) if self.won else np.zeros(0)
        return won, {k: np.concatenate(v) for k, v in self.p.items()}


def _forecaster_rows(d: dt.date, base: Base, y_rev: float, y_won: int) -> tuple[list[dict[str, Any]], Any]:
    sims = {"forecaster": simulate_forecast(base),
            "forecaster_no_new_deals": simulate_base(base, arrivals=None),
            "forecaster_no_age": simulate_base(base, deals=dataclasses.replace(
                base.deals, age=np.zeros_like(base.deals.age)))}
    effects = base_effects(base)
    for method, off in (("forecaster_no_calendar", effects.without(calendar=True)),
                        ("forecaster_no_shock", effects.without(frailty=True))):
        # Without the component the forecast is the plain one when the model fitted none of it.
        same = off.same_as(effects) and not base.config.forecast.parameter_uncertainty
        sims[method] = sims["forecaster"] if same else simulate_base(base, effects=off)
    rows = []
    for method, sim in sims.items():
        rows.append(_score_rows(d, method, "revenue", sim.revenue, None, y_rev))
        rows.append(_score_rows(d, method, "won_deals", sim.won_deals.astype(float), None, y_won))
    return rows, sims["forecaster"]


def _baseline_rows(d: dt.date, last: dt.date, base: Base, full: CRMData, y_rev: float, y_won: int,
                   start_day: int) -> tuple[list[dict[str, Any]], baselines.PipelineView]:
    view = baselines.pipeline_view(base.data)  # the export as of d, cut once by prepare
    rows = []

    def point(method: str, rev: float | None, won: float | None) -> None:
        rows.append(_score_rows(d, method, "revenue", None, rev, y_rev))
        rows.append(_score_rows(d, method, "won_deals", None, won, y_won))

    def dist(method: str, rev: np.ndarray | None, won: np.ndarray | None) -> None:
        rows.append(_score_rows(d, method, "revenue", rev, None, y_rev))
        rows.append(_score_rows(d, method, "won_deals", won, None, y_won))

    point("weighted_pipeline", *baselines.weighted_pipeline(view, d, last))
    point("weighted_pipeline_all", *baselines.weighted_pipeline_all(view))
    crm = baselines.crm_forecast(base.data, view, d, last)
    if crm is not None:
        point("crm_forecast", crm["revenue"], crm["won_deals"])
        if "commit_revenue" in crm:
            point("crm_commit", crm["commit_revenue"], crm["commit_deals"])
            point("crm_best_case", crm["best_case_revenue"], crm["best_case_deals"])
    sn = baselines.seasonal_naive(full, d, last, start_day)
    point("seasonal_naive", *(sn[:2] if sn is not None else (None, None)))
    rr_rev, rr_won = baselines.run_rate(full, d, last, start_day)
    dist("run_rate", rr_rev if len(rr_rev) else None, rr_won if len(rr_won) else None)
    s_rev, s_won = baselines.block_series(full, d, last, start_day)
    per_year = baselines.blocks_per_year(d, last)
    dist("ets", baselines.ets_sample(s_rev, per_year), baselines.ets_sample(s_won, per_year))
    return rows, view


def _deal_predictions(d: dt.date, last: dt.date, base: Base, sim: Any, view: baselines.PipelineView,
                      full: CRMData) -> tuple[np.ndarray, dict[str, np.ndarray | None]]:
    """Outcome and each method's P(won inside the window) for the deals open at d."""
    # The cut keeps the deals created before d in export order, so snapshot index i is the i-th of them.
    full_idx = np.flatnonzero(full.created < to_day(d))[base.open_idx]
    won = (full.status[full_idx] == WON) & (full.closed[full_idx] >= to_day(d)) & (full.closed[full_idx] <= to_day(last))
    due = baselines.in_window(view, d, last)
    crm_p = baselines.crm_probabilities(base.data, view)
    predictions = {"forecaster": sim.deal_p_win, "stage_win_rate": view.win_rate * due,
                   "crm_probability": None if crm_p is None else np.where(np.isfinite(crm_p), crm_p * due, np.nan)}
    return won, predictions


@dataclasses.dataclass(frozen=True)
class BacktestJob:
    """What every cutoff of a backtest needs: the config, the full export and the window (sent to each
    worker once on a Dask engine)."""

    config: Config
    full: CRMData
    window: str
    start_day: int


def score_cutoff(job: BacktestJob, d: dt.date) -> dict[str, Any]:
    """One cutoff: ``{"rows", "won", "predictions"}`` (every method and target; the deal-level outcome and
    predictions), or ``{"error"}`` when no forecast can be made as of d. A pure function of its arguments,
    so cutoffs run anywhere in any order."""
    full, last = job.full, window_last_day(d, job.window)
    try:
        base = prepare(job.config.with_forecast(as_of=d, start=d, end=last), full=full)
    except ForecasterError as e:
        return {"error": " / ".join(e.problems)}
    y_rev, y_won = actuals(full, d, last)
    f_rows, sim = _forecaster_rows(d, base, y_rev, y_won)
    b_rows, view = _baseline_rows(d, last, base, full, y_rev, y_won, job.start_day)
    won, predictions = _deal_predictions(d, last, base, sim, view, full)
    return {"rows": f_rows + b_rows, "won": won, "predictions": predictions}


def backtest(config: Config, start: dt.date, end: dt.date, every: str = "month", window: str = "quarter",
             progress: Callable[[dt.date], None] | None = None, engine: Engine = LOCAL
             ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Rows (one per cutoff, method and target) and the summary (layout of backtest.json). The cutoffs are
    independent units: on a Dask engine they run on the workers, with the same rows."""
    full = load(config)
    data_end = to_date(full.last_day())
    t0 = time.perf_counter()
    every_cutoff = cutoffs(start, end, every)
    # Only cutoffs whose outcome is fully known: the window ends before the data do.
    candidates = [d for d in every_cutoff if window_last_day(d, window) <= data_end]
    job = BacktestJob(config, full, window, baselines.history_start(full))
    scored = engine.map(score_cutoff, candidates, job,
                        progress=None if progress is None else (lambda i: progress(candidates[i])))
    used = [d for d, r in zip(candidates, scored) if "rows" in r]
    failed = [{"cutoff": d.isoformat(), "error": r["error"]} for d, r in zip(candidates, scored) if "error" in r]
    if not used:
        why = f"; failed: {failed[0]['cutoff']}: {failed[0]['error']}" if failed else ""
        raise ConfigError(f"backtest: no cutoff between {start} and {end} has a fitted model and a complete "
                          f"window before the data ends ({data_end}){why}")
    rows: list[dict[str, Any]] = []
    deals = DealRecords()
    for r in scored:
        if "rows" in r:
            rows += r["rows"]
            deals.add(r["won"], r["predictions"])
    summary = summarize_backtest(rows, window, *deals.arrays())
    summary["cutoff_dates"] = [u.isoformat() for u in used]
    late = [d.isoformat() for d in every_cutoff if window_last_day(d, window) > data_end]
    summary["left_out"] = {"after_data_end": len(late), "cutoffs": late, "data_end": data_end.isoformat(),
                           "reason": f"the window ends after the last recorded event in the data ({data_end})"}
    summary["failed_cutoffs"] = failed
    summary["currency"] = full.currency
    summary["elapsed_s"] = time.perf_counter() - t0
    summary["every"] = every
    summary["trials"] = config.forecast.trials
    summary["seed"] = config.forecast.seed
    summary["parameter_uncertainty"] = config.forecast.parameter_uncertainty
    return rows, summary


__all__ = ["actuals", "backtest", "cutoffs", "rows_table", "score_cutoff", "window_last_day"]
