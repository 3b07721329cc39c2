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
from forecaster.analysis.funnel import stale_deals
from forecaster.analysis.levers import apply_conversion, apply_duration, scale_arrivals
from forecaster.analysis.scenarios import Scenario
from forecaster.analysis.summary import describe, summarize_base, with_currency
from forecaster.errors import ConfigError
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


def interleave(counts: np.ndarray) -> np.ndarray:
    """Segment indices [sum(counts)] in an order that spreads each segment evenly: segment g's j-th
    deal sits at (j + 0.5) / counts[g] of the sequence (ties: lower g first), so that a campaign
    spread over days hands every segment days across the whole span, not one block each."""
    counts = np.asarray(counts, np.int64)
    seg = np.repeat(np.arange(len(counts)), counts)
    pos = np.concatenate([(np.arange(n) + 0.5) / n for n in counts if n > 0]) if counts.sum() else np.zeros(0)
    return seg[np.argsort(pos, kind="stable")]


def _campaign_deals(base: Base, sc: Scenario, amount_mult: float, keep_groups: np.ndarray) -> OpenDeals | None:
    """Campaign deals as open deals of age 0 entering their stage on their day (OpenDeals.start), the
    matching segments interleaved over the days; amounts ``median`` each, or drawn per trial from the
    segment's pool of recent amounts (``from_history``: OpenDeals' pools, keyed by each deal's stream)."""
    model = base.model
    n_s = model.n_stages
    arr = model.arrivals
    cells, starts, amounts, groups, ids, pool_start, pool_size = [], [], [], [], [], [], []
    rate = arr.rate
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
        g_of = g_idx[interleave(n_g)]
        first = (c.start - base.as_of).days
        n_days = (c.end - c.start).days + 1
        day = first + (np.arange(c.deals) * n_days) // c.deals  # spread evenly, in order
        lo, size = arr.amount_off[g_of], arr.amount_off[g_of + 1] - arr.amount_off[g_of]
        if c.amount_median is not None:
            amounts.append(np.full(c.deals, c.amount_median * amount_mult))
            size = np.zeros(c.deals, np.int64)
        else:
            if np.any(size == 0):
                empty = model.group_name(int(g_of[np.argmax(size == 0)]))
                raise ConfigError(f"scenario '{sc.name}': campaign[{i}]: segment {empty} has no recent deals to "
                                  f"draw amounts from; give amount: {{median: N}}")
            amounts.append(np.full(c.deals, float(amount_mult)))  # times the amount drawn per trial
        pool_start.append(lo)
        pool_size.append(size)
        stage = model.stages.index(c.stage)
        cells.append(g_of * n_s + stage)
        starts.append(day)
        groups.append(g_of)
        ids.extend(f"\x00campaign {i} deal {k}" for k in range(c.deals))
    if not cells:
        return None
    return OpenDeals(
        cell=np.concatenate(cells).astype(np.int32), age=np.zeros(len(ids), np.int32),
        amount=np.concatenate(amounts).astype(np.float64), group=np.concatenate(groups).astype(np.int32),
        stream_id=stream_ids(np.array(ids, dtype=object)), start=np.concatenate(starts).astype(np.int32),
        amount_pool=np.ascontiguousarray(arr.amount_pool, np.float64),
        pool_start=np.concatenate(pool_start).astype(np.int64), pool_size=np.concatenate(pool_size).astype(np.int64),
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
        stale = stale_deals(model, d.cell, d.age)
    pruned = keep & stale
    keep &= ~stale
    open_mult = sc.amount_multiplier if sc.amount_applies_to in ("open", "all") else 1.0
    new_mult = sc.amount_multiplier if sc.amount_applies_to in ("new", "all") else 1.0
    deals = OpenDeals(cell=d.cell[keep], age=d.age[keep], amount=d.amount[keep] * open_mult, group=d.group[keep],
                      stream_id=d.stream_ids()[keep], start=np.zeros(int(keep.sum()), np.int32))
    extra = _campaign_deals(base, sc, new_mult, keep_groups)
    if extra is not None:
        none = np.zeros(deals.n_deals, np.int64)
        deals = OpenDeals(*(np.concatenate([getattr(deals, f), getattr(extra, f)])
                            for f in ("cell", "age", "amount", "group")),
                          stream_id=np.concatenate([deals.stream_ids(), extra.stream_ids()]),
                          start=np.concatenate([deals.start, extra.start]), amount_pool=extra.amount_pool,
                          pool_start=np.r_[none, extra.pool_start], pool_size=np.r_[none, extra.pool_size])

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


# Per-trial differences within this share of the revenue are ties: sums of the same wins added in
# another order (a slice against the baseline's same slice) differ by rounding alone.
TIE_RTOL = 1e-9


def p_better(x: np.ndarray, base: np.ndarray) -> float:
    """P(scenario revenue > baseline revenue) over paired trials, ties (to rounding) counted half."""
    x, base = np.asarray(x, np.float64), np.asarray(base, np.float64)
    d = x - base
    tie = np.abs(d) <= TIE_RTOL * np.maximum(np.abs(x), np.abs(base))
    return float(np.mean(~tie & (d > 0)) + 0.5 * np.mean(tie))


def compared_totals(base: Base, sc: Scenario, sim: SimResult) -> tuple[np.ndarray, np.ndarray]:
    """Per-trial (revenue, won deals) of ``sim`` over what the scenario forecasts: everything, or with a
    ``filter`` the groups of its slice (the baseline is then compared on the same slice)."""
    if not sc.filter_segment:
        return sim.revenue, sim.won_deals
    keep = groups_matching(base, dict(sc.filter_segment))
    return sim.group_revenue[:, keep].sum(axis=1), sim.group_wins[:, keep].sum(axis=1)


def scenario_row(base: Base, base_sim: SimResult, sc: Scenario, sim: SimResult, summary: dict[str, Any]
                 ) -> dict[str, Any]:
    """One scenario's entry of compare.json: its summary and the paired deltas against the baseline (the
    same slice of it for a ``filter`` scenario); a sweep row also names its scenario, lever and value."""
    rev, won = compared_totals(base, sc, sim)
    b_rev, b_won = compared_totals(base, sc, base_sim)
    row: dict[str, Any] = {
        "name": sc.name,
        "summary": summary,
        "delta": {"revenue": paired_delta(rev, b_rev), "won_deals": paired_delta(won, b_won),
                  "p_better": p_better(rev, b_rev)},
    }
    if sc.filter_segment:
        row["compared_with"] = {"baseline_slice": dict(sc.filter_segment), "revenue": describe(b_rev),
                                "won_deals": describe(b_won)}
    if sc.sweep is not None:
        row["sweep"] = dict(sc.sweep)
    return row


def compare(base: Base, scenarios: list[Scenario], progress: Callable[[str], None] | None = None,
            engine: Engine = LOCAL) -> tuple[dict[str, Any], pa.Table]:
    """Baseline and every scenario (a sweep: every value) on the same seed, run together on the engine;
    the compare.json object and per-trial results."""
    (base_sim, base_summary), *runs = run_scenarios(base, scenarios, engine=engine, progress=progress, baseline=True)
    out: dict[str, Any] = {"baseline": base_summary, "scenarios": []}
    rows = [("baseline", base_sim)]
    for sc, (sim, summary) in zip(scenarios, runs):
        out["scenarios"].append(scenario_row(base, base_sim, sc, sim, summary))
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
