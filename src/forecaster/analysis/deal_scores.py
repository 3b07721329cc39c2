"""Deal-level scores: a predicted probability per deal (P(won inside the window)) against what happened
(1 won inside the window, 0 not), pooled over the deals open at every cutoff.

- Brier score: mean (p - y)^2; 0 is perfect, 0.25 what a constant 0.5 scores.
- Log loss: -mean(y log p + (1 - y) log(1 - p)) with p clipped to [CLIP, 1 - CLIP], so a method that
  says 0 for a deal that was won costs a large but finite penalty (the same clip for every method).
- AUC: the probability that a random won deal got a higher p than a random other deal (ties count half):
  how well the method ranks deals, whatever its calibration.
- Reliability: deals grouped by predicted probability in tenths [0, 0.1), ..., [0.9, 1]; per group the
  count, the mean predicted and the observed share won. A calibrated method has observed = predicted.

Deals recur over cutoffs (a deal open for three months is scored at three monthly cutoffs), so the deals
are not independent draws: read the scores as averages over deal-cutoffs.
"""

from __future__ import annotations

import numpy as np

CLIP = 1e-3
RELIABILITY_BINS = 10


def _pair(p, y) -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(p, np.float64)
    y = np.asarray(y, np.float64)
    if p.shape != y.shape or p.ndim != 1:
        raise ValueError(f"p and y must be 1-d of one length, got {p.shape} and {y.shape}")
    if np.any(~np.isfinite(p)) or np.any((p < 0) | (p > 1)):
        raise ValueError("p must be probabilities in [0, 1]")
    if np.any((y != 0) & (y != 1)):
        raise ValueError("y must be 0 or 1")
    return p, y


def brier(p, y) -> float | None:
    p, y = _pair(p, y)
    return float(np.mean((p - y) ** 2)) if len(p) else None


def log_loss(p, y) -> float | None:
    p, y = _pair(p, y)
    if not len(p):
        return None
    q = np.clip(p, CLIP, 1.0 - CLIP)
    return float(-np.mean(y * np.log(q) + (1.0 - y) * np.log1p(-q)))


def auc(p, y) -> float | None:
    """Mann-Whitney AUC with mid-ranks for ties; None unless both outcomes occur."""
    p, y = _pair(p, y)
    n1 = int(y.sum())
    n0 = len(y) - n1
    if n1 == 0 or n0 == 0:
        return None
    order = np.argsort(p, kind="stable")
    sp = p[order]
    ranks = np.empty(len(p))
    # Mid-ranks: every run of equal values gets the mean of its positions (1-based).
    starts = np.r_[0, np.flatnonzero(np.diff(sp)) + 1]
    ends = np.r_[starts[1:], len(sp)]
    mid = (starts + ends + 1) / 2.0
    ranks[order] = np.repeat(mid, ends - starts)
    return float((ranks[y == 1].sum() - n1 * (n1 + 1) / 2.0) / (n1 * n0))


def reliability(p, y, bins: int = RELIABILITY_BINS) -> list[dict]:
    """Per tenth of predicted probability: {"lo", "hi", "n", "mean_predicted", "observed"} (None when empty)."""
    p, y = _pair(p, y)
    k = np.minimum((p * bins).astype(np.int64), bins - 1)
    out = []
    for b in range(bins):
        m = k == b
        n = int(m.sum())
        out.append({"lo": b / bins, "hi": (b + 1) / bins, "n": n,
                    "mean_predicted": float(p[m].mean()) if n else None,
                    "observed": float(y[m].mean()) if n else None})
    return out


def deal_scores(p, y) -> dict:
    """{"deals", "won", "brier", "log_loss", "auc", "reliability"} of predictions ``p`` for outcomes ``y``."""
    p, y = _pair(p, y)
    return {"deals": int(len(p)), "won": int(y.sum()), "brier": brier(p, y), "log_loss": log_loss(p, y),
            "auc": auc(p, y), "reliability": reliability(p, y)}
