"""Proper scores and calibration checks for probabilistic forecasts (pure numpy, no scipy).

A forecast here is a Monte Carlo sample: a 1-d array of ``n`` per-trial values (revenue, won deals)
for one cutoff and one target. Scores compare it with the actual ``y`` that later happened; the
calibration checks (coverage, PIT histogram) pool many cutoffs.

Nothing in this module is random. Functions take numpy arrays (or anything ``np.asarray`` accepts),
check them once and return Python floats, numpy arrays, or dicts of plain ``int``/``float``/``None``
values (ready for JSON). Bad inputs raise ``ValueError`` naming the argument.

Conventions shared with ``results.py``: quantiles use ``method="inverted_cdf"`` (each is a value
some trial produced, so integer counts stay integers).
"""

from __future__ import annotations

import math

import numpy as np

from forecaster.numeric import upper_gamma_q

__all__ = [
    "crps_sample", "crps_point", "pinball", "pit", "quantiles", "wilson", "coverage", "chi2_sf",
    "pit_histogram", "wape", "mape", "bias", "skill", "VERDICTS",
]

# Two-sided 95% normal quantile, Phi^-1(0.975).
Z95 = 1.959963984540054

VERDICTS = ("calibrated", "too narrow", "too wide", "biased high", "biased low", "too few cutoffs")


# ---------------------------------------------------------------- input checks

def _sample(sample, name: str = "sample") -> np.ndarray:
    x = np.asarray(sample, dtype=np.float64)
    if x.ndim != 1:
        raise ValueError(f"{name} must be 1-d, got shape {x.shape}")
    if x.size == 0:
        raise ValueError(f"{name} is empty")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{name} holds NaN or infinite values")
    return x


def _finite(value, name: str) -> np.ndarray:
    a = np.asarray(value, dtype=np.float64)
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} holds NaN or infinite values")
    return a


def _out(a: np.ndarray):
    """A 0-d result as a Python float, anything else as an array."""
    return float(a) if np.ndim(a) == 0 else a


# ---------------------------------------------------------------- scores of one forecast

def crps_sample(sample: np.ndarray, y: float) -> float:
    """CRPS of the empirical distribution of ``sample`` (shape (n,)) at the observation ``y``.

    Exact for the empirical CDF F_n (no kernel, no bias correction), in the energy form

        CRPS(F_n, y) = mean_i |x_i - y| - 1/(2 n^2) * sum_{i,j} |x_i - x_j|
                     = integral (F_n(t) - 1{t >= y})^2 dt.

    The pair sum is O(n log n) via the sorted sample x_(1) <= ... <= x_(n):

        sum_{i,j} |x_i - x_j| = 2 * sum_i (2i - n - 1) x_(i),

    so CRPS = mean|x - y| - sum_i (2i - n - 1) x_(i) / n^2. The weights sum to zero, so the sample is
    centred first (CRPS is shift-invariant) to avoid cancellation on large amounts.

    As an estimator of the CRPS of the distribution the trials were drawn from, this "1/n^2" form is
    biased upward by E|X - X'| / (2n) (the "1/(n(n-1))" form is not); it is the exact score of the
    forecast actually reported. Units: those of ``y``. Lower is better; n = 1 gives |x - y|.
    """
    x = _sample(sample)
    y = float(_finite(y, "y"))
    n = x.size
    centre = float(np.median(x))
    xs = np.sort(x - centre)
    weights = 2.0 * np.arange(1, n + 1) - n - 1.0
    spread = float(weights @ xs) / (n * n)  # = 0.5 * mean |X - X'| over all n^2 pairs
    return float(np.mean(np.abs(xs - (y - centre)))) - spread


def crps_point(x, y):
    """CRPS of a point forecast x (a step CDF at x) at y: |x - y|. Broadcasts; float for scalars."""
    return _out(np.abs(_finite(x, "x") - _finite(y, "y")))


def pinball(q, y, tau):
    """Quantile (pinball) loss of the tau-quantile forecast q at y: (y - q) * (tau - 1{y < q}).

    tau in [0, 1]. Broadcasts over arrays; a float for scalars. Averaged over tau in (0, 1), twice
    the pinball loss of the true quantiles integrates to the CRPS.
    """
    q, y, tau = _finite(q, "q"), _finite(y, "y"), _finite(tau, "tau")
    if np.any((tau < 0) | (tau > 1)):
        raise ValueError("tau must lie in [0, 1]")
    return _out((y - q) * (tau - (y < q)))


def pit(sample: np.ndarray, y):
    """Probability integral transform: the forecast CDF at the actual, with mid-ranks for ties.

    PIT = (P(X < y) + P(X <= y)) / 2 under the empirical distribution of ``sample`` (shape (n,)).
    ``y`` may be a scalar (float returned) or an array (array of the same shape returned).

    Why the midpoint: won-deal counts are integers, so a sample of 5,000 trials holds a few dozen
    distinct values and the actual usually equals one of them. P(X <= y) would then count the whole
    atom at y and push PITs up, P(X < y) would push them down; the midpoint is the mean of the
    randomised PIT P(X < y) + V P(X = y), V ~ U(0, 1), so it stays centred on 0.5 for a calibrated
    forecast without adding noise. (Caveat: with large atoms, mid-PITs avoid the ends of [0, 1] and a
    calibrated count forecast can look slightly "too wide" in the histogram.)
    """
    xs = np.sort(_sample(sample))
    y = _finite(y, "y")
    below = np.searchsorted(xs, y, side="left")
    at_or_below = np.searchsorted(xs, y, side="right")
    return _out((below + at_or_below) / (2.0 * xs.size))


def quantiles(sample: np.ndarray, probs) -> np.ndarray:
    """Quantiles of ``sample`` (shape (n,)) at ``probs`` (in [0, 1]), numpy's ``inverted_cdf``.

    Returns an array of the shape of ``probs``: the smallest sample value x with F_n(x) >= p.
    """
    x = _sample(sample)
    p = _finite(probs, "probs")
    if np.any((p < 0) | (p > 1)):
        raise ValueError("probs must lie in [0, 1]")
    return np.asarray(np.quantile(x, p, method="inverted_cdf"), dtype=np.float64)


# ---------------------------------------------------------------- calibration over many cutoffs

def wilson(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion k/n (n >= 1), two-sided at normal quantile z.

        centre = (p + z^2 / 2n) / (1 + z^2 / n)
        half   = z / (1 + z^2 / n) * sqrt(p (1 - p) / n + z^2 / 4n^2),   p = k / n

    Unlike p +- z sqrt(p(1-p)/n) it stays inside [0, 1] and keeps its coverage at k = 0 or k = n.
    """
    if n < 1 or not 0 <= k <= n:
        raise ValueError(f"need 0 <= k <= n and n >= 1, got k={k}, n={n}")
    p = k / n
    z2 = z * z
    denom = 1.0 + z2 / n
    centre = (p + z2 / (2 * n)) / denom
    half = z / denom * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    # The ends are exactly 0 at k = 0 and 1 at k = n; pin them against rounding.
    lo = 0.0 if k == 0 else max(0.0, centre - half)
    hi = 1.0 if k == n else min(1.0, centre + half)
    return lo, hi


def coverage(lo: np.ndarray, hi: np.ndarray, y: np.ndarray, nominal: float) -> dict:
    """Share of actuals inside their forecast interval, with a Wilson 95% interval for that share.

    ``lo``, ``hi``, ``y``: shape (m,), one interval and actual per cutoff; ``lo <= hi``; bounds are
    inclusive (y in [lo, hi]), which matters for integer counts. ``nominal`` is the interval's stated
    probability (0.8 for p10-p90).

    Returns {"coverage", "lo95", "hi95", "n", "nominal", "consistent"}: ``consistent`` is True when
    nominal lies inside [lo95, hi95], i.e. the hit rate does not contradict the nominal level at the
    5% level. With n = 0 coverage, lo95, hi95 and consistent are None.
    """
    lo, hi, y = (np.asarray(_finite(a, name)) for a, name in ((lo, "lo"), (hi, "hi"), (y, "y")))
    if not (lo.ndim == 1 and lo.shape == hi.shape == y.shape):
        raise ValueError(f"lo, hi and y must be 1-d of one length, got {lo.shape}, {hi.shape}, {y.shape}")
    if np.any(lo > hi):
        raise ValueError("lo must not exceed hi")
    nominal = float(nominal)
    if not 0.0 < nominal < 1.0:
        raise ValueError(f"nominal must lie in (0, 1), got {nominal}")
    n = int(y.size)
    if n == 0:
        return {"coverage": None, "lo95": None, "hi95": None, "n": 0, "nominal": nominal, "consistent": None}
    k = int(np.count_nonzero((lo <= y) & (y <= hi)))
    lo95, hi95 = wilson(k, n)
    return {"coverage": k / n, "lo95": lo95, "hi95": hi95, "n": n, "nominal": nominal,
            "consistent": bool(lo95 <= nominal <= hi95)}


def chi2_sf(x: float, df: float) -> float:
    """Survival function of the chi-square distribution: P(X >= x) = Q(df/2, x/2), df > 0."""
    if not df > 0:
        raise ValueError(f"df must be positive, got {df}")
    if math.isnan(x):
        raise ValueError("x is NaN")
    return upper_gamma_q(df / 2.0, max(float(x), 0.0) / 2.0)


def _binomial_band(n: int, p: float, level: float = 0.95) -> tuple[int, int]:
    """Equal-tailed interval [lo, hi] of Binomial(n, p): the (1-level)/2 and (1+level)/2 quantiles.

    Exact pmf in log space (log C(n, k) as a cumulative sum of log((n-k+1)/k)), so large n cannot
    underflow (1-p)^n.
    """
    k = np.arange(n + 1, dtype=np.float64)
    log_choose = np.concatenate([[0.0], np.cumsum(np.log(n - k[1:] + 1.0) - np.log(k[1:]))])
    log_pmf = log_choose + k * math.log(p) + (n - k) * math.log1p(-p)
    pmf = np.exp(log_pmf - log_pmf.max())
    cdf = np.cumsum(pmf / pmf.sum())
    tail = (1.0 - level) / 2.0
    lo = int(np.searchsorted(cdf, tail, side="left"))
    hi = int(np.searchsorted(cdf, 1.0 - tail, side="left"))
    return lo, min(hi, n)


def pit_histogram(pits: np.ndarray, bins: int = 10) -> dict:
    """Histogram of PITs (shape (m,), one per cutoff, in [0, 1]) against uniformity, with a verdict.

    Returns a dict of plain values:

    - ``n``, ``bins``, ``edges`` (bins + 1 floats), ``counts`` (bins ints; the last bin is closed),
      ``expected`` = n / bins;
    - ``band`` = [lo, hi]: the equal-tailed 95% interval of one bin's count under uniformity,
      Binomial(n, 1/bins), and ``outside``: indices of bins whose count leaves it. The band is per
      bin, not simultaneous: with 10 bins a calibrated forecast has about a 40% chance that some bin
      sticks out, so it shows *where* the histogram departs; the chi-square decides *whether*;
    - ``chi2`` = sum (count - expected)^2 / expected, ``df`` = bins - 1, ``p_value`` = chi2_sf;
    - ``mean_pit`` and ``outer_share`` (share of PITs below 0.1 or above 0.9; 0.2 when uniform);
    - ``verdict``, one of VERDICTS.

    Verdict rule:

    1. n < 2 * bins -> "too few cutoffs" (chi2 and p_value are None: with expected counts under 2 the
       chi-square approximation is unreliable);
    2. p_value >= 0.05 -> "calibrated";
    3. otherwise name the larger departure, each measured in standard errors under uniformity:
       shift z_mean = (mean_pit - 0.5) / sqrt(1 / (12 n)) and
       spread z_outer = (outer_share - 0.2) / sqrt(0.16 / n).
       If |z_mean| >= |z_outer|: mean_pit < 0.5 -> "biased high" (actuals land low in the forecast:
       the forecast is too high), else "biased low". Otherwise z_outer > 0 -> "too narrow" (U shape:
       actuals fall in both tails too often), z_outer < 0 -> "too wide" (hump: the middle over-full).

    A histogram that fails the chi-square for some other reason (say, one spiky middle bin) still
    gets the closer of these names; ``counts`` and ``band`` show the real shape.
    """
    u = _sample(pits, "pits") if np.size(pits) else np.zeros(0)
    if np.any((u < 0) | (u > 1)):
        raise ValueError("pits must lie in [0, 1]")
    if isinstance(bins, bool) or int(bins) != bins or bins < 2:
        raise ValueError(f"bins must be an integer >= 2, got {bins}")
    bins = int(bins)
    n = int(u.size)
    counts, edges = np.histogram(u, bins=bins, range=(0.0, 1.0))
    out: dict = {
        "n": n, "bins": bins, "edges": [float(e) for e in edges], "counts": [int(c) for c in counts],
        "expected": n / bins, "band": None, "outside": [], "chi2": None, "df": bins - 1,
        "p_value": None, "mean_pit": float(u.mean()) if n else None,
        "outer_share": float(np.mean((u < 0.1) | (u > 0.9))) if n else None, "verdict": "too few cutoffs",
    }
    if n == 0:
        return out
    band_lo, band_hi = _binomial_band(n, 1.0 / bins)
    out["band"] = [band_lo, band_hi]
    out["outside"] = [i for i, c in enumerate(counts) if c < band_lo or c > band_hi]
    if n < 2 * bins:
        return out
    expected = n / bins
    chi2 = float(np.sum((counts - expected) ** 2) / expected)
    p_value = chi2_sf(chi2, bins - 1)
    out["chi2"], out["p_value"] = chi2, p_value
    if p_value >= 0.05:
        out["verdict"] = "calibrated"
        return out
    z_mean = (out["mean_pit"] - 0.5) / math.sqrt(1.0 / (12.0 * n))
    z_outer = (out["outer_share"] - 0.2) / math.sqrt(0.16 / n)
    if abs(z_mean) >= abs(z_outer):
        out["verdict"] = "biased high" if z_mean < 0 else "biased low"
    else:
        out["verdict"] = "too narrow" if z_outer > 0 else "too wide"
    return out


# ---------------------------------------------------------------- point-forecast errors

def _pair(pred, y) -> tuple[np.ndarray, np.ndarray]:
    pred, y = _finite(pred, "pred"), _finite(y, "y")
    if pred.shape != y.shape:
        raise ValueError(f"pred and y must have one shape, got {pred.shape} and {y.shape}")
    return pred, y


def wape(pred, y) -> float | None:
    """Weighted absolute percentage error sum|pred - y| / sum|y| (arrays of one shape); None if sum|y| = 0."""
    pred, y = _pair(pred, y)
    denom = float(np.sum(np.abs(y)))
    return None if denom == 0 else float(np.sum(np.abs(pred - y))) / denom


def mape(pred, y) -> float | None:
    """Mean absolute percentage error mean(|pred - y| / |y|) over the entries with y != 0; None if none."""
    pred, y = _pair(pred, y)
    keep = y != 0
    if not np.any(keep):
        return None
    return float(np.mean(np.abs(pred[keep] - y[keep]) / np.abs(y[keep])))


def bias(pred, y) -> float | None:
    """Relative bias sum(pred - y) / sum(y); positive = forecasts too high. None if sum(y) = 0."""
    pred, y = _pair(pred, y)
    denom = float(np.sum(y))
    return None if denom == 0 else float(np.sum(pred - y)) / denom


def skill(score: float, reference: float) -> float | None:
    """Skill score 1 - score / reference for a negatively oriented score (CRPS, WAPE); None if reference = 0.

    1 = perfect, 0 = no better than the reference forecast, negative = worse.
    """
    score, reference = float(score), float(reference)
    if not (math.isfinite(score) and math.isfinite(reference)):
        raise ValueError("score and reference must be finite")
    return None if reference == 0 else 1.0 - score / reference
