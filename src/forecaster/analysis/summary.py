"""Raw simulation results -> distributions, quantiles, P(quota), per-period/segment and per-deal figures.

Quantiles use the inverted-CDF definition (each is a value some trial produced), so integer counts stay
integers and figures do not depend on interpolation choices.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np
import pyarrow as pa

from forecaster._version import __version__
from forecaster.analysis.actuals import won_to_date
from forecaster.calendar import NO_DATE

QUANTILES = {"p5": 0.05, "p10": 0.10, "p25": 0.25, "p50": 0.50, "p75": 0.75, "p90": 0.90, "p95": 0.95}


def describe(x: np.ndarray) -> dict[str, float]:
    """mean, std and the quantiles p5 .. p95 of a per-trial sample."""
    x = np.asarray(x, np.float64)
    q = np.quantile(x, list(QUANTILES.values()), method="inverted_cdf")
    return {"mean": float(x.mean()), "std": float(x.std(ddof=1)) if len(x) > 1 else 0.0,
            **{k: float(v) for k, v in zip(QUANTILES, q)}}


def p_at_least(x: np.ndarray, threshold: float | None) -> float | None:
    return None if threshold is None else float(np.mean(np.asarray(x) >= threshold))


def summarize(sim: Any, *, as_of: dt.date, start: dt.date, end: dt.date, periods: list[tuple[dt.date, dt.date]],
              segment_names: list[str], quota: float | None, open_deals: int, open_amount: float,
              stage_names: list[str]) -> dict[str, Any]:
    """The forecast summary (layout of summary.json), without timing and provenance."""
    return {
        "as_of": as_of.isoformat(),
        "window": {"start": start.isoformat(), "end": end.isoformat()},
        "trials": int(sim.n_trials),
        "seed": int(sim.seed),
        "open_deals": int(open_deals),
        "open_amount": float(open_amount),
        "revenue": describe(sim.revenue),
        "won_deals": describe(sim.won_deals),
        "p_quota": p_at_least(sim.revenue, quota),
        "quota": quota,
        "periods": [
            {"start": a.isoformat(), "end": b.isoformat(),
             "revenue": describe(sim.period_revenue[:, p]), "won_deals": describe(sim.period_wins[:, p])}
            for p, (a, b) in enumerate(periods)
        ],
        "segments": {
            name: {"revenue": describe(sim.group_revenue[:, g]), "won_deals": describe(sim.group_wins[:, g])}
            for g, name in enumerate(segment_names)
        },
        "from_new_deals": {"revenue": describe(sim.new_revenue), "won_deals": describe(sim.new_wins)},
        "lost_deals": describe(sim.lost_deals),
        "carried_over": {
            name: {"open_deals": float(sim.carried_deals[:, s].mean()),
                   "open_amount": float(sim.carried_amount[:, s].mean())}
            for s, name in enumerate(stage_names)
        },
        "work": {"deal_trials": int(sim.deal_trials), "deal_steps": int(sim.deal_steps)},
    }


def summarize_base(base: Any, sim: Any, deals: Any = None, rollups: Any = ()) -> dict[str, Any]:
    """summary.json of a run on a prepared base (analysis.forecast.Base), without timing; ``rollups``:
    analysis.rollups.Rollup per report_by column."""
    deals = deals if deals is not None else base.deals
    model = base.model
    summary = summarize(
        sim, as_of=base.as_of, start=base.start, end=base.end, periods=base.periods,
        segment_names=[model.group_name(g) for g in range(model.n_groups)],
        quota=base.config.forecast.quota, open_deals=deals.n_deals,
        open_amount=float(deals.expected_amounts().sum()),
        stage_names=list(model.stages),
    )
    summary["currency"] = base.data.currency
    if rollups:
        summary["report_by"] = {
            r.column: {v: {"revenue": describe(rev), "won_deals": describe(won)}
                       for v, rev, won in zip(r.values, r.revenue, r.wins)}
            for r in rollups
        }
    summary["new_deals"] = bool(base.config.forecast.new_deals)
    summary["config_sha256"] = base.config.sha256
    summary["version"] = __version__
    summary["data_warnings"] = base.data.warning_counts()
    summary["data_fingerprint"] = base.data.fingerprint
    summary["won_to_date"] = won_to_date(base.data, base.as_of, base.start)
    return summary


def with_currency(table: pa.Table, currency: str | None) -> pa.Table:
    """The table with the output currency in its schema metadata (forecaster.currency)."""
    if currency is None:
        return table
    return table.replace_schema_metadata({**(table.schema.metadata or {}), b"forecaster.currency": currency.encode()})


def trials_table(sim: Any, summary: dict[str, Any], rollups: Any = ()) -> pa.Table:
    """One row per trial: trial, revenue, won_deals, new-deal revenue, per period its revenue and wins, and
    per report_by group (``revenue_COLUMN=VALUE``, ``won_deals_COLUMN=VALUE``) its revenue and wins."""
    cols: dict[str, Any] = {"trial": np.arange(sim.n_trials, dtype=np.int64), "revenue": sim.revenue,
                            "won_deals": sim.won_deals, "new_deal_revenue": sim.new_revenue}
    for p, period in enumerate(summary["periods"]):
        cols[f"revenue_{period['start']}"] = sim.period_revenue[:, p]
    for p, period in enumerate(summary["periods"]):
        cols[f"won_deals_{period['start']}"] = sim.period_wins[:, p]
    for r in rollups:
        for v, rev, won in zip(r.values, r.revenue, r.wins):
            if v != "(total)":
                cols[f"revenue_{r.column}={v}"] = rev
                cols[f"won_deals_{r.column}={v}"] = won
    return with_currency(pa.table(cols), summary.get("currency"))


def dates(days: np.ndarray) -> pa.Array:
    """Day numbers as an Arrow date column (NO_DATE: null)."""
    return pa.array(days.astype(np.int32), pa.date32(), mask=days == NO_DATE)


def deals_table(f: Any) -> pa.Table:
    """One row per open deal (analysis.forecast.Forecast): its state at as_of, segment and what the trials
    say about it."""
    from forecaster.analysis.funnel import stale_deals

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
    for col in dict.fromkeys((*model.segment_by, *f.config.report_by)):
        cols[col] = data.attrs[col].take(pa.array(idx))
    cols.update({
        "p_win": sim.deal_p_win,
        "p_lost": sim.deal_p_lost,
        "p_open": (sim.n_trials - sim.deal_won_trials - sim.deal_lost_trials) / sim.n_trials,
        "expected_revenue": sim.deal_p_win * amount,
        "median_close_date": pa.array([d if m >= 0 else None for d, m in zip(med_dates, med.tolist())], pa.date32()),
        "crm_expected_close": dates(data.expected_close[idx]),
        "crm_probability": data.crm_probability[idx],
        "forecast_category": pa.array(data.forecast_category[idx].tolist(), pa.string()),
        "close_pushes": data.close_pushes[idx],
        "close_push_days": data.close_push_days[idx],
        "stale": stale_deals(model, f.cell, f.age),
    })
    cols.update(deal_p_win_by_period(sim, f.summary["periods"]))
    return with_currency(pa.table(cols), data.currency)


def deal_p_win_by_period(sim: Any, periods: list[dict[str, Any]]) -> dict[str, np.ndarray]:
    """``p_win_by_period_<start>`` float64 [n] per period: the share of trials in which each open deal is
    won inside that period (they add up to p_win), from the per-deal histograms of win days."""
    bounds = np.asarray(sim.period_start) - sim.start_off
    won_by_period = np.add.reduceat(sim.deal_win_hist, bounds[:-1], axis=1)
    return {f"p_win_by_period_{p['start']}": won_by_period[:, i] / sim.n_trials for i, p in enumerate(periods)}
