"""Discrete-time competing risks with right censoring (formulas: ../shared/MODEL.md).

A spell is a stay in one stage: ``dur`` whole days and a destination ``dest`` if it ended before the
as-of date, or censored at age ``a`` (it survived days 0 .. a-1) if still open. On days d = 0, 1, ...:

- ``n(d)``: spells at risk (exit day >= d, or censored with age > d);
- ``e_k(d)``: exits to destination k on day d;
- hazards ``h_k(d) = e_k(d) / n(d)``, Kaplan-Meier ``S(d) = prod_{j<=d} (1 - h(j))``,
  Aalen-Johansen ``F_k(d) = sum_{j<=d} S(j-1) h_k(j)``.

Everything here is vectorised numpy over the spells of one cell (segment x stage); callers loop
over cells, of which there are few.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class RiskCounts:
    """At-risk and exit counts on days 0 .. L-1, plus the spells' exposure for the tail.

    ``at_risk`` float64 [L]; ``exits`` float64 [L, K]; ``last_at_risk`` int64 [n] (the last day each
    spell was seen at risk: its exit day, or age - 1 if censored); ``exited`` bool [n].
    """

    at_risk: np.ndarray
    exits: np.ndarray
    last_at_risk: np.ndarray
    exited: np.ndarray
    dest: np.ndarray

    @property
    def length(self) -> int:
        return len(self.at_risk)

    @property
    def n_spells(self) -> int:
        return len(self.last_at_risk)

    @property
    def n_exits(self) -> int:
        return int(self.exited.sum())

    def exposure_from(self, day: int) -> float:
        """Spell-days at risk on days >= day, including days beyond the table (censored spells)."""
        return float(np.maximum(self.last_at_risk - day + 1, 0).sum())

    def exits_from(self, day: int) -> np.ndarray:
        """Exits per destination on days >= day."""
        return self.exits[day:].sum(axis=0)


def risk_counts(dur: np.ndarray, dest: np.ndarray, exited: np.ndarray, n_dest: int, length: int) -> RiskCounts:
    """Count at-risk and exits per day for one cell's spells.

    ``dur``: exit day for exited spells, age (>= 1) for censored ones. ``length`` must exceed every
    exit day; censored spells older than the table count as at risk on every table day.
    """
    dur = np.asarray(dur, np.int64)
    exited = np.asarray(exited, bool)
    dest = np.asarray(dest, np.int64)
    last = np.where(exited, dur, dur - 1)
    if exited.any() and dur[exited].max() >= length:
        raise ValueError("table shorter than the last exit day")
    keep = last >= 0
    ends = np.bincount(np.minimum(last[keep], length - 1), minlength=length).astype(np.float64)
    at_risk = np.cumsum(ends[::-1])[::-1]
    ex = np.bincount(dur[exited] * n_dest + dest[exited], minlength=length * n_dest).astype(np.float64)
    return RiskCounts(at_risk, ex.reshape(length, n_dest), last, exited, dest)


def survival(at_risk: np.ndarray, exits_total: np.ndarray) -> np.ndarray:
    """Kaplan-Meier S(d) for d = 0 .. L-1 from at-risk and total exit counts (days with none at risk keep S)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        h = np.where(at_risk > 0, exits_total / np.where(at_risk > 0, at_risk, 1.0), 0.0)
    return np.cumprod(1.0 - np.clip(h, 0.0, 1.0))


def cumulative_incidence(at_risk: np.ndarray, exits: np.ndarray) -> np.ndarray:
    """Aalen-Johansen F_k(d) [L, K]: probability of having left to k by day d."""
    total = exits.sum(axis=1)
    s = survival(at_risk, total)
    s_prev = np.r_[1.0, s[:-1]]
    with np.errstate(divide="ignore", invalid="ignore"):
        hk = np.where(at_risk[:, None] > 0, exits / np.where(at_risk > 0, at_risk, 1.0)[:, None], 0.0)
    return np.cumsum(s_prev[:, None] * hk, axis=0)


def quantile_day(surv: np.ndarray, tail_h: float, q: float) -> float:
    """Smallest day d with P(T <= d) >= q, using the geometric tail beyond the table."""
    target = 1.0 - q
    hit = np.flatnonzero(surv <= target + 1e-12)
    if len(hit):
        return float(hit[0])
    last = surv[-1]
    if tail_h >= 1.0:
        return float(len(surv))
    # S(L-1+j) = last * (1-h)^j <= target  ->  j >= ln(target/last) / ln(1-h)
    j = np.ceil(np.log(target / last) / np.log1p(-tail_h) - 1e-12)
    return float(len(surv) - 1 + max(j, 1.0))


def day_bins(exits_total: np.ndarray, min_exits: int) -> np.ndarray:
    """Pool consecutive days into bins holding at least ``min_exits`` exits each (the last short bin is
    merged into the one before), so no destination share rests on a handful of deals. int64 [L]."""
    length = len(exits_total)
    bins = np.zeros(length, np.int64)
    b, acc = 0, 0.0
    for d in range(length):
        bins[d] = b
        acc += exits_total[d]
        if acc >= min_exits and d < length - 1:
            b, acc = b + 1, 0.0
    if b > 0 and acc < min_exits:
        bins[bins == b] = b - 1
    return bins


def bin_sums(values: np.ndarray, bins: np.ndarray, n_bins: int) -> np.ndarray:
    """Sum rows of ``values`` [L, K] per bin -> [n_bins, K]."""
    out = np.zeros((n_bins, values.shape[1]))
    np.add.at(out, bins, values)
    return out


def tail_start(exits_total: np.ndarray, min_exits: int, share: float = 0.25) -> int:
    """First day of the window on which the tail hazard is fitted: the last ``share`` of the exits,
    and at least ``min_exits`` of them (or all there are)."""
    total = exits_total.sum()
    if total <= 0:
        return 0
    need = min(total, max(share * total, min_exits))
    from_end = np.cumsum(exits_total[::-1])
    k = int(np.searchsorted(from_end, need - 1e-9))
    return max(len(exits_total) - 1 - k, 0)


def dirichlet_precision(counts: np.ndarray, max_strength: float = 1e4, min_strength: float = 1.0,
                        expected: np.ndarray | None = None, n_params: int = 0) -> float:
    """Empirical-Bayes prior strength m for segment shares around the pooled shares.

    ``counts`` [G, K]: exits per segment and destination. Under a Dirichlet-multinomial with
    precision m, the chi-square statistic X = sum_g sum_k n_g (p_gk - p_k)^2 / p_k has expectation
    (K'-1) sum_g (1 + (n_g - 1) rho) with rho = 1 / (1 + m) (K' destinations seen). Solving the moment
    equation (G-1 for the estimated p) gives rho, then m = (1 - rho) / rho, clipped to
    [min_strength, max_strength]. Segments that differ no more than chance get the maximum strength.

    ``expected`` [G, K]: per-segment prior shares (default: the pooled shares for all), fitted with
    ``n_params`` parameters per segment, whose degrees of freedom are subtracted like the pooled shares'.
    """
    counts = np.asarray(counts, np.float64)
    n = counts.sum(axis=1)
    keep = n > 0
    counts, n = counts[keep], n[keep]
    g = len(n)
    if g < 2:
        return max_strength
    pooled = counts.sum(axis=0) / n.sum()
    p = np.broadcast_to(pooled, counts.shape) if expected is None else np.asarray(expected, np.float64)[keep]
    seen = pooled > 0
    k = int(seen.sum())
    if k < 2:
        return max_strength
    share = counts[:, seen] / n[:, None]
    ps = np.maximum(p[:, seen], 1e-12)
    x = float((n[:, None] * (share - ps) ** 2 / ps).sum())
    denom = float(n.sum() - g)
    if denom <= 0:
        return max_strength
    rho = (x / (k - 1) - (g - 1) - n_params * g / (k - 1)) / denom
    if rho <= 0:
        return max_strength
    return float(np.clip((1.0 - rho) / rho, min_strength, max_strength))


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


def cumulative_hazard_at(h: np.ndarray, tail_h: float, last_day: np.ndarray) -> np.ndarray:
    """Expected number of exits of spells seen at risk on days 0 .. last_day under hazard ``h`` (table)
    continued by ``tail_h`` per day beyond it; 0 for spells never at risk (last_day < 0)."""
    ch = np.cumsum(h)
    last = np.asarray(last_day, np.int64)
    L = len(h)
    inside = np.where(last >= 0, ch[np.clip(last, 0, L - 1)], 0.0)
    beyond = np.maximum(last - (L - 1), 0) * tail_h
    return inside + beyond


def hazard_precision(observed: np.ndarray, expected: np.ndarray, n_params: int = 0) -> float:
    """Empirical-Bayes strength of a hazard prior, in pseudo-exits per time bin.

    ``observed`` / ``expected`` [G, B]: each segment's exits per time bin and those its at-risk counts
    would give under the prior hazards. If a bin's true hazard is the prior's times a Gamma(a, 1/a)
    multiplier, observed counts are Poisson-Gamma: Var = E + E^2 / a, so the Pearson statistic
    X = sum (O - E)^2 / E has expectation (cells - n_params) + sum E / a. Solving for a gives the number
    of pseudo-exits at the prior rate that the posterior mean (O + a) / (E + a) adds to each bin; inf
    when segments differ no more than chance.
    """
    o = np.asarray(observed, np.float64).ravel()
    e = np.asarray(expected, np.float64).ravel()
    use = e > 0
    o, e = o[use], e[use]
    if len(e) == 0:
        return np.inf
    x = float(((o - e) ** 2 / e).sum())
    excess = x - (len(e) - n_params)
    if excess <= 0:
        return np.inf
    return float(e.sum() / excess)


def scaled_log_survival(log_s: np.ndarray, tail_rate: float, tau: float, days: np.ndarray) -> np.ndarray:
    """log S of the pooled curve run ``tau`` times slower (accelerated failure time), at integer days.

    The pooled curve is known at the knots d = -1 (log S = 0), 0 .. L-1 and continues beyond with slope
    ``-tail_rate``; a segment with time scale tau survives day d as the pool survives (d + 1) / tau - 1,
    interpolated linearly in log S between knots.
    """
    L = len(log_s)
    x = (np.asarray(days, np.float64) + 1.0) / tau - 1.0
    knots_x = np.arange(-1, L, dtype=np.float64)
    knots_y = np.r_[0.0, log_s]
    inside = np.interp(np.minimum(x, L - 1.0), knots_x, knots_y)
    return inside - np.maximum(x - (L - 1.0), 0.0) * tail_rate


def solve_time_scale(ends: list[np.ndarray], log_s: list[np.ndarray], tail_rate: list[float], observed: float,
                     pseudo: float = 5.0, bound: float = 3.0) -> float:
    """A segment's time scale tau, common to all stages: the tau at which its spells' expected exits
    (sum of -log S_tau at the last day each was seen at risk) equal its observed exits, ``pseudo`` exits
    at tau = 1 added to both sides so a tiny segment stays near 1. ``ends[s]`` [D]: the segment's spells
    in stage s by last day at risk."""
    days = [np.arange(len(e)) for e in ends]

    def expected(log_tau: float) -> float:
        tau = np.exp(log_tau)
        return float(sum((-scaled_log_survival(ls, lam, tau, d) * e).sum()
                         for e, ls, lam, d in zip(ends, log_s, tail_rate, days)))

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
