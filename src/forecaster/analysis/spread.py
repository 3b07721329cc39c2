"""What makes the range wide: the variance of window revenue split over the deals and groups that make it.

Per trial the window's revenue is a sum, ``R = sum_i X_i + N`` (X_i: open deal i's won amount in the
window, 0 or its amount; N: new deals). The covariance is linear, so

    Var(R) = sum_i Cov(X_i, R) + Cov(N, R)

exactly, also for the sample moments over the trials (divisor T throughout, so the parts add up to the
sample variance to floating-point rounding). A deal's part ``Cov(X_i, R)`` is its own variance
``Var(X_i) = amount^2 p (1 - p)`` (p: its share of won trials, so this is exact for the sample too) plus
its covariance with every other deal, which shared shocks create (a trial in which deals are lost together)
and parameter uncertainty (a block of trials on one refitted model). Independent deals have none: their
parts are their own variances.

Per-trial X_i of a single deal comes from simulating that deal on its own with the forecast's seed: every
open deal draws from its own stream (common random numbers), so it does alone exactly what it did in the
forecast (analysis.rollups relies on the same property). That costs one kernel run per deal, so only the
``SPREAD_DEALS`` deals with the largest own variance run alone; the other open deals run together as one
part (their own variances are still exact from their win counts), and new deals are one part.

The deals that separate a high trial from a low one: among the deals run alone, how much more often each
is won in the trials at or above the forecast's P90 than in those at or below its P10.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from forecaster.model import OpenDeals
from forecaster.numeric import ratio
from forecaster.sim import SimResult

if TYPE_CHECKING:
    from forecaster.analysis.forecast import Base

Simulate = Callable[[OpenDeals], SimResult]  # the forecast's trials of some open deals, no new deals

SPREAD_DEALS = 30  # deals simulated on their own (about 40 ms each for 10,000 trials of one deal)
SEPARATING_DEALS = 10
HIGH_Q, LOW_Q = 0.9, 0.1


def covariances(parts: list[np.ndarray], total: np.ndarray) -> np.ndarray:
    """float64 [len(parts)]: the sample covariance (divisor T) of each per-trial part with ``total``."""
    dev = total - total.mean()
    n = len(total)
    return np.array([float((p - p.mean()) @ dev) / n for p in parts], np.float64)


def own_variance(amount: np.ndarray, p_win: np.ndarray) -> np.ndarray:
    """float64 [n]: amount^2 p (1 - p), a deal's own variance of its won amount in the window."""
    return amount * amount * p_win * (1.0 - p_win)


def chosen_deals(own: np.ndarray, k: int = SPREAD_DEALS) -> np.ndarray:
    """int64 [<= k]: the deals with the largest own variance (ties: lower index), those with none left out
    (a deal always or never won adds nothing to the variance)."""
    order = np.lexsort((np.arange(len(own)), -own))
    return order[own[order] > 0][:k]


def _part(covariance: float, own: float, variance: float) -> dict[str, float]:
    return {"own_variance": own, "shared_covariance": covariance - own, "covariance": covariance,
            "share": float(ratio(covariance, variance))}


def _groups(base: Base, sim: SimResult, rollups: Any, variance: float) -> tuple[dict, dict]:
    """Per model segment and per report_by group: the covariance of its per-trial revenue with the total."""
    model = base.model
    seg_cov = covariances([sim.group_revenue[:, g] for g in range(model.n_groups)], sim.revenue)
    segments = {model.group_name(g): {"covariance": float(c), "share": float(ratio(c, variance))}
                for g, c in enumerate(seg_cov)}
    report_by: dict[str, dict[str, dict[str, float]]] = {}
    for r in rollups:
        named = [(v, rev) for v, rev in zip(r.values, r.revenue) if v != "(total)"]
        cov = covariances([rev for _, rev in named], sim.revenue)
        report_by[r.column] = {v: {"covariance": float(c), "share": float(ratio(c, variance))}
                               for (v, _), c in zip(named, cov)}
    return segments, report_by


def high_low_trials(revenue: np.ndarray) -> tuple[np.ndarray, np.ndarray, float, float]:
    """bool [T] masks of the trials at or above the P90 and at or below the P10 (inverted-CDF quantiles,
    as summary.describe), and the two quantiles."""
    lo_q, hi_q = np.quantile(revenue, [LOW_Q, HIGH_Q], method="inverted_cdf")
    return revenue >= hi_q, revenue <= lo_q, float(hi_q), float(lo_q)


def separating(ids: list[str], amount: np.ndarray, won: list[np.ndarray], high: np.ndarray, low: np.ndarray,
               n: int = SEPARATING_DEALS) -> list[dict[str, Any]]:
    """Of the deals given (``won``: bool [T] per deal), the ``n`` whose share of won trials differs most
    between the high and the low trials (only deals won more often in high trials)."""
    rows = []
    for i, w in enumerate(won):
        in_high, in_low = float(w[high].mean()), float(w[low].mean())
        rows.append({"deal_id": ids[i], "amount": float(amount[i]), "won_in_high": in_high, "won_in_low": in_low,
                     "separation": in_high - in_low})
    rows = [r for r in rows if r["separation"] > 0]
    rows.sort(key=lambda r: (-r["separation"], -r["amount"], r["deal_id"]))
    return rows[:n]


def spread(base: Base, sim: SimResult, simulate: Simulate, rollups: Any = ()) -> dict[str, Any]:
    """summary.json's ``spread``: the variance of window revenue over ``sim``'s trials, split over the
    ``SPREAD_DEALS`` deals of largest own variance (each simulated alone by ``simulate``, the forecast's
    trials of some open deals without new deals), the other open deals together, new deals, and per
    segment and report_by group; and the deals that separate a P90 trial from a P10 trial."""
    deals, open_idx = base.deals, base.open_idx
    R = sim.revenue
    variance = float(covariances([R], R)[0])
    own = own_variance(deals.amount, sim.deal_p_win)
    chosen = chosen_deals(own)
    rest = np.setdiff1d(np.arange(deals.n_deals), chosen)
    alone = [simulate(deals.take(np.array([i]))).revenue for i in chosen.tolist()]
    others = simulate(deals.take(rest)).revenue if len(rest) else np.zeros_like(R)
    cov = covariances([*alone, others, sim.new_revenue], R)
    ids = [str(v) for v in base.data.deal_id[open_idx[chosen]].tolist()]
    deal_rows = [{"deal_id": ids[j], "amount": float(deals.amount[i]), "p_win": float(sim.deal_p_win[i]),
                  **_part(float(cov[j]), float(own[i]), variance)} for j, i in enumerate(chosen.tolist())]
    deal_rows.sort(key=lambda r: (-r["covariance"], r["deal_id"]))
    high, low, hi_q, lo_q = high_low_trials(R)
    segments, report_by = _groups(base, sim, rollups, variance)
    out: dict[str, Any] = {
        "variance": variance, "sd": math.sqrt(max(variance, 0.0)), "trials": int(sim.n_trials),
        "deals_alone": len(chosen),
        "deals": deal_rows,
        "other_open_deals": {"deals": int(len(rest)), **_part(float(cov[-2]), float(own[rest].sum()), variance)},
        "new_deals": {"covariance": float(cov[-1]), "share": float(ratio(cov[-1], variance))},
        "segments": segments,
        "high_trials": {"at_least": hi_q, "trials": int(high.sum())},
        "low_trials": {"at_most": lo_q, "trials": int(low.sum())},
        "separating": separating(ids, deals.amount[chosen], [x > 0 for x in alone], high, low),
    }
    if report_by:
        out["report_by"] = report_by
    return out


__all__ = ["SPREAD_DEALS", "chosen_deals", "covariances", "high_low_trials", "own_variance", "separating", "spread"]
