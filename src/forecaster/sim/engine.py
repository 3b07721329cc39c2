"""Orchestration of a simulation: checked tables -> compact kernel inputs -> kernel chunks -> SimResult.

``simulate`` checks its inputs once, converts the natural tables (docs/kernel_contract.md) into the
kernel's compact form for the window (sim.compact), and runs the kernel in chunks of trials, calling
``progress(done, total)`` between chunks. Chunking never changes results: every random number is
keyed by (seed, trial, stream) and every sum has an order fixed by the trial and the deal count
(sim.kernels). ``open_deals`` turns a snapshot's open deals into the kernel's deal table for a model.

No file I/O, YAML or CLI here.
"""

from __future__ import annotations

import hashlib
import math
from typing import Callable

import numpy as np

from forecaster.crm import Snapshot
from forecaster.errors import ModelError
from forecaster.model import ArrivalTables, MixEffects, OpenDeals, PipelineModel, StageTables, open_deal_cells
from forecaster.sim import kernels as K
from forecaster.sim import rng
from forecaster.sim.cache import KERNEL_CACHE, is_cached
from forecaster.sim.compact import compact_stage_tables, deal_s_prev, dominating_tables, kernel_arrivals
from forecaster.sim.results import SimResult

# Slabs of per-trial partial sums are (deal blocks + 1) x chunk trials x fields; keep them near this.
SLAB_BYTES = 32 << 20
MAX_CHUNK_TRIALS = 4096
# Walks the kernel runs together: one open deal in this many trials, or this many new deals of a
# trial (its scratch is parallel units x this). 256 to 1024 measured within noise.
BATCH_TRIALS = 512
# The kernel packs a stage and a destination into 16 bits each.
MAX_STAGES = (1 << 16) - 2
MAX_CELLS = 1 << 24  # and a cell in 24 bits


def kernels_compiled() -> bool:
    """Whether the kernel is compiled in this process or in numba's cache (False: the next simulation
    compiles it first, about ``sim.cache.COLD_COMPILE_S`` seconds)."""
    return bool(K.simulate_chunk_nb.signatures) or is_cached(KERNEL_CACHE, "simulate_chunk_nb")


def stream_ids(deal_ids: np.ndarray) -> np.ndarray:
    """A stable random-stream key per deal (64-bit hash of its id, below 2**63): a deal sees the same
    draws whatever other deals exist, in every scenario and as-of run (common random numbers)."""
    out = np.fromiter(
        (int.from_bytes(hashlib.blake2b(str(d).encode(), digest_size=8).digest(), "little") >> 1 for d in deal_ids),
        dtype=np.int64, count=len(deal_ids),
    )
    if len(np.unique(out)) != len(out):  # pragma: no cover - 2**-63 per pair
        raise ModelError("two deal ids hash to the same random stream; rename one")
    return out


def open_deals(snap: Snapshot, model: PipelineModel) -> tuple[np.ndarray, OpenDeals]:
    """The snapshot's open deals as the kernel's deal table for ``model`` (their cells, ages, amounts and
    stream ids), with their indices into the snapshot."""
    open_idx, cell, age, group = open_deal_cells(snap, model)
    deals = OpenDeals(cell=cell, age=age, amount=snap.amount[open_idx].astype(np.float64), group=group,
                      stream_id=stream_ids(snap.deal_id[open_idx]))
    return open_idx, deals


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
    return (ps.astype(np.int32), _day_array("day_weekday", day_weekday, 7, end_off, "arrivals"),
            _day_array("day_moq", day_moq, 3, end_off, "arrivals"))


def _day_array(name: str, a, hi: int, end_off: int, needed_by: str) -> np.ndarray:
    """A per-day calendar array (forecaster.calendar.calendar_days), checked: int32 [end_off + 1] in 0 .. hi - 1."""
    if a is None:
        raise ValueError(f"{name} is required with {needed_by} (see forecaster.calendar.calendar_days)")
    a = np.asarray(a)
    if a.shape != (end_off + 1,) or not np.issubdtype(a.dtype, np.integer) or np.any((a < 0) | (a >= hi)):
        raise ValueError(f"{name} must be integers in 0 .. {hi - 1} of shape ({end_off + 1},)")
    return np.ascontiguousarray(a, dtype=np.int32)


def default_chunk_trials(n_deals: int, n_float: int, n_int: int) -> int:
    """Trials per kernel call: bounded slabs, and progress at least every MAX_CHUNK_TRIALS trials."""
    rows = K.n_deal_blocks(n_deals) + 1
    per_trial = rows * (8 * n_float + 4 * n_int)
    return int(max(1, min(MAX_CHUNK_TRIALS, SLAB_BYTES // per_trial)))


def _check_inputs(stage: StageTables, deals: OpenDeals, arrivals: ArrivalTables | None, end_off: int) -> None:
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
    if deals.start is not None and deals.n_deals and int(deals.start.max()) > end_off:
        i = int(np.argmax(deals.start > end_off))
        raise ValueError(f"OpenDeals.start: deal {i} starts on day offset {int(deals.start[i])}, after end_off = {end_off}")


def _buffers(stage: StageTables, n: int, n_trials: int, tc_max: int, P: int, W: int, with_arrivals: bool
             ) -> K.KernelBuffers:
    """Scratch and outputs of one run (sim.kernels.layout.KernelBuffers)."""
    S, G = stage.n_stages, stage.n_groups
    nf, ni = K.n_float_fields(P, G, S), K.n_int_fields(P, G, S)
    nb = K.n_deal_blocks(n)
    nu = nb + (K.n_trial_blocks(tc_max) if with_arrivals else 0)  # parallel units
    tb = BATCH_TRIALS if with_arrivals else min(BATCH_TRIALS, tc_max)
    return K.KernelBuffers(
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
        walk_state=np.zeros((nu, tb), np.uint64),
        draws=np.zeros((nu, tb), np.uint64),
        exit_codes=np.zeros((nu, tb), np.int64),
        walk_codes=np.zeros((nu, tb), np.int64),
        last_visit=np.zeros((nu, tb), np.int64),
        booked=np.zeros((nu, 3 * tb), np.int64),
        base_cell=np.zeros((nu, tb), np.int64),
        new_group=np.zeros((nu, tb), np.int64),
        new_amount=np.zeros((nu, tb), np.float64),
        deal_guide=np.zeros((nu, K.layout.DEAL_GUIDE_SIZE), np.int64),
        deal_thr=np.zeros((nu, int(stage.cell_len.max()) + 1), np.int64),
        tlevel=np.zeros(tc_max, np.int64),
        walk_age=np.zeros((nu, tb), np.int64),
        walk_entry=np.zeros((nu, tb), np.int64),
    )


def _kernel_deals(stage: StageTables, deals: OpenDeals) -> K.KernelDeals:
    c = np.ascontiguousarray
    pool, pool_start, pool_size = deals.pools()
    return K.KernelDeals(cell=c(deals.cell), age=c(deals.age), amount=c(deals.amount), group=c(deals.group),
                         sid=c(deals.stream_ids()), start=c(deals.starts()), s_prev=deal_s_prev(stage, deals),
                         pool_start=c(pool_start), pool_size=c(pool_size), amount_pool=c(pool))


def _result(bufs: K.KernelBuffers, first_trial: int, n_trials: int, seed: int, start_off: int, end_off: int,
            ps: np.ndarray, G: int, deal_trials: int, deal_steps: int) -> SimResult:
    """The kernel's output rows ``first_trial ..`` as named per-trial and per-deal arrays."""
    P = ps.shape[0] - 1
    out_f, out_i = bufs.out_f[first_trial:], bufs.out_i[first_trial:]
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
        new_revenue=bufs.out_new_f[first_trial:].copy() if first_trial else bufs.out_new_f,
        new_wins=bufs.out_new_i[first_trial:].copy() if first_trial else bufs.out_new_i,
        lost_deals=out_i[:, 1].copy(),
        carried_deals=out_i[:, is_:].copy(),
        carried_amount=out_f[:, fs:].copy(),
        deal_won_trials=bufs.deal_won,
        deal_lost_trials=bufs.deal_lost,
        deal_win_hist=bufs.deal_hist,
        deal_trials=deal_trials,
        deal_steps=deal_steps,
    )


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
    effects: MixEffects | None = None,
    progress: Callable[[int, int], None] | None = None,
    track_win_days: bool = True,
    chunk_trials: int | None = None,
    first_trial: int = 0,
) -> SimResult:
    """Monte Carlo forecast of the window [start_off, end_off] (inclusive day offsets from as_of).

    ``stage``, ``deals``, ``arrivals``: the contract's tables (checked here; ``deals.start``, when
    given, must be <= end_off). ``arrivals=None``
    simulates open deals only; otherwise ``day_weekday`` and ``day_moq`` (int [end_off + 1], see
    ``forecaster.calendar.calendar_days``) are required and new deals arrive on days 0 .. end_off, their
    amounts drawn from the pools times ``amount_multiplier_new``. ``effects``: the month-of-quarter shifts
    and the shared shock of model.shocks (active effects need ``day_moq``, with or without arrivals).
    ``period_start``: int offsets, strictly
    rising from ``start_off`` to ``end_off + 1``. ``seed``: int in [0, 2**64); the only source of
    randomness. ``progress(done, total)`` is called after each chunk of ``chunk_trials`` trials
    (default: bounded memory); neither changes the results. ``first_trial``: the result holds trials
    ``first_trial .. first_trial + n_trials - 1`` of the run (each trial's draws are keyed by its index),
    so blocks of a run merged in order (``results.merge_results``) are the run, bit for bit. (The
    kernel writes output row t for trial t: rows before ``first_trial`` are allocated but never
    touched, so np.zeros leaves them unmapped.)
    """
    if not isinstance(first_trial, (int, np.integer)) or first_trial < 0:
        raise ValueError(f"first_trial must be a non-negative integer, got {first_trial!r}")
    _check_inputs(stage, deals, arrivals, end_off)
    ps, wd, mq = _check_window(start_off, end_off, period_start, n_trials, arrivals, day_weekday, day_moq, amount_multiplier_new)
    cal_moq = None
    if effects is not None and effects.active:
        effects.check()
        if effects.calendar:
            cal_moq = _day_array("day_moq", day_moq, 3, end_off, "calendar effects")
            stage = dominating_tables(stage, effects.max_rate)
    tab = compact_stage_tables(stage, end_off, effects, cal_moq)

    S, G, P, n = stage.n_stages, stage.n_groups, ps.shape[0] - 1, deals.n_deals
    W = end_off - start_off + 1 if track_win_days else 0
    day_period = np.full(end_off + 1, -1, np.int32)
    for p in range(P):
        day_period[ps[p] : ps[p + 1]] = p
    nf, ni = K.n_float_fields(P, G, S), K.n_int_fields(P, G, S)
    tc_max = chunk_trials if chunk_trials is not None else default_chunk_trials(n, nf, ni)
    tc_max = int(max(1, min(tc_max, n_trials)))
    bufs = _buffers(stage, n, first_trial + n_trials, tc_max, P, W, arrivals is not None)
    keys = np.array([rng.domain_key(seed, d) for d in (rng.DOMAIN_OPEN, rng.DOMAIN_GAMMA, rng.DOMAIN_COUNT, rng.DOMAIN_NEW,
                                                       rng.DOMAIN_FRAILTY)], np.uint64)
    kdeals = _kernel_deals(stage, deals)
    karr = kernel_arrivals(arrivals, wd, mq, amount_multiplier_new, S)
    kwin = K.KernelWindow(start_off=int(start_off), end_off=int(end_off), day_period=day_period, n_periods=P, n_groups=G)

    deal_trials = 0
    deal_steps = 0
    t0, t_end = first_trial, first_trial + n_trials
    while t0 < t_end:
        tc = min(tc_max, t_end - t0)
        K.simulate_chunk_nb(t0, tc, keys, tab, kdeals, karr, kwin, bufs)
        deal_trials += int(bufs.work[:, 0].sum()) + int(bufs.work_new[:tc, 0].sum())
        deal_steps += int(bufs.work[:, 1].sum()) + int(bufs.work_new[:tc, 1].sum())
        t0 += tc
        if progress is not None:
            progress(t0 - first_trial, n_trials)
    return _result(bufs, first_trial, n_trials, seed, start_off, end_off, ps, G, deal_trials, deal_steps)
