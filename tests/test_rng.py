"""Counter-based streams and the Poisson / gamma samplers.

Statistical checks use fixed keys and tolerances of 4 Monte Carlo standard errors derived from the
exact moments (never tuned).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests import naive
from forecaster.sim import rng

U64 = st.integers(0, (1 << 64) - 1)


def test_draw_is_splitmix64():
    # Reference outputs of Vigna's splitmix64.c for state 1234567.
    expected = [6457827717110365317, 3203168211198807973, 9817491932198370423, 4593380528125082431, 16408922859458223821]
    key = np.uint64(1234567)
    assert [int(rng.draw(key, n)) for n in range(5)] == expected
    assert [naive.draw(1234567, n) for n in range(5)] == expected
    # The kernels carry the state key + (n + 1) GOLDEN and add GOLDEN per draw.
    assert int(rng.GOLDEN2) == (2 * int(rng.GOLDEN)) % (1 << 64)
    assert int(rng.mix64(key + rng.GOLDEN2)) == expected[1]


@settings(max_examples=200, deadline=None)
@given(base=U64, trial=st.integers(0, 1 << 40), stream=st.integers(0, (1 << 63) - 1), n=st.integers(0, 200))
def test_jit_python_and_naive_agree(base, trial, stream, n):
    b = np.uint64(base)
    tk = np.uint64(rng.trial_key(b, trial))
    key = np.uint64(rng.stream_key(tk, stream))
    x = np.uint64(rng.draw(key, n))
    assert int(tk) == naive.trial_key(base, trial)
    assert int(key) == naive.stream_key(int(tk), stream)
    assert int(x) == naive.draw(int(key), n)
    with np.errstate(over="ignore"):
        assert rng.trial_key.py_func(b, trial) == tk
        assert rng.stream_key.py_func(tk, stream) == key
        assert rng.draw.py_func(key, n) == x
        assert rng.mix64.py_func(b) == rng.mix64(b)
    assert rng.hi_uniform(x) == (int(x) >> 32) * 2.0**-32
    assert int(rng.lo32(x)) == int(x) & 0xFFFFFFFF
    assert rng.uniform53(x) == (int(x) >> 11) * 2.0**-53


@settings(max_examples=100, deadline=None)
@given(g=st.integers(0, rng.MAX_GROUPS - 1), day=st.integers(0, rng.MAX_DAYS - 1), k=st.integers(0, rng.MAX_ARRIVALS - 1))
def test_pack_arrival(g, day, k):
    packed = int(rng.pack_arrival(g, day, k))
    assert packed == naive.pack_arrival(g, day, k)
    assert 0 <= packed < 1 << 63
    assert (packed >> 48, (packed >> 28) & ((1 << 20) - 1), packed & ((1 << 28) - 1)) == (g, day, k)


def test_domain_keys_differ_and_check_seed():
    keys = {int(rng.domain_key(s, d)) for s in (0, 1, 2**64 - 1) for d in (rng.DOMAIN_OPEN, rng.DOMAIN_GAMMA, rng.DOMAIN_COUNT, rng.DOMAIN_NEW)}
    assert len(keys) == 12
    with pytest.raises(ValueError, match="seed"):
        rng.domain_key(-1, rng.DOMAIN_OPEN)
    with pytest.raises(ValueError, match="seed"):
        rng.domain_key(2**64, rng.DOMAIN_OPEN)


def test_uniforms_of_neighbouring_streams():
    """Streams of consecutive ids in consecutive trials: uniform means and no lag-1 correlation."""
    base = rng.domain_key(7, rng.DOMAIN_OPEN)
    xs = [np.uint64(naive.draw(naive.stream_key(naive.trial_key(int(base), t), i), 0)) for t in range(40) for i in range(500)]
    u = np.array([rng.hi_uniform(x) for x in xs])
    v = np.array([int(rng.lo32(x)) * 2.0**-32 for x in xs])
    N = u.size
    for w in (u, v):
        assert abs(w.mean() - 0.5) < 4 * math.sqrt(1 / 12 / N)
        assert abs(w.var() - 1 / 12) < 4 * math.sqrt((1 / 80 - 1 / 144) / N)
    # Correlations (u_i, u_{i+1}), (u_i, v_i) have SE 1/sqrt(N) under independence.
    assert abs(np.corrcoef(u[:-1], u[1:])[0, 1]) < 4 / math.sqrt(N - 1)
    assert abs(np.corrcoef(u, v)[0, 1]) < 4 / math.sqrt(N)


def _samples(fn, param, n, seed):
    tk = naive.trial_key(int(rng.domain_key(seed, rng.DOMAIN_COUNT)), 0)
    return np.array([fn(param, np.uint64(naive.stream_key(tk, i))) for i in range(n)], dtype=np.float64)


@pytest.mark.parametrize("lam", [0.05, 1.0, 4.5, 9.99, 10.0, 37.5, 99.9, 100.0, 1000.0, 1e5])
def test_poisson_moments(lam):
    N = 20_000
    x = _samples(rng.poisson_nb, lam, N, seed=11)
    assert np.all(x == np.floor(x)) and x.min() >= 0
    # mean: SE sqrt(lam / N); variance: central 4th moment lam + 3 lam^2 -> SE sqrt((lam + 2 lam^2) / N)
    assert abs(x.mean() - lam) < 4 * math.sqrt(lam / N)
    assert abs(x.var(ddof=1) - lam) < 4 * math.sqrt((lam + 2 * lam**2) / N)


@pytest.mark.parametrize("lam", [3.0, 25.0, 60.0, 150.0])
def test_poisson_pmf(lam):
    """Frequencies of each value within 4 binomial SE of the exact pmf (both search starts)."""
    N = 20_000
    x = _samples(rng.poisson_nb, lam, N, seed=12).astype(np.int64)
    lo, hi = int(max(0, lam - 3 * math.sqrt(lam))), int(lam + 3 * math.sqrt(lam))
    for k in range(lo, hi + 1):
        p = math.exp(-lam + k * math.log(lam) - math.lgamma(k + 1))
        assert abs(np.mean(x == k) - p) < 4 * math.sqrt(p * (1 - p) / N), k


def _cdf(lam: float, k: int) -> float:
    """F(k; lam) from the pmf in log space, summed exactly (math.fsum)."""
    return math.fsum(math.exp(-lam + j * math.log(lam) - math.lgamma(j + 1.0)) for j in range(k + 1))


@pytest.mark.parametrize("lam", [0.7, 12.0, 99.99, 100.0, 101.5, 250.0, 2e4])
def test_poisson_quantile_is_the_inverse_cdf(lam):
    """The count is the smallest k with F(k) >= u, for u across the whole range (tails included),
    whichever branch computes it. The log of a pmf term, -lam + k ln(lam) - lgamma(k + 1), adds
    terms of size lam ln(lam), so both F's here carry errors of about 2**-52 lam ln(lam): a u that
    close to a step of F may round either way."""
    tol = 2.0**-51 * (lam * math.log(lam) + 100.0)
    us = np.r_[np.linspace(0.0, 1.0, 401)[1:-1], 1e-9, 1e-5, 1 - 1e-5, 1 - 1e-9]
    for u in us:
        k = int(rng.poisson_quantile_nb(lam, u))
        hi, lo = _cdf(lam, k), _cdf(lam, k - 1) if k > 0 else 0.0
        assert lo < u + tol and u <= hi + tol, (u, k, lo, hi)


def test_poisson_counts_rise_with_the_rate_draw_by_draw():
    """Common random numbers for new deals: for one stream key, a higher rate never gives a lower
    count, across the switch between the two search starts and far beyond it (the issue's case:
    x1.2 through lam = 10 lowered 9% of counts with the former sampler)."""
    tk = naive.trial_key(int(rng.domain_key(3, rng.DOMAIN_COUNT)), 0)
    keys = [np.uint64(naive.stream_key(tk, i)) for i in range(3000)]
    lams = np.r_[np.linspace(0.01, 45.0, 90), 9.0, 9.5, 10.0, 10.5, 95.0, 99.0, 100.0, 105.0, 500.0, 600.0, 5e4, 6e4]
    lams = np.sort(lams)
    with np.errstate(over="ignore"):
        counts = np.array([[rng.poisson_nb(lam, k) for k in keys] for lam in lams])
    assert np.all(np.diff(counts, axis=0) >= 0)


def test_poisson_zero_and_python_twin():
    key = naive.stream_key(naive.trial_key(5, 3), 9)
    assert rng.poisson_nb(0.0, np.uint64(key)) == 0
    with np.errstate(over="ignore"):
        for lam in (0.3, 7.0, 12.0, 40.0, 150.0, 400.0, 1e5):
            for i in range(50):
                k = np.uint64(naive.stream_key(key, i))
                assert rng.poisson_nb.py_func(lam, k) == rng.poisson_nb(lam, k)


@pytest.mark.parametrize("shape", [0.3, 1.0, 2.5, 20.0])
def test_gamma_moments(shape):
    N = 20_000
    x = _samples(rng.gamma_nb, shape, N, seed=13)
    assert x.min() > 0
    # Gamma(k, 1): mean k, variance k, central 4th moment 3k^2 + 6k.
    assert abs(x.mean() - shape) < 4 * math.sqrt(shape / N)
    assert abs(x.var(ddof=1) - shape) < 4 * math.sqrt((2 * shape**2 + 6 * shape) / N)


def test_gamma_python_twin():
    key = naive.stream_key(naive.trial_key(6, 1), 2)
    with np.errstate(over="ignore"):
        for shape in (0.4, 1.0, 3.0):
            for i in range(50):
                k = np.uint64(naive.stream_key(key, i))
                assert rng.gamma_nb.py_func(shape, k) == rng.gamma_nb(shape, k)


def test_normal_moments():
    N = 20_000
    key = naive.trial_key(99, 0)
    z = np.array([rng.normal_nb(np.uint64(naive.stream_key(key, i)), 0) for i in range(N)])
    assert abs(z.mean()) < 4 * math.sqrt(1 / N)
    assert abs(z.var(ddof=1) - 1) < 4 * math.sqrt(2 / N)
