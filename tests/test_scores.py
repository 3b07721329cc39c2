"""Proper scores and calibration checks: hand-computed values, naive twins, published reference values.

Statistical checks use fixed seeds and tolerances of 4 standard errors derived from the sample size
(never tuned).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from forecaster.analysis import scores

VALUES = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False)
SAMPLES = st.lists(VALUES, min_size=1, max_size=25)


# ---------------------------------------------------------------- naive twins

def crps_pairs(sample, y):
    """CRPS in the energy form, all n^2 ordered pairs, pure Python."""
    n = len(sample)
    first = sum(abs(x - y) for x in sample) / n
    second = sum(abs(a - b) for a in sample for b in sample) / (n * n)
    return first - 0.5 * second


def crps_integral(sample, y):
    """integral (F_n(t) - 1{t >= y})^2 dt, exact: the integrand is constant between sorted knots."""
    knots = sorted(set(sample) | {y})
    n = len(sample)
    total = 0.0
    for a, b in zip(knots, knots[1:]):
        f = sum(x <= a for x in sample) / n
        h = 1.0 if a >= y else 0.0
        total += (f - h) ** 2 * (b - a)
    return total


def binomial_band_naive(n, p, level=0.95):
    cdf, lo, hi = 0.0, None, None
    for k in range(n + 1):
        cdf += math.comb(n, k) * p**k * (1 - p) ** (n - k)
        if lo is None and cdf >= (1 - level) / 2:
            lo = k
        if hi is None and cdf >= (1 + level) / 2 - 1e-12:
            hi = k
    return lo, hi


# ---------------------------------------------------------------- CRPS

def test_crps_hand_computed():
    # Sample [1, 2, 4], y = 3.
    # Pair form: mean|X - y| = (2 + 1 + 1) / 3 = 4/3; ordered pairs |1-2| + |1-4| + |2-4| = 6, twice
    # = 12 over 9 pairs -> mean|X - X'| = 4/3; CRPS = 4/3 - 0.5 * 4/3 = 2/3.
    # Integral: F_n = 1/3 on [1, 2), 2/3 on [2, 4); H = 1{t >= 3}:
    # (1/3)^2 * 1 + (2/3)^2 * 1 [2, 3) + (2/3 - 1)^2 * 1 [3, 4) = 1/9 + 4/9 + 1/9 = 2/3.
    # Sorted form: weights 2i - n - 1 = (-2, 0, 2): (-2 + 8) / 9 = 2/3 subtracted from 4/3.
    assert scores.crps_sample(np.array([1.0, 2.0, 4.0]), 3.0) == pytest.approx(2 / 3, rel=1e-15)
    assert crps_pairs([1.0, 2.0, 4.0], 3.0) == pytest.approx(2 / 3)
    assert crps_integral([1.0, 2.0, 4.0], 3.0) == pytest.approx(2 / 3)


def test_crps_point_is_abs_error():
    assert scores.crps_point(3.0, 5.5) == 2.5
    assert scores.crps_sample(np.array([3.0]), 5.5) == 2.5
    assert scores.crps_sample(np.full(7, 3.0), 5.5) == 2.5
    np.testing.assert_array_equal(scores.crps_point(np.array([1.0, 4.0]), 2.0), [1.0, 2.0])


def test_crps_shift_invariant_on_large_amounts():
    # Revenue in the tens of millions: centring keeps the pair term from cancelling.
    base = np.array([1.0, 2.0, 4.0])
    assert scores.crps_sample(base + 3e7, 3.0 + 3e7) == pytest.approx(2 / 3, abs=1e-8)


@settings(max_examples=200, deadline=None)
@given(SAMPLES, VALUES)
def test_crps_matches_naive_twins(sample, y):
    fast = scores.crps_sample(np.array(sample), y)
    scale = max([abs(v) for v in sample] + [abs(y), 1.0])
    assert fast == pytest.approx(crps_pairs(sample, y), abs=1e-9 * scale)
    assert fast == pytest.approx(crps_integral(sample, y), abs=1e-9 * scale)
    assert fast >= -1e-12 * scale


@pytest.mark.parametrize("y", [-3.0, 0.0, 1.0, 2.5, 6.0])
def test_crps_normal_sample_matches_closed_form(y):
    mu, sigma, n = 1.0, 2.0, 20_000
    x = np.random.default_rng(20240611).normal(mu, sigma, n)
    z = (y - mu) / sigma
    phi = math.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)
    cdf = 0.5 * (1 + math.erf(z / math.sqrt(2)))
    exact = sigma * (z * (2 * cdf - 1) + 2 * phi - 1 / math.sqrt(math.pi))
    # The 1/n^2 pair sum has mean (n-1)/n E|X - X'|, so the estimator's mean is
    # exact + E|X - X'| / (2n) = exact + sigma / (sqrt(pi) n).
    mean = exact + sigma / (math.sqrt(math.pi) * n)
    # Its first-order (Hoeffding) term is mean_i h(X_i), h(x) = |x - y| - E|x - X'|, with
    # E|x - X'| = sigma * (u (2 Phi(u) - 1) + 2 phi(u)), u = (x - mu) / sigma.
    u = (x - mu) / sigma
    erf_u = np.array([math.erf(v / math.sqrt(2)) for v in u])  # 2 Phi(u) - 1
    g = sigma * (u * erf_u + 2 * np.exp(-0.5 * u * u) / math.sqrt(2 * math.pi))
    se = float(np.std(np.abs(x - y) - g)) / math.sqrt(n)
    assert abs(scores.crps_sample(x, y) - mean) < 4 * se


def test_crps_rejects_bad_input():
    with pytest.raises(ValueError, match="empty"):
        scores.crps_sample(np.array([]), 1.0)
    with pytest.raises(ValueError, match="1-d"):
        scores.crps_sample(np.ones((2, 2)), 1.0)
    with pytest.raises(ValueError, match="NaN"):
        scores.crps_sample(np.array([1.0, np.nan]), 1.0)
    with pytest.raises(ValueError, match="y holds NaN"):
        scores.crps_sample(np.array([1.0]), float("nan"))


# ---------------------------------------------------------------- pinball, PIT, quantiles

def test_pinball_examples():
    assert scores.pinball(10.0, 14.0, 0.9) == pytest.approx(3.6)  # under: (14-10) * 0.9
    assert scores.pinball(10.0, 6.0, 0.9) == pytest.approx(0.4)  # over: (6-10) * (0.9-1)
    assert scores.pinball(10.0, 6.0, 0.1) == pytest.approx(3.6)
    assert scores.pinball(10.0, 10.0, 0.3) == 0.0
    assert scores.pinball(10.0, 12.0, 0.5) == pytest.approx(0.5 * scores.crps_point(10.0, 12.0))
    np.testing.assert_allclose(scores.pinball(np.array([1.0, 3.0]), 2.0, 0.25), [0.25, 0.75])
    with pytest.raises(ValueError, match="tau"):
        scores.pinball(1.0, 2.0, 1.5)


def test_pinball_averaged_over_tau_is_half_crps():
    # integral_0^1 pinball(F^-1(tau), y, tau) dtau = CRPS / 2 for the empirical F; a midpoint sum
    # over 30,000 taus approximates the integral to well within 1e-4.
    x = np.array([1.0, 2.0, 4.0])
    taus = (np.arange(30_000) + 0.5) / 30_000
    q = scores.quantiles(x, taus)
    loss = float(np.mean(scores.pinball(q, 3.0, taus)))
    assert 2 * loss == pytest.approx(scores.crps_sample(x, 3.0), abs=1e-4)


def test_pit_mid_rank_with_ties():
    x = np.array([2.0, 1.0, 1.0, 0.0, 1.0])
    assert scores.pit(x, 1.0) == 0.5  # (P(X<1) + P(X<=1)) / 2 = (0.2 + 0.8) / 2
    assert scores.pit(x, 0.0) == pytest.approx(0.1)  # (0 + 0.2) / 2
    assert scores.pit(x, 0.5) == pytest.approx(0.2)  # no tie: the CDF
    assert scores.pit(x, -1.0) == 0.0
    assert scores.pit(x, 7.0) == 1.0
    np.testing.assert_allclose(scores.pit(x, np.array([0.0, 1.0, 2.0])), [0.1, 0.5, 0.9])


def test_quantiles_inverted_cdf():
    x = np.array([4.0, 1.0, 3.0, 2.0])
    np.testing.assert_array_equal(scores.quantiles(x, [0.0, 0.25, 0.26, 0.5, 0.75, 1.0]), [1, 1, 2, 2, 3, 4])
    assert scores.quantiles(x, 0.5).shape == ()
    with pytest.raises(ValueError, match="probs"):
        scores.quantiles(x, [1.2])


# ---------------------------------------------------------------- coverage and Wilson

def test_wilson_known_values():
    lo, hi = scores.wilson(8, 10)
    assert (round(lo, 3), round(hi, 3)) == (0.490, 0.943)
    lo, hi = scores.wilson(0, 10)
    assert lo == 0.0 and round(hi, 4) == 0.2775
    lo, hi = scores.wilson(10, 10)
    assert round(lo, 4) == 0.7225 and hi == 1.0


def test_coverage():
    lo = np.zeros(10)
    hi = np.full(10, 10.0)
    y = np.array([0.0, 10.0, 5, 5, 5, 5, 5, 5, 11, -1])  # bounds inclusive: 8 of 10 inside
    out = scores.coverage(lo, hi, y, 0.8)
    assert out["coverage"] == 0.8 and out["n"] == 10 and out["consistent"] is True
    assert (round(out["lo95"], 3), round(out["hi95"], 3)) == (0.490, 0.943)
    assert scores.coverage(lo, hi, y, 0.95)["consistent"] is False
    assert all(type(v) in (int, float, bool) for v in out.values())
    empty = scores.coverage(np.array([]), np.array([]), np.array([]), 0.8)
    assert empty["coverage"] is None and empty["n"] == 0 and empty["consistent"] is None


def test_coverage_rejects_bad_input():
    with pytest.raises(ValueError, match="exceed"):
        scores.coverage(np.array([2.0]), np.array([1.0]), np.array([1.5]), 0.8)
    with pytest.raises(ValueError, match="one length"):
        scores.coverage(np.zeros(2), np.ones(3), np.ones(2), 0.8)
    with pytest.raises(ValueError, match="nominal"):
        scores.coverage(np.zeros(2), np.ones(2), np.ones(2), 80)


# ---------------------------------------------------------------- chi-square

@pytest.mark.parametrize("x, df, p", [
    (16.919, 9, 0.05), (3.841, 1, 0.05), (23.209, 10, 0.01), (2.7055, 1, 0.10),
    (21.666, 9, 0.01), (124.342, 100, 0.05),  # standard table critical values
])
def test_chi2_sf_table_values(x, df, p):
    assert scores.chi2_sf(x, df) == pytest.approx(p, abs=2e-5)


@settings(max_examples=200, deadline=None)
@given(st.floats(0, 200), st.integers(1, 40))
def test_chi2_sf_closed_forms(x, k):
    # df = 1: erfc(sqrt(x/2)); even df = 2k: exp(-x/2) sum_{j<k} (x/2)^j / j!.
    assert scores.chi2_sf(x, 1) == pytest.approx(math.erfc(math.sqrt(x / 2)), rel=1e-10, abs=1e-300)
    even = math.exp(-x / 2) * sum((x / 2) ** j / math.factorial(j) for j in range(k))
    assert scores.chi2_sf(x, 2 * k) == pytest.approx(even, rel=1e-10, abs=1e-300)


def test_chi2_sf_edges():
    assert scores.chi2_sf(0.0, 9) == 1.0
    assert scores.chi2_sf(1e4, 9) == 0.0
    with pytest.raises(ValueError, match="df"):
        scores.chi2_sf(1.0, 0)


# ---------------------------------------------------------------- PIT histogram

@pytest.mark.parametrize("n, p", [(20, 0.1), (100, 0.1), (57, 0.2), (200, 0.05)])
def test_binomial_band_matches_naive(n, p):
    assert scores._binomial_band(n, p) == binomial_band_naive(n, p)


def test_pit_histogram_uniform_is_calibrated():
    u = np.random.default_rng(7).random(1000)
    h = scores.pit_histogram(u)
    assert h["verdict"] == "calibrated" and h["p_value"] >= 0.05
    assert sum(h["counts"]) == 1000 and h["expected"] == 100.0 and h["df"] == 9
    assert h["band"] == list(scores._binomial_band(1000, 0.1))
    assert h["outside"] == [i for i, c in enumerate(h["counts"]) if not h["band"][0] <= c <= h["band"][1]]


def test_pit_histogram_hand_counts():
    u = np.array([0.0, 0.05, 0.5, 0.55, 1.0, 0.999] * 5)  # 1.0 falls in the last (closed) bin
    h = scores.pit_histogram(u, bins=4)
    assert h["counts"] == [10, 0, 10, 10] and h["edges"] == [0.0, 0.25, 0.5, 0.75, 1.0]
    # chi2 = 3 * (10 - 7.5)^2 / 7.5 + 7.5 = 10
    assert h["chi2"] == pytest.approx(10.0)
    assert h["p_value"] == pytest.approx(scores.chi2_sf(10.0, 3))


@pytest.mark.parametrize("a, b, verdict", [
    (0.4, 0.4, "too narrow"),  # U: actuals in both tails too often
    (4.0, 4.0, "too wide"),  # hump
    (1.0, 3.0, "biased high"),  # PITs pile low: forecasts too high
    (3.0, 1.0, "biased low"),
])
def test_pit_histogram_verdicts(a, b, verdict):
    u = np.random.default_rng(11).beta(a, b, 400)
    assert scores.pit_histogram(u)["verdict"] == verdict


def test_pit_histogram_from_sampled_forecasts():
    # Forecast N(0, 1) samples; actuals from N(0, 2) (forecast too narrow) or N(1, 1) (too low).
    rng = np.random.default_rng(3)
    sample = rng.normal(0.0, 1.0, 2000)
    wide_actuals = rng.normal(0.0, 2.0, 300)
    high_actuals = rng.normal(1.0, 1.0, 300)
    assert scores.pit_histogram(scores.pit(sample, wide_actuals))["verdict"] == "too narrow"
    assert scores.pit_histogram(scores.pit(sample, high_actuals))["verdict"] == "biased low"


def test_pit_histogram_too_few_cutoffs():
    h = scores.pit_histogram(np.linspace(0.05, 0.95, 19))
    assert h["verdict"] == "too few cutoffs" and h["chi2"] is None and h["p_value"] is None
    assert sum(h["counts"]) == 19
    empty = scores.pit_histogram(np.array([]))
    assert empty["verdict"] == "too few cutoffs" and empty["n"] == 0 and empty["band"] is None


def test_pit_histogram_rejects_bad_input():
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        scores.pit_histogram(np.array([0.5, 1.2]))
    with pytest.raises(ValueError, match="bins"):
        scores.pit_histogram(np.array([0.5]), bins=1)


# ---------------------------------------------------------------- point errors and skill

def test_point_errors():
    pred = np.array([110.0, 90.0, 0.0])
    y = np.array([100.0, 100.0, 0.0])
    assert scores.wape(pred, y) == pytest.approx(0.1)  # 20 / 200
    assert scores.mape(pred, y) == pytest.approx(0.1)  # (0.1 + 0.1) / 2, y = 0 skipped
    assert scores.bias(pred, y) == 0.0
    assert scores.bias(np.array([120.0, 100.0]), np.array([100.0, 100.0])) == pytest.approx(0.1)
    assert scores.wape(pred[2:], y[2:]) is None
    assert scores.mape(pred[2:], y[2:]) is None
    assert scores.bias(pred[2:], y[2:]) is None
    with pytest.raises(ValueError, match="one shape"):
        scores.wape(pred, y[:2])


def test_skill():
    assert scores.skill(0.8, 1.0) == pytest.approx(0.2)
    assert scores.skill(2.0, 1.0) == -1.0
    assert scores.skill(1.0, 0.0) is None


# ---------------------------------------------------------------- deal-level scores

def test_deal_scores_by_hand():
    from forecaster.analysis import deal_scores as ds

    assert ds.brier([0.2, 0.8], [0, 1]) == pytest.approx(0.04)
    assert ds.log_loss([0.5, 0.5], [0, 1]) == pytest.approx(math.log(2))
    assert ds.log_loss([0.0], [1]) == pytest.approx(-math.log(ds.CLIP))  # clipped, not infinite
    # Won deals at 0.4 and 0.8 against lost ones at 0.1 and 0.4: 1 + 0.5 (tie) + 1 + 1 of 4 pairs.
    assert ds.auc([0.1, 0.4, 0.4, 0.8], [0, 0, 1, 1]) == pytest.approx(3.5 / 4)
    assert ds.auc([0.3, 0.6], [1, 1]) is None
    rel = ds.reliability([0.05, 0.07, 0.55, 1.0], [0, 1, 1, 1])
    assert [b["n"] for b in rel] == [2, 0, 0, 0, 0, 1, 0, 0, 0, 1]
    assert rel[0]["mean_predicted"] == pytest.approx(0.06) and rel[0]["observed"] == 0.5
    assert rel[1]["mean_predicted"] is None and rel[9]["hi"] == 1.0
    with pytest.raises(ValueError, match="probabilities"):
        ds.brier([1.2], [1])
    with pytest.raises(ValueError, match="0 or 1"):
        ds.brier([0.2], [2])


def test_auc_equals_the_pairwise_definition():
    from forecaster.analysis import deal_scores as ds

    rng = np.random.default_rng(0)
    p = rng.integers(0, 5, 60) / 4
    y = (rng.random(60) < p).astype(float)
    pos, neg = p[y == 1], p[y == 0]
    pairwise = np.mean([(a > b) + 0.5 * (a == b) for a in pos for b in neg])
    assert ds.auc(p, y) == pytest.approx(pairwise)
