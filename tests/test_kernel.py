"""The simulation kernels: naive-twin equality, exact answers, determinism, common random numbers.

Statistical tests use fixed seeds and tolerances of 4 Monte Carlo standard errors derived from
exact variances (never tuned).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from forecaster.calendar import calendar_days, to_day
from forecaster.errors import ModelError
from forecaster.model import ArrivalTables, OpenDeals, StageTables
from forecaster.sim import compact, engine, kernels
from forecaster.sim.kernels.units import unit_of
from tests import naive

REPO = Path(__file__).resolve().parents[1]
FIELDS = (
    "revenue won_deals period_revenue period_wins group_revenue group_wins new_revenue new_wins "
    "lost_deals carried_deals carried_amount deal_won_trials deal_lost_trials deal_win_hist"
).split()


# ---------------------------------------------------------------------------------------------
# Builders


def stage_tables(cells: list[dict], n_stages: int) -> StageTables:
    """cells: per cell {"surv": [...], "bins": [[p over S + 2], ...], "day_bin": [...] (indices into
    the cell's bins, default all 0), "tail_h": h, "tail_bin": i (default last)}."""
    surv, off, day_bin, bin_p, tail_h, tail_bin = [], [0], [], [], [], []
    for c in cells:
        L = len(c["surv"])
        b0 = len(bin_p)
        bin_p.extend(c["bins"])
        surv.extend(c["surv"])
        off.append(off[-1] + L)
        day_bin.extend(b0 + np.asarray(c.get("day_bin", [0] * L)))
        tail_h.append(c["tail_h"])
        tail_bin.append(b0 + c.get("tail_bin", len(c["bins"]) - 1))
    assert all(len(r) == n_stages + 2 for r in bin_p)
    return StageTables.of(
        surv=surv,
        cell_off=off,
        day_bin=day_bin,
        bin_p=bin_p,
        tail_h=tail_h,
        tail_bin=tail_bin,
    )


def open_deals(cells, ages, amounts=None, n_stages=1, stream_id=None, start=None) -> OpenDeals:
    cells = np.asarray(cells, np.int32)
    amounts = np.ones(len(cells)) if amounts is None else np.asarray(amounts, np.float64)
    start = None if start is None else np.asarray(start, np.int32)
    group = (cells // n_stages).astype(np.int32)
    return OpenDeals(cells, np.asarray(ages, np.int32), amounts, group, stream_id, start).check()


# A 3-stage funnel: jump probabilities per stage over (stage 0, 1, 2, won, lost).
JUMP = np.array(
    [
        [0.0, 0.6, 0.0, 0.05, 0.35],
        [0.1, 0.0, 0.5, 0.1, 0.3],
        [0.0, 0.15, 0.0, 0.55, 0.3],
    ]
)
HAZARD = np.array([0.08, 0.12, 0.1])


def geometric_tables(jump=JUMP, hazard=HAZARD, n_groups=1, L=20) -> StageTables:
    """Exit day T >= 1 geometric with daily hazard h (S(d) = (1-h)^d, the tail continues it), the
    destination independent of the day: exactly the daily chain of ``daily_chain``."""
    S = jump.shape[0]
    cells = []
    for _ in range(n_groups):
        for s in range(S):
            h = hazard[s]
            cells.append({"surv": [(1 - h) ** d for d in range(L)], "bins": [list(jump[s])], "tail_h": h})
    return stage_tables(cells, S)


def daily_chain(jump=JUMP, hazard=HAZARD) -> np.ndarray:
    S = jump.shape[0]
    P = np.zeros((S + 2, S + 2))
    P[:S] = hazard[:, None] * jump
    P[np.arange(S), np.arange(S)] = 1 - hazard
    P[S, S] = P[S + 1, S + 1] = 1.0
    return P


def window_args(start_off, end_off, n_periods=1):
    ps = np.linspace(start_off, end_off + 1, n_periods + 1).round().astype(np.int32)
    return {"start_off": start_off, "end_off": end_off, "period_start": ps}


def arrivals_tables(G, S, rate, gamma_shape, seed=0) -> ArrivalTables:
    r = np.random.default_rng(seed)
    wf = r.uniform(0.3, 1.7, (G, 7))
    mf = r.uniform(0.5, 1.5, (G, 3))
    entry = r.dirichlet(np.ones(S), G)
    pools = [r.lognormal(8, 1, r.integers(1, 9)).round() for _ in range(G)]
    return ArrivalTables(
        rate=np.asarray(rate, np.float64),
        weekday_factor=wf / wf.mean(axis=1, keepdims=True),
        moq_factor=mf / mf.mean(axis=1, keepdims=True),
        gamma_shape=np.asarray(gamma_shape, np.float64),
        entry_p=entry,
        amount_pool=np.concatenate(pools),
        amount_off=np.concatenate([[0], np.cumsum([len(p) for p in pools])]).astype(np.int64),
    ).check()


def random_problem(seed=0, n_deals=70, G=2, end_off=30, start_off=3, with_arrivals=True, with_starts=False, S=3):
    """Empirical-looking tables (same-day exits, day-dependent bins, tails), deals of all ages;
    ``with_starts``: about half the deals start on a later day (most of them fresh, as a campaign's),
    drawn from a separate generator so the rest of the problem is the same either way. Every row
    has all S + 1 other destinations (so the kernel's general rows; see one_move_back)."""
    r = np.random.default_rng(seed)
    cells = []
    for g in range(G):
        for s in range(S):
            L = int(r.integers(1, 25))
            surv = np.cumprod(1 - r.uniform(0.0, 0.25, L))
            if r.uniform() < 0.3:
                surv[-1] = 0.0
            bins = []
            for _ in range(3):
                p = r.dirichlet(np.ones(S + 2))
                p[s] = 0.0
                bins.append(list(p / p.sum()))
            cells.append({
                "surv": list(surv), "bins": bins, "day_bin": list(r.integers(0, 3, L)),
                "tail_h": float(r.choice([1.0, r.uniform(0.05, 0.3)])), "tail_bin": int(r.integers(0, 3)),
            })  # fmt: skip
    stage = stage_tables(cells, S)
    cell = r.integers(0, G * S, n_deals)
    age = r.integers(0, 40, n_deals)
    start = None
    if with_starts:
        r2 = np.random.default_rng([seed, 1])
        later = r2.uniform(size=n_deals) < 0.5
        start = np.where(later, r2.integers(0, end_off + 1, n_deals), 0)
        age = np.where(later & (r2.uniform(size=n_deals) < 0.8), 0, age)
    deals = open_deals(cell, age, r.lognormal(8, 1, n_deals).round(), S, start=start)
    kw = window_args(start_off, end_off, 3)
    if with_arrivals:
        kw["arrivals"] = arrivals_tables(G, S, r.uniform(0.2, 1.5, G), [np.inf, 1.5][:G], seed)
        kw["day_weekday"], kw["day_moq"] = calendar_days(to_day(dt.date(2024, 3, 20)), end_off)
    return stage, deals, kw


def assert_same(a, b):
    for f in FIELDS:
        x, y = getattr(a, f) if not isinstance(a, dict) else a[f], getattr(b, f) if not isinstance(b, dict) else b[f]
        assert x.dtype == y.dtype and x.shape == y.shape, f
        assert x.tobytes() == y.tobytes(), f


# ---------------------------------------------------------------------------------------------
# Naive twin: exact equality


def one_move_back(stage: StageTables) -> StageTables:
    """random_problem's tables with each row's moves back but the nearest dropped (3 bins per cell,
    cells in order): rows of at most 1 move back and 4 entries, the kernel's fast rows."""
    S = stage.n_stages
    p = stage.bin_p.copy()
    for r, s in enumerate((np.arange(p.shape[0]) // 3) % S):
        p[r, : max(0, s - 1)] = 0.0
    p /= p.sum(axis=1, keepdims=True)
    return StageTables.of(stage.surv, stage.cell_off, stage.day_bin, p, stage.tail_h, stage.tail_bin)


@pytest.mark.parametrize("fast", [True, False])
@pytest.mark.parametrize("with_starts", [False, True])
def test_naive_twin_equal(with_starts, fast):
    stage, deals, kw = random_problem(seed=3, with_starts=with_starts)
    stage = one_move_back(stage) if fast else stage
    assert not with_starts or (deals.start > kw["start_off"]).sum() > 10
    assert compact.compact_stage_tables(stage, kw["end_off"]).dest_is_fast == fast
    res = engine.simulate(stage, deals, n_trials=12, seed=42, **kw, amount_multiplier_new=1.25, chunk_trials=5)
    ref = naive.simulate(stage, deals, n_trials=12, seed=42, **kw, amount_multiplier_new=1.25)
    assert kernels.n_deal_blocks(deals.n_deals) >= 3  # the block-ordered float sums are exercised
    assert res.new_wins.sum() > 0 and res.deal_won_trials.sum() > 0 and res.carried_deals.sum() > 0
    assert_same(res, ref)
    assert (res.deal_trials, res.deal_steps) == (ref["deal_trials"], ref["deal_steps"])


def test_naive_twin_equal_general_rows():
    """Rows with more destinations than the kernel's fast row holds (5 stages: up to 3 moves back,
    4 forward): the general nested draw, against the naive twin."""
    stage, deals, kw = random_problem(seed=9, S=5, n_deals=60)
    assert not compact.compact_stage_tables(stage, kw["end_off"]).dest_is_fast
    res = engine.simulate(stage, deals, n_trials=10, seed=5, **kw, chunk_trials=4)
    ref = naive.simulate(stage, deals, n_trials=10, seed=5, **kw)
    assert res.deal_won_trials.sum() > 0 and res.new_wins.sum() > 0
    assert_same(res, ref)


def test_naive_twin_equal_pooled_amounts_and_shared_rows():
    """Deals whose amount is drawn per trial from a pool (campaign deals), and destination rows
    shared by cells of different stages (compact copies them per stage: the nested order depends
    on the stage)."""
    stage, deals, kw = random_problem(seed=12, n_deals=50, with_starts=True)
    S = stage.n_stages
    # Every cell of stage 1 uses stage 0's first row where that row gives stage 1 no share.
    row = stage.bin_p[stage.day_bin[stage.cell_off[0]]].copy()
    row[1] = 0.0
    bin_p = np.vstack([stage.bin_p, row / row.sum()])
    day_bin, tail_bin = stage.day_bin.copy(), stage.tail_bin.copy()
    for c in range(stage.n_cells):
        if c % S in (0, 1):
            day_bin[stage.cell_off[c]:stage.cell_off[c + 1]] = len(bin_p) - 1
            tail_bin[c] = len(bin_p) - 1
    shared = StageTables.of(stage.surv, stage.cell_off, day_bin, bin_p, stage.tail_h, tail_bin)
    used = len(np.unique(np.r_[day_bin, tail_bin]))
    assert compact.stage_rows(shared).bin_p.shape[0] == used + 1  # the shared row, once per stage
    pool = np.array([100.0, 250.0, 4000.0, 7.5])
    size = np.where(np.arange(deals.n_deals) % 3 == 0, np.arange(deals.n_deals) % 4 + 1, 0).astype(np.int64)
    pooled = dataclasses.replace(deals, amount_pool=pool, pool_start=np.zeros(deals.n_deals, np.int64), pool_size=size)
    res = engine.simulate(shared, pooled, n_trials=15, seed=21, **kw, chunk_trials=6)
    ref = naive.simulate(shared, pooled, n_trials=15, seed=21, **kw)
    assert_same(res, ref)
    plain = engine.simulate(shared, deals, n_trials=15, seed=21, **kw, chunk_trials=6)
    assert np.array_equal(plain.deal_win_hist, res.deal_win_hist)  # pools change amounts, not walks
    assert not np.array_equal(plain.revenue, res.revenue)


def test_naive_twin_equal_many_arrivals():
    """Trials with several batches of new deals (engine.BATCH_TRIALS each) and more open deals
    than deal blocks x batch: the batches resume exactly where the last one stopped."""
    stage, deals, kw = random_problem(seed=5, n_deals=40, end_off=20, start_off=2)
    arr = kw["arrivals"]
    kw["arrivals"] = dataclasses.replace(arr, rate=arr.rate * 60.0 + 20.0, gamma_shape=np.array([np.inf, 3.0]))
    res = engine.simulate(stage, deals, n_trials=3, seed=7, **kw, chunk_trials=2)
    ref = naive.simulate(stage, deals, n_trials=3, seed=7, **kw)
    per_trial = (res.deal_trials - 3 * deals.n_deals) / 3
    assert per_trial > 2.5 * engine.BATCH_TRIALS
    assert_same(res, ref)
    assert (res.deal_trials, res.deal_steps) == (ref["deal_trials"], ref["deal_steps"])


def test_parallel_units_cover_every_block_once():
    for nb in range(0, 70):
        for nr in (0, 1, 5, 64):
            units = [tuple(int(v) for v in unit_of(u, nb, nr)) for u in range(nb + nr)]
            assert sorted(units) == [(0, i) for i in range(nb)] + [(1, i) for i in range(nr)], (nb, nr)


def test_kernel_cache_is_keyed_on_the_kernel_sources(tmp_path, monkeypatch):
    """numba watches only a function's own file, while the kernels compile rng.py and the walk's helpers
    into themselves: their cache lives in a directory named by a hash of all those sources, so an edit of
    any of them means a fresh compile, never a stale load."""
    from forecaster.sim import cache

    files = [tmp_path / "rng.py", tmp_path / "walk.py"]
    for f in files:
        f.write_text("X = 1\n")
    monkeypatch.setattr(cache, "kernel_sources", lambda: files)
    before = cache.source_hash()
    assert cache.source_hash() == before
    files[0].write_text("X = 2\n")  # the dependency alone
    assert cache.source_hash() != before


def test_kernels_cache_under_the_keyed_directory_and_import_changes_no_setting():
    """The kernels' dispatchers cache in sim.cache.KERNEL_CACHE; numba's CACHE_DIR setting is as before the
    import (other numba code keeps its own cache); importing writes no stamp file of ours."""
    code = (
        "import numba, os\n"
        "before = numba.config.CACHE_DIR\n"
        "import forecaster.sim as sim\n"
        "from forecaster.sim import cache, kernels\n"
        "assert numba.config.CACHE_DIR == before, (numba.config.CACHE_DIR, before)\n"
        "names = {p.name for p in cache.kernel_sources()}\n"
        "assert {'rng.py', 'walk.py', 'chunk.py', 'layout.py', 'units.py'} <= names, names\n"
        "assert str(cache.KERNEL_CACHE).endswith('numba-' + cache.source_hash())\n"
        "print(kernels.simulate_chunk_nb._cache._cache_path)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    from forecaster.sim import cache

    assert out.stdout.strip().startswith(str(cache.KERNEL_CACHE))


@st.composite
def small_problems(draw):
    """Two stages with awkward tables: flat stretches, tiny and total drops, a last day at 0, h = 1
    tails, same-day exits, tiny shares; deals of every age, including beyond their table."""
    S = 2
    cells = []
    for s in range(S):
        L = draw(st.integers(1, 30))
        drops = draw(st.lists(st.sampled_from([0.0, 0.0, 1e-12, 0.01, 0.3, 0.9]), min_size=L, max_size=L))
        surv = list(np.cumprod(1 - np.asarray(drops)))
        if draw(st.booleans()):
            surv[-1] = 0.0
        if any(x == 0.0 for x in surv[:-1]):
            surv = surv[: surv.index(0.0) + 1]
        rows = []
        for _ in range(2):
            p = np.asarray(draw(st.lists(st.sampled_from([0.0, 1e-12, 0.05, 0.2, 1.0]), min_size=S + 2, max_size=S + 2)))
            p[s] = 0.0
            if p.sum() == 0:
                p[S + 1] = 1.0
            rows.append(list(p / p.sum()))
        h = draw(st.sampled_from([1.0, 0.5, 0.05, 1e-4]))
        day_bin = draw(st.lists(st.integers(0, 1), min_size=len(surv), max_size=len(surv)))
        cells.append({"surv": surv, "bins": rows, "day_bin": day_bin, "tail_h": h, "tail_bin": draw(st.integers(0, 1))})
    stage = stage_tables(cells, S)
    n = draw(st.integers(1, 4))
    cell = draw(st.lists(st.integers(0, S - 1), min_size=n, max_size=n))
    age = draw(st.lists(st.integers(0, 40), min_size=n, max_size=n))
    start = draw(st.integers(0, 10))
    end = start + draw(st.integers(0, 30))
    deal_start = draw(st.one_of(st.none(), st.lists(st.integers(0, end), min_size=n, max_size=n)))
    deals = open_deals(cell, age, np.arange(1.0, n + 1), S, start=deal_start)
    return stage, deals, window_args(start, end, 2 if end > start else 1)


@settings(max_examples=60, deadline=None)
@given(problem=small_problems(), seed=st.integers(0, 2**64 - 1))
def test_awkward_tables_match_naive(problem, seed):
    """The kernel's integer and guide-table searches give the contract's exit days and
    destinations on tables built to hit their edge cases."""
    stage, deals, kw = problem
    assert compact.compact_stage_tables(stage, kw["end_off"]).dest_is_fast  # 2 stages: fast rows
    res = engine.simulate(stage, deals, n_trials=25, seed=seed, **kw)
    ref = naive.simulate(stage, deals, n_trials=25, seed=seed, **kw)
    assert_same(res, ref)
    assert (res.deal_trials, res.deal_steps) == (ref["deal_trials"], ref["deal_steps"])


@settings(max_examples=100, deadline=None)
@given(p=st.lists(st.sampled_from([0.0, 1e-12, 0.05, 0.2, 0.25, 1.0]), min_size=2, max_size=6).filter(lambda p: sum(p) > 0),
       x=st.one_of(st.integers(0, 2**32 - 1), st.sampled_from([0, 2**32 - 1])))  # fmt: skip
def test_sorted_thresholds(p, x):
    """The kernel's rule on compact.sorted_thresholds (count the thresholds <= x) picks what the
    naive rule picks, and never an outcome of probability 0."""
    row = np.asarray(p) / sum(p)
    order, thr = compact.sorted_thresholds(row[None, :])
    assert np.all(np.diff(thr[0].astype(np.int64)) >= 0) and int(thr[0, -1]) == 2**32
    k = int(order[0, int(np.sum(x >= thr[0, :-1].astype(np.int64)))])
    assert k == naive.pick(row, x)
    assert row[k] > 0


def stage_row(p, s: int) -> np.ndarray:
    """A destination row of open stage ``s`` from drawn shares: none to the stage itself, all lost when
    nothing is left, normalised."""
    row = np.asarray(p, np.float64)
    row[s] = 0.0
    if row.sum() == 0:
        row[-1] = 1.0
    return row / row.sum()


@settings(max_examples=150, deadline=None)
@given(p=st.lists(st.sampled_from([0.0, 0.0, 1e-12, 0.05, 0.2, 0.25, 1.0]), min_size=7, max_size=7).filter(lambda p: sum(p) > 0),
       s=st.integers(0, 4), u=st.one_of(st.integers(0, 2**32 - 1), st.sampled_from([0, 1, 2**31, 2**32 - 1])))  # fmt: skip
def test_nested_thresholds(p, s, u):
    """The kernel's rule on compact.nested_thresholds (general and fast rows) picks what the naive
    rule picks, never an outcome of probability 0, and the u-axis is back | lost | forward."""
    row = stage_row(p, s)
    S = len(row) - 2
    t = compact.nested_thresholds(row[None, :], np.array([s]))
    v = ((u << 16) | (u >> 16)) & 0xFFFFFFFF
    j = int((u >= t["bthr"][0]).sum()) + int(u >= t["fb"][0]) * (1 + int((v >= t["vthr"][0]).sum()))
    k = int(t["dest_k"][0, j])
    assert k == naive.pick_nested(row, s, u)
    assert row[k] > 0
    assert (k < s) == (u < t["bthr"][0].max(initial=0) if t["n_back"][0] else False) or k == S + 1
    assert (k > s and k <= S) == (u >= t["fb"][0])


def test_exit_thresholds_are_exact():
    """hi <= 2**32 - ceil(S 2**32) exactly when S <= 1 - hi / 2**32 (the float rule)."""
    r = np.random.default_rng(0)
    surv = np.concatenate([r.uniform(0, 1, 2000), [0.0, 1.0, 0.5, 2.0**-33, 1 - 2.0**-33]])
    thr = compact.exit_thresholds(surv)
    for s, t in zip(surv, thr):
        for hi in (int(t) - 1, int(t), int(t) + 1):
            if 0 <= hi < 2**32:
                assert (hi <= t) == (s <= 1.0 - hi * 2.0**-32)


# ---------------------------------------------------------------------------------------------
# Exact answers


def matpow(P, t):
    return np.linalg.matrix_power(P, t) if t >= 0 else np.zeros_like(P)


def test_absorbing_chain_window():
    """(a) Geometric durations: P(won by t | start i) = (P^t)[i, won]; an open deal of age >= 1 may
    leave today, so it is one day further along: P^(t + 1). Also periods, losses and carry-out."""
    S, T = 3, 20_000
    stage = geometric_tables()
    P = daily_chain()
    ages = [0, 5, 25]  # fresh, inside the table, beyond it (memoryless tail)
    cells = [s for s in range(S) for _ in ages]
    deals = open_deals(cells, ages * S, np.arange(1, 10) * 100.0, S)
    kw = window_args(10, 60, 3)
    res = engine.simulate(stage, deals, n_trials=T, seed=1, **kw)

    ps = kw["period_start"]
    won, lost = S, S + 1
    p_win, p_lost, p_period, p_carry = [], [], [], []
    for c, a in zip(cells, ages * S):
        shift = 1 if a > 0 else 0

        def at(t, c=c, shift=shift):
            return matpow(P, t + shift)[c] if t >= 0 else np.eye(S + 2)[c] * 0

        p_win.append(at(60)[won] - at(9)[won])
        p_lost.append(at(60)[lost] - at(9)[lost])
        p_period.append([at(ps[p + 1] - 1)[won] - at(ps[p] - 1)[won] for p in range(3)])
        p_carry.append(at(60)[:S])
    p_win, p_lost, p_period, p_carry = map(np.asarray, (p_win, p_lost, p_period, p_carry))

    se = np.sqrt(p_win * (1 - p_win) / T)
    assert np.all(np.abs(res.deal_p_win - p_win) <= 4 * se)
    se = np.sqrt(p_lost * (1 - p_lost) / T)
    assert np.all(np.abs(res.deal_p_lost - p_lost) <= 4 * se)
    # Sums over independent deals: means and variances add.
    for got, p in ((res.won_deals, p_win), (res.lost_deals, p_lost)):
        assert abs(got.mean() - p.sum()) < 4 * math.sqrt((p * (1 - p)).sum() / T)
    for q in range(3):
        p = p_period[:, q]
        assert abs(res.period_wins[:, q].mean() - p.sum()) < 4 * math.sqrt((p * (1 - p)).sum() / T)
    for s in range(S):
        p = p_carry[:, s]
        assert abs(res.carried_deals[:, s].mean() - p.sum()) < 4 * math.sqrt((p * (1 - p)).sum() / T)
    amt = deals.amount
    assert abs(res.revenue.mean() - (amt * p_win).sum()) < 4 * math.sqrt((amt**2 * p_win * (1 - p_win)).sum() / T)
    # Bookkeeping invariants.
    assert np.array_equal(res.period_wins.sum(axis=1), res.won_deals)
    assert np.array_equal(res.group_wins[:, 0], res.won_deals)
    assert np.allclose(res.period_revenue.sum(axis=1), res.revenue)
    assert np.array_equal(res.deal_win_hist.sum(axis=1), res.deal_won_trials)
    assert res.deal_trials == 9 * T and res.deal_steps >= res.deal_trials


def empirical_tables(rng_seed=5):
    """Non-geometric durations, same-day exits, day-dependent destination bins, tails."""
    r = np.random.default_rng(rng_seed)
    cells = []
    for s in range(3):
        L = [12, 30, 7][s]
        surv = np.cumprod(1 - r.uniform(0.0, 0.2, L))
        bins = []
        for _ in range(3):
            p = r.dirichlet(np.ones(5)) + np.eye(5)[[3, 4]].sum(0)  # never too cyclic
            p[s] = 0.0
            bins.append(list(p / p.sum()))
        cells.append({"surv": list(surv), "bins": bins, "day_bin": list(r.integers(0, 3, L)), "tail_h": [0.05, 0.2, 1.0][s], "tail_bin": s % 3})
    return stage_tables(cells, 3)


def first_spell(stage: StageTables, c: int, a: int, horizon: int):
    """Exact law of a spell's exit for age ``a``: P(exit on day d) for d < horizon (days since the
    spell's entry) and the destination shares of each day; straight from the contract's
    definitions (table days, then the geometric tail)."""
    off, L = int(stage.cell_off[c]), int(stage.cell_len[c])
    s = stage.surv[off : off + L]
    h = stage.tail_h[c]
    n = max(horizon, L)
    p = np.zeros(n)
    rows = np.zeros((n, stage.bin_p.shape[1]))
    if a >= L:
        d = np.arange(a, n)
        p[a:] = (1 - h) ** (d - a) * h
        rows[:] = stage.bin_p[stage.tail_bin[c]]
        return p[:horizon], rows[:horizon]
    s_prev = 1.0 if a == 0 else s[a - 1]
    full = np.concatenate([[1.0], s])
    for d in range(a, L):
        p[d] = (full[d] - full[d + 1]) / s_prev
        rows[d] = stage.bin_p[stage.day_bin[off + d]]
    d = np.arange(L, n)
    p[L:] = s[-1] / s_prev * (1 - h) ** (d - L) * h
    rows[L:] = stage.bin_p[stage.tail_bin[c]]
    return p[:horizon], rows[:horizon]


def test_absorption_without_horizon():
    """(b) A window so long that every deal is absorbed: B = (I - Q)^-1 R, with the first step
    conditioned on the deal's age (day-dependent destination shares make age matter)."""
    stage = empirical_tables()
    S, H, T = 3, 3000, 20_000
    jump = np.array([(lambda p, r: p @ r)(*first_spell(stage, c, 0, H)) for c in range(S)])
    Q, R = jump[:, :S], jump[:, S:]
    B = np.linalg.solve(np.eye(S) - Q, R)
    cells, ages = [0, 0, 1, 1, 2, 2, 0], [0, 9, 3, 40, 0, 5, 11]
    deals = open_deals(cells, ages, None, S)
    res = engine.simulate(stage, deals, n_trials=T, seed=2, start_off=0, end_off=100_000,
                          period_start=np.array([0, 100_001], np.int32), track_win_days=False)  # fmt: skip
    for i, (c, a) in enumerate(zip(cells, ages)):
        p, rows = first_spell(stage, c, a, H)
        step = p @ rows
        p_win = step[S] + step[:S] @ B[:, 0]
        assert abs(res.deal_p_win[i] - p_win) < 4 * math.sqrt(p_win * (1 - p_win) / T), i
    assert res.carried_deals.sum() == 0


def test_single_stage_uniform_exit_and_age():
    """(c), (d) One stage, exit day uniform on 1..m; shares differ by day: P(won in window) is a
    count of days times their shares, for a fresh deal and older ones (conditioned on age)."""
    m, T = 20, 40_000
    surv = [1 - d / m for d in range(m + 1)]  # S(m) = 0: the table ends there
    day_bin = [0 if d <= m // 2 else 1 for d in range(m + 1)]
    stage = stage_tables([{"surv": surv, "bins": [[0, 0.7, 0.3], [0, 0.2, 0.8]], "day_bin": day_bin, "tail_h": 0.5}], 1)
    ages = [0, 1, 8, 15, 20]
    deals = open_deals([0] * len(ages), ages)
    start, end = 2, 9
    res = engine.simulate(stage, deals, n_trials=T, seed=3, **window_args(start, end))
    share = np.array([0.7 if d <= m // 2 else 0.2 for d in range(m + 1)])
    exact = []
    for a in ages:
        days = range(max(a, 1), m + 1)  # uniform given T >= a
        exact.append(sum(share[d] for d in days if start <= d - a <= end) / len(days))
    exact = np.array(exact)
    se = np.sqrt(exact * (1 - exact) / T)
    assert np.all(np.abs(res.deal_p_win - exact) <= 4 * se)
    # Age matters exactly as the tables say: the fresh and the 15-day-old deal differ by >> 4 SE.
    assert abs(exact[0] - exact[3]) > 8 * max(se[0], se[3])
    assert res.deal_won_trials[-1] == 0 and res.deal_median_win_off()[-1] == -1


def test_median_win_day_from_histogram():
    stage = geometric_tables()
    res = engine.simulate(stage, open_deals([0, 1, 2], [0, 0, 0], None, 3), n_trials=2, seed=0, **window_args(2, 5))
    hist = np.array([[0, 3, 0, 1], [0, 0, 0, 0], [1, 1, 1, 1]], np.int32)
    res = dataclasses.replace(res, deal_win_hist=hist, deal_won_trials=hist.sum(axis=1).astype(np.int32))
    assert res.deal_median_win_off().tolist() == [3, -1, 3]


def test_age_conditioning_with_tail():
    """(d) Ages inside, at the end of and beyond the table, with a geometric tail, across three
    stages with same-day moves: p_win and p_lost match the exact law computed from the tables."""
    stage = empirical_tables(rng_seed=9)
    T, start, end = 40_000, 3, 25
    cells, ages = [0, 0, 0, 0, 1, 1], [0, 6, 11, 30, 0, 29]
    deals = open_deals(cells, ages, None, 3)
    res = engine.simulate(stage, deals, n_trials=T, seed=4, **window_args(start, end))
    exact = np.array([exact_window_prob(stage, c, a, start, end) for c, a in zip(cells, ages)])
    for got, p in ((res.deal_p_win, exact[:, 0]), (res.deal_p_lost, exact[:, 1])):
        assert np.all(np.abs(got - p) <= 4 * np.sqrt(p * (1 - p) / T))
    # Age moves p_win by far more than the noise, so the test can tell conditioned from not.
    assert np.ptp(exact[:4, 0]) > 8 * math.sqrt(0.25 / T)


def exact_window_prob(stage, c, a, start, end):
    """(P(won in window), P(lost in window)) for a deal in cell ``c`` of age ``a``, by a forward
    recursion over days on the contract's spell laws; same-day moves solved per day."""
    S = stage.n_stages
    H = end + 1
    base = c - c % S
    won = lost = 0.0
    enter = np.zeros((S, H))  # mass entering open stage s (age 0) on a day, from earlier days
    p, rows = first_spell(stage, c, a, a + H)
    for d in range(a, a + H):
        w = p[d] * rows[d]
        if d - a >= start:
            won, lost = won + w[S], lost + w[S + 1]
        enter[:, d - a] += w[:S]
    laws = [first_spell(stage, base + s, 0, H) for s in range(S)]
    same_day = np.array([laws[s][0][0] * laws[s][1][0][:S] for s in range(S)])
    for day0 in range(H):
        total = np.linalg.solve((np.eye(S) - same_day).T, enter[:, day0])  # total = enter + total @ same_day
        for s in range(S):
            p, rows = laws[s]
            for d in range(H - day0):
                w = total[s] * p[d] * rows[d]
                if day0 + d >= start:
                    won, lost = won + w[S], lost + w[S + 1]
                if d > 0:
                    enter[:, day0 + d] += w[:S]
    return won, lost


def test_arrivals_only_mean_wins():
    """(f) No open deals: E[wins] = sum over days, groups, entry stages of rate x seasonality x
    P(won in window | enter that day); Var = sum_g mu_g + mu_g^2 / shape (Poisson thinning)."""
    G, S, T = 2, 3, 4000
    stage = geometric_tables(n_groups=G)
    P = daily_chain()
    arr = arrivals_tables(G, S, [0.8, 0.3], [np.inf, 2.0], seed=7)
    start, end = 5, 40
    wd, mq = calendar_days(to_day(dt.date(2024, 2, 14)), end)
    res = engine.simulate(stage, OpenDeals.empty(), n_trials=T, seed=5, **window_args(start, end), arrivals=arr,
                          day_weekday=wd, day_moq=mq, amount_multiplier_new=2.0)  # fmt: skip
    mu = np.zeros(G)
    for g in range(G):
        for day in range(end + 1):
            lam = arr.rate[g] * arr.weekday_factor[g, wd[day]] * arr.moq_factor[g, mq[day]]
            p = sum(arr.entry_p[g, s] * (matpow(P, end - day)[s, S] - matpow(P, start - 1 - day)[s, S]) for s in range(S))
            mu[g] += lam * p
    var = mu + np.where(np.isinf(arr.gamma_shape), 0.0, mu**2 / arr.gamma_shape)
    for g in range(G):
        assert abs(res.group_wins[:, g].mean() - mu[g]) < 4 * math.sqrt(var[g] / T), g
    assert abs(res.won_deals.mean() - mu.sum()) < 4 * math.sqrt(var.sum() / T)
    assert np.array_equal(res.new_wins, res.won_deals) and np.array_equal(res.new_revenue, res.revenue)
    # Revenue: compound Poisson; amounts uniform over each pool, times the multiplier.
    m1 = np.array([2.0 * arr.amount_pool[arr.amount_off[g] : arr.amount_off[g + 1]].mean() for g in range(G)])
    m2 = np.array([(4.0 * arr.amount_pool[arr.amount_off[g] : arr.amount_off[g + 1]] ** 2).mean() for g in range(G)])
    var_rev = mu * m2 + np.where(np.isinf(arr.gamma_shape), 0.0, (mu * m1) ** 2 / arr.gamma_shape)
    assert abs(res.revenue.mean() - (mu * m1).sum()) < 4 * math.sqrt(var_rev.sum() / T)


def test_step_cap_counts_deal_open():
    """Two stages bouncing on the same day forever: MAX_STEPS visits, then still open."""
    stage = stage_tables(
        [{"surv": [0.0], "bins": [[0, 1, 0, 0]], "tail_h": 1.0}, {"surv": [0.0], "bins": [[1, 0, 0, 0]], "tail_h": 1.0}], 2
    )
    res = engine.simulate(stage, open_deals([0], [0], None, 2), n_trials=3, seed=0, **window_args(0, 5))
    assert res.deal_steps == 3 * kernels.layout.MAX_STEPS
    assert res.carried_deals.sum(axis=1).tolist() == [1, 1, 1] and res.won_deals.sum() == 0


def test_start_deterministic_duration():
    """A deal that starts its stage on day s with an exit exactly D days after entering is won on
    day s + D: in the window it counts on that day; before it, nowhere; beyond it, it is carried.
    An aged deal (a days in) that starts on day s leaves on s - a + D."""
    D, T = 5, 50
    surv = [1.0] * D + [0.0]  # T = D (a draw of exactly hi = 0, chance 2**-32, would exit on day 0)
    stage = stage_tables([{"surv": surv, "bins": [[0.0, 1.0, 0.0]], "tail_h": 1.0}], 1)
    start, age = [0, 3, 7, 12, 4], [0, 0, 0, 0, 2]
    deals = open_deals([0] * 5, age, [1.0, 10.0, 100.0, 1000.0, 10000.0], start=start)
    res = engine.simulate(stage, deals, n_trials=T, seed=5, **window_args(6, 14))
    win_day = [s - a + D for s, a in zip(start, age)]  # 5, 8, 12, 17, 7
    assert res.deal_won_trials.tolist() == [0, T, T, 0, T]
    assert res.deal_median_win_off().tolist() == [-1, 8, 12, -1, 7]
    for i in (1, 2, 4):
        assert res.deal_win_hist[i, win_day[i] - 6] == T
    assert np.all(res.revenue == 10110.0) and np.all(res.won_deals == 3)
    assert np.all(res.carried_deals[:, 0] == 1) and np.all(res.carried_amount[:, 0] == 1000.0)
    assert np.all(res.lost_deals == 0)
    with pytest.raises(ValueError, match="after end_off"):
        engine.simulate(stage, open_deals([0], [0], start=[15]), n_trials=1, seed=0, **window_args(6, 14))


def test_start_geometric_is_a_shorter_window():
    """Geometric durations: a deal that starts on day s sees the window shortened by s, so
    P(won in window) = (P^(end - s + shift))[c, won] - (P^(start - 1 - s + shift))[c, won]."""
    S, T = 3, 20_000
    stage = geometric_tables()
    P = daily_chain()
    cases = [(c, a, s) for c in range(S) for a, s in ((0, 0), (0, 12), (0, 40), (5, 25))]
    cells, ages, starts = (list(x) for x in zip(*cases))
    deals = open_deals(cells, ages, None, S, start=starts)
    start, end = 10, 60
    res = engine.simulate(stage, deals, n_trials=T, seed=6, **window_args(start, end, 2))
    for i, (c, a, s) in enumerate(cases):
        shift = 1 if a > 0 else 0
        for got, k in ((res.deal_p_win[i], S), (res.deal_p_lost[i], S + 1)):
            p = matpow(P, end - s + shift)[c, k] - matpow(P, start - 1 - s + shift)[c, k]
            assert abs(got - p) <= 4 * math.sqrt(p * (1 - p) / T) + 1e-12, (i, k)


def test_start_shifts_the_same_draws():
    """Common random numbers: the same deal starting s days later draws the same numbers, so
    every trial's win day moves by exactly s."""
    stage, deals, kw = random_problem(seed=8, n_deals=40, end_off=60, start_off=0, with_arrivals=False)
    sid = np.arange(500, 540, dtype=np.int64)
    s = 9
    later = dataclasses.replace(deals, stream_id=sid, start=np.full(40, s, np.int32), age=np.zeros(40, np.int32))
    now = dataclasses.replace(later, start=None)
    a = engine.simulate(stage, now, n_trials=300, seed=3, **kw)
    b = engine.simulate(stage, later, n_trials=300, seed=3, **kw)
    assert a.deal_won_trials.sum() > 100
    assert np.array_equal(b.deal_win_hist[:, :s], np.zeros((40, s), np.int32))
    assert np.array_equal(b.deal_win_hist[:, s:], a.deal_win_hist[:, : 61 - s])


def result_checksum(res) -> str:
    h = hashlib.sha256()
    for f in FIELDS:
        h.update(np.ascontiguousarray(getattr(res, f)).tobytes())
    h.update(f"{res.deal_trials},{res.deal_steps}".encode())
    return h.hexdigest()[:16]


def test_results_are_pinned():
    """Every draw and every sum is part of the contract: this run's bytes were recorded with the
    nested destination draw and the monotone new-deal counts (and before later speed work); start = 0
    changes nothing."""
    stage, deals, kw = random_problem(seed=6, n_deals=200)
    res = engine.simulate(stage, deals, n_trials=40, seed=2024, **kw, chunk_trials=16)
    assert result_checksum(res) == "3fd563ce2b466a6d"
    zero = dataclasses.replace(deals, start=np.zeros(deals.n_deals, np.int32))
    assert_same(engine.simulate(stage, zero, n_trials=40, seed=2024, **kw, chunk_trials=16), res)


# ---------------------------------------------------------------------------------------------
# Determinism and common random numbers


def _determinism_case():
    stage, deals, kw = random_problem(seed=11, n_deals=300, G=2, end_off=45, start_off=0)
    return stage, deals, dict(kw, n_trials=300, seed=123, chunk_trials=64)


def _dump(path: str) -> None:
    """Entry point for the subprocess of test_thread_count_invariance."""
    import numba

    stage, deals, kw = _determinism_case()
    res = engine.simulate(stage, deals, **kw)
    np.savez(path, threads=numba.get_num_threads(), **{f: getattr(res, f) for f in FIELDS})


def test_thread_count_invariance(tmp_path):
    stage, deals, kw = _determinism_case()
    here = engine.simulate(stage, deals, **kw)
    for threads in (1, 2):
        out = tmp_path / f"t{threads}.npz"
        env = dict(os.environ, NUMBA_NUM_THREADS=str(threads))
        code = f"from tests.test_kernel import _dump; _dump({str(out)!r})"
        subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, check=True)
        got = np.load(out)
        assert int(got["threads"]) == threads
        assert_same(here, {f: got[f] for f in FIELDS})


def test_same_seed_same_result_and_seeds_differ():
    stage, deals, kw = random_problem(seed=1, n_deals=100)
    a = engine.simulate(stage, deals, n_trials=200, seed=9, **kw)
    b = engine.simulate(stage, deals, n_trials=200, seed=9, **kw)
    c = engine.simulate(stage, deals, n_trials=200, seed=10, **kw)
    assert_same(a, b)
    assert not np.array_equal(a.revenue, c.revenue)
    assert not np.array_equal(a.deal_won_trials, c.deal_won_trials)


def test_chunking_and_progress_do_not_change_results():
    stage, deals, kw = random_problem(seed=2, n_deals=100)
    calls = []
    a = engine.simulate(stage, deals, n_trials=150, seed=4, **kw)
    b = engine.simulate(stage, deals, n_trials=150, seed=4, **kw, chunk_trials=7, progress=lambda d, t: calls.append((d, t)))
    assert_same(a, b)
    assert calls[0] == (7, 150) and calls[-1] == (150, 150) and len(calls) == 22
    # The first trials of a longer run are the run with fewer trials.
    c = engine.simulate(stage, deals, n_trials=60, seed=4, **kw)
    assert np.array_equal(c.revenue, a.revenue[:60]) and np.array_equal(c.period_wins, a.period_wins[:60])


def test_common_random_numbers():
    """Changing one deal's stage, dropping a deal (stable stream ids), or switching new deals off
    leaves every other deal's outcomes bit-identical."""
    stage, deals, kw = random_problem(seed=4, n_deals=120)
    S = stage.n_stages
    sid = np.arange(1000, 1120, dtype=np.int64)
    base = OpenDeals(deals.cell, deals.age, deals.amount, deals.group, sid)
    a = engine.simulate(stage, base, n_trials=100, seed=8, **kw)
    j = 17
    cell = deals.cell.copy()
    cell[j] = (cell[j] // S) * S + (cell[j] % S + 1) % S
    changed = OpenDeals(cell, deals.age, deals.amount, deals.group, sid)
    b = engine.simulate(stage, changed, n_trials=100, seed=8, **kw)
    keep = np.arange(120) != j
    for f in ("deal_won_trials", "deal_lost_trials", "deal_win_hist"):
        assert np.array_equal(getattr(a, f)[keep], getattr(b, f)[keep]), f
    assert not np.array_equal(a.deal_win_hist[j], b.deal_win_hist[j]) or a.deal_won_trials[j] == 0
    dropped = OpenDeals(deals.cell[keep], deals.age[keep], deals.amount[keep], deals.group[keep], sid[keep])
    c = engine.simulate(stage, dropped, n_trials=100, seed=8, **kw)
    assert np.array_equal(a.deal_win_hist[keep], c.deal_win_hist)
    no_new = {k: v for k, v in kw.items() if k not in ("arrivals", "day_weekday", "day_moq")}
    d = engine.simulate(stage, base, n_trials=100, seed=8, **no_new)
    assert np.array_equal(a.deal_win_hist, d.deal_win_hist)
    assert np.array_equal(a.won_deals - a.new_wins, d.won_deals)
    assert np.allclose(a.revenue - a.new_revenue, d.revenue)


# ---------------------------------------------------------------------------------------------
# Checks at the boundary


def test_table_checks_name_the_problem():
    good = geometric_tables()
    bad = StageTables(good.surv[::-1].copy(), good.cell_off, good.day_bin, good.bin_p, good.tail_h, good.tail_bin)
    with pytest.raises(ModelError, match="increases"):
        bad.check()
    with pytest.raises(ModelError, match="dtype int64, expected int32"):
        StageTables(good.surv, good.cell_off, good.day_bin.astype(np.int64), good.bin_p, good.tail_h, good.tail_bin).check()
    bp = good.bin_p.copy()
    bp[0, 3] += 0.1
    with pytest.raises(ModelError, match="row 0 sums to"):
        StageTables(good.surv, good.cell_off, good.day_bin, bp, good.tail_h, good.tail_bin).check()
    bp = good.bin_p.copy()
    bp[0, 0], bp[0, 1] = bp[0, 1], 0.0
    with pytest.raises(ModelError, match="own stage"):
        StageTables(good.surv, good.cell_off, good.day_bin, bp, good.tail_h, good.tail_bin).check()
    with pytest.raises(ModelError, match="tail_h"):
        StageTables(good.surv, good.cell_off, good.day_bin, good.bin_p, good.tail_h * 0, good.tail_bin).check()
    s = good.surv.copy()
    s[3] = 0.0
    s[4:20] = 0.0
    with pytest.raises(ModelError, match="reaches 0"):
        StageTables(s, good.cell_off, good.day_bin, good.bin_p, good.tail_h, good.tail_bin).check()
    with pytest.raises(ModelError, match="belongs to group"):
        OpenDeals(np.array([4], np.int32), np.array([0], np.int32), np.ones(1), np.array([0], np.int32)).check(geometric_tables(n_groups=2))
    with pytest.raises(ModelError, match="start: deal 1 starts on day offset -2"):
        OpenDeals(np.zeros(2, np.int32), np.zeros(2, np.int32), np.ones(2), np.zeros(2, np.int32), None, np.array([0, -2], np.int32)).check()
    with pytest.raises(ModelError, match="start: dtype int64"):
        OpenDeals(np.zeros(2, np.int32), np.zeros(2, np.int32), np.ones(2), np.zeros(2, np.int32), None, np.zeros(2, np.int64)).check()
    with pytest.raises(ModelError, match="unique"):
        OpenDeals(np.zeros(2, np.int32), np.zeros(2, np.int32), np.ones(2), np.zeros(2, np.int32), np.array([3, 3])).check()
    two = OpenDeals(np.zeros(2, np.int32), np.zeros(2, np.int32), np.ones(2), np.zeros(2, np.int32))
    with pytest.raises(ModelError, match="amount_pool, pool_start and pool_size go together"):
        dataclasses.replace(two, amount_pool=np.ones(3)).check()
    with pytest.raises(ModelError, match=r"deal 1 takes amount_pool\[2 : 5\], outside its 3 amounts"):
        dataclasses.replace(two, amount_pool=np.ones(3), pool_start=np.array([0, 2]), pool_size=np.array([3, 3])).check()
    pooled = dataclasses.replace(two, amount=np.array([1.0, 2.0]), amount_pool=np.array([10.0, 20.0, 60.0]),
                                 pool_start=np.array([0, 1]), pool_size=np.array([0, 2]))
    assert pooled.check().expected_amounts().tolist() == [1.0, 80.0]  # fixed; mean(20, 60) x 2
    arr = arrivals_tables(1, 3, [0.5], [np.inf])
    with pytest.raises(ModelError, match="groups x"):
        arr.check(geometric_tables(n_groups=2))
    with pytest.raises(ValueError, match="period_start"):
        engine.simulate(good, OpenDeals.empty(), n_trials=1, seed=0, start_off=0, end_off=9, period_start=np.array([1, 10]))
    with pytest.raises(ValueError, match="day_weekday"):
        engine.simulate(good, OpenDeals.empty(), n_trials=1, seed=0, **window_args(0, 9), arrivals=arr)


def test_calendar_days():
    wd, mq = calendar_days(to_day(dt.date(2024, 3, 30)), 3)  # Sat, Sun, Mon, Tue
    assert wd.tolist() == [5, 6, 0, 1]
    assert mq.tolist() == [2, 2, 0, 0]  # March is the 3rd month of Q1, April the 1st of Q2


def test_a_cold_cache_is_known_before_the_first_run(tmp_path):
    """kernels_compiled() is False in a fresh process with an empty cache (the CLI then says it compiles
    instead of showing a frozen progress bar) and True once a run has compiled the kernel."""
    code = (
        "from forecaster.sim import engine, kernels_compiled\n"
        "from tests.test_kernel import geometric_tables, open_deals, window_args\n"
        "print(kernels_compiled())\n"
        "engine.simulate(geometric_tables(), open_deals([0], [0], None, 3), n_trials=2, seed=0, **window_args(0, 3))\n"
        "print(kernels_compiled())\n"
    )
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=str(Path(__file__).parents[1]))
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "True"]
