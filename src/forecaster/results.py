"""Raw simulation results -> distributions, quantiles, P(quota), per-period/segment and per-deal figures.

Quantiles use the inverted-CDF definition (each is a value some trial produced), so integer counts stay
integers and figures do not depend on interpolation choices.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np

QUANTILES = {"p5": 0.05, "p10": 0.10, "p25": 0.25, "p50": 0.50, "p75": 0.75, "p90": 0.90, "p95": 0.95}


def describe(x: np.ndarray) -> dict[str, float]:
    """mean, std and the quantiles p5 .. p95 of a per-trial sample."""
    x = np.asarray(x, np.float64)
    q = np.quantile(x, list(QUANTILES.values()), method="inverted_cdf")
    return {"mean": float(x.mean()), "std": float(x.std(ddof=1)) if len(x) > 1 else 0.0,
            **{k: float(v) for k, v in zip(QUANTILES, q)}}


def p_at_least(x: np.ndarray, threshold: float | None) -> float | None:
    return None if threshold is None else float(np.mean(np.asarray(x) >= threshold))


def period_bounds(start: dt.date, end: dt.date, period: str) -> list[tuple[dt.date, dt.date]]:
    """Calendar periods (weeks from Monday, months, quarters) cut to the window [start, end]."""
    out = []
    cur = start
    while cur <= end:
        if period == "week":
            nxt = cur + dt.timedelta(days=7 - cur.weekday())
        elif period == "month":
            nxt = dt.date(cur.year + cur.month // 12, cur.month % 12 + 1, 1)
        elif period == "quarter":
            q_end_month = (cur.month - 1) // 3 * 3 + 3
            nxt = dt.date(cur.year + q_end_month // 12, q_end_month % 12 + 1, 1)
        else:
            raise ValueError(f"unknown period {period!r}")
        last = min(nxt - dt.timedelta(days=1), end)
        out.append((cur, last))
        cur = last + dt.timedelta(days=1)
    return out


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
