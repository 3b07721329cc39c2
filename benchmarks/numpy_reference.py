"""A well-vectorised NumPy implementation of the open-deal simulation, for benchmark ratios.

Same model as forecaster.kernels (docs/kernel_contract.md) for open deals only, written the way
PERFORMANCE.md's "NumPy reference, done well" describes: deal-trials are processed in chunks of
about 64k elements so the working set stays in L2; every step advances all active walks at once;
spells that start inside the simulation (age 0) are drawn by alias sampling over the cell's exit
days plus one "tail" outcome, destinations by alias sampling over the bin's outcomes (one uniform
each: integer part picks the column, fractional part accepts or aliases); only the first,
age-conditioned spell uses a searchsorted inversion; the active set is compacted once per step;
stages are int8, indices int32, sums are bincounts. Its randomness (numpy's PCG64) differs from the
kernel's, so results agree in distribution, not bit for bit.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from forecaster.model import OpenDeals, StageTables
from forecaster.sim.kernels.layout import MAX_STEPS

CHUNK_ELEMENTS = 1 << 16


@dataclass(frozen=True)
class RefResult:
    revenue: np.ndarray  # float64 [T]
    won_deals: np.ndarray  # int64 [T]
    deal_won_trials: np.ndarray  # int64 [n]
    deal_trials: int
    deal_steps: int


def _alias(p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Vose's alias table for one distribution (probabilities summing to 1)."""
    n = p.shape[0]
    prob = np.zeros(n)
    alias = np.arange(n, dtype=np.int32)
    scaled = p * n / p.sum()
    small = [i for i in range(n) if scaled[i] < 1.0]
    large = [i for i in range(n) if scaled[i] >= 1.0]
    while small and large:
        s, g = small.pop(), large.pop()
        prob[s] = scaled[s]
        alias[s] = g
        scaled[g] = scaled[g] + scaled[s] - 1.0
        (small if scaled[g] < 1.0 else large).append(g)
    for i in small + large:
        prob[i] = 1.0
    return prob, alias


class _Tables:
    def __init__(self, stage: StageTables):
        self.S = stage.n_stages
        self.K = self.S + 2
        off = stage.cell_off
        C = stage.n_cells
        self.cell_off = off.astype(np.int32)
        self.L = np.diff(off).astype(np.int32)
        self.surv = stage.surv
        self.day_bin = stage.day_bin
        self.tail_bin = stage.tail_bin
        with np.errstate(divide="ignore"):
            self.log1m_h = np.log1p(-stage.tail_h)
        # Spell law for age 0 over days 0 .. L-1 and a last "tail" outcome, as alias tables.
        probs, aliases, aoff = [], [], [0]
        for c in range(C):
            s = stage.surv[off[c] : off[c + 1]]
            p = np.concatenate([np.diff(np.concatenate([[1.0], s])) * -1.0, [s[-1]]])
            pr, al = _alias(np.maximum(p, 0.0))
            probs.append(pr)
            aliases.append(al)
            aoff.append(aoff[-1] + p.shape[0])
        self.spell_prob = np.concatenate(probs)
        self.spell_alias = np.concatenate(aliases)
        self.spell_off = np.asarray(aoff[:-1], np.int32)
        self.n_out = (self.L + 1).astype(np.float64)
        dp, da = zip(*(_alias(row) for row in stage.bin_p))
        self.dest_prob = np.concatenate(dp)
        self.dest_alias = np.concatenate(da)
        # First spell: cell c's days carry keys 2c + (1 - S(d)), one sorted array for searchsorted.
        cell_of_day = np.repeat(np.arange(C), self.L)
        self.first_key = 2.0 * cell_of_day + (1.0 - stage.surv)


def _first_exit(tb: _Tables, cell, age, u):
    """Exit day of the age-conditioned first spell, by inversion (searchsorted), tail included."""
    off = tb.cell_off[cell]
    L = tb.L[cell]
    d = np.empty(cell.shape[0], np.int64)
    old = age >= L
    if old.any():
        d[old] = age[old] + np.floor(np.log1p(-u[old]) / tb.log1m_h[cell[old]])
    y = ~old
    c, a, o, l = cell[y], age[y], off[y], L[y]
    s_prev = np.where(a > 0, tb.surv[o + np.maximum(a, 1) - 1], 1.0)
    target = s_prev * (1.0 - u[y])
    idx = np.searchsorted(tb.first_key, 2.0 * c + (1.0 - target), side="left")
    dy = np.minimum(np.maximum(idx - o, a), l - 1)
    last = tb.surv[o + l - 1]
    tail = target < last
    if tail.any():
        dy[tail] = l[tail] + np.floor(np.log(target[tail] / last[tail]) / tb.log1m_h[c[tail]])
    d[y] = dy
    return d


def _spell_exit(tb: _Tables, cell, u, v):
    """Exit day of a fresh spell (age 0) by alias sampling; the tail outcome becomes geometric."""
    x = u * tb.n_out[cell]
    j = x.astype(np.int32)
    frac = x - j
    i = tb.spell_off[cell] + j
    d = np.where(frac < tb.spell_prob[i], j, tb.spell_alias[i]).astype(np.int64)
    L = tb.L[cell]
    tail = d == L
    if tail.any():
        d[tail] = L[tail] + np.floor(np.log1p(-v[tail]) / tb.log1m_h[cell[tail]])
    return d


def _destination(tb: _Tables, cell, d, u):
    L = tb.L[cell]
    row = np.where(d < L, tb.day_bin[tb.cell_off[cell] + np.minimum(d, L - 1)], tb.tail_bin[cell])
    x = u * tb.K
    j = x.astype(np.int32)
    i = row * tb.K + j
    return np.where(x - j < tb.dest_prob[i], j, tb.dest_alias[i]).astype(np.int8)


def simulate_open_deals(
    stage: StageTables, deals: OpenDeals, *, n_trials: int, seed: int, start_off: int, end_off: int, period_start=None
) -> RefResult:
    """Revenue and wins per trial in [start_off, end_off], and wins per deal, for open deals."""
    tb = _Tables(stage)
    S = tb.S
    gen = np.random.default_rng(seed)
    n = deals.n_deals
    revenue = np.zeros(n_trials)
    wins = np.zeros(n_trials, np.int64)
    deal_won = np.zeros(n, np.int64)
    steps_total = 0
    total = n * n_trials
    base_cell = (deals.cell - deals.cell % S).astype(np.int32)
    for e0 in range(0, total, CHUNK_ELEMENTS):
        e = np.arange(e0, min(total, e0 + CHUNK_ELEMENTS), dtype=np.int64)
        deal = (e % n).astype(np.int32)
        trial = (e // n).astype(np.int32)
        cell = deals.cell[deal].astype(np.int32)
        m = e.shape[0]
        u = gen.random((3, m))
        d = _first_exit(tb, cell, deals.age[deal].astype(np.int64), u[0])
        day = d - deals.age[deal]
        steps = np.ones(m, np.int32)
        steps_total += m
        while True:
            k = _destination(tb, cell, d, u[2][: cell.shape[0]])
            inside = day <= end_off
            won = inside & (k == S) & (day >= start_off)
            if won.any():
                t0 = trial[0]
                tw = trial[won] - t0
                span = int(trial[-1] - t0 + 1)
                revenue[t0 : t0 + span] += np.bincount(tw, weights=deals.amount[deal[won]], minlength=span)
                wins[t0 : t0 + span] += np.bincount(tw, minlength=span)
                deal_won += np.bincount(deal[won], minlength=n)
            keep = inside & (k < S) & (steps < MAX_STEPS)
            if not keep.any():
                break
            deal, trial, day, steps = deal[keep], trial[keep], day[keep], steps[keep] + 1
            cell = base_cell[deal] + k[keep]
            m = cell.shape[0]
            steps_total += m
            u = gen.random((3, m))
            d = _spell_exit(tb, cell, u[0], u[1])
            day = day + d
    return RefResult(revenue, wins, deal_won, total, steps_total)
