"""Natural tables (model.tables) -> the kernel's compact form for one window (sim.kernels.layout).

Exit days as integer thresholds over the days a window can reach, with guide tables (Chen and Asau's
indexed search) over the high 32 bits of a draw; destinations as the nested draw's integer thresholds
in a fixed order per stage (``nested_thresholds``), entry stages of new deals as integer thresholds,
most likely first. Vectorised numpy, once per run.
"""

from __future__ import annotations

import functools
import math

import numpy as np

from forecaster.model.mix import MixEffects
from forecaster.model.tables import ArrivalTables, OpenDeals, StageTables
from forecaster.numeric import gamma_quantile
from forecaster.sim.kernels.layout import (
    GUIDE_DAY_SHIFT,
    GUIDE_ROW_BITS,
    GUIDE_ROW_MASK,
    GUIDE_SLOW_BIT,
    KernelArrivals,
    KernelTables,
)

# Guide tables: 2**bits buckets per cell over the high 32 bits of a draw, about 2**EXTRA per table
# day a window can reach (fewer buckets straddling two days), kept small enough for L2.
GUIDE_MIN_BITS = 6
GUIDE_MAX_BITS = 12
GUIDE_EXTRA_BITS = 3
GUIDE_MAX_BYTES = 256 << 10
_TWO32 = 1 << 32
# The shared shock's multiplier takes one of this many levels, a trial's level drawn uniformly.
FRAILTY_LEVELS = 16


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
    """Rows of probabilities [R, K] -> (order int32 [R, K], thr uint64 [R, K]); the entry stage of
    new deals (no scenario changes entry shares, so their order takes no part in pairing).

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


def _scaled(x: np.ndarray) -> np.ndarray:
    """``floor(x * 2**32 + 0.5)`` capped at ``2**32``, int64."""
    return np.minimum(np.floor(x * float(_TWO32) + 0.5), float(_TWO32)).astype(np.int64)


def _left_aligned(mask: np.ndarray, width: int) -> np.ndarray:
    """int64 [R, width]: per row the columns where ``mask`` holds, in index order, then the others."""
    return np.argsort(~mask, axis=1, kind="stable")[:, :width].astype(np.int64)


def nested_thresholds(p: np.ndarray, row_stage: np.ndarray) -> dict[str, np.ndarray]:
    """Destination rows [R, S + 2] of cells in open stage ``row_stage[r]`` -> the nested draw.

    With u the low 32 bits of a visit's draw and v 32 bits of a second hash of its state, both in
    ``[0, 2**32)``: the u-axis holds the moves back (open stages ``k < s`` with p > 0, index order)
    from 0, then lost, then from ``fb = floor((B + L) 2**32 + 0.5)`` "forward"; a forward visit takes
    the later stage or won (``s < k <= S``, p > 0, index order) whose share of the forward mass v
    falls in. Back thresholds ``bthr`` are ``floor(cum 2**32 + 0.5)`` of the back shares (padded with
    2**32), forward ones ``vthr`` ``floor(cum / F 2**32 + 0.5)`` but the last (padded with 2**32),
    each capped at 2**32. With no forward share ``fb = 2**32`` (and with no lost share either, the
    last move back ends at 2**32), so an outcome of probability 0 is never drawn.

    Why nested: the conversion lever (analysis.levers) keeps every back share and the mix of the
    forward shares and trades lost against forward mass. Then ``fb`` alone moves, down, and a visit
    the lever touches can only go from lost to forward, to the destination v picked before: in every
    trial the won deals of "conversion up" include the baseline's.

    Returns fb [R], bthr [R, MB], vthr [R, MV], dest_k [R, MB + 1 + MV + 1] (entries: the moves back,
    lost, the forward destinations; the index of a draw is ``#(bthr <= u) + (u >= fb) (1 + #(vthr <=
    v))``), all int64 (MB, MV >= 1), and n_back, n_fwd [R].
    """
    p = np.asarray(p, np.float64)
    R, K = p.shape
    S = K - 2
    col = np.arange(K)[None, :]
    s = np.asarray(row_stage, np.int64)[:, None]
    pos = p > 0.0
    back = pos & (col < s)
    fwd = pos & (col > s) & (col <= S)
    n_back, n_fwd = back.sum(axis=1), fwd.sum(axis=1)
    MB, MV = max(1, int(n_back.max(initial=0))), max(1, int(n_fwd.max(initial=0)) - 1)
    # Sums add in index order (cumsum is sequential; zeros add exactly), as the naive twin's loops.
    cum_b = np.cumsum(np.where(back, p, 0.0), axis=1)
    cum_f = np.cumsum(np.where(fwd, p, 0.0), axis=1)
    b_tot, f_tot, lost = cum_b[:, -1], cum_f[:, -1], p[:, S + 1]
    fb = np.where(n_fwd > 0, _scaled(b_tot + lost), _TWO32)
    bcols = _left_aligned(back, MB)
    cum_back = np.take_along_axis(cum_b, bcols, axis=1)
    bthr = np.where(np.arange(MB)[None, :] < n_back[:, None], _scaled(cum_back), _TWO32)
    only_back = (n_back > 0) & (n_fwd == 0) & ~(lost > 0.0)
    bthr[only_back, n_back[only_back] - 1] = _TWO32
    fcols = _left_aligned(fwd, MV)
    with np.errstate(invalid="ignore", divide="ignore"):
        inner = _scaled(np.take_along_axis(cum_f, fcols, axis=1) / f_tot[:, None])
    vthr = np.where(np.arange(MV)[None, :] < (n_fwd - 1)[:, None], inner, _TWO32)
    # Entries: back columns first (rank = column), lost (K), forward (2K + column), the rest after.
    rank = np.where(back, col, np.where(fwd, 2 * K + col, 4 * K))
    rank[:, S + 1] = K
    width = MB + 1 + MV + 1
    order = np.argsort(rank, axis=1, kind="stable")
    order = np.concatenate([order, np.repeat(order[:, -1:], max(0, width - K), axis=1)], axis=1)[:, :width]
    n_ent = n_back + 1 + n_fwd
    last = np.take_along_axis(order, (n_ent - 1)[:, None], axis=1)
    dest_k = np.where(np.arange(width)[None, :] < n_ent[:, None], order, last).astype(np.int64)
    return {"fb": fb.astype(np.int64), "bthr": bthr, "vthr": vthr, "dest_k": dest_k, "n_back": n_back, "n_fwd": n_fwd,
            "b_tot": b_tot, "f_tot": f_tot, "lost": lost, "cum_back": cum_back}


@functools.lru_cache(maxsize=64)
def frailty_levels(var: float, nz: int = FRAILTY_LEVELS) -> np.ndarray:
    """float64 [nz]: the shared shock's multiplier Z of the odds of losing, per level (a trial's level is
    uniform on 0 .. nz - 1): the Gamma(1 / var, var) quantiles at (z + 0.5) / nz, moved and scaled to
    mean 1 and variance ``var`` exactly (or, where that would bring a level below 5% of the mean, scaled
    to mean 1 only). ``var`` 0: every level 1."""
    if not var > 0.0:
        return np.ones(nz)
    shape = 1.0 / var
    g = np.array([gamma_quantile((z + 0.5) / nz, shape) for z in range(nz)]) / shape
    z = 1.0 + (g - g.mean()) * (math.sqrt(var) / g.std())
    out = z if z.min() > 0.05 else g / g.mean()
    out.setflags(write=False)
    return out


def frailty_multipliers(effects: MixEffects, nz: int = FRAILTY_LEVELS) -> np.ndarray:
    """float64 [nz]: per shock level the factor on the odds of losing against moving forward."""
    return frailty_levels(float(effects.frailty_var), nz)


def mixed_thresholds(nest: dict[str, np.ndarray], effects: MixEffects, row_stage: np.ndarray,
                     nz: int = FRAILTY_LEVELS) -> dict[str, np.ndarray]:
    """The nested draw under the calendar effects and the shared shock (docs/model.md), for exits drawn from
    the dominating tables (``dominating_tables``, R = effects.max_rate; each row with the rates and shifts of
    its open stage ``row_stage``): on the u-axis the moves back at
    1 / R of their shares, then the thinned exits, then from ``ls`` the kept exits forward or lost,
    ``T = (l + f) rate[q] / R`` of the axis, lost up to ``fb`` and forward after it (the forward mix as
    without effects). The lost share among the kept exits is ``l m / (l m + f)``, m = exp(lost_shift[q])
    Z[z]. So a day's exit probability is h b back, h (l + f) rate[q] kept (exact thinning), and the
    conversion lever and the shock, which trade lost for forward shares, only move ``fb``: pairing stays
    monotone.

    Returns bthr int64 [R_rows, MB] (the back thresholds at 1 / R), ls int64 [R_rows * 3] at (r * 3 + q)
    and fb int64 [R_rows * 3 * nz] at ((r * 3 + q) * nz + z)."""
    R = effects.max_rate
    levels = frailty_multipliers(effects, nz)
    b, f, l = nest["b_tot"], nest["f_tot"], nest["lost"]  # noqa: E741 - the lost share, as in the formulas
    nonback = l + f
    rate_s, shift_s = effects.rows(row_stage)  # [R_rows, 3]
    rate = rate_s / R
    kept = nonback[:, None] * rate
    ls_x = b[:, None] + nonback[:, None] * (1.0 - rate)
    m = np.exp(shift_s)[:, :, None] * levels[None, None, :]  # [R_rows, 3, nz]
    lm = l[:, None, None] * m
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.where(lm > 0.0, lm / (lm + f[:, None, None]), 0.0)
    fb_x = ls_x[:, :, None] + kept[:, :, None] * share
    has_fwd = (nest["n_fwd"] > 0)[:, None]
    none = (~has_fwd[:, 0]) & ~(l > 0.0)  # only moves back: no kept exit at all
    ls = np.where(none[:, None], _TWO32, _scaled(ls_x))
    fb = np.where(has_fwd[:, :, None], _scaled(fb_x), _TWO32)
    bthr = nest["bthr"]
    if R != 1.0:
        MB = bthr.shape[1]
        used = np.arange(MB)[None, :] < nest["n_back"][:, None]
        bthr = np.where(used, _scaled(np.where(used, nest["cum_back"], 0.0) / R), _TWO32)
    return {"bthr": np.ascontiguousarray(bthr, np.int64), "ls": np.ascontiguousarray(ls.reshape(-1), np.int64),
            "fb": np.ascontiguousarray(fb.reshape(-1), np.int64)}


def dominating_tables(stage: StageTables, R: float) -> StageTables:
    """The tables with every day's exit probability h (and the tail's) times R, capped at 1: the process
    the kernel thins to the calendar rates (sim.kernels.walk). Destination rows are unchanged."""
    if R == 1.0:
        return stage
    surv = np.empty_like(stage.surv)
    for c in range(stage.n_cells):
        a, b = int(stage.cell_off[c]), int(stage.cell_off[c + 1])
        s = stage.surv[a:b]
        prev = np.r_[1.0, s[:-1]]
        with np.errstate(invalid="ignore", divide="ignore"):
            h = np.where(prev > 0, 1.0 - s / prev, 1.0)
        surv[a:b] = np.cumprod(1.0 - np.minimum(1.0, R * h))
    return StageTables(surv, stage.cell_off, stage.day_bin, stage.bin_p, np.minimum(1.0, R * stage.tail_h),
                       stage.tail_bin)


def stage_rows(stage: StageTables) -> StageTables:
    """The tables with every destination row used by cells of one open stage only (a row shared by
    cells of several stages is copied per stage): the nested draw's order depends on the stage."""
    S = stage.n_stages
    cell_stage = np.arange(stage.n_cells) % S
    day_stage = np.repeat(cell_stage, stage.cell_len)
    rows = np.r_[stage.day_bin, stage.tail_bin].astype(np.int64)
    stages = np.r_[day_stage, cell_stage].astype(np.int64)
    pairs, inverse = np.unique(rows * S + stages, return_inverse=True)
    if len(np.unique(pairs // S)) == len(pairs):  # no row shared: keep the tables as they are
        return stage
    L = stage.day_bin.shape[0]
    return StageTables(stage.surv, stage.cell_off, inverse[:L].astype(np.int32), stage.bin_p[pairs // S],
                       stage.tail_h, inverse[L:].astype(np.int32))


def row_stages(stage: StageTables) -> np.ndarray:
    """int64 [n_bins]: the open stage of the cells using each row (0 for an unused row); rows as
    stage_rows leaves them."""
    S = stage.n_stages
    out = np.zeros(stage.bin_p.shape[0], np.int64)
    out[stage.day_bin] = np.repeat(np.arange(stage.n_cells) % S, stage.cell_len)
    out[stage.tail_bin] = np.arange(stage.n_cells) % S
    return out


def compact_stage_tables(stage: StageTables, end_off: int, effects: MixEffects | None = None,
                         day_moq: np.ndarray | None = None) -> KernelTables:
    """StageTables (checked) -> the kernel's compact form for a window ending on ``end_off``. With active
    ``effects`` also the mixed thresholds (``mixed_thresholds``; ``stage`` must then be the dominating
    tables, ``dominating_tables(stage, effects.max_rate)``) and, with calendar effects, the month of the
    quarter of every day ``day_moq`` int [end_off + 1] (the day after the window repeats the last)."""
    stage = stage_rows(stage)
    if int(stage.cell_len.max()) >= 1 << (GUIDE_SLOW_BIT - GUIDE_DAY_SHIFT) or stage.bin_p.shape[0] > GUIDE_ROW_MASK:
        raise ValueError(
            f"stage tables too large for the kernel: {int(stage.cell_len.max())} days in a cell "
            f"(at most {(1 << (GUIDE_SLOW_BIT - GUIDE_DAY_SHIFT)) - 1}), {stage.bin_p.shape[0]} bins (at most {GUIDE_ROW_MASK})"
        )
    exit_thr = exit_thresholds(stage.surv)
    bits = guide_bits_for(stage.n_cells, min(int(stage.cell_len.max()), end_off + 1))
    ctab, stride, cell_hdr = window_tables(stage, exit_thr, end_off, bits)
    log1m_h = np.array([-math.inf if h == 1.0 else math.log1p(-h) for h in stage.tail_h.tolist()], np.float64)
    rs = row_stages(stage)
    nest = nested_thresholds(stage.bin_p, rs)
    # The fast row: the back threshold, fb, forward thresholds 0 and 1, then the entries in 16 bits
    # each; for tables whose rows all have at most 1 move back and 4 entries (the usual funnel: four
    # comparisons a visit; each further one measured about 5% of a visit).
    fast = bool(np.all((nest["n_back"] <= 1) & (nest["n_fwd"] <= 3) & (nest["n_back"] + 1 + nest["n_fwd"] <= 4)))
    R = stage.bin_p.shape[0]
    dest_fast = np.zeros((R, 8), np.int64)
    if fast:
        pad = np.full((R, 2), _TWO32, np.int64)
        dest_fast[:, 0] = np.concatenate([nest["bthr"], pad], axis=1)[:, 0]
        dest_fast[:, 1] = nest["fb"]
        dest_fast[:, 2:4] = np.concatenate([nest["vthr"], pad], axis=1)[:, :2]
        ent = np.concatenate([nest["dest_k"], np.repeat(nest["dest_k"][:, -1:], 4, axis=1)], axis=1)[:, :4]
        for j in range(4):
            dest_fast[:, 4] |= ent[:, j] << (16 * j)
    c = np.ascontiguousarray
    mix_on = effects is not None and effects.active
    if mix_on:
        mixed = mixed_thresholds(nest, effects, rs)
        mq = np.zeros(end_off + 1, np.int64) if not effects.calendar else np.asarray(day_moq, np.int64)
        mix_moq = c(np.r_[mq, mq[-1:]])
    else:
        mixed = {"bthr": np.zeros((1, 1), np.int64), "ls": np.zeros(1, np.int64), "fb": np.zeros(1, np.int64)}
        mix_moq = np.zeros(1, np.int64)
    return KernelTables(
        surv=c(stage.surv),
        ctab=ctab,
        cell_stride=stride,
        wthr_base=1 << bits,
        cell_hdr=cell_hdr,
        guide_bits=bits,
        log1m_h=log1m_h,
        day_bin=c(stage.day_bin),
        tail_bin=c(stage.tail_bin),
        dest_fb=c(nest["fb"]),
        dest_bthr=c(nest["bthr"]),
        dest_vthr=c(nest["vthr"]),
        dest_k=c(nest["dest_k"]),
        dest_fast=dest_fast.ravel(),
        dest_is_fast=fast,
        n_stages=stage.n_stages,
        dest_nback=c(nest["n_back"].astype(np.int64)),
        mix_on=mix_on,
        mix_thin=bool(mix_on and np.any(effects.exit_rate != 1.0)),
        mix_nz=FRAILTY_LEVELS,
        mix_bthr=mixed["bthr"],
        mix_ls=mixed["ls"],
        mix_fb=mixed["fb"],
        mix_moq=mix_moq,
    )


def deal_s_prev(stage: StageTables, deals: OpenDeals) -> np.ndarray:
    """float64 [n]: S(age - 1) in each deal's cell, 1 for age 0 or an age beyond the table."""
    off = stage.cell_off[deals.cell]
    L = stage.cell_len[deals.cell]
    inside = (deals.age > 0) & (deals.age < L)
    idx = np.where(inside, off + deals.age - 1, 0)
    return np.where(inside, stage.surv[idx], 1.0)


def kernel_arrivals(arrivals: ArrivalTables | None, wd, mq, amount_multiplier_new: float, n_stages: int) -> KernelArrivals:
    if arrivals is None:
        f0, i0 = np.zeros(0), np.zeros(1, np.int64)
        return KernelArrivals(
            on=False, rate=f0, weekday_factor=np.zeros((0, 7)), moq_factor=np.zeros((0, 3)), gamma_shape=f0,
            entry_k=np.zeros((0, n_stages), np.int32), entry_thr=np.zeros((0, n_stages), np.uint64), n_entry=1,
            amount_pool=f0, amount_off=i0, amount_mult=1.0,
            day_weekday=np.zeros(0, np.int32), day_moq=np.zeros(0, np.int32),
        )  # fmt: skip
    entry_k, entry_thr = sorted_thresholds(arrivals.entry_p)
    a = arrivals
    c = np.ascontiguousarray  # one array layout, so one compiled signature
    return KernelArrivals(
        on=True, rate=c(a.rate), weekday_factor=c(a.weekday_factor), moq_factor=c(a.moq_factor),
        gamma_shape=c(a.gamma_shape), entry_k=entry_k, entry_thr=entry_thr,
        n_entry=int(max(1, (a.entry_p > 0.0).sum(axis=1).max())), amount_pool=c(a.amount_pool),
        amount_off=c(a.amount_off), amount_mult=float(amount_multiplier_new), day_weekday=wd, day_moq=mq,
    )  # fmt: skip
