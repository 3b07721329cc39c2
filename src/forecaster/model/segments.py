"""Segment effects: each segment's two effects common to all its stages, fitted against the pooled model.

A segment (a combination of ``segment_by`` values) keeps its own speed and loss rate: a time scale tau
(accelerated time: its stays are the pool's times tau) and a shift theta of the log-odds of losing given
the (scaled) exit day. They are backfitted with the pooled model in reference time (docs/model.md), then
every cell borrows the rest from its prior, the pooled model moved by tau and theta (model.stage).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

SEGMENT_ROUNDS = 3  # backfitting rounds of segment effects vs the pooled model
PSEUDO_EXITS = 5.0  # pseudo-exits at the pooled rates keep tiny segments near the pool


@dataclass
class SegmentSpells:
    """One segment's spells in one stage: exit day or age, destination, exited, the first day seen at risk
    (0, or later under left truncation) and the spell's weight (1, or its recency weight)."""

    dur: np.ndarray
    dest: np.ndarray
    exited: np.ndarray
    entry: np.ndarray
    weight: np.ndarray

    def exit_weight(self) -> float:
        return float(self.weight[self.exited].sum())

    def hazard_weights(self) -> np.ndarray:
        """w [D] such that the spells' expected exits under a survival curve S are sum_d w[d] (-log S(d)):
        each spell adds its weight at its last day at risk and takes it back at the day before its entry
        (-log S(-1) = 0, so an entry on day 0 takes nothing back)."""
        last = np.where(self.exited, self.dur, self.dur - 1)
        keep = last >= self.entry
        size = int(last[keep].max()) + 1 if keep.any() else 1
        w = np.bincount(last[keep], weights=self.weight[keep], minlength=size)
        late = keep & (self.entry >= 1)
        w -= np.bincount(self.entry[late] - 1, weights=self.weight[late], minlength=size)[:size]
        return w


def log_survival(x: np.ndarray) -> np.ndarray:
    """log S with S clipped away from 0 (an S that reaches 0 stays finite)."""
    return np.log(np.maximum(x, 1e-300))


def tail_slope(tail_h: float) -> float:
    """-log(1 - h): how much log S falls per day in a geometric tail of daily exit probability h."""
    return float(-np.log1p(-min(tail_h, 1.0 - 1e-12)))


def fit_effects(seg_spells: list[list[SegmentSpells]], exits_g: np.ndarray, pooled: Callable[[np.ndarray], list],
                lost: int) -> tuple[np.ndarray, np.ndarray, list]:
    """Backfit the segments' time scales tau and lost-odds shifts theta [G] against the pooled models.

    ``seg_spells[s][g]``: segment g's spells in stage s; ``exits_g`` [G] their exits over all stages;
    ``pooled(tau)``: each stage's pooled model with every segment's stays divided by its tau. Returns
    (tau, theta, the pooled models at the final tau). Both effects are centred on the average segment
    (weighted by exits), so the pool stays the reference.
    """
    n_groups = len(exits_g)
    n_stages = len(seg_spells)
    tau = np.ones(n_groups)
    theta = np.zeros(n_groups)
    pools = pooled(tau)
    if n_groups == 1:
        return tau, theta, pools
    for _ in range(SEGMENT_ROUNDS):
        for g in range(n_groups):
            own = [seg_spells[s][g] for s in range(n_stages)]
            tau[g] = solve_time_scale([x.hazard_weights() for x in own], [log_survival(p.surv) for p in pools],
                                      [tail_slope(p.tail_h) for p in pools], float(exits_g[g]), PSEUDO_EXITS)
        w = exits_g / max(exits_g.sum(), 1)
        tau = tau / np.exp((w * np.log(tau)).sum())
        pools = pooled(tau)
        for g in range(n_groups):
            p_lost, w_lost, n_lost = [], [], 0.0
            for s, pool in enumerate(pools):
                x = seg_spells[s][g]
                ref_day = np.floor(x.dur[x.exited] / tau[g]).astype(np.int64)
                L = pool.risk.length
                p_lost.append(np.where(ref_day < L, pool.bin_p[pool.bins[np.minimum(ref_day, L - 1)], lost],
                                       pool.tail_p[lost]))
                w_lost.append(x.weight[x.exited])
                n_lost += float((x.weight * (x.dest == lost))[x.exited].sum())
            p_all = np.concatenate(p_lost)
            theta[g] = solve_lost_log_odds(np.concatenate(w_lost), p_all, n_lost, PSEUDO_EXITS)
        theta = theta - (w * theta).sum()
    return tau, theta, pools


def shift_lost_odds(p: np.ndarray, log_odds: float, lost: int) -> np.ndarray:
    """Destination shares with the odds of ``lost`` (versus every other destination) times exp(log_odds),
    renormalised; rows of ``p`` [..., K] that sum to 1 stay summing to 1."""
    p = np.asarray(p, np.float64)
    f = np.exp(log_odds)
    out = p.copy()
    out[..., lost] = p[..., lost] * f
    return out / out.sum(axis=-1, keepdims=True)

def solve_lost_log_odds(exits: np.ndarray, p_lost: np.ndarray, observed_lost: float, pseudo: float = 5.0,
                        bound: float = 5.0) -> float:
    """The segment's shift theta of the log-odds of losing, common to all stages:
    sum_s exits_s * lost_share(p_lost_s, theta) = observed_lost, with ``pseudo`` exits at the pooled rate
    added to both sides (so a tiny segment stays near 0), solved by bisection within +-``bound``."""
    exits = np.asarray(exits, np.float64)
    p_lost = np.clip(np.asarray(p_lost, np.float64), 0.0, 1.0)
    w = exits.sum()
    if w <= 0:
        return 0.0
    p_avg = float((exits * p_lost).sum() / w)
    target = observed_lost + pseudo * p_avg

    def expected(theta: float) -> float:
        f = np.exp(theta)
        shifted = p_lost * f / (1.0 - p_lost + p_lost * f)
        return float((exits * shifted).sum() + pseudo * p_avg * f / (1.0 - p_avg + p_avg * f))

    lo, hi = -bound, bound
    if expected(lo) >= target:
        return lo
    if expected(hi) <= target:
        return hi
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        if expected(mid) < target:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)

def scaled_log_survival(log_s: np.ndarray, tail_slope: float, tau: float, days: np.ndarray) -> np.ndarray:
    """log S of the pooled curve run ``tau`` times slower (accelerated failure time), at integer days.

    The pooled curve is known at the knots d = -1 (log S = 0), 0 .. L-1 and continues beyond with slope
    ``-tail_slope``; a segment with time scale tau survives day d as the pool survives (d + 1) / tau - 1,
    interpolated linearly in log S between knots.
    """
    L = len(log_s)
    x = (np.asarray(days, np.float64) + 1.0) / tau - 1.0
    knots_x = np.arange(-1, L, dtype=np.float64)
    knots_y = np.r_[0.0, log_s]
    inside = np.interp(np.minimum(x, L - 1.0), knots_x, knots_y)
    return inside - np.maximum(x - (L - 1.0), 0.0) * tail_slope

def solve_time_scale(ends: Sequence[np.ndarray], log_s: Sequence[np.ndarray], tail_slope: Sequence[float], observed: float,
                     pseudo: float = 5.0, bound: float = 3.0) -> float:
    """A segment's time scale tau, common to all stages: the tau at which its spells' expected exits
    (sum of their cumulative hazards -log S_tau between entry and last day at risk) equal its observed exits,
    ``pseudo`` exits at tau = 1 added to both sides so a tiny segment stays near 1. ``ends[s]`` [D]: the
    segment's SegmentSpells.hazard_weights in stage s."""
    days = [np.arange(len(e)) for e in ends]

    def expected(log_tau: float) -> float:
        tau = np.exp(log_tau)
        return float(sum((-scaled_log_survival(ls, lam, tau, d) * e).sum()
                         for e, ls, lam, d in zip(ends, log_s, tail_slope, days)))

    e1 = expected(0.0)
    if e1 <= 0:
        return 1.0
    target = observed + pseudo

    def f(log_tau: float) -> float:
        return expected(log_tau) * (1.0 + pseudo / e1)

    lo, hi = -bound, bound  # f decreases in tau: slower segments expect fewer exits
    if f(lo) <= target:
        return float(np.exp(lo))
    if f(hi) >= target:
        return float(np.exp(hi))
    for _ in range(50):
        mid = 0.5 * (lo + hi)
        if f(mid) > target:
            lo = mid
        else:
            hi = mid
    return float(np.exp(0.5 * (lo + hi)))
