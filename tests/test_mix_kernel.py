"""Calendar shifts and the shared shock in the kernel (model.shocks, sim.compact.mix_thresholds): the
kernel equals its naive twin bit for bit, the shifted shares are what the formulas say, pairing stays
monotone, and the shock's levels have the fitted variance and widen the spread as derived."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from forecaster.model import MixEffects
from forecaster.sim import compact, engine
from tests import naive
from tests.test_kernel import assert_same, geometric_tables, one_move_back, open_deals, random_problem, window_args

EFFECTS = MixEffects(np.array([0.4, -0.1, -0.5]), np.array([-0.6, 0.2, 0.5]), 0.15, 1)


@pytest.mark.parametrize("fast", [True, False])
def test_naive_twin_equal_with_effects(fast):
    stage, deals, kw = random_problem(seed=4, with_starts=True)
    stage = one_move_back(stage) if fast else stage
    assert compact.compact_stage_tables(stage, kw["end_off"]).dest_is_fast == fast
    res = engine.simulate(stage, deals, n_trials=14, seed=8, **kw, effects=EFFECTS, chunk_trials=5)
    ref = naive.simulate(stage, deals, n_trials=14, seed=8, **kw, effects=EFFECTS)
    assert res.new_wins.sum() > 0 and res.deal_won_trials.sum() > 0
    assert_same(res, ref)
    plain = engine.simulate(stage, deals, n_trials=14, seed=8, **kw, chunk_trials=5)
    assert not np.array_equal(plain.revenue, res.revenue)  # the effects act


def test_naive_twin_equal_with_effects_general_rows_and_no_arrivals():
    stage, deals, kw = random_problem(seed=9, S=5, n_deals=60, with_arrivals=False)
    _, kw["day_moq"] = __import__("forecaster.calendar", fromlist=["calendar_days"]).calendar_days(19800, kw["end_off"])
    assert not compact.compact_stage_tables(stage, kw["end_off"]).dest_is_fast
    res = engine.simulate(stage, deals, n_trials=10, seed=5, **kw, effects=EFFECTS, chunk_trials=4)
    ref = naive.simulate(stage, deals, n_trials=10, seed=5, **kw, effects=EFFECTS)
    assert_same(res, ref)


def test_inactive_effects_leave_every_output_unchanged():
    stage, deals, kw = random_problem(seed=3)
    a = engine.simulate(stage, deals, n_trials=20, seed=1, **kw)
    b = engine.simulate(stage, deals, n_trials=20, seed=1, **kw, effects=MixEffects.none())
    assert_same(a, b)


def test_effects_need_the_month_of_each_day():
    stage, deals, kw = random_problem(seed=3, with_arrivals=False)
    with pytest.raises(ValueError, match="day_moq is required with calendar effects"):
        engine.simulate(stage, deals, n_trials=2, seed=1, **kw, effects=EFFECTS)


@settings(max_examples=150, deadline=None)
@given(p=st.lists(st.sampled_from([0.0, 0.0, 1e-12, 0.05, 0.2, 0.25, 1.0]), min_size=7, max_size=7).filter(lambda p: sum(p) > 0),
       s=st.integers(0, 4), u=st.one_of(st.integers(0, 2**32 - 1), st.sampled_from([0, 1, 2**31, 2**32 - 1])),
       q=st.integers(0, 2), z=st.integers(0, compact.FRAILTY_LEVELS - 1))  # fmt: skip
def test_mixed_thresholds_pick_what_the_formula_picks(p, s, u, q, z):
    """On one row: the kernel's rule on mix_thresholds picks what the naive rule picks, never an outcome
    of probability 0; moves back are the same draws as without effects; a draw lost under one shock
    level and forward under a higher multiplier never happens (monotone in the odds)."""
    row = np.asarray(p)
    row[s] = 0.0
    if row.sum() == 0:
        row[-1] = 1.0
    row = row / row.sum()
    nest = compact.nested_thresholds(row[None, :], np.array([s]))
    fb, vthr = compact.mix_thresholds(nest, EFFECTS)
    lost_mult, won_mult = compact.mix_multipliers(EFFECTS)
    v = ((u << 16) | (u >> 16)) & 0xFFFFFFFF

    def kernel_pick(fb_row, vthr_row):
        j = int((u >= nest["bthr"][0]).sum()) + int(u >= fb_row) * (1 + int((v >= vthr_row[: nest["vthr"].shape[1]]).sum()))
        return int(nest["dest_k"][0, j])

    nz = compact.FRAILTY_LEVELS
    k = kernel_pick(fb[q * nz + z], vthr[q])
    assert k == naive.pick_nested_mixed(row, s, u, float(lost_mult[q, z]), float(won_mult[q]))
    assert row[k] > 0
    plain = naive.pick_nested(row, s, u)
    S = len(row) - 2
    assert (k < s) == (plain < s)  # moves back keep their draws
    order = np.argsort(lost_mult[q])
    lost_at = [kernel_pick(fb[q * nz + int(zz)], vthr[q]) == S + 1 for zz in order]
    assert lost_at == sorted(lost_at)  # once lost at some multiplier, lost at every larger one


def test_frailty_levels_have_mean_one_and_the_variance():
    for var in (0.01, 0.1, 0.3, 1.0):
        z = compact.frailty_levels(var)
        assert z.shape == (compact.FRAILTY_LEVELS,) and (z > 0).all()
        assert z.mean() == pytest.approx(1.0, abs=1e-12)
        if z.min() > 0.05 and var <= 0.3:
            assert z.var() == pytest.approx(var, rel=1e-9)
    assert (compact.frailty_levels(0.0) == 1.0).all()


def one_stage_exit_day_one(lost: float, won: float) -> tuple:
    """One open stage, every deal leaves on day 1 after entering (the tables' S(0) = 0 on day 1):
    lost with share ``lost``, won with ``won`` (no other forward stage)."""
    from tests.test_kernel import stage_tables

    stage = stage_tables([{"surv": [1.0, 0.0], "bins": [[0.0, won, lost]], "day_bin": [0, 0], "tail_h": 1.0,
                           "tail_bin": 0}], 1)
    return stage


def test_shifted_lost_share_per_month_matches_the_formula():
    """Deals exiting on day 1 in each month of the quarter: the share lost is (l lm) / (l lm + f) per
    month (the shock off); tolerance 4 binomial standard errors."""
    from forecaster.calendar import calendar_days, to_day
    import datetime as dt

    l, f = 0.4, 0.6
    stage = one_stage_exit_day_one(l, f)
    as_of = to_day(dt.date(2024, 1, 1))
    eff = MixEffects(np.array([0.5, 0.0, -0.7]), np.zeros(3), 0.0, 1)
    _, moq = calendar_days(as_of, 91)
    for day0, q in ((0, 0), (40, 1), (70, 2)):  # Jan, Feb, Mar: the deals enter on day0, exit day0 + 1
        n = 4000
        deals = open_deals(np.zeros(n, np.int32), np.zeros(n, np.int32), np.ones(n), 1,
                           start=np.full(n, day0, np.int32))
        res = engine.simulate(stage, deals, n_trials=1, seed=3, **window_args(0, 91), day_moq=moq, effects=eff)
        lm = l * math.exp(eff.lost_shift[q])
        p_lost = lm / (lm + f)
        got = res.deal_lost_trials.sum() / n
        assert abs(got - p_lost) <= 4 * math.sqrt(p_lost * (1 - p_lost) / n), (q, got, p_lost)


def test_the_shared_shock_widens_the_spread_of_wins_as_derived():
    """Many deals, one exit each, in one trial share its shock level Z: per trial the won share is
    f / (f + l Z). Over trials the variance of won counts is n p (1 - p) on average plus n^2 Var_Z(p(Z));
    the mean and variance of wins per trial are checked against these within 4 Monte Carlo standard
    errors (the variance's from the fourth moment of a normal approximation, 2 sigma^4 / (T - 1))."""
    from forecaster.calendar import calendar_days

    l, f, var = 0.5, 0.5, 0.2
    stage = one_stage_exit_day_one(l, f)
    eff = MixEffects(np.zeros(3), np.zeros(3), var, 1)
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
