"""The njit Monte Carlo kernel: arrays in, arrays out, nothing else.

Contract (the engine builds every input; nothing here checks them):

- ``KernelTables``, the compact form of ``StageTables`` for one window (engine.compact_stage_tables):
  ``surv`` float64 [L_total], ``day_bin``, ``tail_bin`` int32 as in docs/kernel_contract.md;
  ``log1m_h`` float64 [C] = log1p(-tail_h) (-inf for h = 1). Exit days in integers: for the high
  32 bits ``hi`` of a draw, ``hi <= thr(d) = 2**32 - ceil(S(d) 2**32)`` exactly when
  ``S(d) <= 1 - hi / 2**32``, so a fresh spell (age 0) exits on the first day with ``hi <= thr``
  (the contract's rule). Only exits on days ``<= end_off`` after a spell's entry can fall in the
  window (entries are on days >= 0), so each cell keeps ``Lw = min(L_c, end_off + 1)`` days and a
  sentinel ``thr = 2**32`` for "later": after the window when the table was cut, the tail (drawn
  in floats as the contract says) when not. ``ctab`` int64 [C * cell_stride] holds per cell c,
  from ``c * cell_stride``, its guide (``2**guide_bits`` entries over ``hi >> (32 - guide_bits)``,
  Chen and Asau's indexed search) and from ``wthr_base`` its ``Lw + 1`` thresholds. A guide entry
  is ``d << GUIDE_DAY_SHIFT | row(d + 1) << GUIDE_ROW_BITS | row(d)``: every ``hi`` of the bucket
  exits on its first exit day d or on d + 1, decided by one comparison ``hi > thr(d)`` without a
  branch, unless the flag ``GUIDE_SLOW`` is set (the bucket straddles two day boundaries, or may
  reach an uncut table's tail): then a scan (``spell_slow``). ``cell_hdr`` int64 [C, 8]: region
  start, Lw, table offset into surv/day_bin, 0, L_c. Destinations: ``dest_k`` / ``dest_thr``
  int64 [n_bins, >= 4]: per bin the destinations with a positive share, most likely first (ties:
  lower index), and cumulative thresholds floor(cumsum(p) 2**32 + 0.5), the last positive one
  2**32, padded with 2**32; ``n_dest`` the most positive shares in a row. The destination of the
  low 32 bits ``x`` is ``dest_k[row, #{m < n_dest - 1: thr[m] <= x}]``, the first entry with
  ``x < thr``; when ``n_dest <= 4``, ``dest_fast`` int64 [n_bins * 4] holds each row's first three
  thresholds and its four destinations packed in 16 bits each.
- Days are int offsets from as_of (day 0). A deal of age ``a`` and start ``s`` entered its stage
  on day ``s - a``. ``KernelWindow.day_period`` int32 [end_off + 1] maps a day to its output
  period (-1 before ``start_off``).
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
  the kernel turns that rule into exact integer thresholds and a guide once per deal and chunk,
  over the days its first exit can still fall in the window (see deal_tables).

Outputs per trial, two row-major matrices so that blocks and the merge loop over fields uniformly:
``out_f`` float64 [T, 1 + P + G + S] = revenue | period revenue [P] | group revenue [G] |
carried amount [S]; ``out_i`` int32 [T, 2 + P + G + S] = wins | lost | period wins [P] |
group wins [G] | carried deals [S]; ``out_new_f`` / ``out_new_i`` [T]: revenue and wins of new
deals alone (also in the totals). Per open deal: trials won / lost in the window and a histogram
of win days [n, W].

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
  still going and each walk's last visit so far (``fin``). No branch depends on a random outcome
  (lists grow by 0 or 1 per walk) and each loop's dependency chain is short, so the walks of a
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
loops index with unsigned integers, which spares numba's negative-index wraparound code. numba's
cache watches kernels.py only, while the kernels compile rng.py into themselves:
``refresh_stale_cache`` flushes it when either file changed.
"""

from __future__ import annotations

import hashlib
import math
import sys
from pathlib import Path
from typing import NamedTuple

import numpy as np
from numba import njit, prange

from forecaster import rng as _rng
from forecaster.rng import (
    NJIT,
    GOLDEN,
    GOLDEN2,
    NJIT_PARALLEL,
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

MAX_STEPS = 64  # stage visits per deal and trial; then the deal counts as still open
OUT_WON = 0  # walk outcomes (tests/naive.py)
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
DEAL_GUIDE_BITS = 9
DEAL_GUIDE_SIZE = 1 << DEAL_GUIDE_BITS
# Guide entries (engine.pack_guide): bin rows of days d and d + 1 in GUIDE_ROW_BITS each, d from
# GUIDE_DAY_SHIFT, and a flag bit for buckets that need the slow path.
GUIDE_ROW_BITS = 20
GUIDE_ROW_MASK = (1 << GUIDE_ROW_BITS) - 1
GUIDE_DAY_SHIFT = 2 * GUIDE_ROW_BITS
GUIDE_SLOW_BIT = 62
GUIDE_SLOW = 1 << GUIDE_SLOW_BIT
GUIDE_DAY_MASK = (1 << (GUIDE_SLOW_BIT - GUIDE_DAY_SHIFT)) - 1
# Index of each domain's base key in the ``keys`` argument.
KEY_OPEN, KEY_GAMMA, KEY_COUNT, KEY_NEW = 0, 1, 2, 3


class KernelTables(NamedTuple):
    """Compact stage tables (module docstring); built by engine.compact_stage_tables."""

    surv: np.ndarray
    ctab: np.ndarray
    cell_stride: int
    wthr_base: int
    cell_hdr: np.ndarray
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
    ``dest_thr``; ``n_entry`` the most entry stages with a positive share in a group) in place of
    entry_p, ``amount_mult`` scalar, ``day_weekday``/``day_moq`` int32
    [end_off + 1]; ``on`` False skips new deals (the arrays may then be empty)."""

    on: bool
    rate: np.ndarray
    weekday_factor: np.ndarray
    moq_factor: np.ndarray
    gamma_shape: np.ndarray
    entry_k: np.ndarray
    entry_thr: np.ndarray
    n_entry: int
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

    buf_f float64 / buf_i int32 [nb + 1, tc_max, F]: per-block partial sums of the chunk's trials
    (row nb: new deals); gmul float64 [tc_max, G]; work int64 [nb, 2], work_new int64 [tc_max, 2]:
    (walks, visits); deal_won, deal_lost int32 [n]; deal_hist int32 [n, W] (W = 0: not tracked);
    out_f float64 [T, 1 + P + G + S], out_i int32 [T, 2 + P + G + S], out_new_f / out_new_i [T];
    tkeys uint64 [tc_max]: the chunk's trial keys (open-deal domain).
    Batch scratch [units, TB] per parallel unit: act_state uint64 (the walks' next draw states,
    key + (v + 1) GOLDEN), xs uint64 (the round's draws), sp int64 ((exit day << 20) | bin row;
    a new deal's draw 0 while its batch fills),
    act_code int64 ((walk q << 44) | (cell << 20) | entry day of the spell) of the walks still
    going, fin int64 per walk ((last day << 40) | (destination << 24) | cell), ends int64 [units,
    3 TB] (walks sorted by outcome), bq int64 (base cell g S per walk), gq int64 and amq float64
    (a new deal's group and amount); dguide int64 [units, DEAL_GUIDE_SIZE] and dthr int64
    [units, max L_c + 1]: the current deal's first-spell tables (deal_tables).
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
    xs: np.ndarray
    sp: np.ndarray
    act_code: np.ndarray
    fin: np.ndarray
    ends: np.ndarray
    bq: np.ndarray
    gq: np.ndarray
    amq: np.ndarray
    dguide: np.ndarray
    dthr: np.ndarray


def n_deal_blocks(n_deals: int) -> int:
    """Number of deal blocks: a function of the deal count only (results must not depend on threads)."""
    if n_deals == 0:
        return 0
    return min(MAX_DEAL_BLOCKS, -(-n_deals // MIN_BLOCK_DEALS))


@njit(**NJIT)
def n_trial_blocks(n_trials):
    """Units of new-deal work per chunk (any split gives the same results)."""
    return min(MAX_DEAL_BLOCKS, n_trials)


@njit(**NJIT)
def unit_of(u, nb, nr):
    """(kind, index) of parallel unit ``u``: deal blocks (kind 0) and trial blocks (kind 1)
    interleaved, so that a static split of the units between threads gives each some of both."""
    u = np.int64(u)
    m = np.int64(min(nb, nr))
    if u < 2 * m:
        kind, i = u & 1, u >> 1
    elif nb > nr:
        kind, i = 0, u - m
    else:
        kind, i = 1, u - m
    # Neighbouring units take distant blocks (i -> i * stride mod count, a bijection), so that any
    # contiguous slice of units spreads over the deals (which callers often sort, e.g. by age).
    count = nb if kind == 0 else nr
    return kind, (i * spread_stride(count)) % max(count, 1)


@njit(**NJIT)
def spread_stride(n):
    """The largest stride <= 0.618 n that is coprime with n (1 for n <= 2)."""
    s = max(np.int64(n * 0.618), 1)
    while s > 1:
        a, b = n, s
        while b:
            a, b = b, a % b
        if a == 1:
            return s
        s -= 1
    return np.int64(1)


def n_float_fields(n_periods: int, n_groups: int, n_stages: int) -> int:
    return 1 + n_periods + n_groups + n_stages


def n_int_fields(n_periods: int, n_groups: int, n_stages: int) -> int:
    return 2 + n_periods + n_groups + n_stages


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
    kind, idx = unit_of(u, nb, nr)  # 0: deal block idx, 1: trial block idx
    surv = tab.surv
    ctab = tab.ctab
    cstride = _U(tab.cell_stride)
    wbase = tab.wthr_base
    cell_hdr = tab.cell_hdr
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

    def deal_tables(c, a, s_prev, dlast, tail_exact, dthr_b, dguide_b):
        # One open deal (cell c, age 0 < a < L) walks all trials of a chunk from the same state, so
        # its first-spell rule is turned into integers once: dthr_b[d] = the largest hi with
        # S(d) <= S(a-1) (1 - hi / 2**32) in floats, exactly as the contract computes the target
        # (-1: none), for d = a .. dlast (the table's last day, or the window's last if that comes
        # first), a sentinel 2**32 at dlast + 1, and a guide over hi packed as the cells' (see
        # engine.pack_guide). With m = 2**32 - hi, 1 - hi / 2**32 is exactly m / 2**32, and the
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
            dthr_b[d] = thr
        dthr_b[dlast + 1] = TWO_32_INT
        # Each day d owns the buckets from the one after the previous day's last up to the one
        # holding its threshold: all but that last are pure; that last one exits on d or d + 1
        # unless d + 1's threshold is inside it too (slow).
        tail_row = np.int64(tail_bin[c])
        jp = -1
        for d in range(a, dlast + 2):
            t = dthr_b[d]
            j1 = min(t >> dshift, DEAL_GUIDE_SIZE - 1)
            if j1 <= jp:
                continue
            row_a = np.int64(day_bin[off + d]) if d <= dlast else tail_row
            ent = (np.int64(d) << GUIDE_DAY_SHIFT) | row_a
            if tail_exact and d > dlast:
                ent |= GUIDE_SLOW
            for j in range(jp + 1, j1):
                dguide_b[j] = ent
            top = ((j1 + 1) << dshift) - 1
            if t < top:  # d <= dlast here: the sentinel 2**32 passes every top
                row_b = np.int64(day_bin[off + d + 1]) if d < dlast else tail_row
                ent |= row_b << GUIDE_ROW_BITS
                if dthr_b[d + 1] < top or (tail_exact and d == dlast):
                    ent |= GUIDE_SLOW
            dguide_b[j1] = ent
            jp = j1

    def spell_aged(c, hi, s_prev, dlast, room, dthr_b, dguide_b):
        # Age 0 < a < L, on the deal's tables filled by deal_tables.
        e = dguide_b[_U(hi >> dshift)]
        d = e >> GUIDE_DAY_SHIFT
        if e < GUIDE_SLOW:
            step = hi > dthr_b[_U(d)]
            return d + step, (e >> (np.int64(step) * GUIDE_ROW_BITS)) & GUIDE_ROW_MASK
        d &= GUIDE_DAY_MASK
        while hi > dthr_b[_U(d)]:
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

    def destination(row, x32):
        # Thresholds rise along the row: counting those <= x32 finds the first one above it,
        # without a data-dependent branch.
        r = _U(row)
        if n_cmp <= 3:  # the usual funnel: three thresholds, then the 4 outcomes in 16 bits each
            r4 = r << 2
            j = (x32 >= dest_fast[r4]) + (x32 >= dest_fast[r4 + 1]) + (x32 >= dest_fast[r4 + 2])
            return (dest_fast[r4 + 3] >> (np.int64(j) << 4)) & 0xFFFF
        j = 0
        for m in range(n_cmp):
            j += x32 >= dest_thr[r, _U(m)]
        return dest_k[r, _U(j)]

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
    work = bufs.work
    deal_won = bufs.deal_won
    deal_lost = bufs.deal_lost
    deal_hist = bufs.deal_hist
    tkeys = bufs.tkeys
    TB = bufs.act_code.shape[1]
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
    ast = bufs.act_state[u]  # states of the walks' next draws
    act_code = bufs.act_code[u]  # (q << 44) | (cell << 20) | day of the walks still going
    xs = bufs.xs[u]  # the visit's draw
    sp = bufs.sp[u]  # (exit day << 20) | bin row, exit day capped at end_off + 1
    fin = bufs.fin[u]  # per walk q its last visit: (day << 40) | (destination << 24) | cell
    ends = bufs.ends[u]  # open-deal booking lists: won [0, TB), lost [TB, 2 TB), open [2 TB, 3 TB)
    bq = bufs.bq[u]  # per walk: its base cell g S
    gq = bufs.gq[u]  # new deals: group and amount
    amq = bufs.amq[u]
    dthr_b = bufs.dthr[u]
    dguide_b = bufs.dguide[u]
    # Deal block: deals lo .. hi - 1, each in trial batches from tb0.
    lo = (idx * n) // max(nb, 1)
    hi = ((idx + 1) * n) // max(nb, 1)
    i = lo if kind == 0 else hi
    tb0 = 0
    if kind == 0:
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
    day0 = np.int64(0)
    room0 = np.int64(0)
    dlast = np.int64(0)
    mode = 0
    won_trials = 0
    lost_trials = 0
    # Trial block: trials tlo .. thi - 1, each its arrivals by (day, group, k).
    tlo = (idx * tc) // max(nr, 1)
    thi = ((idx + 1) * tc) // max(nr, 1)
    tt = tlo if kind == 1 else thi
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
        # ---- Fill a batch: per walk q the state of its first visit's draw ast[q], its code
        # (q, cell, entry day of its spell) in act_code[q] and its base cell bq[q].
        nq = 0
        if kind == 0:
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
                day0 = np.int64(d_start[i]) - a  # the day the deal entered its current stage
                room0 = end_off - day0  # its first spell's last exit day inside the window
                L0 = cell_hdr[c0, 4]
                mode = 0 if a == 0 else (1 if a < L0 else 2)
                dlast = min(L0 - 1, room0)
                if mode == 1:
                    deal_tables(c0, a, s_prev, dlast, dlast < room0, dthr_b, dguide_b)
                won_trials = 0
                lost_trials = 0
            nq = min(TB, tc - tb0)
            code0 = (c0 << 20) | max(day0, 0)  # an aged first spell takes day0 from the deal
            for q in range(nq):  # independent hashes: vectorised
                uq = _U(q)
                state = stream_key(tkeys[_U(tb0 + q)], sid) + GOLDEN  # draw 0 of its stream
                xs[uq] = mix64(state)
                ast[uq] = state
                act_code[uq] = (q << 44) | code0
                bq[uq] = base
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
            mode = 0
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
                    sp[uq] = np.int64(mix64(key + GOLDEN))  # draw 0: entry stage (high 32 bits), amount
                    ast[uq] = key + GOLDEN2  # draw 1: its first visit
                    xs[uq] = mix64(key + GOLDEN2)
                for r in range(take):
                    uq = _U(nq + r)
                    x = np.uint64(sp[uq])
                    x32 = hi32(x)
                    j = 0
                    for jj in range(n_entry_cmp):  # count the thresholds <= x32: no branch
                        j += x32 >= entry_thr[ng, jj]
                    amq[uq] = amount_pool[pool0 + pick_index(lo32(x), pool_n)] * amount_mult
                    gq[uq] = ng
                    bq[uq] = base_g
                    act_code[uq] = (((nq + r) << 44) | code_g) + (np.int64(entry_k[ng, j]) << 20)
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
            # visit so far in fin. An open deal's first spell is conditioned on its age.
            m = nq
            steps = np.int64(0)
            visits = 0
            while m > 0 and visits < MAX_STEPS:
                steps += m
                if visits > 0:  # the fill drew the first visits
                    for j in range(m):
                        xs[_U(j)] = mix64(ast[_U(j)])
                if visits == 0 and mode != 0:
                    for j in range(m):
                        h32 = np.int64(hi32(xs[_U(j)]))
                        if mode == 1:
                            d, row = spell_aged(c0, h32, s_prev, dlast, room0, dthr_b, dguide_b)
                        else:
                            d, row = spell_old(c0, a, h32)
                        sp[_U(j)] = (min(day0 + d, end_off + 1) << 20) | row
                else:
                    for j in range(m):
                        uj = _U(j)
                        code = act_code[uj]
                        day = code & 0xFFFFF
                        d, row = spell_fresh((code >> 20) & 0xFFFFFF, np.int64(hi32(xs[uj])), end_off - day)
                        sp[uj] = (min(day + d, end_off + 1) << 20) | row
                m2 = 0
                for j in range(m):
                    uj = _U(j)
                    code = act_code[uj]
                    q = code >> 44
                    uq = _U(q)
                    e = sp[uj]
                    day = e >> 20
                    k = destination(e & 0xFFFFF, np.int64(lo32(xs[uj])))
                    fin[uq] = (day << 40) | (k << 24) | ((code >> 20) & 0xFFFFFF)
                    um = _U(m2)
                    ast[um] = ast[uj] + GOLDEN
                    act_code[um] = (q << 44) | ((bq[uq] + k) << 20) | day
                    m2 += (day <= end_off) & (k < S)
                m = m2
                visits += 1
            # Walks capped at MAX_STEPS visits stay open in the cell they moved to.
            for j in range(m):
                code = act_code[_U(j)]
                fin[_U(code >> 44)] = ((end_off + 1) << 40) | ((code >> 20) & 0xFFFFFF)
            # ---- Booking.
            if kind == 0:
                # One deal in nq trials: sort the walks by outcome, then each trial's slab
                # row gets at most one term per deal, in deal order (skipping a zero term
                # leaves a float sum unchanged). Total wins per trial are summed from the
                # period wins in the merge.
                nw = 0
                nl = TB
                no = 2 * TB
                for q in range(nq):
                    e = fin[_U(q)]
                    day = e >> 40
                    k = (e >> 24) & 0xFFFF
                    inw = (day >= start_off) & (day <= end_off)
                    ends[_U(nw)] = (q << 32) | day
                    nw += inw & (k == S)
                    ends[_U(nl)] = q
                    nl += inw & (k > S)
                    ends[_U(no)] = (q << 16) | ((e & 0xFFFFFF) - base)
                    no += day > end_off
                bf = buf_f[idx]
                bi = buf_i[idx]
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
                steps_blk += steps
            else:
                # New deals of one trial, in arrival order: every field of its slab row gets its
                # terms in that order. Sorting by outcome keeps that order within each outcome,
                # and each field takes terms of one outcome only; counts need no order.
                nw = 0
                nl = 0
                no = 2 * TB
                for q in range(nq):
                    e = fin[_U(q)]
                    day = e >> 40
                    k = (e >> 24) & 0xFFFF
                    inw = (day >= start_off) & (day <= end_off)
                    ends[_U(nw)] = q
                    nw += inw & (k == S)
                    nl += inw & (k > S)
                    ends[_U(no)] = q
                    no += day > end_off
                bf = buf_f[nb, tt]
                bi = buf_i[nb, tt]
                for j in range(nw):
                    uq = _U(ends[_U(j)])
                    amt = amq[uq]
                    p = _U(day_period[_U(fin[uq] >> 40)])
                    gg = _U(gq[uq])
                    bf[0] += amt
                    bf[1 + p] += amt
                    bf[1 + P + gg] += amt
                    bi[2 + p] += 1
                    bi[2 + P + gg] += 1
                bi[0] += nw
                bi[1] += nl
                for j in range(2 * TB, no):
                    uq = _U(ends[_U(j)])
                    s = _U((fin[uq] & 0xFFFFFF) - bq[uq])
                    bf[fc0 + s] += amq[uq]
                    bi[fc0 + 1 + s] += 1
                steps_t += steps
        # ---- Advance.
        if kind == 0:
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
    if kind == 0:
        work[idx, 0] = (hi - lo) * tc
        work[idx, 1] = steps_blk


@njit(**NJIT_PARALLEL)
def simulate_chunk_nb(t0, tc, keys, tab, deals, arr, win, bufs):
    """Simulate trials ``t0 .. t0 + tc - 1``: open deals and new deals in parallel units, then the
    merge (module docstring).

    ``keys`` uint64 [4]: base keys of the domains (KEY_OPEN, KEY_GAMMA, KEY_COUNT, KEY_NEW).
    Writes ``bufs.out_*`` rows ``t0 .. t0 + tc - 1`` and ``bufs.work*``; adds to the per-deal
    accumulators.
    """
    tkeys = bufs.tkeys
    for tt in range(tc):
        tkeys[tt] = trial_key(keys[KEY_OPEN], t0 + tt)
    nb = bufs.work.shape[0]
    nr = n_trial_blocks(tc) if arr.on else 0
    for u in prange(nb + nr):
        # The casts give this call one signature in numba's typing of the loop and in its
        # parallel lowering (where the index is unsigned): unit_nb compiles once, not twice.
        unit_nb(np.int64(u), np.int64(nb), np.int64(nr), np.int64(t0), np.int64(tc), keys, tab, deals, arr, win, bufs)

    # Merge the slabs in a fixed order, trials in parallel.
    buf_f = bufs.buf_f
    buf_i = bufs.buf_i
    P = win.n_periods
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


def refresh_stale_cache(module, sources) -> bool:
    """Flush the on-disk numba cache of ``module``'s cached functions when ``sources`` changed.

    numba keys a cached function on its own file's timestamp, but the kernels compile rng.py's
    functions into themselves: after an edit of rng.py alone, numba would load machine code built
    from the old rng.py. A hash of all the sources is kept beside the cache; when it differs,
    the module's cache indexes are flushed (the next call compiles and caches afresh). Returns
    True when it flushed. Never raises: an unwritable cache directory is one numba cannot use
    either.
    """
    try:
        from numba.core.dispatcher import Dispatcher

        digest = hashlib.sha256(b"".join(Path(f).read_bytes() for f in sources)).hexdigest()
        funcs = [
            f for f in vars(module).values()
            if isinstance(f, Dispatcher) and f.py_func.__module__ == module.__name__ and f._cache.cache_path
        ]  # fmt: skip
        if not funcs:
            return False
        stamp = Path(funcs[0]._cache.cache_path) / f"{module.__name__}.sources.sha256"
        if stamp.exists() and stamp.read_text() == digest:
            return False
        for f in funcs:
            f._cache.flush()
        stamp.write_text(digest)
        return True
    except Exception:  # pragma: no cover - read-only or missing cache directory
        return False


refresh_stale_cache(sys.modules[__name__], [__file__, _rng.__file__])
