"""Scheduling of the kernel's parallel units: how many trial blocks a chunk has and which block a unit
index runs. Deal blocks depend on the deal count only (layout.n_deal_blocks), never on threads."""

from __future__ import annotations

import numpy as np
from numba import njit

from forecaster.sim.kernels.layout import MAX_DEAL_BLOCKS, UNIT_DEALS, UNIT_TRIALS
from forecaster.sim.rng import NJIT


@njit(**NJIT)
def n_trial_blocks(n_trials):
    """Units of new-deal work per chunk (any split gives the same results)."""
    return min(MAX_DEAL_BLOCKS, n_trials)


@njit(**NJIT)
def unit_of(u, nb, nr):
    """(kind, index) of parallel unit ``u``: deal blocks (UNIT_DEALS) and trial blocks (UNIT_TRIALS)
    interleaved, so that a static split of the units between threads gives each some of both."""
    u = np.int64(u)
    m = np.int64(min(nb, nr))
    if u < 2 * m:
        kind, i = u & 1, u >> 1  # UNIT_DEALS = 0, UNIT_TRIALS = 1
    elif nb > nr:
        kind, i = UNIT_DEALS, u - m
    else:
        kind, i = UNIT_TRIALS, u - m
    # Neighbouring units take distant blocks (i -> i * stride mod count, a bijection), so that any
    # contiguous slice of units spreads over the deals (which callers often sort, e.g. by age).
    count = nb if kind == UNIT_DEALS else nr
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
