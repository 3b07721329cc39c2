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

from forecaster.numeric import ratio


@dataclass(frozen=True)
class RiskCounts:
    """At-risk and exit counts on days 0 .. L-1, plus the spells' exposure for the tail.

    ``at_risk`` float64 [L]; ``exits`` float64 [L, K]; ``last_at_risk`` int64 [n] (the last day each
    spell was seen at risk: its exit day, or age - 1 if censored); ``exited`` bool [n]; ``entry`` int64 [n]
    (the first day each spell was seen at risk: 0, or its age when observation began: left truncation);
    ``weight`` float64 [n] (each spell's weight in the counts: 1, or its recency weight).
    """

    at_risk: np.ndarray
    exits: np.ndarray
    last_at_risk: np.ndarray
    exited: np.ndarray
    dest: np.ndarray
    entry: np.ndarray
    weight: np.ndarray

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
        """Weighted spell-days at risk on days >= day, including days beyond the table (censored spells)."""
        return float((self.weight * np.maximum(self.last_at_risk - np.maximum(self.entry, day) + 1, 0)).sum())

    def exits_from(self, day: int) -> np.ndarray:
        """Exits per destination on days >= day."""
        return self.exits[day:].sum(axis=0)


def risk_counts(dur: np.ndarray, dest: np.ndarray, exited: np.ndarray, n_dest: int, length: int,
                entry: np.ndarray | None = None, weight: np.ndarray | None = None) -> RiskCounts:
    """Count at-risk and exits per day for one cell's spells.

    ``dur``: exit day for exited spells, age (>= 1) for censored ones. ``length`` must exceed every
    exit day; censored spells older than the table count as at risk on every table day. ``entry``: the
    first day a spell was at risk (delayed entry, default 0; a spell is at risk on days entry .. last);
    ``weight``: a spell's weight in every count (default 1).
    """
    dur = np.asarray(dur, np.int64)
    exited = np.asarray(exited, bool)
    dest = np.asarray(dest, np.int64)
    n = len(dur)
    entry = np.zeros(n, np.int64) if entry is None else np.asarray(entry, np.int64)
    weight = np.ones(n) if weight is None else np.asarray(weight, np.float64)
    last = np.where(exited, dur, dur - 1)
    if exited.any() and dur[exited].max() >= length:
        raise ValueError("table shorter than the last exit day")
    keep = last >= entry
    w = weight[keep]
    ends = np.bincount(np.minimum(last[keep], length - 1), weights=w, minlength=length).astype(np.float64)
    starts = np.bincount(np.minimum(entry[keep], length), weights=w, minlength=length + 1)[:length]
    # At risk on day d: seen by d (entry <= d) and not gone before it (last >= d).
    at_risk = np.cumsum(ends[::-1])[::-1] - (w.sum() - np.cumsum(starts))
    at_risk = np.maximum(at_risk, 0.0)  # exact zeros where floating sums of weights cancel
    ex = np.bincount(dur[exited] * n_dest + dest[exited], weights=weight[exited],
                     minlength=length * n_dest).astype(np.float64)
    return RiskCounts(at_risk, ex.reshape(length, n_dest), last, exited, dest, entry, weight)


def survival(at_risk: np.ndarray, exits_total: np.ndarray) -> np.ndarray:
    """Kaplan-Meier S(d) for d = 0 .. L-1 from at-risk and total exit counts (days with none at risk keep S)."""
    h = ratio(exits_total, at_risk, 0.0)
    return np.cumprod(1.0 - np.clip(h, 0.0, 1.0))


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


def tail_start(exits_total: np.ndarray, min_exits: int, share: float = 0.0) -> int:
    """First day of the window on which the tail hazard is fitted: the last ``min_exits`` exits (or all
    there are), and at least the last ``share`` of them. A tail fitted on a large share of the exits is
    driven by young, active spells and keeps old dead pipeline alive (docs/model.md)."""
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
