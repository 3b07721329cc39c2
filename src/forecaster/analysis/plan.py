"""Plan: how much of one lever the target needs, and the reverse funnel.

``solve`` finds the lever value x at which P(revenue >= target) reaches the confidence: bisection on
log x between the neutral value 1 and the lever's sane limit. Every evaluation runs the same trials with
the same seed (common random numbers). For new_deals, conversion and amount every trial's revenue is
non-decreasing in x (docs/scenarios.md), so P(x) is a non-decreasing step curve and the bracket
[multiplier_below, multiplier] holds the least passing value exactly; for duration it is not monotone,
and the bracket is one failing and one passing value. Levers: ``new_deals`` (arrival rate x), ``conversion`` (odds of moving forward versus
lost x, at one stage or all), ``amount`` (deal size x, new and open deals), ``duration`` (time in stage x,
searched downward: faster cycles). On a Dask engine each evaluation runs as blocks of trials on the
workers, and the bracket's two ends run together; the answer is the local one.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from forecaster.analysis.compare import run_scenarios
from forecaster.analysis.forecast import Base
from forecaster.analysis.funnel import absorption, cell_exit_shares, funnel
from forecaster.analysis.levers import shift_conversion
from forecaster.analysis.scenarios import Scenario
from forecaster.errors import ConfigError, suggest
from forecaster.sim.engines import LOCAL, Engine

LEVER_LIMITS = {"new_deals": 10.0, "conversion": 20.0, "amount": 10.0, "duration": 0.1}
ITERATIONS = 14  # log-x precision: ln(limit) / 2**14, well below any decision that depends on it


def lever_scenario(lever: str, x: float, stage: str | None) -> Scenario:
    if lever == "new_deals":
        return Scenario(f"plan {lever} x{x:.4g}", rate=x)
    if lever == "amount":
        return Scenario(f"plan {lever} x{x:.4g}", amount_multiplier=x, amount_applies_to="all")
    if lever == "conversion":
        return Scenario(f"plan {lever} x{x:.4g}", conversion={stage or "all": x})
    if lever == "duration":
        return Scenario(f"plan {lever} x{x:.4g}", duration={stage or "all": x})
    raise ConfigError(f"--lever {lever}: expected one of {', '.join(LEVER_LIMITS)}")


def solve(base: Base, target: float, confidence: float, lever: str, stage: str | None = None,
          n_trials: int | None = None, engine: Engine = LOCAL) -> dict[str, Any]:
    """The lever value reaching P(revenue >= target) >= confidence, or why none within the limit
    (``evaluations``: the lever values the search used, whatever the engine ran ahead)."""
    if not 0 < confidence < 1:
        raise ConfigError(f"--confidence {confidence}: expected a probability between 0 and 1")
    if target <= 0:
        raise ConfigError(f"--target {target}: expected a revenue > 0")
    if stage is not None and stage not in base.model.stages:
        raise ConfigError(f"--stage '{stage}': unknown stage{suggest(stage, base.model.stages)}; "
                          f"stages: {', '.join(base.model.stages)}")
    if lever == "new_deals" and base.arrivals is None:
        raise ConfigError("--lever new_deals needs new deals in the forecast (forecast.new_deals: true)")
    if lever in ("new_deals", "amount") and stage is not None:
        raise ConfigError(f"--stage applies to the conversion and duration levers, not to {lever}")
    cache: dict[float, tuple[float, dict[str, Any]]] = {}
    consulted: set[float] = set()

    def evaluate(xs: list[float]) -> None:
        """P(revenue >= target) at each new lever value, their simulations run together."""
        new = [x for x in dict.fromkeys(xs) if x not in cache]
        runs = run_scenarios(base, [lever_scenario(lever, x, stage) for x in new], n_trials, engine)
        for x, (sim, summary) in zip(new, runs):
            cache[x] = (float(np.mean(sim.revenue >= target)), summary)

    def p_reach(x: float) -> float:
        evaluate([x])
        consulted.add(x)
        return cache[x][0]

    limit = LEVER_LIMITS[lever]
    if engine.workers > 1:
        # The bracket's two ends do not depend on each other: one round on the workers (the limit is
        # wasted only when the target is already reached). The bisection's steps depend on each other;
        # each runs as blocks of trials on every worker.
        evaluate([1.0, limit])
    p0 = p_reach(1.0)
    result: dict[str, Any] = {"target": target, "confidence": confidence, "lever": lever, "stage": stage,
                              "limit": limit, "p_now": p0, "trials": n_trials or base.config.forecast.trials}
    if p0 >= confidence:
        result.update(reachable=True, multiplier=1.0, p_at_solution=p0, evaluations=len(consulted))
        return result
    if p_reach(limit) < confidence:
        result.update(reachable=False, multiplier=None, p_at_solution=p_reach(limit), evaluations=len(consulted))
        return result
    # In log x; P rises from lo to hi (for duration x falls: cycles speed up). Invariant: P(lo) < confidence
    # <= P(hi), both on the same trials; with a lever monotone per trial, the least passing value is in
    # between.
    lo, hi = 0.0, math.log(limit)
    for _ in range(ITERATIONS):
        mid = 0.5 * (lo + hi)
        if p_reach(math.exp(mid)) >= confidence:
            hi = mid
        else:
            lo = mid
    x = math.exp(hi)
    result.update(reachable=True, multiplier=x, multiplier_below=math.exp(lo), p_at_solution=p_reach(x),
                  evaluations=len(consulted), revenue_at_solution=cache[x][1]["revenue"])
    return result


def conversion_rate(base: Base, stage: int, odds_multiplier: float = 1.0) -> float:
    """A stage's conversion, forward / (forward + lost) among its exits, mixed over segments by spells."""
    m = base.model
    n_s = m.n_stages
    w = m.cell_spells.reshape(m.n_groups, n_s)[:, stage].astype(float)
    w = w / w.sum() if w.sum() > 0 else np.full(m.n_groups, 1.0 / m.n_groups)
    p = sum(w[g] * cell_exit_shares(m, g * n_s + stage) for g in range(m.n_groups))
    p = shift_conversion(p[None, :], stage, odds_multiplier)[0]
    fwd = p[stage + 1:n_s + 1].sum()
    return float(fwd / (fwd + p[n_s + 1])) if fwd + p[n_s + 1] > 0 else 0.0


def win_rate_of_new_deals(base: Base, odds_multiplier: float = 1.0, stage: int | None = None) -> float:
    m = base.model
    n_s = m.n_stages
    rate = m.arrivals.rate
    total = 0.0
    for g in range(m.n_groups):
        p = np.array([cell_exit_shares(m, g * n_s + s) for s in range(n_s)])
        for s in range(n_s):
            if stage is None or s == stage:
                p[s] = shift_conversion(p[s][None, :], s, odds_multiplier)[0]
        b = absorption(p)[1][:, 0]
        total += rate[g] * float(m.arrivals.entry_p[g] @ b)
    return total / rate.sum() if rate.sum() > 0 else float("nan")


def explain(base: Base, result: dict[str, Any]) -> dict[str, Any]:
    """The answer in revenue-ops terms, and the reverse funnel for the target."""
    m = base.model
    lever, x, stage = result["lever"], result["multiplier"], result["stage"]
    f = funnel(m, base.data)
    lines = []
    if not result["reachable"]:
        lines.append(f"not reachable with {lever} alone: even x{result['limit']:g} gives "
                     f"P(revenue >= target) = {result['p_at_solution']:.0%} < {result['confidence']:.0%}")
    elif x == 1.0:
        lines.append(f"already reached: P(revenue >= target) = {result['p_now']:.0%} with the current pipeline")
    elif lever == "new_deals":
        per_week = float(m.arrivals.rate.sum() * 7)
        lines.append(f"{per_week * (x - 1):,.1f} more new deals per week (x{x:.2f} the current rate of "
                     f"{per_week:,.1f} per week)")
    elif lever == "conversion" and stage is not None:
        s = m.stages.index(stage)
        lines.append(f"{stage} conversion from {conversion_rate(base, s):.0%} to {conversion_rate(base, s, x):.0%} "
                     f"(odds x{x:.2f})")
    elif lever == "conversion":
        lines.append(f"conversion odds x{x:.2f} at every stage: win rate of new deals from "
                     f"{win_rate_of_new_deals(base):.0%} to {win_rate_of_new_deals(base, x):.0%}")
    elif lever == "duration":
        where = f"in {stage}" if stage else "in every stage"
        lines.append(f"time {where} x{x:.2f} ({1 - x:.0%} faster)")
    elif lever == "amount":
        avg = f["overall"]["avg_won_amount"]
        lines.append(f"average deal size x{x:.2f}: won deals from {avg:,.0f} to {avg * x:,.0f}")
    avg_won = f["overall"]["avg_won_amount"]
    wins_needed = result["target"] / avg_won if avg_won > 0 else float("nan")
    reverse = [{"stage": s["stage"], "win_rate": s["win_rate"],
                "deals_needed": wins_needed / s["win_rate"] if s["win_rate"] > 0 else None}
               for s in f["stages"]]
    result = dict(result)
    result["as_of"] = base.as_of.isoformat()
    result["window"] = {"start": base.start.isoformat(), "end": base.end.isoformat()}
    result["answer"] = lines
    result["currency"] = base.data.currency
    result["reverse_funnel"] = {"avg_won_amount": avg_won, "wins_needed": wins_needed, "stages": reverse}
    return result
