"""The njit Monte Carlo kernel: arrays in, arrays out, nothing else.

Contract (the engine builds every input; nothing here checks them):

- ``KernelTables``, the compact form of ``StageTables`` (engine.compact_stage_tables):
  ``surv`` float64 [L_total], ``cell_off`` int64 [C + 1], ``day_bin``, ``tail_bin`` int32 as in
  docs/kernel_contract.md; ``log1m_h`` float64 [C] = log1p(-tail_h) (-inf for h = 1);
  ``exit_thr`` int64 [L_total] = 2**32 - ceil(S(d) 2**32) and ``last_thr`` [C] its last day per
  cell: for the high 32 bits ``hi`` of a draw, ``hi <= exit_thr[d]`` exactly when
  ``S(d) <= 1 - hi / 2**32``, so a fresh spell (age 0) exits on the first day with
  ``hi <= exit_thr`` and in the tail when ``hi > last_thr`` (the contract's rule, in integers);
  ``guide`` int64 [C << guide_bits]: per cell and bucket ``j`` of ``hi >> (32 - guide_bits)``,
  ``(d << 32) | day_bin`` with d the bucket's first exit day (Chen and Asau's indexed search: a
  lookup, and a step forward for the few draws whose bucket straddles two days);
  ``dest_k`` / ``dest_thr`` int64 [n_bins, >= 4]: per bin the destinations with a positive share,
  most likely first (ties: lower index), and cumulative thresholds floor(cumsum(p) 2**32 + 0.5),
  the last positive one 2**32, padded with 2**32; ``n_dest`` the most positive shares in a row.
  The destination of the low 32 bits ``x`` is ``dest_k[row, #{m < n_dest - 1: thr[m] <= x}]``,
  the first entry with ``x < thr``.
- Days are int offsets from as_of (day 0). A deal of age ``a`` and start ``s`` entered its stage
  on day ``s - a``.
  ``KernelWindow.day_period`` int32 [end_off + 1] maps a day to its output period (-1 before
  ``start_off``).
- ``KernelDeals``: cell, age, group, start int32, amount float64, sid int64 (stream id), s_prev
  float64 = S(age - 1) in the deal's cell, each [n]. A deal's walk starts on day ``start`` (0 for
  deals open at as_of), so its first spell exits on day ``start - age + d`` (d: the spell's exit
  day since its entry); ``start`` changes no draw.
- Randomness (forecaster.rng): an open deal's walk in trial ``t`` uses the stream
  ``stream_key(trial_key(keys[KEY_OPEN], t), sid)``, draw ``v`` for its ``v``-th stage visit
  (from 0). New deals: per (trial, group) a gamma stream, per (trial, group, day) a Poisson count
  stream, per (trial, group, day, k) a stream whose draw 0 picks the entry stage (high 32 bits)
  and the amount (low 32 bits) and whose draws 1, 2, ... drive the walk. One draw per stage
  visit: ``u1 = hi / 2**32`` gives the exit day by the contract's inversion, ``x = lo32`` the
  destination. An aged first spell follows the contract in floats (target = S(a-1) (1 - u1));
  the kernel turns that rule into exact integer thresholds once per deal (see deal_tables).

Outputs per trial, two row-major matrices so that blocks and the merge loop over fields uniformly:
``out_f`` float64 [T, 1 + P + G + S] = revenue | period revenue [P] | group revenue [G] |
carried amount [S]; ``out_i`` int32 [T, 2 + P + G + S] = wins | lost | period wins [P] |
group wins [G] | carried deals [S]; ``out_new_f`` / ``out_new_i`` [T]: revenue and wins of new
deals alone (also in the totals). Per open deal: trials won / lost in the window and a histogram
of win days [n, W].

Parallel design. ``simulate_chunk_nb`` handles trials ``t0 .. t0 + tc - 1`` in three passes:

1. Open deals, prange over deal blocks. The n open deals are cut into ``n_deal_blocks(n)``
   contiguous blocks, a number that depends on n only, never on the thread count. A block owns
   (a) its deals' per-deal accumulators (counts and the [n, W] win-day histogram) across all
   trials, so they need neither copies nor atomics, and (b) a slab ``buf[b, :tc, :]`` of
   per-trial partial sums. Deal-major blocks are the only split in which the deals x window-days
   histogram has a single owner: trial-major blocks would need one histogram per block
   (n x W x blocks), or a second pass over the deals. Inside a block, one deal at a time walks a
   batch of trials together (first spells of all trials, then the walks still going, compacted
   after each visit; the lists grow by 0 or 1 per walk instead of branching). A walk-at-a-time
   loop waits on one unpredictable exit branch per walk; the batch runs without branch misses,
   overlaps independent walks in the pipeline, and shares per-deal work (the aged first spell's
   thresholds) across trials: about 2.3x faster per stage visit, measured.
2. New deals, prange over the chunk's trials: trial tt simulates its arrivals, walk at a time,
   into slab row ``buf[nb, tt, :]``. New deals have no per-deal outputs, so trials are the unit.
3. Merge, prange over trials: each output is the sum over slabs ``b = 0 .. nb`` in that order.

Every float is summed in an order fixed by (n, trial): a slab row gets one term per deal in deal
order (new deals: by day, group, arrival). Every random number is keyed by (seed, trial, stream).
So results are bit-identical for any thread count and any chunking of the trials. Memory:
O(T (P + G + S)) outputs, O(n W) histogram, slabs of (nb + 1) x tc rows and batch scratch of
nb x TB that the engine bounds. Nothing is allocated inside a prange.

The helpers (spells, destination, walk, booking) are closures inside the kernel rather than
separate njit functions: numba inlines closures, while a call to an njit function that takes
arrays pays atomic reference-count updates per array per call (measured 4x slower per visit).
Hot loops index with unsigned integers, which spares numba's negative-index wraparound code.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from numba import njit, prange

from forecaster.rng import (
    GOLDEN,
    NJIT_PARALLEL,
    TWO_M32,
    draw,
    gamma_nb,
    hi32,
    lo32,
    mix64,
    pack_arrival,
    pick_index,
    poisson_nb,
    stream_key,
    trial_key,
)

MAX_STEPS = 64  # stage visits per deal and trial; then the deal counts as still open
OUT_WON = 0
OUT_LOST = 1
OUT_OPEN = 2
MAX_DEAL_BLOCKS = 64
MIN_BLOCK_DEALS = 16
# Tail exits further out than this are beyond any window; clamping keeps floor() in int64 range.
TAIL_DAYS_CAP = 1e12
TWO_32 = 4294967296.0
TWO_32_INT = 1 << 32
# Hot loops index with unsigned integers: numba then skips the negative-index wraparound code
# (measured ~12% faster per stage visit). Every index so cast is non-negative by construction.
_U = np.uint64
# Buckets of an open deal's own guide for its age-conditioned first spell (see deal_tables).
DEAL_GUIDE_BITS = 8
DEAL_GUIDE_SIZE = 1 << DEAL_GUIDE_BITS
# Index of each domain's base key in the ``keys`` argument.
KEY_OPEN, KEY_GAMMA, KEY_COUNT, KEY_NEW = 0, 1, 2, 3


class KernelTables(NamedTuple):
    """Compact stage tables (module docstring); built by engine.compact_stage_tables."""

    surv: np.ndarray
    exit_thr: np.ndarray
    cell_hdr: np.ndarray
    guide: np.ndarray
    guide_bits: int
    log1m_h: np.ndarray
    day_bin: np.ndarray
    tail_bin: np.ndarray
    dest_k: np.ndarray
    dest_thr: np.ndarray
    dest_fast: np.ndarray
    n_dest: int
    n_stages: int


class KernelDeals(NamedTuple):
    """Open deals: cell, age, group int32 [n]; amount float64 [n]; sid int64 [n] (stream ids);
    start int32 [n] (day offset the walk starts on, 0 .. end_off); s_prev float64 [n] = S(age - 1)
    of the deal's cell (1 for age 0 or beyond the table)."""

    cell: np.ndarray
    age: np.ndarray
    amount: np.ndarray
    group: np.ndarray
    sid: np.ndarray
    start: np.ndarray
    s_prev: np.ndarray


class KernelArrivals(NamedTuple):
    """New deals: ArrivalTables' arrays with ``entry_k``/``entry_thr`` [G, S] (thresholds as
    ``dest_thr``) in place of entry_p, ``amount_mult`` scalar, ``day_weekday``/``day_moq`` int32
    [end_off + 1]; ``on`` False skips new deals (the arrays may then be empty)."""

    on: bool
    rate: np.ndarray
    weekday_factor: np.ndarray
    moq_factor: np.ndarray
    gamma_shape: np.ndarray
    entry_k: np.ndarray
    entry_thr: np.ndarray
    amount_pool: np.ndarray
    amount_off: np.ndarray
    amount_mult: float
    day_weekday: np.ndarray
    day_moq: np.ndarray


class KernelWindow(NamedTuple):
    """start_off, end_off: window offsets; day_period int32 [end_off + 1] (-1 before start_off);
    n_periods P, n_groups G."""

    start_off: int
    end_off: int
    day_period: np.ndarray
    n_periods: int
    n_groups: int


class KernelBuffers(NamedTuple):
    """Scratch and outputs (see the module docstring for the field layout).

    buf_f float64 / buf_i int32 [nb + 1, tc_max, F]: per-block partial sums of the chunk's trials;
    gmul float64 [tc_max, G]; work int64 [nb, 2], work_new int64 [tc_max, 2]: (walks, visits);
    deal_won, deal_lost int32 [n]; deal_hist int32 [n, W] (W = 0: not tracked);
    out_f float64 [T, 1 + P + G + S], out_i int32 [T, 2 + P + G + S], out_new_f / out_new_i [T];
    tkeys uint64 [tc_max]: the chunk's trial keys (open-deal domain);
    batch scratch [nb, TB], TB <= tc_max trials walked together per deal: walks still going:
    act_state uint64 (the stream's SplitMix64 state: key + (visits + 1) GOLDEN), act_tc int64
    (trial << 32 | cell), act_day int64; walks ended: done_code int64 (trial << 32 | stage of the
    last cell << 16 | destination), done_day int64 (end_off + 1 for walks capped at MAX_STEPS);
    dguide int64 [nb, DEAL_GUIDE_SIZE] and dthr int64 [nb, max L_c]: the current deal's
    first-spell tables (deal_tables).
    """

    buf_f: np.ndarray
    buf_i: np.ndarray
    gmul: np.ndarray
    work: np.ndarray
    work_new: np.ndarray
    deal_won: np.ndarray
    deal_lost: np.ndarray
    deal_hist: np.ndarray
    out_f: np.ndarray
    out_i: np.ndarray
    out_new_f: np.ndarray
    out_new_i: np.ndarray
    tkeys: np.ndarray
    act_state: np.ndarray
    act_code: np.ndarray
    ends: np.ndarray
    dguide: np.ndarray
    dthr: np.ndarray


def n_deal_blocks(n_deals: int) -> int:
    """Number of deal blocks: a function of the deal count only (results must not depend on threads)."""
    if n_deals == 0:
        return 0
    return min(MAX_DEAL_BLOCKS, -(-n_deals // MIN_BLOCK_DEALS))


def n_float_fields(n_periods: int, n_groups: int, n_stages: int) -> int:
    return 1 + n_periods + n_groups + n_stages


def n_int_fields(n_periods: int, n_groups: int, n_stages: int) -> int:
    return 2 + n_periods + n_groups + n_stages


@njit(**NJIT_PARALLEL)
def simulate_chunk_nb(t0, tc, keys, tab, deals, arr, win, bufs):
    """Simulate trials ``t0 .. t0 + tc - 1``: open deals, new deals, merge (module docstring).

    ``keys`` uint64 [4]: base keys of the domains (KEY_OPEN, KEY_GAMMA, KEY_COUNT, KEY_NEW).
    Writes ``bufs.out_*`` rows ``t0 .. t0 + tc - 1`` and ``bufs.work*``; adds to the per-deal
    accumulators.
    """
    # Arrays are unpacked once here and the helpers below are closures over them: numba inlines
    # closures into this function, whereas a call to another njit function taking arrays pays
    # atomic reference-count updates per array per call (measured: 4x slower per stage visit).
    surv = tab.surv
    exit_thr = tab.exit_thr
    cell_hdr = tab.cell_hdr
    guide = tab.guide
    gshift = 32 - tab.guide_bits
    log1m_h = tab.log1m_h
    day_bin = tab.day_bin
    tail_bin = tab.tail_bin
    dest_k = tab.dest_k
    dest_thr = tab.dest_thr
    dest_fast = tab.dest_fast
    n_cmp = tab.n_dest - 1
    S = tab.n_stages
    start_off = win.start_off
    end_off = win.end_off
    day_period = win.day_period
    P = win.n_periods
    G = win.n_groups
    buf_f = bufs.buf_f
    buf_i = bufs.buf_i
    dshift = 32 - DEAL_GUIDE_BITS
    fc0 = 1 + P + G  # first carried-amount field; carried counts are at fc0 + 1 + s in buf_i

    def tail_days(q):
        return np.int64(math.floor(q if q < TAIL_DAYS_CAP else TAIL_DAYS_CAP))

    def spell_fresh(c, hi, room):
        # Age 0, integer form of the contract's rule: S(d) <= 1 - hi / 2**32 exactly when
        # hi <= exit_thr[d] = 2**32 - ceil(S(d) 2**32). Returns (exit day, bin row); an exit day
        # beyond ``room`` (the last day of the window, counted from the spell's entry) only says
        # "after the window": a tail exit then needs no logarithm.
        uc = _U(c)
        off = cell_hdr[uc, 0]
        if hi > cell_hdr[uc, 2]:
            L = cell_hdr[uc, 1]
            if L > room:
                return L, np.int64(tail_bin[uc])
            v = (1.0 - np.float64(hi) * TWO_M32) / surv[_U(off + L - 1)]
            return L + tail_days(math.log(v) / log1m_h[uc]), np.int64(tail_bin[uc])
        e = guide[_U(cell_hdr[uc, 3] + (hi >> gshift))]
        d = e >> 32
        if hi <= exit_thr[_U(off + d)]:
            return d, e & 0xFFFFFFFF
        d += 1
        while hi > exit_thr[_U(off + d)]:
            d += 1
        return d, np.int64(day_bin[_U(off + d)])

    def deal_tables(c, a, s_prev, dlast, dthr_b, dguide_b):
        # One open deal (cell c, age 0 < a < L) walks all trials of a chunk from the same state, so
        # its first-spell rule is turned into integers once: dthr_b[d] = the largest hi with
        # S(d) <= S(a-1) (1 - hi / 2**32) in floats, exactly as the contract computes the target
        # (-1: none), for d = a .. dlast (the table's last day, or the last day inside the window
        # if that comes first); and a guide dguide_b[j] = the first d >= a with
        # dthr_b[d] >= j << dshift. With m = 2**32 - hi, 1 - hi / 2**32 is exactly m / 2**32, and
        # the float target rises with m: find the smallest m that passes from a close guess.
        off = cell_hdr[c, 0]
        y_prev = -1.0
        thr = np.int64(0)
        for d in range(a, dlast + 1):
            y = surv[off + d]
            if y != y_prev:  # flat stretches of the table share their threshold
                m = np.int64(min(max(math.ceil(y / s_prev * TWO_32), 1.0), TWO_32 + 1.0))
                while m > 1 and y <= s_prev * ((m - 1) * TWO_M32):
                    m -= 1
                while m <= TWO_32_INT and not y <= s_prev * (m * TWO_M32):
                    m += 1
                thr = TWO_32_INT - m
                y_prev = y
            dthr_b[d] = thr
        d = a
        for j in range(DEAL_GUIDE_SIZE):
            while d < dlast and dthr_b[d] < (j << dshift):
                d += 1
            dguide_b[j] = d

    def spell_aged(c, a, hi, s_prev, dlast, room, dthr_b, dguide_b):
        # Age 0 < a < L, the deal's tables filled by deal_tables up to dlast.
        if hi > dthr_b[_U(dlast)]:  # no exit by dlast
            if dlast >= room:
                return dlast + 1, np.int64(tail_bin[c])  # after the window: the day does not matter
            # S(L-1) > target: the tail, in floats as the contract says.
            off = cell_hdr[c, 0]
            L = cell_hdr[c, 1]
            target = s_prev * (1.0 - np.float64(hi) * TWO_M32)
            return L + tail_days(math.log(target / surv[off + L - 1]) / log1m_h[c]), np.int64(tail_bin[c])
        d = dguide_b[_U(hi >> dshift)]
        while hi > dthr_b[_U(d)]:
            d += 1
        return d, np.int64(day_bin[_U(cell_hdr[c, 0] + d)])

    def spell_old(c, a, hi):
        # Age a >= L: the memoryless tail.
        u1 = np.float64(hi) * TWO_M32
        return a + tail_days(math.log(1.0 - u1) / log1m_h[c]), np.int64(tail_bin[c])

    def destination(row, x32):
        # Thresholds rise along the row: counting those <= x32 finds the first one above it,
        # without a data-dependent branch.
        r = _U(row)
        if n_cmp <= 3:  # the usual funnel: three thresholds, then the 4 outcomes in 16 bits each
            j = (x32 >= dest_fast[r, 0]) + (x32 >= dest_fast[r, 1]) + (x32 >= dest_fast[r, 2])
            return (dest_fast[r, 3] >> (np.int64(j) << 4)) & 0xFFFF
        j = 0
        for m in range(n_cmp):
            j += x32 >= dest_thr[r, _U(m)]
        return dest_k[r, _U(j)]

    def walk(c, base, day, key, n):
        # A new deal entering cell c on ``day``: until won, lost, or an exit past end_off; one draw
        # per stage visit: high 32 bits the exit day, low 32 bits the destination.
        # Returns (cell, day, outcome, visits).
        n0 = n
        x = draw(key, n)
        n += 1
        d, row = spell_fresh(c, np.int64(hi32(x)), end_off - day)
        while True:
            day += d
            k = destination(row, np.int64(lo32(x)))
            if (day > end_off) | (k >= S) | (n - n0 >= MAX_STEPS):
                break
            c = base + k
            x = draw(key, n)
            n += 1
            d, row = spell_fresh(c, np.int64(hi32(x)), end_off - day)
        if day > end_off:
            return c, day, OUT_OPEN, n - n0
        if k == S:
            return c, day, OUT_WON, n - n0
        if k > S:
            return c, day, OUT_LOST, n - n0
        return base + k, day, OUT_OPEN, n - n0

    def book(b, tt, outcome, c, day, amount, g):
        # Slab row buf[b, tt]; returns 1 won in the window, 2 lost in it, 0 otherwise.
        if outcome == OUT_OPEN:
            s = c % S
            buf_f[b, tt, fc0 + s] += amount
            buf_i[b, tt, fc0 + 1 + s] += 1
            return 0
        if day < start_off:
            return 0
        if outcome == OUT_LOST:
            buf_i[b, tt, 1] += 1
            return 2
        p = day_period[day]
        buf_f[b, tt, 0] += amount
        buf_f[b, tt, 1 + p] += amount
        buf_f[b, tt, 1 + P + g] += amount
        buf_i[b, tt, 0] += 1
        buf_i[b, tt, 2 + p] += 1
        buf_i[b, tt, 2 + P + g] += 1
        return 1

    # Pass 1: open deals, deal blocks in parallel; a block owns its deals' accumulators.
    # Within a block, one deal at a time walks through a batch of TB trials together: all first
    # spells, then the walks still going, compacted after every visit. No branch depends on a
    # random outcome (the active and ended lists grow by 0 or 1 per walk), so the loop runs
    # without branch mispredictions and the walks of different trials overlap in the pipeline;
    # a walk-at-a-time loop stalls on one unpredictable exit branch per walk.
    d_cell = deals.cell
    d_age = deals.age
    d_amount = deals.amount
    d_group = deals.group
    d_sid = deals.sid
    d_start = deals.start
    d_sprev = deals.s_prev
    work = bufs.work
    deal_won = bufs.deal_won
    deal_lost = bufs.deal_lost
    deal_hist = bufs.deal_hist
    tkeys = bufs.tkeys
    TB = bufs.act_code.shape[1]
    W = deal_hist.shape[1]
    n = d_cell.shape[0]
    nb = work.shape[0]
    for tt in range(tc):
        tkeys[tt] = trial_key(keys[0], t0 + tt)
    for b in prange(nb):
        lo = (b * n) // nb
        hi = ((b + 1) * n) // nb
        # This block's rows of the scratch arrays, as 1-d views: one pointer each in the loops.
        act_state = bufs.act_state[b]
        act_code = bufs.act_code[b]
        ends = bufs.ends[b]  # won walks at [0, TB), lost at [TB, 2 TB), still open at [2 TB, 3 TB)
        dthr_b = bufs.dthr[b]
        dguide_b = bufs.dguide[b]
        bf = buf_f[b]
        bi = buf_i[b]
        bf[:tc, :] = 0.0
        bi[:tc, :] = 0
        steps = np.int64(0)
        for i in range(lo, hi):
            c0 = np.int64(d_cell[i])
            a = np.int64(d_age[i])
            s_prev = d_sprev[i]
            amount = d_amount[i]
            g = np.int64(d_group[i])
            base = g * S
            s0 = c0 - base
            sid = d_sid[i]
            day0 = np.int64(d_start[i]) - a  # the day the deal entered its current stage
            room0 = end_off - day0  # its first spell's last exit day inside the window
            L0 = cell_hdr[c0, 1]
            mode = 0 if a == 0 else (1 if a < L0 else 2)
            dlast = min(L0 - 1, room0)
            if mode == 1:
                deal_tables(c0, a, s_prev, dlast, dthr_b, dguide_b)
            won_trials = 0
            lost_trials = 0
            for tb0 in range(0, tc, TB):
                tb = min(TB, tc - tb0)
                m = 0  # walks still going: act_state, act_code = (q << 36) | (stage << 20) | day
                nw = 0  # walks won in the window: ends[nw] = (q << 32) | day
                nl = TB  # walks lost in the window: ends[nl] = q
                no = 2 * TB  # walks still open after end_off: ends[no] = (q << 16) | stage
                # First spell (age-conditioned) of every trial in the batch.
                for q in range(tb):
                    state = stream_key(tkeys[_U(tb0 + q)], sid) + GOLDEN  # draw 0 of the deal's stream
                    x = mix64(state)
                    h32 = np.int64(hi32(x))
                    if mode == 0:
                        d, row = spell_fresh(c0, h32, room0)
                    elif mode == 1:
                        d, row = spell_aged(c0, a, h32, s_prev, dlast, room0, dthr_b, dguide_b)
                    else:
                        d, row = spell_old(c0, a, h32)
                    day = day0 + d
                    k = destination(row, np.int64(lo32(x)))
                    inw = (day >= start_off) & (day <= end_off)
                    um = _U(m)
                    act_state[um] = state + GOLDEN
                    act_code[um] = (q << 36) | (k << 20) | day
                    m += (day <= end_off) & (k < S)
                    ends[_U(nw)] = (q << 32) | day
                    nw += inw & (k == S)
                    ends[_U(nl)] = q
                    nl += inw & (k > S)
                    ends[_U(no)] = (q << 16) | s0
                    no += day > end_off
                steps += tb
                # Later spells (age 0) of the walks still going; compaction in place.
                visits = 1
                while m > 0 and visits < MAX_STEPS:
                    steps += m
                    m2 = 0
                    for j in range(m):
                        uj = _U(j)
                        state = act_state[uj]
                        code = act_code[uj]
                        q = code >> 36
                        s = (code >> 20) & 0xFFFF
                        day = code & 0xFFFFF
                        x = mix64(state)
                        d, row = spell_fresh(base + s, np.int64(hi32(x)), end_off - day)
                        day += d
                        k = destination(row, np.int64(lo32(x)))
                        inw = (day >= start_off) & (day <= end_off)
                        um = _U(m2)
                        act_state[um] = state + GOLDEN
                        act_code[um] = (q << 36) | (k << 20) | day
                        m2 += (day <= end_off) & (k < S)
                        ends[_U(nw)] = (q << 32) | day
                        nw += inw & (k == S)
                        ends[_U(nl)] = q
                        nl += inw & (k > S)
                        ends[_U(no)] = (q << 16) | s
                        no += day > end_off
                    m = m2
                    visits += 1
                # Walks capped at MAX_STEPS visits stay open in the stage they moved to.
                for j in range(m):
                    code = act_code[_U(j)]
                    ends[_U(no)] = ((code >> 36) << 16) | ((code >> 20) & 0xFFFF)
                    no += 1
                # Book the batch: each trial's slab row gets at most one term per deal, in deal
                # order (skipping a zero term leaves a float sum unchanged). Total wins per trial
                # are summed from the period wins in the merge.
                for j in range(nw):
                    e = ends[_U(j)]
                    utt = _U(tb0 + (e >> 32))
                    day = e & 0xFFFFFFFF
                    p = _U(day_period[_U(day)])
                    bf[utt, 0] += amount
                    bf[utt, 1 + p] += amount
                    bf[utt, _U(1 + P + g)] += amount
                    bi[utt, 2 + p] += 1
                    bi[utt, _U(2 + P + g)] += 1
                    if W > 0:
                        deal_hist[i, _U(day - start_off)] += 1
                for j in range(TB, nl):
                    bi[_U(tb0 + ends[_U(j)]), 1] += 1
                for j in range(2 * TB, no):
                    e = ends[_U(j)]
                    utt = _U(tb0 + (e >> 16))
                    s = e & 0xFFFF
                    bf[utt, _U(fc0 + s)] += amount
                    bi[utt, _U(fc0 + 1 + s)] += 1
                won_trials += nw
                lost_trials += nl - TB
            deal_won[i] += won_trials
            deal_lost[i] += lost_trials
        work[b, 0] = (hi - lo) * tc
        work[b, 1] = steps

    # Pass 2: new deals, trials in parallel; slab row nb (the last).
    if arr.on:
        rate = arr.rate
        weekday_factor = arr.weekday_factor
        moq_factor = arr.moq_factor
        gamma_shape = arr.gamma_shape
        entry_k = arr.entry_k
        entry_thr = arr.entry_thr
        amount_pool = arr.amount_pool
        amount_off = arr.amount_off
        amount_mult = arr.amount_mult
        day_weekday = arr.day_weekday
        day_moq = arr.day_moq
        gmul = bufs.gmul
        work_new = bufs.work_new
        base_gamma = keys[1]
        base_count = keys[2]
        base_new = keys[3]
        for tt in prange(tc):
            t = t0 + tt
            buf_f[nb, tt, :] = 0.0
            buf_i[nb, tt, :] = 0
            tk_gamma = trial_key(base_gamma, t)
            tk_count = trial_key(base_count, t)
            tk_new = trial_key(base_new, t)
            for g in range(G):
                shape = gamma_shape[g]
                if math.isinf(shape):
                    gmul[tt, g] = 1.0
                else:
                    gmul[tt, g] = gamma_nb(shape, stream_key(tk_gamma, g)) / shape
            n_new = np.int64(0)
            steps = np.int64(0)
            for day in range(end_off + 1):
                wd = day_weekday[day]
                mq = day_moq[day]
                for g in range(G):
                    lam = rate[g] * weekday_factor[g, wd] * moq_factor[g, mq] * gmul[tt, g]
                    if not lam > 0.0:
                        continue
                    count = poisson_nb(lam, stream_key(tk_count, pack_arrival(g, day, 0)))
                    pool0 = amount_off[g]
                    pool_n = amount_off[g + 1] - pool0
                    for k in range(count):
                        key = stream_key(tk_new, pack_arrival(g, day, k))
                        x = draw(key, 0)
                        x32 = hi32(x)
                        j = 0
                        while x32 >= entry_thr[g, j]:
                            j += 1
                        c0 = np.int64(g * S + entry_k[g, j])
                        amount = amount_pool[pool0 + pick_index(lo32(x), pool_n)] * amount_mult
                        c, dday, outcome, visits = walk(c0, np.int64(g * S), np.int64(day), key, 1)
                        steps += visits
                        book(nb, tt, outcome, c, dday, amount, g)
                    n_new += count
            work_new[tt, 0] = n_new
            work_new[tt, 1] = steps

    # Pass 3: merge the slabs in a fixed order, trials in parallel.
    out_f = bufs.out_f
    out_i = bufs.out_i
    out_new_f = bufs.out_new_f
    out_new_i = bufs.out_new_i
    nf = buf_f.shape[2]
    ni = buf_i.shape[2]
    for tt in prange(tc):
        t = t0 + tt
        for f in range(nf):
            acc = 0.0
            for b in range(nb + 1):
                acc += buf_f[b, tt, f]
            out_f[t, f] = acc
        for f in range(ni):
            m = 0
            for b in range(nb + 1):
                m += buf_i[b, tt, f]
            out_i[t, f] = m
        # Open deals book wins by period only (one field fewer per win); the total is their sum.
        m = 0
        for p in range(P):
            m += out_i[t, 2 + p]
        out_i[t, 0] = m
        out_new_f[t] = buf_f[nb, tt, 0]
        out_new_i[t] = buf_i[nb, tt, 0]
