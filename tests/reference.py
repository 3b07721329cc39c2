"""Slow, obviously-correct reference versions that only tests use (the package computes these figures
another way: cumulative incidence inside the stage tables, quantiles on mixture curves)."""

from __future__ import annotations

import numpy as np

from forecaster.model.survival import survival


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
