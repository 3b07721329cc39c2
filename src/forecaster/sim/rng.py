"""Counter-based random streams for the njit kernels.

Every random number in a simulation is a pure function of a key and a counter, never of a thread
or of what was drawn before elsewhere:

    draw(key, n) = mix64(key + (n + 1) * GOLDEN)           (uint64)

``mix64`` is the SplitMix64 finaliser (Stafford's "mix13", a bijection on 64-bit words); for a fixed
key, ``draw(key, 0), draw(key, 1), ...`` is exactly the SplitMix64 sequence started at ``key``, which
passes BigCrush (a hot loop may carry the state ``key + (n + 1) * GOLDEN`` and add GOLDEN per draw:
the same numbers). Keys are derived by hashing, one stream per unit of work:

    base   = domain_key(seed, DOMAIN_*)                     once per run, in Python
    tkey   = trial_key(base, trial)   = mix64(base + trial * GOLDEN)
    key    = stream_key(tkey, stream) = mix64(tkey ^ (stream * KEYMUL))

with ``stream`` the deal's stream id (open deals), the group (the per-trial gamma multiplier), or a
packed (group, day[, k-th arrival]) (new-deal counts and new deals). ``KEYMUL`` is odd, so distinct
streams of one trial get distinct keys; separate domains keep open deals, counts and new deals apart,
so switching new deals on or off, or changing one deal's tables, leaves every other stream as it was
(common random numbers across scenarios).

One 64-bit draw feeds a stage visit: ``hi32`` the exit day (as ``u1 = hi32 / 2**32``) and ``lo32`` the
destination (compared with integer thresholds scaled to ``2**32``: the nested draw of sim.compact). The samplers for Poisson and
gamma variates use 53-bit uniforms, one per draw.

All integer arithmetic here stays in uint64: numba turns a uint64/int64 mix into float64, so keys
are cast on entry. From Python, pass keys as ``np.uint64`` (numba returns uint64 results as Python
ints, and a Python int above 2**63 does not fit the int64 it would be typed as). The Python
versions of these functions (``.py_func``) give the same numbers; run them under
``np.errstate(over="ignore")`` because numpy warns on (intended) uint64 wrap-around.

This module is also the one place where njit options are set (``NJIT``, ``NJIT_PARALLEL``).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

# The one place njit options are set (as numba-stats' _util.py): cached to disk, numpy's error model
# (division by zero gives inf/nan instead of raising, which also removes a branch per division).
NJIT = {"cache": True, "error_model": "numpy", "nogil": True}
NJIT_PARALLEL = {**NJIT, "parallel": True}

MASK64 = (1 << 64) - 1

GOLDEN = np.uint64(0x9E3779B97F4A7C15)
GOLDEN2 = np.uint64((2 * 0x9E3779B97F4A7C15) & MASK64)  # draw n's state is key + (n + 1) GOLDEN
KEYMUL = np.uint64(0xD1342543DE82EF95)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_S11 = np.uint64(11)
_S27 = np.uint64(27)
_S30 = np.uint64(30)
_S31 = np.uint64(31)
_S32 = np.uint64(32)
_LO32 = np.uint64(0xFFFFFFFF)
TWO_M32 = 2.0**-32
TWO_M53 = 2.0**-53

# Domains: one per kind of stream. Changing these changes every result of every seed.
DOMAIN_OPEN = 0x4F50454E  # "OPEN": walks of open deals
DOMAIN_GAMMA = 0x47414D4D  # "GAMM": per-trial, per-group rate multiplier
DOMAIN_COUNT = 0x434F554E  # "COUN": number of new deals per (trial, group, day)
DOMAIN_NEW = 0x4E455744  # "NEWD": entry stage, amount and walk of one new deal
DOMAIN_FRAILTY = 0x4652414C  # "FRAL": per-trial level of the shared shock (model.shocks)

# Packing of (group, day, k) into one non-negative int64 stream id for new deals: 15 + 20 + 28 bits.
GROUP_BITS = 15
DAY_BITS = 20
ARRIVAL_BITS = 28
MAX_GROUPS = 1 << GROUP_BITS
MAX_DAYS = 1 << DAY_BITS
MAX_ARRIVALS = 1 << ARRIVAL_BITS


@njit(**NJIT)
def mix64(z):
    """SplitMix64 finaliser: a bijection on uint64 with full avalanche."""
    z = (z ^ (z >> _S30)) * _MIX1
    z = (z ^ (z >> _S27)) * _MIX2
    return z ^ (z >> _S31)


@njit(**NJIT)
def trial_key(base, trial):
    """Key of one trial (int ``trial >= 0``) under a domain's ``base`` key (uint64)."""
    return mix64(np.uint64(base) + np.uint64(trial) * GOLDEN)


@njit(**NJIT)
def stream_key(tkey, stream):
    """Key of one stream (int ``stream >= 0``: deal id, group, packed arrival) within a trial."""
    return mix64(np.uint64(tkey) ^ (np.uint64(stream) * KEYMUL))


@njit(**NJIT)
def draw(key, n):
    """The ``n``-th (``n >= 0``) 64-bit draw of the stream ``key``."""
    return mix64(np.uint64(key) + np.uint64(n + 1) * GOLDEN)


@njit(**NJIT)
def hi_uniform(x):
    """High 32 bits of a draw as a uniform in ``[0, 1 - 2**-32]`` (exact in float64)."""
    return np.float64(x >> _S32) * TWO_M32


@njit(**NJIT)
def lo32(x):
    """Low 32 bits of a draw (uint64 in ``[0, 2**32)``), compared against integer thresholds."""
    return x & _LO32


@njit(**NJIT)
def hi32(x):
    """High 32 bits of a draw (uint64 in ``[0, 2**32)``)."""
    return x >> _S32


@njit(**NJIT)
def uniform53(x):
    """A draw as a uniform in ``[0, 1)`` with 53 random bits."""
    return np.float64(x >> _S11) * TWO_M53


@njit(**NJIT)
def uniform53_at(key, n):
    """``uniform53(draw(key, n))``; one call, so the samplers' ``.py_func`` run on Python floats."""
    return uniform53(draw(key, n))


@njit(**NJIT)
def pick_index(x32, size):
    """``floor(x32 * size / 2**32)``: an index in ``[0, size)`` by multiply-and-shift, no division."""
    return np.int64((x32 * np.uint64(size)) >> _S32)


def domain_key(seed: int, domain: int) -> np.uint64:
    """Base key of one domain for a user seed (any int in ``[0, 2**64)``); Python, once per run."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ValueError(f"seed must be an integer in [0, 2**64), got {seed!r}")
    seed = int(seed)
    if not 0 <= seed <= MASK64:
        raise ValueError(f"seed must be an integer in [0, 2**64), got {seed}")
    z = _mix64_int(seed ^ domain)
    return np.uint64(_mix64_int((z + domain * int(GOLDEN)) & MASK64))


def _mix64_int(z: int) -> int:
    z = ((z ^ (z >> 30)) * int(_MIX1)) & MASK64
    z = ((z ^ (z >> 27)) * int(_MIX2)) & MASK64
    return z ^ (z >> 31)


@njit(**NJIT)
def pack_arrival(group, day, k):
    """Stream id (int64) of the ``k``-th new deal of ``group`` on day offset ``day``; also the id of
    the (group, day) count stream with ``k = 0`` (in its own domain)."""
    return (np.int64(group) << (DAY_BITS + ARRIVAL_BITS)) | (np.int64(day) << ARRIVAL_BITS) | np.int64(k)


# ---------------------------------------------------------------------------------------------
# Samplers. Each consumes its own stream ``key`` from draw 0 upward; results are exact functions
# of (parameter, key).

# Below this mean the search starts at 0 (exp(-lam) is far from underflow, and its O(lam) steps cost
# less than the mode start's O(sqrt(lam)) terms and lgamma: measured equal near lam = 100); from it on,
# at the mode. Both compute the same CDF, so the count is one function of (lam, u).
_POISSON_MODE_START = 100.0
_POISSON_CAP = 1000  # past any mass for lam < _POISSON_MODE_START: f can stall a few ulps below 1
_POISSON_TAIL_EPS = 2.0**-56  # the mass left below the summed terms, relative to F(mode)


@njit(**NJIT)
def poisson_quantile_nb(lam, u):
    """The smallest k (int64) with ``F(k; lam) >= u``: Poisson(``lam``) by inversion of one uniform
    ``u`` in [0, 1); ``lam <= 0`` gives 0.

    For a fixed ``u`` the count never falls when ``lam`` rises (``F(k; lam)`` falls with lam for every
    k), so a scenario with a higher rate keeps every arrival of the baseline in every trial. Below
    _POISSON_MODE_START the search runs up from 0; above it, it starts at the mode m = floor(lam) with
    ``F(m)`` summed down from ``p(m)`` until the terms left are below 2**-56 of it (about
    ``9 sqrt(lam)`` terms), then walks down or up: ``O(sqrt(lam))`` work and no underflow of
    ``exp(-lam)``. Where the two branches meet, they differ only by rounding (about 1e-15), the only
    place a count could fall by one as the rate rises.
    """
    if not lam > 0.0:
        return np.int64(0)
    if lam < _POISSON_MODE_START:
        p = math.exp(-lam)
        f = p
        k = 0
        while u > f and k < _POISSON_CAP:
            k += 1
            p *= lam / k
            f += p
        return np.int64(k)
    m = math.floor(lam)
    pm = math.exp(-lam + m * math.log(lam) - math.lgamma(m + 1.0))
    inv = 1.0 / lam
    # F(m) = p(m) + p(m-1) + ...; below j the terms fall at least by the ratio j / lam, so what is
    # left is at most p(j) r / (1 - r) with r = j / lam.
    f = pm
    p = pm
    j = m
    while j > 0:
        p *= j * inv
        j -= 1
        f += p
        r = j * inv
        if p * r < _POISSON_TAIL_EPS * f * (1.0 - r):
            break
    k = m
    p = pm
    if u <= f:
        while k > 0 and u <= f - p:  # F(k - 1) = F(k) - p(k) still reaches u
            f -= p
            p *= k * inv
            k -= 1
        return np.int64(k)
    cap = m + 64 + 40 * math.sqrt(lam)
    while u > f and k < cap:
        k += 1
        p *= lam / k
        f += p
    return np.int64(k)


@njit(**NJIT)
def poisson_nb(lam, key):
    """One Poisson(``lam``) variate (int64) from stream ``key``: ``poisson_quantile_nb`` of its
    draw 0 as a 53-bit uniform, so counts rise with ``lam`` draw by draw."""
    return poisson_quantile_nb(lam, uniform53_at(key, 0))


@njit(**NJIT)
def normal_nb(key, n):
    """A standard normal from draws ``n`` and ``n + 1`` of stream ``key`` (Box-Muller, cosine half)."""
    u1 = 1.0 - uniform53_at(key, n)  # in (0, 1]: log is finite
    u2 = uniform53_at(key, n + 1)
    return math.sqrt(-2.0 * math.log(u1)) * math.cos(2.0 * math.pi * u2)


@njit(**NJIT)
def gamma_nb(shape, key):
    """One Gamma(``shape``, scale 1) variate (float64) from stream ``key``; ``shape > 0``.

    Marsaglia and Tsang (2000); for ``shape < 1`` the boost ``G(shape + 1) * U**(1 / shape)``.
    """
    n = 0
    boost = 1.0
    if shape < 1.0:
        u = 1.0 - uniform53_at(key, 0)  # (0, 1]
        boost = u ** (1.0 / shape)
        n = 1
        shape = shape + 1.0
    d = shape - 1.0 / 3.0
    c = 1.0 / math.sqrt(9.0 * d)
    while True:
        x = normal_nb(key, n)
        n += 2
        v = 1.0 + c * x
        if v <= 0.0:
            continue
        v = v * v * v
        u = uniform53_at(key, n)
        n += 1
        x2 = x * x
        if u < 1.0 - 0.0331 * x2 * x2:
            return d * v * boost
        if math.log(u) < 0.5 * x2 + d * (1.0 - v + math.log(v)):
            return d * v * boost
