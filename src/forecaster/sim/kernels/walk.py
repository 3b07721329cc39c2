"""The walk: one parallel unit of the kernel (a deal block or a trial block), ``unit_nb``.

Inputs and outputs: layout.py (the contract); scheduling: units.py; the chunk and its merge: chunk.py.

Parallel design. ``simulate_chunk_nb`` handles trials ``t0 .. t0 + tc - 1``: a prange over
units, then a prange over trials that merges.

- Units are deal blocks and trial blocks (``unit_of``; neighbouring units take distant blocks, so
  the threads' static slices of the range get equal shares of deals that callers often sort, by
  age say). The n open deals are cut into ``n_deal_blocks(n)`` contiguous blocks, a number that
  depends on n only, never on the thread count. A deal block owns (a) its deals' per-deal
  accumulators (counts and the [n, W] win-day histogram) across all trials, so they need neither
  copies nor atomics, and (b) a slab ``buf[b, :tc, :]`` of per-trial partial sums. Deal-major
  blocks are the only split in which the deals x window-days histogram has a single owner. A
  trial block (``n_trial_blocks(tc)`` of them, any number gives the same results) simulates the
  new deals of its trials into slab rows ``buf[nb, tt, :]``.
- Both kinds feed batches of up to TB walks through the same code (``unit_nb``): an open deal in
  TB trials, or up to TB arrivals of one trial in arrival order. A batch runs in rounds over the
  walks still going (at first all of them), each round in three loops: the draws (independent
  hashes, vectorised), the exit days and bin rows, then destinations, the compaction of the walks
  still going and each walk's last visit so far (``last_visit``). No branch depends on a random
  outcome (lists grow by 0 or 1 per walk) and each loop's dependency chain is short, so the walks of a
  batch overlap in the pipeline; a walk-at-a-time loop waits on a chain of dependent loads per
  visit and on one unpredictable exit branch per walk. Measured: 2.4x faster per visit for open
  deals than walk at a time, 1.7x for new deals (benchmarks/results/kernel.json).
- Booking: the batch's walks are sorted by outcome (won / lost in the window, still open after
  it), then each outcome's fields are added to. A deal's terms land in distinct trial rows, in
  deal order; a trial's new deals in its one row, in arrival order (sorting by outcome keeps that
  order within an outcome, and each float field takes terms of one outcome only). Total wins per
  trial are summed from the period wins in the merge.
- Merge, prange over trials: each output is the sum over slabs ``b = 0 .. nb`` in that order.

Every float is summed in an order fixed by (n, trial): a slab row gets one term per deal in deal
order (new deals: by day, group, arrival); skipped zero terms leave a sum unchanged. Every random
number is keyed by (seed, trial, stream). So results are bit-identical for any thread count and
any chunking of the trials. Memory: O(T (P + G + S)) outputs, O(n W) histogram, slabs of
(nb + 1) x tc rows and batch scratch of units x TB that the engine bounds. Nothing is allocated
inside a prange.

The helpers (spells, destination) are closures inside ``unit_nb`` rather than separate njit
functions: numba inlines closures, while a call to an njit function that takes arrays pays
atomic reference-count updates per array per call (measured 4x slower per visit). ``unit_nb`` is
itself a function called once per unit, not the prange's body: numba's parallel passes take time
quadratic in the size of a prange body (cold compile 19 s as one function, 8 s split). Hot
loops index with unsigned integers, which spares numba's negative-index wraparound code.

Why this module is long: ``unit_nb`` is the kernel's hot loop (about 630 lines). Its helpers (the exit
day of a fresh, aged, old or continued spell, the first-spell tables of an aged deal, the destination
draws, plain and under the calendar effects and the shared shock) are closures
over its unpacked arrays because numba inlines closures, whereas calling a separate njit function that
takes arrays costs atomic reference-count updates per array per call: measured 4x slower per stage visit.
The three phases that share those closures (filling a batch, the visits, the booking) use the same
per-unit scratch and walk state, so splitting them into functions would pass a dozen arrays per batch
through that same call boundary.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from forecaster.sim.kernels.layout import (
    DEAL_GUIDE_BITS,
    DEAL_GUIDE_SIZE,
    FIRST_AGED,
    FIRST_FRESH,
    FIRST_OLD,
    GUIDE_DAY_MASK,
    GUIDE_DAY_SHIFT,
    GUIDE_ROW_BITS,
    GUIDE_ROW_MASK,
    GUIDE_SLOW,
    KEY_COUNT,
    KEY_GAMMA,
    KEY_NEW,
    MAX_STEPS,
    TAIL_DAYS_CAP,
    TWO_32,
    TWO_32_INT,
    UNIT_DEALS,
    UNIT_TRIALS,
)
from forecaster.sim.kernels.units import unit_of
from forecaster.sim.rng import (
    GOLDEN,
    GOLDEN2,
    NJIT,
    TWO_M32,
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

# Draw MAX_STEPS of an open deal's stream (state key + (MAX_STEPS + 1) GOLDEN), which no visit
# uses, picks a campaign deal's amount in each trial.
_AMOUNT_DRAW = np.uint64(((MAX_STEPS + 1) * int(GOLDEN)) % (1 << 64))
# Hot loops index with unsigned integers: numba then skips the negative-index wraparound code
# (measured ~12% faster per stage visit). Every index so cast is non-negative by construction.
_U = np.uint64


@njit(**NJIT)
def unit_nb(u, nb, nr, t0, tc, keys, tab, deals, arr, win, bufs):
    """One parallel unit of simulate_chunk_nb: deal block or trial block ``unit_of(u, nb, nr)``.

    A function of its own, called once per unit, rather than the body of the prange: numba's
    parallel passes (copy propagation over every variable of every block) take time quadratic in
    the size of a prange body, and this one holds every inlined helper (measured cold compile of
    the kernel: 19 s as the prange's body, 8 s as a function).
    """
    # Arrays are unpacked once here and the helpers below are closures over them: numba inlines
    # closures into this function, whereas a call to another njit function taking arrays pays
    # atomic reference-count updates per array per call (measured: 4x slower per stage visit).
    kind, idx = unit_of(u, nb, nr)  # UNIT_DEALS: deal block idx; UNIT_TRIALS: trial block idx
    surv = tab.surv
    ctab = tab.ctab
    cstride = _U(tab.cell_stride)
    wbase = tab.wthr_base
    cell_hdr = tab.cell_hdr
    gshift = 32 - tab.guide_bits
    log1m_h = tab.log1m_h
    day_bin = tab.day_bin
    tail_bin = tab.tail_bin
    dest_fb = tab.dest_fb
    dest_bthr = tab.dest_bthr
    dest_vthr = tab.dest_vthr
    dest_k = tab.dest_k
    dest_fast = tab.dest_fast
    dest_is_fast = tab.dest_is_fast
    dest_nback = tab.dest_nback
    mix_on = tab.mix_on
    mix_thin = tab.mix_thin
    mix_nz = np.int64(tab.mix_nz)
    mix_bthr = tab.mix_bthr
    mix_ls = tab.mix_ls
    mix_fb = tab.mix_fb
    mix_moq = tab.mix_moq
    tlevel = bufs.tlevel
    n_bcmp = dest_bthr.shape[1]
    n_vcmp = dest_vthr.shape[1]
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

    def spell_slow(uc, hi, d, room):
        # A bucket straddling several days, or reaching the sentinel of an uncut table: scan the
        # thresholds from the bucket's first day; past the table, the tail in floats.
        woff = uc * cstride + wbase
        lw = cell_hdr[uc, 1]
        while hi > ctab[_U(woff + d)]:
            d += 1
        if d < lw:
            return d, np.int64(day_bin[_U(cell_hdr[uc, 2] + d)])
        L = cell_hdr[uc, 4]
        if lw < L or L > room:  # after the window: the exact day does not matter
            return lw, np.int64(tail_bin[uc])
        v = (1.0 - np.float64(hi) * TWO_M32) / surv[_U(cell_hdr[uc, 2] + L - 1)]
        return L + tail_days(math.log(v) / log1m_h[uc]), np.int64(tail_bin[uc])

    def spell_fresh(c, hi, room):
        # Age 0, integer form of the contract's rule: S(d) <= 1 - hi / 2**32 exactly when
        # hi <= thr[d] = 2**32 - ceil(S(d) 2**32). Returns (exit day, bin row); an exit day
        # beyond ``room`` (the window's last day, counted from the spell's entry) only means
        # "after the window". The guide entry gives the bucket's first exit day d; an unflagged
        # bucket exits on d or d + 1, decided by one comparison.
        uc = _U(c)
        cbase = uc * cstride
        e = ctab[cbase + _U(hi >> gshift)]
        d = e >> GUIDE_DAY_SHIFT
        if e < GUIDE_SLOW:
            step = hi > ctab[cbase + _U(wbase + d)]
            return d + step, (e >> (np.int64(step) * GUIDE_ROW_BITS)) & GUIDE_ROW_MASK
        return spell_slow(uc, hi, d & GUIDE_DAY_MASK, room)

    def deal_tables(c, a, s_prev, dlast, tail_exact, thr_tab, guide_tab):
        # One open deal (cell c, age 0 < a < L) walks all trials of a chunk from the same state, so
        # its first-spell rule is turned into integers once: thr_tab[d] = the largest hi with
        # S(d) <= S(a-1) (1 - hi / 2**32) in floats, exactly as the contract computes the target
        # (-1: none), for d = a .. dlast (the table's last day, or the window's last if that comes
        # first), a sentinel 2**32 at dlast + 1, and a guide over hi packed as the cells' (see
        # sim.compact.pack_guide). With m = 2**32 - hi, 1 - hi / 2**32 is exactly m / 2**32, and the
        # float target rises with m: find the smallest m that passes from a close guess.
        off = cell_hdr[c, 2]
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
            thr_tab[d] = thr
        thr_tab[dlast + 1] = TWO_32_INT
        # Each day d owns the buckets from the one after the previous day's last up to the one
        # holding its threshold: all but that last are pure; that last one exits on d or d + 1
        # unless d + 1's threshold is inside it too (slow).
        tail_row = np.int64(tail_bin[c])
        jp = -1
        for d in range(a, dlast + 2):
            t = thr_tab[d]
            j1 = min(t >> dshift, DEAL_GUIDE_SIZE - 1)
            if j1 <= jp:
                continue
            row_a = np.int64(day_bin[off + d]) if d <= dlast else tail_row
            ent = (np.int64(d) << GUIDE_DAY_SHIFT) | row_a
            if tail_exact and d > dlast:
                ent |= GUIDE_SLOW
            for j in range(jp + 1, j1):
                guide_tab[j] = ent
            top = ((j1 + 1) << dshift) - 1
            if t < top:  # d <= dlast here: the sentinel 2**32 passes every top
                row_b = np.int64(day_bin[off + d + 1]) if d < dlast else tail_row
                ent |= row_b << GUIDE_ROW_BITS
                if thr_tab[d + 1] < top or (tail_exact and d == dlast):
                    ent |= GUIDE_SLOW
            guide_tab[j1] = ent
            jp = j1

    def spell_aged(c, hi, s_prev, dlast, room, thr_tab, guide_tab):
        # Age 0 < a < L, on the deal's tables filled by deal_tables.
        e = guide_tab[_U(hi >> dshift)]
        d = e >> GUIDE_DAY_SHIFT
        if e < GUIDE_SLOW:
            step = hi > thr_tab[_U(d)]
            return d + step, (e >> (np.int64(step) * GUIDE_ROW_BITS)) & GUIDE_ROW_MASK
        d &= GUIDE_DAY_MASK
        while hi > thr_tab[_U(d)]:
            d += 1
        if d <= dlast:
            return d, np.int64(day_bin[_U(cell_hdr[c, 2] + d)])
        if dlast >= room:  # after the window
            return d, np.int64(tail_bin[c])
        # S(L-1) > target: the tail, in floats as the contract says.
        off = cell_hdr[c, 2]
        L = cell_hdr[c, 4]
        target = s_prev * (1.0 - np.float64(hi) * TWO_M32)
        return L + tail_days(math.log(target / surv[off + L - 1]) / log1m_h[c]), np.int64(tail_bin[c])

    def spell_old(c, a, hi):
        # Age a >= L: the memoryless tail.
        u1 = np.float64(hi) * TWO_M32
        return a + tail_days(math.log(1.0 - u1) / log1m_h[c]), np.int64(tail_bin[c])

    def destination_fb(r, u, fb):
        # The nested draw (sim.compact.nested_thresholds) of row r with "forward" from fb: u (32 bits) on
        # the axis back | lost | forward; v, u rotated by 16 bits, among the forward destinations.
        # Counting the thresholds <= u (and <= v) finds the entry without a data-dependent branch.
        v = ((u << 16) | (u >> 16)) & 0xFFFFFFFF
        if dest_is_fast:  # the usual funnel: one cache line per row, entries in 16 bits each
            r8 = r << 3
            fwd = u >= fb
            j = (u >= dest_fast[r8]) + fwd * (1 + (v >= dest_fast[r8 + 2]) + (v >= dest_fast[r8 + 3]))
            return (dest_fast[r8 + 4] >> (np.int64(j) << 4)) & 0xFFFF
        j = 0
        for m in range(n_bcmp):
            j += u >= dest_bthr[r, _U(m)]
        jv = 1
        for m in range(n_vcmp):
            jv += v >= dest_vthr[r, _U(m)]
        return dest_k[r, _U(j + (u >= fb) * jv)]

    def destination(row, u):
        # The plain draw: the row's own fb.
        r = _U(row)
        return destination_fb(r, u, dest_fast[(r << 3) + 1] if dest_is_fast else dest_fb[r])

    def destination_shock(row, u, day, z):
        # Every exit rate 1 (nothing thinned): the plain nested draw with the lost threshold of the row's
        # month and the trial's shock level (mixed_thresholds' fb; its ls is then the plain back cut).
        r = _U(row)
        return destination_fb(r, u, mix_fb[(r * _U(3) + _U(mix_moq[_U(day)])) * _U(mix_nz) + _U(z)])

    def destination_mixed(row, u, day, z):
        # The nested draw with the calendar effects and the shock (sim.compact.mixed_thresholds): moves
        # back, thinned exits (-1: the spell goes on), kept exits lost up to fb, then forward. Branch-free:
        # the entry index is #(back thresholds <= u) on the back part (nback there: thinned), else the
        # lost entry (nback) plus, past fb, the forward offset.
        r = _U(row)
        rq = r * _U(3) + _U(mix_moq[_U(day)])
        nbk = dest_nback[r]
        v = ((u << 16) | (u >> 16)) & 0xFFFFFFFF
        back = np.int64(u < mix_ls[rq])
        fwd = np.int64(u >= mix_fb[rq * _U(mix_nz) + _U(z)])
        if dest_is_fast:  # at most one move back and three forward: the packed entries of the row
            r8 = r << 3
            j = np.int64(u >= mix_bthr[r, 0])
            jv = np.int64(v >= dest_fast[r8 + 2]) + np.int64(v >= dest_fast[r8 + 3])
        else:
            j = 0
            for m in range(n_bcmp):
                j += u >= mix_bthr[r, _U(m)]
            jv = 0
            for m in range(n_vcmp):
                jv += v >= dest_vthr[r, _U(m)]
        jj = np.int64(min(j, nbk))
        idx = back * jj + (1 - back) * (nbk + fwd * (1 + jv))
        thinned = back * np.int64(j >= nbk)
        if dest_is_fast:
            k = (dest_fast[(r << 3) + 4] >> (idx << 4)) & 0xFFFF
        else:
            k = np.int64(dest_k[r, _U(idx)])
        return k - thinned * (k + 1)

    def spell_cont(c, a, hi, room):
        # A spell at age a >= 0 (a > 0: going on after a thinned exit; docs/kernel_contract.md): past the
        # table its memoryless tail; else the fresh rule on hi2 = min(floor((1 - t) 2**32), 2**32 - 1),
        # t = S(a - 1) (1 - hi / 2**32), so the exit is the first day with S(d) <= t to within 2**-32,
        # through the guide tables (no scan), and never before a. At a = 0, S(-1) = 1 and hi2 = hi
        # exactly (1 - (1 - hi / 2**32) is exact in float64): the fresh rule itself, so one path serves
        # every spell.
        L = cell_hdr[c, 4]
        if a > 0 and a >= L:
            return spell_old(c, a, hi)
        off = cell_hdr[c, 2]
        sp = surv[_U(off + a - 1)] if a > 0 else 1.0
        t = sp * (1.0 - np.float64(hi) * TWO_M32)
        hi2 = min(np.int64(math.floor((1.0 - t) * TWO_32)), np.int64(0xFFFFFFFF))
        d, row = spell_fresh(c, hi2, room)
        lw = cell_hdr[c, 1]
        if d >= lw and lw < L and lw <= room:
            # The fresh tables stop at Lw (enough for a spell entering on day 0 or later); this one (an
            # open deal's first stay going on) entered before: the same rule in floats from Lw, by bisection.
            t2 = 1.0 - np.float64(hi2) * TWO_M32
            last = min(L - 1, room)
            lo = max(a, lw)
            top = max(last + 1, lo)
            while lo < top:
                mid = (lo + top) >> 1
                if surv[_U(off + mid)] > t2:
                    lo = mid + 1
                else:
                    top = mid
            if lo <= last:
                return lo, np.int64(day_bin[_U(off + lo)])
            if last < L - 1:  # after the window: the exact day does not matter
                return last + 1, np.int64(tail_bin[c])
            return L + tail_days(math.log(t2 / surv[_U(off + L - 1)]) / log1m_h[c]), np.int64(tail_bin[c])
        if d < a:
            return a, np.int64(day_bin[_U(off + a)])
        return d, row

    # Passes 1 and 2 in one: units of work in parallel, each a deal block (open deals) or a trial
    # block (new deals). Both feed batches of up to TB walks through the same code: first spells
    # of the whole batch, then the walks still going, compacted after every visit, then the
    # booking. An open deal's batch is that deal in TB trials; a new-deal batch is up to TB
    # arrivals of one trial, in arrival order. No branch depends on a random outcome (the lists
    # grow by 0 or 1 per walk), and each visit is split into three loops (hashes, exit days,
    # destinations and lists) whose dependency chains are short: the walks of a batch overlap in
    # the pipeline, where a walk-at-a-time loop waits on one chain of dependent loads per visit
    # and one unpredictable exit branch per walk.
    d_cell = deals.cell
    d_age = deals.age
    d_amount = deals.amount
    d_group = deals.group
    d_sid = deals.sid
    d_start = deals.start
    d_sprev = deals.s_prev
    d_pool_start = deals.pool_start
    d_pool_size = deals.pool_size
    d_pool = deals.amount_pool
    work = bufs.work
    deal_won = bufs.deal_won
    deal_lost = bufs.deal_lost
    deal_hist = bufs.deal_hist
    tkeys = bufs.tkeys
    TB = bufs.walk_codes.shape[1]
    W = deal_hist.shape[1]
    n = d_cell.shape[0]
    nb = work.shape[0]
    rate = arr.rate
    weekday_factor = arr.weekday_factor
    moq_factor = arr.moq_factor
    gamma_shape = arr.gamma_shape
    entry_k = arr.entry_k
    n_entry_cmp = arr.n_entry - 1
    entry_thr = arr.entry_thr
    amount_pool = arr.amount_pool
    amount_off = arr.amount_off
    amount_mult = arr.amount_mult
    day_weekday = arr.day_weekday
    day_moq = arr.day_moq
    gmul = bufs.gmul
    work_new = bufs.work_new
    # This unit's rows of the scratch arrays, as 1-d views: one pointer each in the loops.
    walk_state = bufs.walk_state[u]  # states of the walks' next draws
    walk_age = bufs.walk_age[u]  # with calendar rates: age a thinned spell goes on from (0: a new spell)
    walk_entry = bufs.walk_entry[u]  # and the day it began
    walk_code = bufs.walk_codes[u]  # (q << 44) | (cell << 20) | day of the walks still going
    draws = bufs.draws[u]  # the visit's draw
    exit_code = bufs.exit_codes[u]  # (exit day << 20) | bin row, exit day capped at end_off + 1
    last_visit = bufs.last_visit[u]  # per walk q its last visit: (day << 40) | (destination << 24) | cell
    booked = bufs.booked[u]  # open-deal booking lists: won [0, TB), lost [TB, 2 TB), open [2 TB, 3 TB)
    base_cell = bufs.base_cell[u]  # per walk: its base cell g S
    new_group = bufs.new_group[u]  # new deals: group and amount
    new_amount = bufs.new_amount[u]
    deal_thr = bufs.deal_thr[u]
    deal_guide = bufs.deal_guide[u]
    # Deal block: deals lo .. hi - 1, each in trial batches from tb0.
    lo = (idx * n) // max(nb, 1)
    hi = ((idx + 1) * n) // max(nb, 1)
    i = lo if kind == UNIT_DEALS else hi
    tb0 = 0
    if kind == UNIT_DEALS:
        buf_f[idx, :tc, :] = 0.0
        buf_i[idx, :tc, :] = 0
    steps_blk = np.int64(0)
    c0 = np.int64(0)
    a = np.int64(0)
    s_prev = 1.0
    amount = 0.0
    g = np.int64(0)
    base = np.int64(0)
    sid = np.int64(0)
    deal_pool0 = np.int64(0)
    deal_pool_n = np.int64(0)
    day0 = np.int64(0)
    room0 = np.int64(0)
    dlast = np.int64(0)
    first_kind = FIRST_FRESH
    won_trials = 0
    lost_trials = 0
    # Trial block: trials tlo .. thi - 1, each its arrivals by (day, group, k).
    tlo = (idx * tc) // max(nr, 1)
    thi = ((idx + 1) * tc) // max(nr, 1)
    tt = tlo if kind == UNIT_TRIALS else thi
    new_trial = True
    trial_done = False
    tk_count = np.uint64(0)
    tk_new = np.uint64(0)
    nday = 0
    ng = 0
    nk = 0
    ncount = -1
    n_new = np.int64(0)
    steps_t = np.int64(0)
    while True:
        # ---- Fill a batch: per walk q the state of its first visit's draw walk_state[q], its code
        # (q, cell, entry day of its spell) in walk_code[q] and its base cell base_cell[q].
        nq = 0
        if kind == UNIT_DEALS:
            if i >= hi:
                break
            if tb0 == 0:
                c0 = np.int64(d_cell[i])
                a = np.int64(d_age[i])
                s_prev = d_sprev[i]
                amount = d_amount[i]
                g = np.int64(d_group[i])
                base = g * S
                sid = d_sid[i]
                deal_pool0 = d_pool_start[i]
                deal_pool_n = d_pool_size[i]
                day0 = np.int64(d_start[i]) - a  # the day the deal entered its current stage
                room0 = end_off - day0  # its first spell's last exit day inside the window
                L0 = cell_hdr[c0, 4]
                first_kind = FIRST_FRESH if a == 0 else (FIRST_AGED if a < L0 else FIRST_OLD)
                dlast = min(L0 - 1, room0)
                if first_kind == FIRST_AGED:
                    deal_tables(c0, a, s_prev, dlast, dlast < room0, deal_thr, deal_guide)
                won_trials = 0
                lost_trials = 0
            nq = min(TB, tc - tb0)
            code0 = (c0 << 20) | max(day0, 0)  # an aged first spell takes day0 from the deal
            for q in range(nq):  # independent hashes: vectorised
                uq = _U(q)
                state = stream_key(tkeys[_U(tb0 + q)], sid) + GOLDEN  # draw 0 of its stream
                draws[uq] = mix64(state)
                walk_state[uq] = state
                walk_code[uq] = (q << 44) | code0
                walk_age[uq] = 0
                walk_entry[uq] = day0
                base_cell[uq] = base
        else:
            if tt >= thi:
                break
            if new_trial:
                t = t0 + tt
                buf_f[nb, tt, :] = 0.0
                buf_i[nb, tt, :] = 0
                tk_gamma = trial_key(keys[KEY_GAMMA], t)
                tk_count = trial_key(keys[KEY_COUNT], t)
                tk_new = trial_key(keys[KEY_NEW], t)
                for gg in range(G):
                    shape = gamma_shape[gg]
                    if math.isinf(shape):
                        gmul[tt, gg] = 1.0
                    else:
                        gmul[tt, gg] = gamma_nb(shape, stream_key(tk_gamma, gg)) / shape
                nday = 0
                ng = 0
                nk = 0
                ncount = -1
                n_new = 0
                steps_t = 0
                new_trial = False
                trial_done = False
            first_kind = FIRST_FRESH
            # Arrivals of (day, group) in order, resuming where the last batch stopped.
            while nq < TB:
                if ncount < 0:
                    if nday > end_off:
                        trial_done = True
                        break
                    lam = rate[ng] * weekday_factor[ng, day_weekday[nday]] * moq_factor[ng, day_moq[nday]] * gmul[tt, ng]
                    ncount = poisson_nb(lam, stream_key(tk_count, pack_arrival(ng, nday, 0))) if lam > 0.0 else 0
                    n_new += ncount
                    nk = 0
                take = min(ncount - nk, TB - nq)
                pool0 = amount_off[ng]
                pool_n = amount_off[ng + 1] - pool0
                base_g = ng * S
                code_g = (base_g << 20) | nday
                pk0 = pack_arrival(ng, nday, nk)
                for r in range(take):  # independent hashes: vectorised
                    uq = _U(nq + r)
                    key = stream_key(tk_new, pk0 + r)
                    exit_code[uq] = np.int64(mix64(key + GOLDEN))  # draw 0: entry stage (high 32 bits), amount
                    walk_state[uq] = key + GOLDEN2  # draw 1: its first visit
                    draws[uq] = mix64(key + GOLDEN2)
                for r in range(take):
                    uq = _U(nq + r)
                    x = np.uint64(exit_code[uq])
                    x32 = hi32(x)
                    j = 0
                    for jj in range(n_entry_cmp):  # count the thresholds <= x32: no branch
                        j += x32 >= entry_thr[ng, jj]
                    new_amount[uq] = amount_pool[pool0 + pick_index(lo32(x), pool_n)] * amount_mult
                    new_group[uq] = ng
                    base_cell[uq] = base_g
                    walk_code[uq] = (((nq + r) << 44) | code_g) + (np.int64(entry_k[ng, j]) << 20)
                    walk_age[uq] = 0
                    walk_entry[uq] = nday
                nq += take
                nk += take
                if nk >= ncount:
                    ncount = -1
                    ng += 1
                    if ng == G:
                        ng = 0
                        nday += 1
        if nq > 0:
            # ---- The walks' visits, in rounds over the walks still going (at first all nq),
            # each in three loops: the draws, the exit days (a spell's exit day capped at
            # end_off + 1, and its bin row), then destinations, compaction and each walk's last
            # visit so far in last_visit. An open deal's first spell is conditioned on its age.
            m = nq
            steps = np.int64(0)
            visits = 0
            while m > 0 and visits < MAX_STEPS:
                steps += m
                if visits > 0:  # the fill drew the first visits
                    for j in range(m):
                        draws[_U(j)] = mix64(walk_state[_U(j)])
                if visits == 0 and first_kind != FIRST_FRESH:
                    for j in range(m):
                        h32 = np.int64(hi32(draws[_U(j)]))
                        if first_kind == FIRST_AGED:
                            d, row = spell_aged(c0, h32, s_prev, dlast, room0, deal_thr, deal_guide)
                        else:
                            d, row = spell_old(c0, a, h32)
                        exit_code[_U(j)] = (min(day0 + d, end_off + 1) << 20) | row
                else:
                    for j in range(m):
                        uj = _U(j)
                        code = walk_code[uj]
                        if mix_thin:  # every spell by its age (a > 0: going on after a thinned exit)
                            day = walk_entry[uj]
                            d, row = spell_cont((code >> 20) & 0xFFFFFF, walk_age[uj], np.int64(hi32(draws[uj])),
                                                end_off - day)
                        else:
                            day = code & 0xFFFFF
                            d, row = spell_fresh((code >> 20) & 0xFFFFFF, np.int64(hi32(draws[uj])), end_off - day)
                        exit_code[uj] = (min(day + d, end_off + 1) << 20) | row
                m2 = 0
                for j in range(m):
                    uj = _U(j)
                    code = walk_code[uj]
                    q = code >> 44
                    uq = _U(q)
                    e = exit_code[uj]
                    day = e >> 20
                    if mix_thin:
                        # The trial's shock level (walk q's trial for open deals, the unit's trial for new
                        # ones); a thinned exit (k = -1) leaves the spell going on, a day older, in its cell.
                        z = tlevel[_U(tb0 + q)] if kind == UNIT_DEALS else tlevel[_U(tt)]
                        cell = (code >> 20) & 0xFFFFFF
                        k = destination_mixed(e & 0xFFFFF, np.int64(lo32(draws[uj])), day, z)
                        um = _U(m2)
                        walk_state[um] = walk_state[uj] + GOLDEN
                        # Branch-free: thin = 1 keeps the spell (its code, entry, age a day older).
                        thin = np.int64(k < 0)
                        kk = k + thin * (cell - base_cell[uq] - k)  # thinned: the stage it is in
                        entry = walk_entry[uj]
                        last_visit[uq] = (day << 40) | (kk << 24) | cell
                        walk_code[um] = code + (1 - thin) * (((q << 44) | ((base_cell[uq] + kk) << 20) | day) - code)
                        walk_entry[um] = entry + (1 - thin) * (day - entry)
                        walk_age[um] = thin * (day - entry + 1)
                        m2 += (day <= end_off) & ((thin == 1) | (kk < S))
                    else:
                        if mix_on:  # nothing thinned: the plain draw with the month's and the shock's fb
                            z = tlevel[_U(tb0 + q)] if kind == UNIT_DEALS else tlevel[_U(tt)]
                            k = destination_shock(e & 0xFFFFF, np.int64(lo32(draws[uj])), day, z)
                        else:
                            k = destination(e & 0xFFFFF, np.int64(lo32(draws[uj])))
                        last_visit[uq] = (day << 40) | (k << 24) | ((code >> 20) & 0xFFFFFF)
                        um = _U(m2)
                        walk_state[um] = walk_state[uj] + GOLDEN
                        walk_code[um] = (q << 44) | ((base_cell[uq] + k) << 20) | day
                        m2 += (day <= end_off) & (k < S)
                m = m2
                visits += 1
            # Walks capped at MAX_STEPS visits stay open in the cell they moved to.
            for j in range(m):
                code = walk_code[_U(j)]
                last_visit[_U(code >> 44)] = ((end_off + 1) << 40) | ((code >> 20) & 0xFFFFFF)
            # ---- Booking.
            if kind == UNIT_DEALS:
                # One deal in nq trials: sort the walks by outcome, then each trial's slab
                # row gets at most one term per deal, in deal order (skipping a zero term
                # leaves a float sum unchanged). Total wins per trial are summed from the
                # period wins in the merge.
                nw = 0
                nl = TB
                no = 2 * TB
                for q in range(nq):
                    e = last_visit[_U(q)]
                    day = e >> 40
                    k = (e >> 24) & 0xFFFF
                    inw = (day >= start_off) & (day <= end_off)
                    booked[_U(nw)] = (q << 32) | day
                    nw += inw & (k == S)
                    booked[_U(nl)] = q
                    nl += inw & (k > S)
                    booked[_U(no)] = (q << 16) | ((e & 0xFFFFFF) - base)
                    no += day > end_off
                bf = buf_f[idx]
                bi = buf_i[idx]
                if deal_pool_n > 0:  # a campaign deal: its amount in each trial, from draw MAX_STEPS
                    for q in range(nq):
                        x = mix64(stream_key(tkeys[_U(tb0 + q)], sid) + _AMOUNT_DRAW)
                        new_amount[_U(q)] = d_pool[_U(deal_pool0 + pick_index(lo32(x), deal_pool_n))] * amount
                for j in range(nw):
                    e = booked[_U(j)]
                    q = e >> 32
                    utt = _U(tb0 + q)
                    day = e & 0xFFFFFFFF
                    p = _U(day_period[_U(day)])
                    amt = new_amount[_U(q)] if deal_pool_n > 0 else amount
                    bf[utt, 0] += amt
                    bf[utt, 1 + p] += amt
                    bf[utt, _U(1 + P + g)] += amt
                    bi[utt, 2 + p] += 1
                    bi[utt, _U(2 + P + g)] += 1
                    if W > 0:
                        deal_hist[i, _U(day - start_off)] += 1
                for j in range(TB, nl):
                    bi[_U(tb0 + booked[_U(j)]), 1] += 1
                for j in range(2 * TB, no):
                    e = booked[_U(j)]
                    q = e >> 16
                    utt = _U(tb0 + q)
                    s = e & 0xFFFF
                    bf[utt, _U(fc0 + s)] += new_amount[_U(q)] if deal_pool_n > 0 else amount
                    bi[utt, _U(fc0 + 1 + s)] += 1
                won_trials += nw
                lost_trials += nl - TB
                steps_blk += steps
            else:
                # New deals of one trial, in arrival order: every field of its slab row gets its
                # terms in that order. Sorting by outcome keeps that order within each outcome,
                # and each field takes terms of one outcome only; counts need no order.
                nw = 0
                nl = 0
                no = 2 * TB
                for q in range(nq):
                    e = last_visit[_U(q)]
                    day = e >> 40
                    k = (e >> 24) & 0xFFFF
                    inw = (day >= start_off) & (day <= end_off)
                    booked[_U(nw)] = q
                    nw += inw & (k == S)
                    nl += inw & (k > S)
                    booked[_U(no)] = q
                    no += day > end_off
                bf = buf_f[nb, tt]
                bi = buf_i[nb, tt]
                for j in range(nw):
                    uq = _U(booked[_U(j)])
                    amt = new_amount[uq]
                    p = _U(day_period[_U(last_visit[uq] >> 40)])
                    gg = _U(new_group[uq])
                    bf[0] += amt
                    bf[1 + p] += amt
                    bf[1 + P + gg] += amt
                    bi[2 + p] += 1
                    bi[2 + P + gg] += 1
                bi[0] += nw
                bi[1] += nl
                for j in range(2 * TB, no):
                    uq = _U(booked[_U(j)])
                    s = _U((last_visit[uq] & 0xFFFFFF) - base_cell[uq])
                    bf[fc0 + s] += new_amount[uq]
                    bi[fc0 + 1 + s] += 1
                steps_t += steps
        # ---- Advance.
        if kind == UNIT_DEALS:
            tb0 += nq
            if tb0 >= tc:
                deal_won[i] += won_trials
                deal_lost[i] += lost_trials
                i += 1
                tb0 = 0
        elif trial_done:
            work_new[tt, 0] = n_new
            work_new[tt, 1] = steps_t
            tt += 1
            new_trial = True
    if kind == UNIT_DEALS:
        work[idx, 0] = (hi - lo) * tc
        work[idx, 1] = steps_blk
