"""Slow, obviously-correct pure-Python twin of sim.engine.simulate (as stumpy's tests/naive.py).

It reads the natural tables of docs/kernel_contract.md directly (linear search for the exit day,
probability rows for destinations) and consumes the same random draws as the kernels:

- keys and draws: a Python-int SplitMix64 written out below (test_rng checks it against rng.py);
- Poisson and gamma variates: ``rng.poisson_nb.py_func`` / ``rng.gamma_nb.py_func``;
- destinations: the nested draw read from the probability row (``pick_nested``), entry stages of new
  deals most likely first (``pick``).

Float sums follow the kernels' documented order (deal blocks of ``kernels.n_deal_blocks``, then new
deals), so results must be equal, not close.
"""

from __future__ import annotations

import math

import numpy as np

from forecaster.sim import rng
from forecaster.sim.compact import dominating_tables, frailty_multipliers
from forecaster.sim.kernels import layout as kernels

# Walk outcomes.
OUT_WON, OUT_LOST, OUT_OPEN = 0, 1, 2

M64 = (1 << 64) - 1
GOLDEN = 0x9E3779B97F4A7C15
KEYMUL = 0xD1342543DE82EF95
TWO32 = 1 << 32


def mix64(z: int) -> int:
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
    return z ^ (z >> 31)


def trial_key(base: int, trial: int) -> int:
    return mix64((base + trial * GOLDEN) & M64)


def stream_key(tkey: int, stream: int) -> int:
    return mix64(tkey ^ ((stream * KEYMUL) & M64))


def draw(key: int, n: int) -> int:
    return mix64((key + (n + 1) * GOLDEN) & M64)


def pack_arrival(g: int, day: int, k: int) -> int:
    return (g << 48) | (day << 28) | k


def pick(p_row, x32: int) -> int:
    """Destination for a 32-bit uniform: outcomes with p > 0, most likely first (ties: lower index),
    thresholds round(cumsum * 2**32), the last one 2**32."""
    ks = sorted((k for k in range(len(p_row)) if p_row[k] > 0.0), key=lambda k: (-p_row[k], k))
    cum = 0.0
    for j, k in enumerate(ks):
        cum += float(p_row[k])
        thr = TWO32 if j == len(ks) - 1 else min(math.floor(cum * TWO32 + 0.5), TWO32)
        if x32 < thr:
            return k
    raise AssertionError("unreachable")


def scaled(x: float) -> int:
    return min(math.floor(x * TWO32 + 0.5), TWO32)


def _row_parts(p_row, s: int, u: int):
    """(v, the row as floats, S, the moves back and forward with a share, in index order, the lost share)
    of a visit in open stage ``s``: v is u rotated by 16 bits."""
    p = [float(x) for x in p_row]
    S = len(p) - 2
    back = [k for k in range(s) if p[k] > 0.0]
    fwd = [k for k in range(s + 1, S + 1) if p[k] > 0.0]
    return ((u << 16) | (u >> 16)) & 0xFFFFFFFF, p, S, back, fwd, p[S + 1]


def pick_nested(p_row, s: int, u: int) -> int:
    """Destination of a visit in open stage ``s`` for a 32-bit u: on the u-axis the moves back
    (stages below s, index order), then lost, then from ``floor((back + lost) 2**32 + 0.5)``
    forward, where v (u rotated by 16 bits) picks among the later stages and won (index order) by
    their forward shares."""
    v, p, S, back, fwd, lost = _row_parts(p_row, s, u)
    cum = 0.0
    for j, k in enumerate(back):
        cum += p[k]
        last_of_all = j == len(back) - 1 and not fwd and not lost > 0.0
        if u < (TWO32 if last_of_all else scaled(cum)):
            return k
    fb = scaled(cum + lost) if fwd else TWO32
    if u < fb:
        return S + 1
    total = 0.0
    for k in fwd:
        total += p[k]
    cum = 0.0
    for k in fwd[:-1]:
        cum += p[k]
        if v < scaled(cum / total):
            return k
    return fwd[-1]


def pick_nested_mixed(p_row, s: int, u: int, R: float, rate: float, lost_mult: float) -> int:
    """The nested draw of an exit drawn at R times the table's hazard, under a month's exit rate and lost
    odds factor (calendar shift times the trial's shock level): on the u-axis the moves back at 1 / R of
    their shares, then the thinned exits (returns -1: the spell goes on), then from b + (l + f)(1 - rate / R)
    the kept exits, lost with share l m / (l m + f), then forward by the forward mix (docs/model.md)."""
    v, p, S, back, fwd, lost = _row_parts(p_row, s, u)
    b = 0.0
    for k in back:
        b += p[k]
    total = 0.0
    for k in fwd:
        total += p[k]
    nonback = lost + total
    r = rate / R
    ls = TWO32 if not fwd and not lost > 0.0 else scaled(b + nonback * (1.0 - r))
    if u < ls:
        cum = 0.0
        for j, k in enumerate(back):
            cum += p[k]
            last_of_all = j == len(back) - 1 and not fwd and not lost > 0.0 and R == 1.0
            if u < (TWO32 if last_of_all else scaled(cum / R if R != 1.0 else cum)):
                return k
        return -1
    lm = lost * lost_mult
    share = lm / (lm + total) if lm > 0.0 else 0.0
    fb = scaled(b + nonback * (1.0 - r) + nonback * r * share) if fwd else TWO32
    if u < fb:
        return S + 1
    cum = 0.0
    for k in fwd[:-1]:
        cum += p[k]
        if v < scaled(cum / total):
            return k
    return fwd[-1]


def exit_day(stage, c: int, a: int, u1: float) -> int:
    """The contract's sampling rule, read literally."""
    off, end = int(stage.cell_off[c]), int(stage.cell_off[c + 1])
    s = [float(x) for x in stage.surv[off:end]]
    L = len(s)
    h = float(stage.tail_h[c])
    if a >= L:
        return a if h == 1.0 else a + math.floor(math.log(1.0 - u1) / math.log1p(-h))
    target = (1.0 if a == 0 else s[a - 1]) * (1.0 - u1)
    for d in range(a, L):
        if s[d] <= target:
            return d
    v = target / s[L - 1]
    return L if h == 1.0 else L + math.floor(math.log(v) / math.log1p(-h))


def exit_day_cont(stage, c: int, a: int, hi: int) -> int:
    """The exit day of a spell going on at age a >= 1 after a thinned exit: past the table its tail (as an
    aged spell); else the fresh rule on hi2 = min(floor((1 - t) 2**32), 2**32 - 1), t = S(a - 1)
    (1 - hi / 2**32), and never before a."""
    off, end = int(stage.cell_off[c]), int(stage.cell_off[c + 1])
    L = end - off
    if a >= L:
        return exit_day(stage, c, a, hi * 2.0**-32)
    t = float(stage.surv[off + a - 1]) * (1.0 - hi * 2.0**-32)
    hi2 = min(math.floor((1.0 - t) * 4294967296.0), 0xFFFFFFFF)
    return max(a, exit_day(stage, c, 0, hi2 * 2.0**-32))


def walk(stage, c: int, a: int, entered: int, key: int, n0: int, end_off: int, mix=None):
    """(cell, day, outcome, visits) of one walk, as the kernel's unit_nb walks it. ``mix``: None, or
    (R, exit_rate [n, 3], lost_mult [n, 3], day_moq) of the walk's trial (a row per open stage, or one row
    for all): ``stage`` is then the dominating tables,
    each exit is drawn by pick_nested_mixed with its day's month, and a thinned one leaves the same spell
    going on a day older."""
    S = stage.n_stages
    base = c - c % S
    n = n0
    visits = 0
    cont = False  # a spell going on after a thinned exit
    while True:
        x = draw(key, n)
        n += 1
        visits += 1
        d = exit_day_cont(stage, c, a, x >> 32) if cont else exit_day(stage, c, a, (x >> 32) * 2.0**-32)
        day = entered + d
        if day > end_off:
            return c, day, OUT_OPEN, visits
        L = int(stage.cell_off[c + 1] - stage.cell_off[c])
        row = int(stage.day_bin[stage.cell_off[c] + d]) if d < L else int(stage.tail_bin[c])
        if mix is None:
            k = pick_nested(stage.bin_p[row], c % S, x & 0xFFFFFFFF)
        else:
            q = int(mix[3][day])
            r = min(c % S, len(mix[1]) - 1)
            k = pick_nested_mixed(stage.bin_p[row], c % S, x & 0xFFFFFFFF, mix[0], float(mix[1][r][q]),
                                  float(mix[2][r][q]))
            if k < 0:  # thinned: the same spell goes on
                a = d + 1
                cont = True
                if visits >= kernels.MAX_STEPS:
                    return c, day, OUT_OPEN, visits
                continue
        if k == S:
            return c, day, OUT_WON, visits
        if k == S + 1:
            return c, day, OUT_LOST, visits
        c = base + k
        a = 0
        cont = False
        entered = day
        if visits >= kernels.MAX_STEPS:
            return c, day, OUT_OPEN, visits


def _period(period_start, day: int) -> int:
    for p in range(len(period_start) - 1):
        if period_start[p] <= day < period_start[p + 1]:
            return p
    raise AssertionError(day)


class _Acc:
    """One block's per-trial partial sums."""

    def __init__(self, P: int, G: int, S: int):
        self.rev = 0.0
        self.wins = 0
        self.lost = 0
        self.prev = [0.0] * P
        self.pwins = [0] * P
        self.grev = [0.0] * G
        self.gwins = [0] * G
        self.carry_amt = [0.0] * S
        self.carry_n = [0] * S

    def book(self, outcome, cell, day, amount, group, S, start_off, period_start) -> int:
        if outcome == OUT_OPEN:
            self.carry_amt[cell % S] += amount
            self.carry_n[cell % S] += 1
            return 0
        if day < start_off:
            return 0
        if outcome == OUT_LOST:
            self.lost += 1
            return 2
        p = _period(period_start, day)
        self.rev += amount
        self.wins += 1
        self.prev[p] += amount
        self.pwins[p] += 1
        self.grev[group] += amount
        self.gwins[group] += 1
        return 1


def simulate(stage, deals, *, n_trials, seed, start_off, end_off, period_start, arrivals=None,
             day_weekday=None, day_moq=None, amount_multiplier_new=1.0, effects=None) -> dict:  # fmt: skip
    """The same outputs as engine.simulate, as a dict of numpy arrays named like SimResult's fields."""
    S, G = stage.n_stages, stage.n_groups
    P = len(period_start) - 1
    n = deals.n_deals
    W = end_off - start_off + 1
    sid = [int(x) for x in deals.stream_ids()]
    deal_pool, pool_start, pool_size = deals.pools()
    start = [0] * n if deals.start is None else [int(x) for x in deals.start]
    base_open = int(rng.domain_key(seed, rng.DOMAIN_OPEN))
    base_gamma = int(rng.domain_key(seed, rng.DOMAIN_GAMMA))
    base_count = int(rng.domain_key(seed, rng.DOMAIN_COUNT))
    base_new = int(rng.domain_key(seed, rng.DOMAIN_NEW))
    base_frailty = int(rng.domain_key(seed, rng.DOMAIN_FRAILTY))
    mixed = effects is not None and effects.active
    if mixed:  # the dominating tables, and per month and shock level the factors as the model defines them
        R = effects.max_rate
        stage = dominating_tables(stage, R) if effects.calendar else stage
        levels = frailty_multipliers(effects)
        lost_m = np.exp(np.asarray(effects.lost_shift, np.float64))[:, :, None] * levels[None, None, :]
        moq = day_moq if effects.calendar else np.zeros(end_off + 1, np.int64)
    nb = kernels.n_deal_blocks(n)
    blocks = [range((b * n) // nb, ((b + 1) * n) // nb) for b in range(nb)]

    out = {
        "revenue": np.zeros(n_trials),
        "won_deals": np.zeros(n_trials, np.int32),
        "period_revenue": np.zeros((n_trials, P)),
        "period_wins": np.zeros((n_trials, P), np.int32),
        "group_revenue": np.zeros((n_trials, G)),
        "group_wins": np.zeros((n_trials, G), np.int32),
        "new_revenue": np.zeros(n_trials),
        "new_wins": np.zeros(n_trials, np.int32),
        "lost_deals": np.zeros(n_trials, np.int32),
        "carried_deals": np.zeros((n_trials, S), np.int32),
        "carried_amount": np.zeros((n_trials, S)),
        "deal_won_trials": np.zeros(n, np.int32),
        "deal_lost_trials": np.zeros(n, np.int32),
        "deal_win_hist": np.zeros((n, W), np.int32),
    }
    deal_trials = 0
    deal_steps = 0
    with np.errstate(over="ignore"):
        for t in range(n_trials):
            accs = []
            tkey = trial_key(base_open, t)
            mix = None
            if mixed:
                z = ((draw(trial_key(base_frailty, t), 0) >> 32) * len(levels)) >> 32
                mix = (R, effects.exit_rate, lost_m[:, :, z], moq)
            for blk in blocks:
                acc = _Acc(P, G, S)
                for i in blk:
                    a = int(deals.age[i])
                    entered = int(start[i]) - a  # the deal is in its cell from day start, aged a
                    key = stream_key(tkey, sid[i])
                    cell, day, outcome, visits = walk(stage, int(deals.cell[i]), a, entered, key, 0, end_off, mix)
                    deal_trials += 1
                    deal_steps += visits
                    amount = float(deals.amount[i])
                    if pool_size[i] > 0:  # its amount in this trial: draw MAX_STEPS, no visit's
                        j = ((draw(key, kernels.MAX_STEPS) & 0xFFFFFFFF) * int(pool_size[i])) >> 32
                        amount = float(deal_pool[int(pool_start[i]) + j]) * amount
                    r = acc.book(outcome, cell, day, amount, int(deals.group[i]), S, start_off, period_start)
                    if r == 1:
                        out["deal_won_trials"][i] += 1
                        out["deal_win_hist"][i, day - start_off] += 1
                    elif r == 2:
                        out["deal_lost_trials"][i] += 1
                accs.append(acc)
            new = _Acc(P, G, S)
            if arrivals is not None:
                tk_gamma = trial_key(base_gamma, t)
                tk_count = trial_key(base_count, t)
                tk_new = trial_key(base_new, t)
                gmul = []
                for g in range(G):
                    shape = float(arrivals.gamma_shape[g])
                    if math.isinf(shape):
                        gmul.append(1.0)
                    else:
                        key = np.uint64(stream_key(tk_gamma, g))
                        gmul.append(float(rng.gamma_nb.py_func(shape, key)) / shape)
                for day in range(end_off + 1):
                    for g in range(G):
                        lam = (
                            float(arrivals.rate[g])
                            * float(arrivals.weekday_factor[g, day_weekday[day]])
                            * float(arrivals.moq_factor[g, day_moq[day]])
                            * gmul[g]
                        )
                        if not lam > 0.0:
                            continue
                        count = int(rng.poisson_nb.py_func(lam, np.uint64(stream_key(tk_count, pack_arrival(g, day, 0)))))
                        pool = arrivals.amount_pool[arrivals.amount_off[g] : arrivals.amount_off[g + 1]]
                        for k in range(count):
                            key = stream_key(tk_new, pack_arrival(g, day, k))
                            x = draw(key, 0)
                            s = pick(arrivals.entry_p[g], x >> 32)
                            amount = float(pool[((x & 0xFFFFFFFF) * len(pool)) >> 32]) * amount_multiplier_new
                            cell, dday, outcome, visits = walk(stage, g * S + s, 0, day, key, 1, end_off, mix)
                            deal_trials += 1
                            deal_steps += visits
                            new.book(outcome, cell, dday, amount, g, S, start_off, period_start)
            accs.append(new)

            def total(get):
                z = 0.0 if isinstance(get(accs[0]), float) else 0
                for acc in accs:
                    z += get(acc)
                return z

            out["revenue"][t] = total(lambda a: a.rev)
            out["won_deals"][t] = total(lambda a: a.wins)
            out["lost_deals"][t] = total(lambda a: a.lost)
            for p in range(P):
                out["period_revenue"][t, p] = total(lambda a: a.prev[p])
                out["period_wins"][t, p] = total(lambda a: a.pwins[p])
            for g in range(G):
                out["group_revenue"][t, g] = total(lambda a: a.grev[g])
                out["group_wins"][t, g] = total(lambda a: a.gwins[g])
            for s in range(S):
                out["carried_amount"][t, s] = total(lambda a: a.carry_amt[s])
                out["carried_deals"][t, s] = total(lambda a: a.carry_n[s])
            out["new_revenue"][t] = new.rev
            out["new_wins"][t] = new.wins
    out["deal_trials"] = deal_trials
    out["deal_steps"] = deal_steps
    return out
