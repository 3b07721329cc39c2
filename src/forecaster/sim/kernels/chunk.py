"""One chunk of trials: every parallel unit (walk.unit_nb), then the merge of their slabs.

Merge, prange over trials: each output is the sum over slabs ``b = 0 .. nb`` in that order, so every
float is summed in an order fixed by (n, trial) and the results are bit-identical for any thread count
and any chunking of the trials.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from forecaster.sim.kernels.layout import KEY_FRAILTY, KEY_OPEN
from forecaster.sim.kernels.units import n_trial_blocks
from forecaster.sim.kernels.walk import unit_nb
from forecaster.sim.rng import GOLDEN, NJIT_PARALLEL, hi32, mix64, pick_index, trial_key


@njit(**NJIT_PARALLEL)
def simulate_chunk_nb(t0, tc, keys, tab, deals, arr, win, bufs):
    """Simulate trials ``t0 .. t0 + tc - 1``: open deals and new deals in parallel units, then the
    merge (module docstring).

    ``keys`` uint64 [5]: base keys of the domains (KEY_OPEN, KEY_GAMMA, KEY_COUNT, KEY_NEW, KEY_FRAILTY).
    Writes ``bufs.out_*`` rows ``t0 .. t0 + tc - 1`` and ``bufs.work*``; adds to the per-deal
    accumulators.
    """
    tkeys = bufs.tkeys
    for tt in range(tc):
        tkeys[tt] = trial_key(keys[KEY_OPEN], t0 + tt)
    if tab.mix_on:  # each trial's level of the shared shock: draw 0 of its frailty stream
        tlevel = bufs.tlevel
        for tt in range(tc):
            tlevel[tt] = pick_index(hi32(mix64(trial_key(keys[KEY_FRAILTY], t0 + tt) + GOLDEN)), tab.mix_nz)
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
