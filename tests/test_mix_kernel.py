"""Calendar effects and the shared shock in the kernel (model.shocks; sim.compact: dominating tables thinned
by mixed_thresholds): the kernel equals its naive twin bit for bit, the exits per month are what the
rates and shifts say, pairing stays monotone, and the shock's levels have the fitted variance and widen the
spread as derived."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from forecaster.model import MixEffects, StageTables
from forecaster.sim import compact, engine
from tests import naive
from tests.test_kernel import (
    assert_same,
    geometric_tables,
    one_move_back,
    open_deals,
    random_problem,
    stage_row,
    window_args,
)

EFFECTS = MixEffects(np.array([0.6, 0.9, 1.5]), np.array([0.4, 0.1, -0.5]), 0.15, 1)


# Every exit rate 1: the kernel's path without thinning (the plain draw with fb per month and shock level).
UNTHINNED = MixEffects(np.ones(3), np.array([0.4, 0.1, -0.5]), 0.15, 1)


@pytest.mark.parametrize("effects", [EFFECTS, UNTHINNED], ids=["thinned", "unthinned"])
@pytest.mark.parametrize("fast", [True, False])
def test_naive_twin_equal_with_effects(fast, effects):
    stage, deals, kw = random_problem(seed=4, with_starts=True)
    stage = one_move_back(stage) if fast else stage
    assert compact.compact_stage_tables(stage, kw["end_off"]).dest_is_fast == fast
    assert compact.compact_stage_tables(stage, kw["end_off"], effects, kw.get("day_moq")).mix_thin == (
        effects is EFFECTS)
    res = engine.simulate(stage, deals, n_trials=14, seed=8, **kw, effects=effects, chunk_trials=5)
    ref = naive.simulate(stage, deals, n_trials=14, seed=8, **kw, effects=effects)
    assert res.new_wins.sum() > 0 and res.deal_won_trials.sum() > 0
    assert_same(res, ref)
    plain = engine.simulate(stage, deals, n_trials=14, seed=8, **kw, chunk_trials=5)
    assert not np.array_equal(plain.revenue, res.revenue)  # the effects act


# Per open stage its own month rates and shifts (5 stages), as the fit gives them.
PER_STAGE = MixEffects(np.array([[0.6, 0.9, 1.5], [1.0, 1.0, 1.0], [0.8, 1.2, 2.0], [1.1, 0.7, 1.0], [1.0, 1.0, 0.5]]),
                       np.array([[0.4, 0.1, -0.5], [0.0, 0.0, 0.0], [-0.3, 0.2, 0.6], [0.0, 0.5, -1.0], [0.1, 0.1, 0.1]]),
                       0.15, 1)


@pytest.mark.parametrize("effects", [EFFECTS, PER_STAGE], ids=["one_row", "per_stage"])
def test_naive_twin_equal_with_effects_general_rows_and_no_arrivals(effects):
    stage, deals, kw = random_problem(seed=9, S=5, n_deals=60, with_arrivals=False)
    _, kw["day_moq"] = __import__("forecaster.calendar", fromlist=["calendar_days"]).calendar_days(19800, kw["end_off"])
    assert not compact.compact_stage_tables(stage, kw["end_off"]).dest_is_fast
    res = engine.simulate(stage, deals, n_trials=10, seed=5, **kw, effects=effects, chunk_trials=4)
    ref = naive.simulate(stage, deals, n_trials=10, seed=5, **kw, effects=effects)
    assert_same(res, ref)
    if effects is PER_STAGE:
        other = engine.simulate(stage, deals, n_trials=10, seed=5, **kw, effects=EFFECTS, chunk_trials=4)
        assert not np.array_equal(other.deal_won_trials, res.deal_won_trials)  # the per-stage rows act


def test_inactive_effects_leave_every_output_unchanged():
    stage, deals, kw = random_problem(seed=3)
    a = engine.simulate(stage, deals, n_trials=20, seed=1, **kw)
    b = engine.simulate(stage, deals, n_trials=20, seed=1, **kw, effects=MixEffects.none())
    assert_same(a, b)


def test_effects_need_the_month_of_each_day():
    stage, deals, kw = random_problem(seed=3, with_arrivals=False)
    with pytest.raises(ValueError, match="day_moq is required with calendar effects"):
        engine.simulate(stage, deals, n_trials=2, seed=1, **kw, effects=EFFECTS)
    engine.simulate(stage, deals, n_trials=2, seed=1, **kw, effects=EFFECTS.without(calendar=True))  # a shock alone needs no calendar


@settings(max_examples=200, deadline=None)
@given(p=st.lists(st.sampled_from([0.0, 0.0, 1e-12, 0.05, 0.2, 0.25, 1.0]), min_size=7, max_size=7).filter(lambda p: sum(p) > 0),
       s=st.integers(0, 4), u=st.one_of(st.integers(0, 2**32 - 1), st.sampled_from([0, 1, 2**31, 2**32 - 1])),
       q=st.integers(0, 2), z=st.integers(0, compact.FRAILTY_LEVELS - 1),
       effects=st.sampled_from([EFFECTS, EFFECTS.without(calendar=True), MixEffects(np.full(3, 0.7), np.zeros(3))]))  # fmt: skip
def test_mixed_thresholds_pick_what_the_formula_picks(p, s, u, q, z, effects):
    """On one row: the kernel's rule on mixed_thresholds picks what the naive rule picks, never an outcome of
    probability 0; the u-axis is back | thinned | lost | forward; the forward mix is the same draw as
    without effects; a draw lost at one shock level is lost at every higher one (monotone odds)."""
    row = stage_row(p, s)
    S = len(row) - 2
    nest = compact.nested_thresholds(row[None, :], np.array([s]))
    mx = compact.mixed_thresholds(nest, effects, np.array([s]))
    nz = compact.FRAILTY_LEVELS
    levels = compact.frailty_multipliers(effects)
    rate_s, shift_s = effects.rows(np.array([s]))
    lost_m = np.exp(shift_s[0])[:, None] * levels[None, :]
    v = ((u << 16) | (u >> 16)) & 0xFFFFFFFF

    def kernel_pick(zz):
        nb = int(nest["n_back"][0])
        if u < mx["ls"][q]:
            j = int((u >= mx["bthr"][0]).sum())
            return int(nest["dest_k"][0, j]) if j < nb else -1
        if u < mx["fb"][q * nz + zz]:
            return S + 1
        return int(nest["dest_k"][0, nb + 1 + int((v >= nest["vthr"][0]).sum())])

    k = kernel_pick(z)
    assert k == naive.pick_nested_mixed(row, s, u, effects.max_rate, float(rate_s[0, q]), float(lost_m[q, z]))
    assert k == -1 or row[k] > 0
    plain = naive.pick_nested(row, s, u)
    if s < S and k > s and k <= S and plain > s and plain <= S:
        assert k == plain  # the forward mix: v picks the same forward destination
    lost_at = [kernel_pick(int(zz)) == S + 1 for zz in np.argsort(levels, kind="stable")]
    assert lost_at == sorted(lost_at) or len(set(levels.tolist())) < nz


def test_frailty_levels_have_mean_one_and_the_variance():
    for var in (0.01, 0.1, 0.3, 1.0):
        z = compact.frailty_levels(var)
        assert z.shape == (compact.FRAILTY_LEVELS,) and (z > 0).all()
        assert z.mean() == pytest.approx(1.0, abs=1e-12)
        if z.min() > 0.05 and var <= 0.3:
            assert z.var() == pytest.approx(var, rel=1e-9)
    assert (compact.frailty_levels(0.0) == 1.0).all()


def one_stage(lost: float, won: float, h: float = 1.0, L: int = 1) -> StageTables:
    """One open stage with daily exit probability ``h`` (h = 1: every deal leaves on its first day), leaving
    lost with share ``lost`` and won with ``won``."""
    from tests.test_kernel import stage_tables

    surv = [(1 - h) ** (d + 1) for d in range(L)]
    return stage_tables([{"surv": surv, "bins": [[0.0, won, lost]], "day_bin": [0] * L, "tail_h": h, "tail_bin": 0}], 1)


def test_exits_per_month_follow_the_rates_and_shifts():
    """Deals entering in each month of the quarter with a daily exit probability of 3% (won 60%, lost
    40%), over 10 days inside that month: the daily probability of an exit is h rate[q], lost with share
    l m / (l m + f), m = exp(lost_shift[q]); so P(lost in the 10 days) = that share (1 - (1 - h rate)^10),
    and won likewise; within 4 binomial standard errors per month."""
    import datetime as dt

    from forecaster.calendar import calendar_days, to_day

    h, w, l = 0.03, 0.6, 0.4
    stage = one_stage(l, w, h, L=30)
    as_of = to_day(dt.date(2024, 1, 1))
    eff = MixEffects(np.array([0.5, 1.0, 1.8]), np.array([0.6, 0.0, -0.8]), 0.0, 1)
    _, moq = calendar_days(as_of, 91)
    n = 20000
    for day0, q in ((2, 0), (35, 1), (65, 2)):  # Jan 3, Feb 5, Mar 6: ten days inside each month
        deals = open_deals(np.zeros(n, np.int32), np.zeros(n, np.int32), np.ones(n), 1, start=np.full(n, day0, np.int32))
        res = engine.simulate(stage, deals, n_trials=1, seed=3, **window_args(day0, day0 + 9), day_moq=moq[: day0 + 10],
                              effects=eff)
        out = 1 - (1 - h * eff.exit_rate[0, q]) ** 10
        lm = l * math.exp(eff.lost_shift[0, q])
        for got, share in ((res.deal_lost_trials.sum() / n, lm / (lm + w)), (res.deal_won_trials.sum() / n, w / (lm + w))):
            p = share * out
            assert abs(got - p) <= 4 * math.sqrt(p * (1 - p) / n), (q, got, p)


def test_the_shared_shock_widens_the_spread_of_wins_as_derived():
    """Many deals, one exit each, in one trial share its shock level Z: per trial the won share is
    f / (f + l Z). Over trials the variance of won counts is n p (1 - p) on average plus n^2 Var_Z(p(Z));
    the mean and variance of wins per trial are checked against these within 4 Monte Carlo standard
    errors (the variance's from the fourth moment of a normal approximation, 2 sigma^4 / (T - 1))."""
    from forecaster.calendar import calendar_days

    l, f, var = 0.5, 0.5, 0.2
    stage = one_stage(l, f)
    eff = MixEffects(np.ones(3), np.zeros(3), var, 1)
    z = compact.frailty_levels(var)
    p_z = f / (f + l * z)  # won share per level
    n, T = 400, 3000
    mean = n * p_z.mean()
    variance = (n * p_z * (1 - p_z)).mean() + n * n * p_z.var()
    deals = open_deals(np.zeros(n, np.int32), np.zeros(n, np.int32), np.ones(n), 1)
    _, moq = calendar_days(19800, 30)
    res = engine.simulate(stage, deals, n_trials=T, seed=11, **window_args(0, 30), day_moq=moq, effects=eff)
    w = res.won_deals.astype(float)
    assert abs(w.mean() - mean) <= 4 * math.sqrt(variance / T)
    assert abs(w.var(ddof=1) - variance) <= 4 * variance * math.sqrt(2 / (T - 1))
    independent = n * p_z.mean() * (1 - p_z.mean())
    assert variance > 20 * independent  # what the shock adds dwarfs the deals' own noise


def test_pairing_holds_under_effects():
    """A conversion lever on top of the effects: per trial, never fewer wins (same draws, the lost-or-
    forward threshold moves one way)."""
    from forecaster.analysis.levers import apply_conversion

    stage, deals, kw = random_problem(seed=6, with_arrivals=False)
    stage = one_move_back(stage)
    from forecaster.calendar import calendar_days

    _, kw["day_moq"] = calendar_days(19800, kw["end_off"])
    better = apply_conversion(stage, {s: 1.3 for s in range(stage.n_stages)})
    a = engine.simulate(stage, deals, n_trials=300, seed=2, **kw, effects=EFFECTS)
    b = engine.simulate(better, deals, n_trials=300, seed=2, **kw, effects=EFFECTS)
    assert (b.won_deals >= a.won_deals).all() and (b.won_deals > a.won_deals).any()


def test_geometric_tables_run_with_effects_on_any_thread_count():
    from forecaster.calendar import calendar_days
    import numba

    stage = geometric_tables(n_groups=2)
    rng = np.random.default_rng(0)
    deals = open_deals(rng.integers(0, stage.n_cells, 500).astype(np.int32), rng.integers(0, 30, 500).astype(np.int32),
                       rng.lognormal(8, 1, 500), stage.n_stages)
    _, moq = calendar_days(19800, 60)
    kw = window_args(0, 60, 2)
    runs = []
    for threads in (1, 2):
        numba.set_num_threads(threads)
        runs.append(engine.simulate(stage, deals, n_trials=200, seed=4, **kw, day_moq=moq, effects=EFFECTS))
    numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
    assert_same(runs[0], runs[1])


@pytest.mark.parametrize("age", [0, 10, 60, 150])
@pytest.mark.parametrize("rate", [0.5, 1.6])
def test_thinning_equals_the_process_with_the_scaled_hazard(age, rate):
    """One stage with no moves back, daily exit probability h = 3% on a 120-day table, every month's exit
    rate ``rate``: thinning (R = max(1, rate)) must give the process whose daily exit probability is
    h rate. Deals open at ages below the table's length and past it (an aged first stay that goes on after
    a thinned exit entered before the window, so its days outrun the fresh tables cut at the window); over
    60 days P(won) = w (1 - (1 - h rate)^60) exactly (the geometric table is memoryless), within 4
    binomial standard errors, and the kernel equals its naive twin bit for bit."""
    from forecaster.calendar import calendar_days

    h, w, l, L, n, T = 0.03, 0.6, 0.4, 120, 4000, 5
    _, moq = calendar_days(19723, 59)
    eff = MixEffects(np.full(3, rate), np.zeros(3), 0.0, 1)
    deals = open_deals(np.zeros(n, np.int32), np.full(n, age, np.int32), np.ones(n), 1)
    kw = dict(window_args(0, 59), day_moq=moq)
    stage = one_stage(l, w, h, L)
    res = engine.simulate(stage, deals, n_trials=T, seed=3, **kw, effects=eff)
    p = w * (1 - (1 - h * rate) ** 60)
    got = res.won_deals.sum() / (n * T)
    assert abs(got - p) <= 4 * math.sqrt(p * (1 - p) / (n * T)), (got, p)
    small = open_deals(np.zeros(60, np.int32), np.full(60, age, np.int32), np.ones(60), 1)
    assert_same(engine.simulate(stage, small, n_trials=6, seed=4, **kw, effects=eff),
                naive.simulate(stage, small, n_trials=6, seed=4, **kw, effects=eff))
