"""Orchestration: validated tables -> compact kernel inputs -> kernel chunks -> SimResult.

``simulate`` checks its inputs once, converts the natural tables (docs/kernel_contract.md) into the
kernel's compact form for the window (integer exit thresholds of the days a window can reach with
guide tables for the exit day, integer thresholds sorted most likely first for destinations and
entry stages; see forecaster.kernels), and runs the kernel in chunks of trials, calling
``progress(done, total)`` between chunks. Chunking never changes results: every random number is
keyed by (seed, trial, stream) and every sum has an order fixed by the trial and the deal count
(see forecaster.kernels).

No file I/O, YAML or CLI here; model -> tables wiring lives elsewhere.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

from forecaster import kernels as K
from forecaster import rng
from forecaster.tables import ArrivalTables, OpenDeals, StageTables

# Slabs of per-trial partial sums are (deal blocks + 1) x chunk trials x fields; keep them near this.
SLAB_BYTES = 32 << 20
MAX_CHUNK_TRIALS = 4096
# Walks the kernel runs together: one open deal in this many trials, or this many new deals of a
# trial (its scratch is parallel units x this). 256 to 1024 measured within noise.
BATCH_TRIALS = 512
# Guide tables: 2**bits buckets per cell over the high 32 bits of a draw, about 2**EXTRA per table
# day a window can reach (fewer buckets straddling two days), kept small enough for L2.
GUIDE_MIN_BITS = 6
GUIDE_MAX_BITS = 12
GUIDE_EXTRA_BITS = 3
GUIDE_MAX_BYTES = 256 << 10
# Guide entries: bin rows of day d and d + 1 in 20 bits each, d from bit 40, a flag at bit 62.
GUIDE_ROW_BITS = K.GUIDE_ROW_BITS
GUIDE_ROW_MASK = K.GUIDE_ROW_MASK
GUIDE_DAY_SHIFT = K.GUIDE_DAY_SHIFT
GUIDE_SLOW_BIT = K.GUIDE_SLOW_BIT
_TWO32 = 1 << 32
# The kernel packs a stage and a destination into 16 bits each.
MAX_STAGES = (1 << 16) - 2
MAX_CELLS = 1 << 24  # and a cell in 24 bits


@dataclass(frozen=True, eq=False)
class SimResult:
    """Raw results of ``simulate``. T trials, P periods, G groups, S open stages, n open deals,
    W = end_off - start_off + 1 window days. Amounts are in the deals' currency; days are offsets
    from as_of. New deals are included in every per-trial figure; ``new_*`` isolates them.

    Per trial:
      revenue          float64 [T]     won amount with a win day in [start_off, end_off]
      won_deals        int32   [T]     deals won in the window
      period_revenue   float64 [T, P]  by period p: period_start[p] <= win day < period_start[p + 1]
      period_wins      int32   [T, P]
      group_revenue    float64 [T, G]
      group_wins       int32   [T, G]
      new_revenue      float64 [T]     revenue from deals that arrive during the simulation
      new_wins         int32   [T]
      lost_deals       int32   [T]     deals lost in the window
      carried_deals    int32   [T, S]  deals still open after end_off, by stage
      carried_amount   float64 [T, S]
    Per open deal (accumulated over trials):
      deal_won_trials  int32 [n]      trials in which the deal is won in the window
      deal_lost_trials int32 [n]      trials in which it is lost in the window
      deal_win_hist    int32 [n, W]   trials won on each window day (column = day - start_off);
                                      shape [n, 0] when simulate(track_win_days=False)
    Work: deal_trials (deal walks, open and new), deal_steps (stage visits simulated).
    """

    n_trials: int
    seed: int
    start_off: int
    end_off: int
    period_start: np.ndarray
    revenue: np.ndarray
    won_deals: np.ndarray
    period_revenue: np.ndarray
    period_wins: np.ndarray
    group_revenue: np.ndarray
    group_wins: np.ndarray
    new_revenue: np.ndarray
    new_wins: np.ndarray
    lost_deals: np.ndarray
    carried_deals: np.ndarray
    carried_amount: np.ndarray
    deal_won_trials: np.ndarray
    deal_lost_trials: np.ndarray
    deal_win_hist: np.ndarray
    deal_trials: int
    deal_steps: int

    @property
    def deal_p_win(self) -> np.ndarray:
        """float64 [n]: share of trials in which each open deal is won in the window."""
        return self.deal_won_trials / self.n_trials

    @property
    def deal_p_lost(self) -> np.ndarray:
        return self.deal_lost_trials / self.n_trials

    def deal_median_win_off(self) -> np.ndarray:
        """int32 [n]: median win day offset among the trials a deal is won in (the lower median:
        the first day by which at least half of its wins happened); -1 for deals never won."""
        h = self.deal_win_hist
        if h.shape[1] == 0:
            raise ValueError("win days were not tracked (simulate(track_win_days=False))")
        cum = np.cumsum(h, axis=1, dtype=np.int64)
        won = cum[:, -1]
        first = np.argmax(2 * cum >= won[:, None], axis=1)
        return np.where(won > 0, first + self.start_off, -1).astype(np.int32)


# ---------------------------------------------------------------------------------------------
# Compact tables


def exit_thresholds(surv: np.ndarray) -> np.ndarray:
    """int64 ``2**32 - ceil(S(d) * 2**32)``: for a 32-bit integer ``hi``, ``S(d) <= 1 - hi / 2**32``
    exactly when ``hi <= thr(d)`` (both sides are exact in float64), so a fresh spell's exit day is
    the first day with ``hi <= thr``: the contract's rule in integers."""
    return (_TWO32 - np.ceil(surv * float(_TWO32))).astype(np.int64)


def guide_bits_for(n_cells: int, max_days: int) -> int:
    """Buckets per cell: about 8 per table day (few buckets straddle two exit days), within
    GUIDE_MAX_BYTES for all cells so that the guide stays in L2."""
    bits = int(np.ceil(np.log2(max(2, max_days)))) + GUIDE_EXTRA_BITS
    bits = min(GUIDE_MAX_BITS, max(GUIDE_MIN_BITS, bits))
    while bits > GUIDE_MIN_BITS and (n_cells << bits) * 8 > GUIDE_MAX_BYTES:
        bits -= 1
    return bits


def pack_guide(thr: np.ndarray, rows: np.ndarray, n_days: int, tail_exact: bool, bits: int) -> np.ndarray:
    """int64 [2**bits]: one cell's (or deal's) guide over the high 32 bits ``hi`` of a draw.

    ``thr`` int64 [n_days + 1]: exit thresholds of days 0 .. n_days - 1 (the exit day is the first
    with ``hi <= thr``) and a sentinel ``2**32`` for "after day n_days - 1"; ``rows`` [n_days + 1]
    the bin row of each day (any row for the sentinel). Bucket ``j`` holds the ``hi`` in
    ``[j, j + 1) << (32 - bits)``; its entry is ``d << GUIDE_DAY_SHIFT | row(d + 1) << GUIDE_ROW_BITS |
    row(d)`` with d the first exit day of the bucket, and the flag ``GUIDE_SLOW`` when the bucket
    straddles more than one day boundary, or may reach the sentinel while ``tail_exact`` (the
    sentinel is the table's tail, to be drawn in floats, rather than "after the window"). An
    unflagged bucket exits on d or d + 1: the kernel decides with one comparison, no branch.
    """
    width = 1 << (32 - bits)
    lo = np.arange(1 << bits, dtype=np.int64) * width
    top = lo + width - 1
    d = np.searchsorted(thr, lo, side="left")  # the sentinel 2**32 bounds it by n_days
    d1 = np.minimum(d + 1, n_days)
    pure = thr[d] >= top
    slow = ~pure & ~(thr[d1] >= top)
    if tail_exact:
        slow |= (d == n_days) | (~pure & (d + 1 >= n_days))
    r = rows.astype(np.int64)
    return (d.astype(np.int64) << GUIDE_DAY_SHIFT) | (r[d1] << GUIDE_ROW_BITS) | r[d] | (slow.astype(np.int64) << GUIDE_SLOW_BIT)


def window_tables(stage: StageTables, exit_thr: np.ndarray, end_off: int, bits: int):
    """Per cell the part of its table a window can reach: an exit later than ``end_off`` days after
    a spell's entry is after the window for any entry day >= 0, so each cell keeps its days
    ``0 .. Lw - 1`` (``Lw = min(L, end_off + 1)``) and a sentinel: "after the window" when the table
    was cut, the tail when it was not.

    Returns (ctab int64 [C * stride], stride, cell_hdr int64 [C, 8]). Cell c's region
    ``ctab[c * stride :]`` holds its guide (``2**bits`` entries, see pack_guide), then from
    ``2**bits`` the thresholds of days ``0 .. Lw - 1`` and the sentinel ``2**32``: one array and a
    multiply find both, so a stage visit loads no per-cell offsets. cell_hdr row (for the rare
    slow path): region start, Lw, table offset, 0, L.
    """
    C = stage.n_cells
    L = stage.cell_len
    Lw = np.minimum(L, end_off + 1)
    G = 1 << bits
    stride = G + int(Lw.max()) + 1
    ctab = np.full(C * stride, _TWO32, np.int64)
    hdr = np.zeros((C, 8), np.int64)
    for c in range(C):
        off, lw, r0 = int(stage.cell_off[c]), int(Lw[c]), c * stride
        thr = np.r_[exit_thr[off : off + lw], _TWO32]
        rows = np.r_[stage.day_bin[off : off + lw], stage.tail_bin[c]]
        ctab[r0 : r0 + G] = pack_guide(thr, rows, lw, bool(lw == L[c]), bits)
        ctab[r0 + G : r0 + G + lw + 1] = thr
        hdr[c, :5] = (r0, lw, off, 0, L[c])
    return ctab, stride, hdr


def sorted_thresholds(p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows of probabilities [R, K] -> (order int32 [R, K], thr uint64 [R, K]).

    Per row: outcomes with p > 0, most likely first (ties: lower index), cumulative thresholds
    ``floor(cumsum * 2**32 + 0.5)`` capped at ``2**32``, the last positive one set to ``2**32``; the
    unused tail repeats the last entry. A 32-bit uniform ``x`` picks the first entry with
    ``x < thr``. Outcomes with p below 2**-33 may round to zero width. (Vectorised; the cumulative
    sums add in the same order as a loop over the sorted row.)
    """
    p = np.asarray(p, np.float64)
    R, Kn = p.shape
    order = np.argsort(-p, axis=1, kind="stable").astype(np.int32)
    cum = np.cumsum(np.take_along_axis(p, order, axis=1), axis=1)
    thr = np.minimum(np.floor(cum * float(_TWO32) + 0.5), float(_TWO32)).astype(np.uint64)
    last = (p > 0.0).sum(axis=1) - 1
    tail = np.arange(Kn)[None, :] >= last[:, None]
    thr[tail] = _TWO32
    order = np.where(tail, order[np.arange(R), last][:, None], order).astype(np.int32)
    return order, thr


def compact_stage_tables(stage: StageTables, end_off: int) -> K.KernelTables:
    """StageTables (checked) -> the kernel's compact form for a window ending on ``end_off``."""
    if int(stage.cell_len.max()) >= 1 << (GUIDE_SLOW_BIT - GUIDE_DAY_SHIFT) or stage.bin_p.shape[0] > GUIDE_ROW_MASK:
        raise ValueError(
            f"stage tables too large for the kernel: {int(stage.cell_len.max())} days in a cell "
            f"(at most {(1 << (GUIDE_SLOW_BIT - GUIDE_DAY_SHIFT)) - 1}), {stage.bin_p.shape[0]} bins (at most {GUIDE_ROW_MASK})"
        )
    exit_thr = exit_thresholds(stage.surv)
    bits = guide_bits_for(stage.n_cells, min(int(stage.cell_len.max()), end_off + 1))
    ctab, stride, cell_hdr = window_tables(stage, exit_thr, end_off, bits)
    log1m_h = np.array([-math.inf if h == 1.0 else math.log1p(-h) for h in stage.tail_h.tolist()], np.float64)
    order, thr = sorted_thresholds(stage.bin_p)
    n_dest = int((stage.bin_p > 0.0).sum(axis=1).max())
    width = max(n_dest, 4)  # the kernel unrolls rows of up to 4 destinations
    if order.shape[1] < width:
        order = np.concatenate([order, np.repeat(order[:, -1:], width - order.shape[1], axis=1)], axis=1)
        thr = np.concatenate([thr, np.full((thr.shape[0], width - thr.shape[1]), _TWO32, np.uint64)], axis=1)
    dest_fast = np.zeros((order.shape[0], 4), np.int64)
    if n_dest <= 4:
        dest_fast[:, :3] = thr[:, :3].astype(np.int64)
        for j in range(4):
            dest_fast[:, 3] |= order[:, j].astype(np.int64) << (16 * j)
    return K.KernelTables(
        surv=np.ascontiguousarray(stage.surv),
        ctab=ctab,
        cell_stride=stride,
        wthr_base=1 << bits,
        cell_hdr=cell_hdr,
        guide_bits=bits,
        log1m_h=log1m_h,
        day_bin=np.ascontiguousarray(stage.day_bin),
        tail_bin=np.ascontiguousarray(stage.tail_bin),
        dest_k=np.ascontiguousarray(order[:, :width].astype(np.int64)),
        dest_thr=np.ascontiguousarray(thr[:, :width].astype(np.int64)),
        dest_fast=dest_fast.ravel(),
        n_dest=n_dest,
        n_stages=stage.n_stages,
    )


def deal_s_prev(stage: StageTables, deals: OpenDeals) -> np.ndarray:
    """float64 [n]: S(age - 1) in each deal's cell, 1 for age 0 or an age beyond the table."""
    off = stage.cell_off[deals.cell]
    L = stage.cell_len[deals.cell]
    inside = (deals.age > 0) & (deals.age < L)
    idx = np.where(inside, off + deals.age - 1, 0)
    return np.where(inside, stage.surv[idx], 1.0)


# ---------------------------------------------------------------------------------------------
# Calendar helpers (the engine's callers hold dates as int32 day numbers since 1970-01-01)


def calendar_days(as_of_day: int, end_off: int) -> tuple[np.ndarray, np.ndarray]:
    """(day_weekday, day_moq) int32 [end_off + 1] for day offsets 0 .. end_off from ``as_of_day``
    (days since 1970-01-01): weekday Monday = 0 .. Sunday = 6, month of quarter 0, 1, 2."""
    days = np.arange(as_of_day, as_of_day + end_off + 1, dtype=np.int64)
    weekday = ((days + 3) % 7).astype(np.int32)  # 1970-01-01 was a Thursday
    months = days.astype("datetime64[D]").astype("datetime64[M]").astype(np.int64)  # months since 1970-01
    return weekday, (months % 3).astype(np.int32)


def day_number(date: dt.date) -> int:
    """Days since 1970-01-01."""
    return (date - dt.date(1970, 1, 1)).days


# ---------------------------------------------------------------------------------------------


def _check_window(
    start_off: int, end_off: int, period_start: np.ndarray, n_trials: int, arrivals, day_weekday, day_moq, amount_multiplier_new
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    if not isinstance(n_trials, (int, np.integer)) or n_trials < 1:
        raise ValueError(f"n_trials must be a positive integer, got {n_trials!r}")
    if not 0 <= start_off <= end_off:
        raise ValueError(f"need 0 <= start_off <= end_off, got start_off={start_off}, end_off={end_off}")
    if end_off >= rng.MAX_DAYS:
        raise ValueError(f"end_off must be below {rng.MAX_DAYS} days, got {end_off}")
    ps = np.asarray(period_start)
    if ps.ndim != 1 or ps.shape[0] < 2 or not np.issubdtype(ps.dtype, np.integer):
        raise ValueError(f"period_start must be a 1-d integer array of at least 2 offsets, got {ps!r}")
    if ps[0] != start_off or ps[-1] != end_off + 1 or np.any(np.diff(ps) <= 0):
        raise ValueError(
            "period_start must rise strictly from start_off to end_off + 1 "
            f"({start_off} .. {end_off + 1}), got {ps.tolist()}"
        )
    if arrivals is None:
        return ps.astype(np.int32), None, None
    if not (math.isfinite(amount_multiplier_new) and amount_multiplier_new >= 0.0):
        raise ValueError(f"amount_multiplier_new must be finite and >= 0, got {amount_multiplier_new!r}")
    out = []
    for name, a, hi in (("day_weekday", day_weekday, 7), ("day_moq", day_moq, 3)):
        if a is None:
            raise ValueError(f"{name} is required with arrivals (see engine.calendar_days)")
        a = np.asarray(a)
        if a.shape != (end_off + 1,) or not np.issubdtype(a.dtype, np.integer) or np.any((a < 0) | (a >= hi)):
            raise ValueError(f"{name} must be integers in 0 .. {hi - 1} of shape ({end_off + 1},)")
        out.append(np.ascontiguousarray(a, dtype=np.int32))
    return ps.astype(np.int32), out[0], out[1]


def _kernel_arrivals(arrivals: ArrivalTables | None, wd, mq, amount_multiplier_new: float, n_stages: int) -> K.KernelArrivals:
    if arrivals is None:
        f0, i0 = np.zeros(0), np.zeros(1, np.int64)
        return K.KernelArrivals(
            on=False, rate=f0, weekday_factor=np.zeros((0, 7)), moq_factor=np.zeros((0, 3)), gamma_shape=f0,
            entry_k=np.zeros((0, n_stages), np.int32), entry_thr=np.zeros((0, n_stages), np.uint64), n_entry=1,
            amount_pool=f0, amount_off=i0, amount_mult=1.0,
            day_weekday=np.zeros(0, np.int32), day_moq=np.zeros(0, np.int32),
        )  # fmt: skip
    entry_k, entry_thr = sorted_thresholds(arrivals.entry_p)
    a = arrivals
    c = np.ascontiguousarray  # one array layout, so one compiled signature
    return K.KernelArrivals(
        on=True, rate=c(a.rate), weekday_factor=c(a.weekday_factor), moq_factor=c(a.moq_factor),
        gamma_shape=c(a.gamma_shape), entry_k=entry_k, entry_thr=entry_thr,
        n_entry=int(max(1, (a.entry_p > 0.0).sum(axis=1).max())), amount_pool=c(a.amount_pool),
        amount_off=c(a.amount_off), amount_mult=float(amount_multiplier_new), day_weekday=wd, day_moq=mq,
    )  # fmt: skip


def default_chunk_trials(n_deals: int, n_float: int, n_int: int) -> int:
    """Trials per kernel call: bounded slabs, and progress at least every MAX_CHUNK_TRIALS trials."""
    rows = K.n_deal_blocks(n_deals) + 1
    per_trial = rows * (8 * n_float + 4 * n_int)
    return int(max(1, min(MAX_CHUNK_TRIALS, SLAB_BYTES // per_trial)))


def simulate(
    stage: StageTables,
    deals: OpenDeals,
    *,
    n_trials: int,
    seed: int,
    start_off: int,
    end_off: int,
    period_start: np.ndarray,
    arrivals: ArrivalTables | None = None,
    day_weekday: np.ndarray | None = None,
    day_moq: np.ndarray | None = None,
    amount_multiplier_new: float = 1.0,
    progress: Callable[[int, int], None] | None = None,
    track_win_days: bool = True,
    chunk_trials: int | None = None,
) -> SimResult:
    """Monte Carlo forecast of the window [start_off, end_off] (inclusive day offsets from as_of).

    ``stage``, ``deals``, ``arrivals``: the contract's tables (checked here; ``deals.start``, when
    given, must be <= end_off). ``arrivals=None``
    simulates open deals only; otherwise ``day_weekday`` and ``day_moq`` (int [end_off + 1], see
    ``calendar_days``) are required and new deals arrive on days 0 .. end_off, their amounts drawn
    from the pools times ``amount_multiplier_new``. ``period_start``: int offsets, strictly rising
    from ``start_off`` to ``end_off + 1``. ``seed``: int in [0, 2**64); the only source of
    randomness. ``progress(done, total)`` is called after each chunk of ``chunk_trials`` trials
    (default: bounded memory); neither changes the results.
    """
    stage.check()
    deals.check(stage)
    if stage.n_stages >= MAX_STAGES:
        raise ValueError(f"at most {MAX_STAGES - 1} open stages, got {stage.n_stages}")
    if stage.n_cells >= MAX_CELLS:
        raise ValueError(f"at most {MAX_CELLS - 1} cells (groups x stages), got {stage.n_cells}")
    if arrivals is not None:
        arrivals.check(stage)
        if arrivals.n_groups >= rng.MAX_GROUPS:
            raise ValueError(f"at most {rng.MAX_GROUPS - 1} groups, got {arrivals.n_groups}")
    ps, wd, mq = _check_window(start_off, end_off, period_start, n_trials, arrivals, day_weekday, day_moq, amount_multiplier_new)
    if deals.start is not None and deals.n_deals and int(deals.start.max()) > end_off:
        i = int(np.argmax(deals.start > end_off))
        raise ValueError(f"OpenDeals.start: deal {i} starts on day offset {int(deals.start[i])}, after end_off = {end_off}")
    tab = compact_stage_tables(stage, end_off)

    S, G, P, n = stage.n_stages, stage.n_groups, ps.shape[0] - 1, deals.n_deals
    W = end_off - start_off + 1 if track_win_days else 0
    nf, ni = K.n_float_fields(P, G, S), K.n_int_fields(P, G, S)
    day_period = np.full(end_off + 1, -1, np.int32)
    for p in range(P):
        day_period[ps[p] : ps[p + 1]] = p
    tc_max = chunk_trials if chunk_trials is not None else default_chunk_trials(n, nf, ni)
    tc_max = int(max(1, min(tc_max, n_trials)))
    nb = K.n_deal_blocks(n)
    nu = nb + (K.n_trial_blocks(tc_max) if arrivals is not None else 0)  # parallel units
    tb = BATCH_TRIALS if arrivals is not None else min(BATCH_TRIALS, tc_max)

    bufs = K.KernelBuffers(
        buf_f=np.zeros((nb + 1, tc_max, nf), np.float64),
        buf_i=np.zeros((nb + 1, tc_max, ni), np.int32),
        gmul=np.zeros((tc_max, G), np.float64),
        work=np.zeros((nb, 2), np.int64),
        work_new=np.zeros((tc_max, 2), np.int64),
        deal_won=np.zeros(n, np.int32),
        deal_lost=np.zeros(n, np.int32),
        deal_hist=np.zeros((n, W), np.int32),
        out_f=np.zeros((n_trials, nf), np.float64),
        out_i=np.zeros((n_trials, ni), np.int32),
        out_new_f=np.zeros(n_trials, np.float64),
        out_new_i=np.zeros(n_trials, np.int32),
        tkeys=np.zeros(tc_max, np.uint64),
        act_state=np.zeros((nu, tb), np.uint64),
        xs=np.zeros((nu, tb), np.uint64),
        sp=np.zeros((nu, tb), np.int64),
        act_code=np.zeros((nu, tb), np.int64),
        fin=np.zeros((nu, tb), np.int64),
        ends=np.zeros((nu, 3 * tb), np.int64),
        bq=np.zeros((nu, tb), np.int64),
        gq=np.zeros((nu, tb), np.int64),
        amq=np.zeros((nu, tb), np.float64),
        dguide=np.zeros((nu, K.DEAL_GUIDE_SIZE), np.int64),
        dthr=np.zeros((nu, int(stage.cell_len.max()) + 1), np.int64),
    )
    keys = np.array([rng.domain_key(seed, d) for d in (rng.DOMAIN_OPEN, rng.DOMAIN_GAMMA, rng.DOMAIN_COUNT, rng.DOMAIN_NEW)], np.uint64)
    kdeals = K.KernelDeals(
        cell=np.ascontiguousarray(deals.cell),
        age=np.ascontiguousarray(deals.age),
        amount=np.ascontiguousarray(deals.amount),
        group=np.ascontiguousarray(deals.group),
        sid=np.ascontiguousarray(deals.stream_ids()),
        start=np.ascontiguousarray(deals.starts()),
        s_prev=deal_s_prev(stage, deals),
    )
    karr = _kernel_arrivals(arrivals, wd, mq, amount_multiplier_new, S)
    kwin = K.KernelWindow(start_off=int(start_off), end_off=int(end_off), day_period=day_period, n_periods=P, n_groups=G)

    deal_trials = 0
    deal_steps = 0
    t0 = 0
    while t0 < n_trials:
        tc = min(tc_max, n_trials - t0)
        K.simulate_chunk_nb(t0, tc, keys, tab, kdeals, karr, kwin, bufs)
        deal_trials += int(bufs.work[:, 0].sum()) + int(bufs.work_new[:tc, 0].sum())
        deal_steps += int(bufs.work[:, 1].sum()) + int(bufs.work_new[:tc, 1].sum())
        t0 += tc
        if progress is not None:
            progress(t0, n_trials)

    out_f, out_i = bufs.out_f, bufs.out_i
    fp, fg, fs = 1, 1 + P, 1 + P + G
    ip, ig, is_ = 2, 2 + P, 2 + P + G
    return SimResult(
        n_trials=int(n_trials),
        seed=int(seed),
        start_off=int(start_off),
        end_off=int(end_off),
        period_start=ps,
        revenue=out_f[:, 0].copy(),
        won_deals=out_i[:, 0].copy(),
        period_revenue=out_f[:, fp:fg].copy(),
        period_wins=out_i[:, ip:ig].copy(),
        group_revenue=out_f[:, fg:fs].copy(),
        group_wins=out_i[:, ig:is_].copy(),
        new_revenue=bufs.out_new_f,
        new_wins=bufs.out_new_i,
        lost_deals=out_i[:, 1].copy(),
        carried_deals=out_i[:, is_:].copy(),
        carried_amount=out_f[:, fs:].copy(),
        deal_won_trials=bufs.deal_won,
        deal_lost_trials=bufs.deal_lost,
        deal_win_hist=bufs.deal_hist,
        deal_trials=deal_trials,
        deal_steps=deal_steps,
    )
