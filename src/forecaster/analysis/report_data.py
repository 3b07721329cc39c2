"""What the HTML report and the BI files show, computed from finished results: the fan chart's weekly
cumulative revenue, the revenue histogram, the deals that carry the forecast, per-group trial results in
long format, and the change since a previous run. report/ only renders these.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from forecaster.analysis.actuals import won_by_week
from forecaster.analysis.forecast import Forecast, simulate_forecast
from forecaster.analysis.summary import deals_table, describe, trials_table
from forecaster.calendar import period_bounds
from forecaster.errors import ConfigError

TOP_DEALS = 25
HISTOGRAM_BINS = 40


def weekly_trials(f: Forecast) -> np.ndarray:
    """float64 [T, K]: each trial's won revenue in each calendar week of the window (K weeks, the first
    and last cut to the window), for exactly the forecast's trials: the same seed and the same streams
    run again with weekly periods, which only changes how win days are bucketed. With
    ``forecast.period: week`` the forecast's own periods are the weeks."""
    if f.config.forecast.period == "week":
        return f.sim.period_revenue
    base = f.base
    if base is None:
        raise ValueError("the forecast carries no prepared base (run it with analysis.forecast.run_forecast)")
    weeks = period_bounds(base.start, base.end, "week")
    starts = [(a - base.as_of).days for a, _ in weeks] + [base.end_off + 1]
    weekly = dataclasses.replace(base, periods=weeks, period_start=np.array(starts, np.int32))
    return simulate_forecast(weekly).period_revenue


def cumulative_by_week(f: Forecast, weekly: np.ndarray | None = None) -> dict[str, Any]:
    """The fan chart: per calendar week of the window, the distribution over trials of the revenue won
    from the window's start to the week's end (``describe``: mean, std, p5 .. p95), and when the
    window's quarter began before as-of, the revenue actually won in it by week until as-of.

    ``{"weeks": [{"end": date, "mean", "p10", "p50", "p90", ...}], "actual": [{"end", "revenue",
    "won_deals"}]}``; ``weekly``: the per-trial weekly revenue (default: ``weekly_trials(f)``)."""
    weekly = weekly_trials(f) if weekly is None else weekly
    s = f.summary
    start, end = (dt.date.fromisoformat(s["window"][k]) for k in ("start", "end"))
    weeks = period_bounds(start, end, "week")
    cum = np.cumsum(weekly, axis=1)
    out: dict[str, Any] = {"weeks": [{"end": last.isoformat(), **describe(cum[:, k])}
                                     for k, (_, last) in enumerate(weeks)], "actual": []}
    wtd = s.get("won_to_date")
    if wtd:
        out["actual"] = won_by_week(f.data, dt.date.fromisoformat(wtd["since"]), dt.date.fromisoformat(s["as_of"]))
    return out


def revenue_histogram(revenue: np.ndarray, bins: int = HISTOGRAM_BINS) -> dict[str, list[float]]:
    """Counts of trials per revenue bin: ``{"edges": [bins + 1], "counts": [bins]}``."""
    counts, edges = np.histogram(np.asarray(revenue, np.float64), bins=bins)
    return {"edges": edges.tolist(), "counts": counts.tolist()}


def scenario_revenue(trials: pa.Table, scenario: str) -> np.ndarray:
    """float64 [T]: one scenario's per-trial revenue from compare_trials."""
    return trials.filter(pc.equal(trials["scenario"], scenario))["revenue"].to_numpy()


def top_deals(deals: pa.Table, n: int = TOP_DEALS) -> list[dict[str, Any]]:
    """The ``n`` open deals with the highest expected revenue (ties: by deal id), as rows of deals.parquet."""
    if deals.num_rows == 0:
        return []
    order = pc.sort_indices(deals, [("expected_revenue", "descending"), ("deal_id", "ascending")])
    return deals.take(order[:n]).to_pylist()


def group_trials_table(sim: Any, segment_by: tuple[str, ...], groups: list[tuple[str, ...]],
                       rollups: Any = ()) -> pa.Table:
    """Per trial and reporting group, long format (group_trials.parquet): ``trial`` int64, ``column``
    and ``value`` (a segment column and one of its values, or a ``report_by`` column and one of its
    groups, "(new deals)" included), ``revenue`` float64 and ``won_deals`` int64 won in the window by that
    group's deals. A segment value's figures add up the segment combinations that carry it (open and new
    deals), so P10/P90 per value can be computed outside the tool."""
    t = sim.n_trials
    parts: list[tuple[str, str, np.ndarray, np.ndarray]] = []
    for j, col in enumerate(segment_by):
        for value in sorted({g[j] for g in groups}):
            cols = np.flatnonzero([g[j] == value for g in groups])
            parts.append((col, value, sim.group_revenue[:, cols].sum(axis=1),
                          sim.group_wins[:, cols].sum(axis=1, dtype=np.int64)))
    for r in rollups:
        if r.column in segment_by:  # already there, from the segments
            continue
        parts += [(r.column, v, rev, np.asarray(won, np.int64))
                  for v, rev, won in zip(r.values, r.revenue, r.wins) if v != "(total)"]
    return pa.table({
        "trial": pa.array(np.tile(np.arange(t, dtype=np.int64), len(parts)), pa.int64()),
        "column": pa.array([c for c, _, _, _ in parts for _ in range(t)], pa.string()),
        "value": pa.array([v for _, v, _, _ in parts for _ in range(t)], pa.string()),
        "revenue": pa.array(np.concatenate([r for _, _, r, _ in parts]) if parts else np.zeros(0), pa.float64()),
        "won_deals": pa.array(np.concatenate([w for _, _, _, w in parts]) if parts else np.zeros(0, np.int64),
                              pa.int64()),
    })


def forecast_tables(f: Forecast) -> dict[str, pa.Table]:
    """The Parquet tables of a forecast by file stem: trials, deals, group_trials."""
    m = f.model
    return {"trials": trials_table(f.sim, f.summary, f.rollups), "deals": deals_table(f),
            "group_trials": group_trials_table(f.sim, m.segment_by, list(m.groups), f.rollups)}


def load_previous(path: Path) -> dict[str, Any]:
    """A summary.json of an earlier run (``--previous``), checked to carry what the change needs."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"--previous {path}: file not found")
    try:
        prev = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ConfigError(f"--previous {path}: not a JSON file ({e.__class__.__name__})") from None
    need = [("as_of",), ("revenue", "p50"), ("revenue", "mean"), ("won_deals", "p50"), ("won_deals", "mean")]
    for keys in need:
        x: Any = prev
        for k in keys:
            x = x.get(k) if isinstance(x, dict) else None
        ok = isinstance(x, str) if keys == ("as_of",) else isinstance(x, (int, float)) and not isinstance(x, bool)
        if not ok:
            raise ConfigError(f"--previous {path}: not a forecaster summary.json (no '{'.'.join(keys)}')")
    return prev


def change_since(previous: dict[str, Any], summary: dict[str, Any]) -> dict[str, Any]:
    """This run minus the previous one: revenue and won deals (mean, P10, P50, P90, where both have
    them) and P(quota) when both runs have a quota."""
    out: dict[str, Any] = {"as_of": previous["as_of"], "window": previous.get("window")}
    for target in ("revenue", "won_deals"):
        now, then = summary[target], previous[target]
        out[target] = {k: now[k] - then[k] for k in ("mean", "p10", "p50", "p90")
                       if isinstance(then.get(k), (int, float)) and math.isfinite(then[k])}
    pq_now, pq_then = summary.get("p_quota"), previous.get("p_quota")
    out["p_quota"] = pq_now - pq_then if isinstance(pq_now, float) and isinstance(pq_then, (int, float)) else None
    return out


__all__ = ["weekly_trials", "cumulative_by_week", "revenue_histogram", "scenario_revenue", "top_deals",
           "group_trials_table", "forecast_tables", "load_previous", "change_since"]
