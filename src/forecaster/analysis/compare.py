"""What-if: a scenario's levers applied to a prepared base, and comparisons on common random numbers.

``scenario_inputs`` turns a Scenario (scenarios.py) into changed kernel inputs: stage tables
(conversion, duration, then the configured stale rule), open deals (slice, pruning, amounts, campaign
deals), arrivals (rates, slice) and the amount multiplier of new deals. ``compare`` runs the baseline
and every scenario with the same seed: each open deal keeps its random stream (keyed by its id) and the
k-th new deal of a (trial, segment, day) keeps its stream, so differences between scenarios come from the
levers, not from different luck; per-trial paired differences then give tight intervals.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import pyarrow as pa

from forecaster.analysis.forecast import Base, base_spec
from forecaster.analysis.funnel import cell_curve, quantile
from forecaster.analysis.levers import apply_conversion, apply_duration, scale_arrivals
from forecaster.analysis.scenarios import Scenario
from forecaster.analysis.summary import summarize_base, with_currency
from forecaster.model import ArrivalTables, OpenDeals, StageTables, apply_stale
from forecaster.sim import SimResult, stream_ids
from forecaster.sim.engines import LOCAL, Engine, SimSpec

Z95 = 1.959963984540054


@dataclass(frozen=True)
class ScenarioInputs:
    stage: StageTables
    deals: OpenDeals
    arrivals: ArrivalTables | None
    amount_multiplier_new: float
    pruned_deals: int
    pruned_amount: float
    campaign_deals: int


def segment_values(base: Base) -> dict[str, set[str]]:
    model = base.model
    return {col: {g[j] for g in model.groups} for j, col in enumerate(model.segment_by)}


def groups_matching(base: Base, segment: dict[str, str]) -> np.ndarray:
    """bool [G]: groups whose segment values match every column given."""
    model = base.model
    keep = np.ones(model.n_groups, bool)
    for col, value in segment.items():
        j = model.segment_by.index(col)
        keep &= np.array([g[j] == value for g in model.groups])
    return keep


def per_stage(base: Base, spec: dict[str, float]) -> dict[int, float]:
    """{'all': m, 'Proposal': m2} -> multiplier per stage index (a named stage overrides 'all')."""
    stages = base.model.stages
    out = {s: spec["all"] for s in range(len(stages))} if "all" in spec else {}
    out.update({stages.index(name): m for name, m in spec.items() if name != "all"})
    return out


def _campaign_deals(base: Base, sc: Scenario, amount_mult: float, keep_groups: np.ndarray) -> OpenDeals | None:
    """Campaign deals as open deals of age 0 entering their stage on their day (OpenDeals.start)."""
    model = base.model
    n_s = model.n_stages
    cells, starts, amounts, groups, ids = [], [], [], [], []
    rate = model.arrivals.rate
    for i, c in enumerate(sc.campaigns):
        match = groups_matching(base, dict(c.segment)) & keep_groups
        g_idx = np.flatnonzero(match)
        if len(g_idx) == 0:
            continue
        # Deals split over the matching segments in proportion to their arrival rates (largest remainder).
        w = rate[g_idx] if rate[g_idx].sum() > 0 else np.ones(len(g_idx))
        exact = c.deals * w / w.sum()
        n_g = np.floor(exact).astype(int)
        n_g[np.argsort(-(exact - n_g), kind="stable")[: c.deals - n_g.sum()]] += 1
        g_of = np.repeat(g_idx, n_g)
        first = (c.start - base.as_of).days
        n_days = (c.end - c.start).days + 1
        day = first + (np.arange(c.deals) * n_days) // c.deals  # spread evenly, in order
        if c.amount_median is not None:
            amt = np.full(c.deals, c.amount_median)
        else:
            pool_rng = np.random.default_rng([base.config.forecast.seed, i])
            amt = np.empty(c.deals)
            for g in np.unique(g_of):
                lo, hi = model.arrivals.amount_off[g], model.arrivals.amount_off[g + 1]
                at = g_of == g
                amt[at] = model.arrivals.amount_pool[lo + pool_rng.integers(0, hi - lo, at.sum())]
        stage = model.stages.index(c.stage)
        cells.append(g_of * n_s + stage)
        starts.append(day)
        amounts.append(amt * amount_mult)
        groups.append(g_of)
        ids.extend(f"\x00campaign {i} deal {k}" for k in range(c.deals))
    if not cells:
        return None
    return OpenDeals(
        cell=np.concatenate(cells).astype(np.int32), age=np.zeros(len(ids), np.int32),
        amount=np.concatenate(amounts).astype(np.float64), group=np.concatenate(groups).astype(np.int32),
        stream_id=stream_ids(np.array(ids, dtype=object)), start=np.concatenate(starts).astype(np.int32),
    )


def scenario_inputs(base: Base, sc: Scenario) -> ScenarioInputs:
    """The kernel inputs of a scenario (module docstring)."""
    sc.check(segment_values(base), base.start, base.end)
    model = base.model
    stage = model.stage
    stage = apply_conversion(stage, per_stage(base, dict(sc.conversion)))
    stage = apply_duration(stage, per_stage(base, dict(sc.duration)))
    if base.config.fit.stale_after_days is not None:
        stage = apply_stale(stage, base.config.fit.stale_after_days)

    d = base.deals
    keep_groups = groups_matching(base, dict(sc.filter_segment))
    keep = keep_groups[d.group]
    stale = np.zeros(d.n_deals, bool)
    if sc.prune_older_than_days is not None:
        stale = d.age > sc.prune_older_than_days
    elif sc.prune_beyond_p90:
        p90 = np.array([quantile(cell_curve(model, c), 0.9) for c in range(model.stage.n_cells)])
        stale = d.age > p90[d.cell]
    pruned = keep & stale
    keep &= ~stale
    open_mult = sc.amount_multiplier if sc.amount_applies_to in ("open", "all") else 1.0
    new_mult = sc.amount_multiplier if sc.amount_applies_to in ("new", "all") else 1.0
    deals = OpenDeals(cell=d.cell[keep], age=d.age[keep], amount=d.amount[keep] * open_mult, group=d.group[keep],
                      stream_id=d.stream_ids()[keep], start=np.zeros(int(keep.sum()), np.int32))
    extra = _campaign_deals(base, sc, new_mult, keep_groups)
    if extra is not None:
        deals = OpenDeals(*(np.concatenate([getattr(deals, f), getattr(extra, f)])
                            for f in ("cell", "age", "amount", "group")),
                          stream_id=np.concatenate([deals.stream_ids(), extra.stream_ids()]),
                          start=np.concatenate([deals.start, extra.start]))

    arrivals = base.arrivals
    if arrivals is not None:
        rate = np.full(model.n_groups, sc.rate) * keep_groups
        for value, mult in sc.rate_by_segment.items():
            rate *= np.where([value in g for g in model.groups], mult, 1.0)
        arrivals = scale_arrivals(arrivals, rate)
    return ScenarioInputs(stage, deals, arrivals, new_mult, int(pruned.sum()), float(d.amount[pruned].sum()),
                          0 if extra is None else extra.n_deals)


def scenario_spec(base: Base, inp: ScenarioInputs, n_trials: int | None = None) -> SimSpec:
    return base_spec(base, stage=inp.stage, deals=inp.deals, arrivals=inp.arrivals,
                     amount_multiplier_new=inp.amount_multiplier_new, n_trials=n_trials)


def scenario_summary(base: Base, sc: Scenario, inp: ScenarioInputs, sim: SimResult) -> dict[str, Any]:
    summary = summarize_base(base, sim, inp.deals)
    summary["scenario"] = {"name": sc.name, "description": sc.description, "pruned_deals": inp.pruned_deals,
                           "pruned_amount": inp.pruned_amount, "campaign_deals": inp.campaign_deals}
    return summary


def run_scenarios(base: Base, scenarios: list[Scenario], n_trials: int | None = None, engine: Engine = LOCAL,
                  progress: Callable[[str], None] | None = None, baseline: bool = False
                  ) -> list[tuple[SimResult, dict[str, Any]]]:
    """Each scenario's trials and summary, their simulations run together on the engine; with
    ``baseline``, the base's own run first (its summary has no scenario part). ``progress(name)`` as
    each scenario's inputs are built."""
    inputs = []
    for sc in scenarios:
        if progress is not None:
            progress(sc.name)
        inputs.append(scenario_inputs(base, sc))
    specs = [scenario_spec(base, inp, n_trials) for inp in inputs]
    sims = engine.simulate_many(([base_spec(base, n_trials=n_trials)] if baseline else []) + specs)
    out = [(sims[0], summarize_base(base, sims[0]))] if baseline else []
    return out + [(sim, scenario_summary(base, sc, inp, sim))
                  for sc, inp, sim in zip(scenarios, inputs, sims[len(out):])]


def run_scenario(base: Base, sc: Scenario, n_trials: int | None = None, engine: Engine = LOCAL
                 ) -> tuple[SimResult, dict[str, Any]]:
    return run_scenarios(base, [sc], n_trials, engine)[0]


def paired_delta(x: np.ndarray, base: np.ndarray) -> dict[str, float]:
    """Mean of the per-trial differences with a 95% normal interval (paired: same trials, same draws)."""
    d = np.asarray(x, np.float64) - np.asarray(base, np.float64)
    se = d.std(ddof=1) / math.sqrt(len(d)) if len(d) > 1 else 0.0
    return {"mean": float(d.mean()), "lo95": float(d.mean() - Z95 * se), "hi95": float(d.mean() + Z95 * se)}


def p_better(x: np.ndarray, base: np.ndarray) -> float:
    """P(scenario revenue > baseline revenue) over paired trials, ties counted half."""
    d = np.asarray(x, np.float64) - np.asarray(base, np.float64)
    return float(np.mean(d > 0) + 0.5 * np.mean(d == 0))


def compare(base: Base, scenarios: list[Scenario], progress: Callable[[str], None] | None = None,
            engine: Engine = LOCAL) -> tuple[dict[str, Any], pa.Table]:
    """Baseline and every scenario on the same seed, run together on the engine; the compare.json object
    and per-trial results."""
    (base_sim, base_summary), *runs = run_scenarios(base, scenarios, engine=engine, progress=progress, baseline=True)
    out: dict[str, Any] = {"baseline": base_summary, "scenarios": []}
    rows = [("baseline", base_sim)]
    for sc, (sim, summary) in zip(scenarios, runs):
        out["scenarios"].append({
            "name": sc.name,
            "summary": summary,
            "delta": {"revenue": paired_delta(sim.revenue, base_sim.revenue),
                      "won_deals": paired_delta(sim.won_deals, base_sim.won_deals),
                      "p_better": p_better(sim.revenue, base_sim.revenue)},
        })
        rows.append((sc.name, sim))
    t = base_sim.n_trials
    table = pa.table({
        "scenario": pa.array([name for name, _ in rows for _ in range(t)], pa.string()),
        "trial": np.tile(np.arange(t, dtype=np.int64), len(rows)),
        "revenue": np.concatenate([s.revenue for _, s in rows]),
        "won_deals": np.concatenate([s.won_deals for _, s in rows]),
    })
    return out, with_currency(table, base.data.currency)


__all__ = ["ScenarioInputs", "scenario_inputs", "run_scenario", "run_scenarios", "compare", "paired_delta", "p_better"]
