"""Scenario levers as transformations of the kernel's input tables (never of its code).

- ``conversion``: per stage, the odds of leaving *forward* (to a later stage or won) versus *lost* are
  multiplied by c; moves back keep their share; the forward and lost shares are renormalised within
  the mass they had, so every row still sums to 1 and no probability exceeds 1:
  ``F' = (F + L) c F / (c F + L)``, ``L' = (F + L) L / (c F + L)``, each forward destination scaled by F'/F.
- ``duration``: time in stage multiplied by m: a spell that would leave on day d leaves on day
  floor(m d); destinations of a day taken from day ``floor(d / m)``; the tail's daily hazard becomes
  ``1 - (1 - h)^(1/m)``.
- ``arrival rate``, ``amounts``: multipliers on the arrival tables and the deals' amounts.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

from forecaster.model import ArrivalTables, StageTables
from forecaster.numeric import ratio


def _cell_rows(stage: StageTables, c: int) -> tuple[np.ndarray, int]:
    lo, hi = stage.cell_off[c], stage.cell_off[c + 1]
    return stage.day_bin[lo:hi], int(stage.tail_bin[c])


def shift_conversion(p: np.ndarray, stage: int, multiplier: float) -> np.ndarray:
    """Rows of destination shares [R, S+2] of a cell in open stage ``stage``, with the forward/lost odds
    multiplied (module docstring)."""
    n_s = p.shape[1] - 2
    forward = np.zeros(p.shape[1], bool)
    forward[stage + 1:n_s + 1] = True  # later stages and won
    lost = n_s + 1
    f = p[:, forward].sum(axis=1)
    lo = p[:, lost]
    mass = f + lo
    denom = multiplier * f + lo
    f_new = ratio(mass * multiplier * f, denom, f)
    l_new = ratio(mass * lo, denom, lo)
    scale = ratio(f_new, f, 0.0)
    out = p.copy()
    out[:, forward] = p[:, forward] * scale[:, None]
    out[:, lost] = l_new
    # No renormalisation: F' + L' is the mass F + L had (to rounding), and the moves back keep their
    # shares bit for bit, so the nested draw (sim.compact) changes nothing but the lost/forward cut.
    return out


def apply_conversion(stage: StageTables, multipliers: Mapping[int, float]) -> StageTables:
    """Conversion multipliers per open stage index. Each changed cell gets its own copy of its rows."""
    if not multipliers:
        return stage
    n_s = stage.n_stages
    rows = [stage.bin_p]
    day_bin = stage.day_bin.copy()
    tail_bin = stage.tail_bin.copy()
    next_row = stage.bin_p.shape[0]
    for c in range(stage.n_cells):
        s = c % n_s
        m = multipliers.get(s)
        if m is None or m == 1.0:
            continue
        days, tail = _cell_rows(stage, c)
        used = np.unique(np.r_[days, tail])
        new = shift_conversion(stage.bin_p[used], s, m)
        remap = {int(r): next_row + i for i, r in enumerate(used)}
        lo, hi = stage.cell_off[c], stage.cell_off[c + 1]
        day_bin[lo:hi] = np.array([remap[int(r)] for r in days], np.int32)
        tail_bin[c] = remap[tail]
        rows.append(new)
        next_row += len(used)
    return StageTables(stage.surv, stage.cell_off, day_bin, np.vstack(rows), stage.tail_h, tail_bin).check()


def apply_duration(stage: StageTables, multipliers: Mapping[int, float]) -> StageTables:
    """Time-in-stage multipliers per open stage index: a spell that would leave on day d leaves on day
    floor(m d), so ``S'(d) = S(ceil((d + 1) / m) - 1)`` (the table continued by its geometric tail),
    with the destinations of original day floor(d / m); beyond the new table the daily tail hazard is
    ``1 - (1 - h)^(1/m)``."""
    if not multipliers or all(m == 1.0 for m in multipliers.values()):
        return stage
    n_s = stage.n_stages
    surv, bins, lens, tails = [], [], [], []
    for c in range(stage.n_cells):
        lo, hi = stage.cell_off[c], stage.cell_off[c + 1]
        s, b = stage.surv[lo:hi], stage.day_bin[lo:hi]
        m = multipliers.get(c % n_s, 1.0)
        h = float(stage.tail_h[c])
        if m == 1.0:
            surv.append(s)
            bins.append(b)
            lens.append(len(s))
            tails.append(h)
            continue
        L = len(s)
        days = np.arange(max(1, int(np.ceil(L * m))))
        orig = np.ceil((days + 1) / m - 1e-9).astype(np.int64) - 1
        beyond = np.maximum(orig - (L - 1), 0)
        s_new = s[np.minimum(orig, L - 1)] * (1.0 - h) ** beyond
        zero = np.flatnonzero(s_new <= 0.0)
        if len(zero):
            s_new = s_new[: zero[0] + 1]
        src = np.floor(np.arange(len(s_new)) / m).astype(np.int64)
        b_new = np.where(src < L, b[np.minimum(src, L - 1)], stage.tail_bin[c])
        surv.append(s_new)
        bins.append(b_new)
        lens.append(len(s_new))
        tails.append(1.0 if h >= 1.0 else float(-np.expm1(np.log1p(-h) / m)))
    return StageTables.of(
        surv=np.concatenate(surv),
        cell_off=np.r_[0, np.cumsum(lens)],
        day_bin=np.concatenate(bins),
        bin_p=stage.bin_p,
        tail_h=tails,
        tail_bin=stage.tail_bin,
    )


def scale_arrivals(arrivals: ArrivalTables, rate: np.ndarray) -> ArrivalTables:
    """Arrival rates times a per-group multiplier (0 switches a group's new deals off)."""
    return ArrivalTables(arrivals.rate * rate, arrivals.weekday_factor, arrivals.moq_factor, arrivals.gamma_shape,
                         arrivals.entry_p, arrivals.amount_pool, arrivals.amount_off).check()
