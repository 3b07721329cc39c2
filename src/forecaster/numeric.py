"""Small numeric helpers shared by the fit, the funnel, the levers and the generator."""

from __future__ import annotations

import math

import numpy as np


def ratio(num, den, fill=0.0) -> np.ndarray:
    """``num / den`` where ``den > 0``, else ``fill`` (broadcast), without warnings for the masked cells."""
    den = np.asarray(den)
    ok = den > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(ok, num / np.where(ok, den, 1), fill)


def upper_gamma_q(a: float, x: float) -> float:
    """Regularised upper incomplete gamma Q(a, x) = Gamma(a, x) / Gamma(a), a > 0, x >= 0.

    Series for P = 1 - Q when x < a + 1, Lentz's continued fraction for Q otherwise (each converges
    fast on its side; Numerical Recipes 6.2). Relative accuracy ~1e-14.
    """
    if x <= 0.0:
        return 1.0
    eps, tiny = 1e-16, 1e-300
    max_iter = 10_000 + int(10 * math.sqrt(a))
    log_front = -x + a * math.log(x) - math.lgamma(a)
    if x < a + 1.0:
        ap, term = a, 1.0 / a
        total = term
        for _ in range(max_iter):
            ap += 1.0
            term *= x / ap
            total += term
            if abs(term) < abs(total) * eps:
                return max(0.0, 1.0 - total * math.exp(log_front))
    else:
        b = x + 1.0 - a
        c, d = 1.0 / tiny, 1.0 / b
        h = d
        for i in range(1, max_iter):
            an = -i * (i - a)
            b += 2.0
            d = an * d + b
            d = tiny if abs(d) < tiny else d
            c = b + an / c
            c = tiny if abs(c) < tiny else c
            d = 1.0 / d
            delta = d * c
            h *= delta
            if abs(delta - 1.0) < eps:
                return min(1.0, math.exp(log_front) * h)
    raise ArithmeticError(f"incomplete gamma did not converge for a={a}, x={x}")


def gamma_quantile(p: float, shape: float) -> float:
    """The p-quantile of Gamma(shape, scale 1), by bisection on the regularised incomplete gamma (~1e-12)."""
    lo, hi = 0.0, max(1.0, shape)
    while 1.0 - upper_gamma_q(shape, hi) < p:
        hi *= 2.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if 1.0 - upper_gamma_q(shape, mid) < p:
            lo = mid
        else:
            hi = mid
        if hi - lo <= 1e-12 * max(hi, 1e-300):
            break
    return 0.5 * (lo + hi)
