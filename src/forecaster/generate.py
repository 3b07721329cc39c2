"""Synthetic B2B CRM exports with known truth, for demos, tests and benchmarks.

The process is a semi-Markov chain over the open stages, one chain per deal, segmented by product:

- Arrivals: Poisson counts per day and product with rate ``base_rate * scale * weekday_factor *
  month_of_quarter_factor * g_month``, where ``g_month ~ Gamma(shape, 1/shape)`` is one draw per
  calendar month shared by all products (mild overdispersion).
- A new deal gets region, owner (each owner belongs to one region), source and an entry stage (mostly
  prospecting; some inbound and partner deals start in qualification), and a lognormal amount per product.
- Each spell in a stage first draws its destination from ``p_exit[product][stage]`` (a later stage,
  one stage back, won or lost), then its duration in whole days ``floor(X)``: with probability
  ``stall_prob`` X comes from the stall lognormal (deals that sit for months), otherwise from the
  lognormal of the exit kind (forward, back, won, lost) for that product and stage.

Everything after ``end`` is unobserved: such deals are open and their history stops at the last stage
entered on or before ``end``. truth.json records every parameter, plus the expected won amount of the 90
days after ``end`` given what is observed (Monte Carlo from the true process, conditioned on each open
deal's stage and age), which sets the config's quota.

All randomness comes from one seed through ``numpy.random.SeedSequence(seed).spawn``; the work is
vectorised over deals (one numpy step advances every active deal by one spell).
"""

from __future__ import annotations

import datetime as dt
import json
import math
import numbers
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from forecaster.config import as_date
from forecaster.errors import ConfigError
from forecaster.files import write_atomic, write_with

__all__ = ["generate"]

FORMAT_VERSION = 1
STAGES = ("prospecting", "qualification", "discovery", "demo", "proposal", "negotiation")
WON, LOST = "won", "lost"
DESTINATIONS = STAGES + (WON, LOST)
EXIT_KINDS = ("forward", "back", "won", "lost")
PRODUCTS = ("Core", "Pro", "Enterprise")
HORIZON_DAYS = 90

# Where a spell goes next, before the per-product shift of the lost share. Skips and one-stage-back
# moves are a few percent; won comes mostly from negotiation.
BASE_P_EXIT: dict[str, dict[str, float]] = {
    "prospecting": {"qualification": 0.66, "discovery": 0.08, "demo": 0.02, "lost": 0.24},
    "qualification": {"prospecting": 0.04, "discovery": 0.65, "demo": 0.07, "lost": 0.24},
    "discovery": {"qualification": 0.04, "demo": 0.66, "proposal": 0.06, "lost": 0.24},
    "demo": {"discovery": 0.05, "proposal": 0.63, "negotiation": 0.04, "won": 0.04, "lost": 0.24},
    "proposal": {"demo": 0.06, "negotiation": 0.60, "won": 0.09, "lost": 0.25},
    "negotiation": {"proposal": 0.05, "won": 0.65, "lost": 0.30},
}
# Median days of a forward move per stage at a product's days factor of 1.
STAGE_MEDIAN_DAYS = {
    "prospecting": 6.0, "qualification": 9.0, "discovery": 12.0,
    "demo": 10.0, "proposal": 14.0, "negotiation": 18.0,
}
# Per exit kind: median multiplier, lognormal sigma, probability that the spell stalls.
KIND_MEDIAN_FACTOR = {"forward": 1.0, "back": 1.4, "won": 1.0, "lost": 1.7}
KIND_SIGMA = {"forward": 0.7, "back": 0.8, "won": 0.65, "lost": 0.9}
KIND_STALL_PROB = {"forward": 0.02, "back": 0.04, "won": 0.01, "lost": 0.14}
STALL_MEDIAN_DAYS = 100.0  # times the product's days factor
STALL_SIGMA = 0.5


@dataclass(frozen=True)
class Product:
    share: float  # of arrivals
    lost_odds: float  # multiplies the odds of a lost exit at every stage
    days: float  # multiplies every duration median
    amount_median: float
    amount_sigma: float


PRODUCT_PARAMS = {
    "Core": Product(share=0.6, lost_odds=0.8, days=0.8, amount_median=12_000.0, amount_sigma=0.55),
    "Pro": Product(share=0.3, lost_odds=1.0, days=1.15, amount_median=45_000.0, amount_sigma=0.6),
    "Enterprise": Product(share=0.1, lost_odds=1.35, days=1.9, amount_median=220_000.0, amount_sigma=0.75),
}
ARRIVALS_PER_DAY = 9.5  # all products, at scale 1, averaged over weekdays and months
WEEKDAY_RAW = (1.2, 1.3, 1.3, 1.25, 1.0, 0.12, 0.08)  # Monday first
MONTH_OF_QUARTER_RAW = (0.9, 0.95, 1.25)
MONTH_GAMMA_SHAPE = 50.0
REGIONS = {"NA": 0.5, "EMEA": 0.3, "APAC": 0.2}
OWNERS = {
    "NA": ("Avery Brooks", "Jordan Price", "Maya Chen", "Luis Ortega", "Sam Whitfield"),
    "EMEA": ("Hannah Vogel", "Pierre Laurent", "Sofia Rossi", "Oliver Grant"),
    "APAC": ("Kenji Sato", "Priya Nair", "Liam Walsh"),
}
SOURCES = {"inbound": 0.45, "outbound": 0.35, "partner": 0.20}
ENTRY_STAGE = {
    "inbound": {"prospecting": 0.8, "qualification": 0.2},
    "outbound": {"prospecting": 1.0},
    "partner": {"prospecting": 0.7, "qualification": 0.3},
}


# ---------------------------------------------------------------------------------------------
# Parameter tables


@dataclass(frozen=True)
class _Tables:
    """Dense parameter arrays. G products, S open stages, K = S + 2 destinations, 4 exit kinds."""

    p_exit: np.ndarray  # (G, S, K) float64
    cum_exit: np.ndarray  # (G, S, K) cumulative p_exit, last column exactly 1
    kind: np.ndarray  # (S, K) int64 exit kind of stage -> destination
    mu: np.ndarray  # (G, S, 4) log-days of the regular component
    sigma: np.ndarray  # (G, S, 4)
    stall_p: np.ndarray  # (G, S, 4)
    stall_mu: np.ndarray  # (G,)
    stall_sigma: float
    arrival_rate: np.ndarray  # (G,) per day at the requested scale
    weekday: np.ndarray  # (7,) mean 1
    month_of_quarter: np.ndarray  # (3,) mean 1
    amount_mu: np.ndarray  # (G,)
    amount_sigma: np.ndarray  # (G,)


def _exit_kind(i: int, k: int) -> int:
    if k == len(STAGES):
        return 2
    if k == len(STAGES) + 1:
        return 3
    return 0 if k > i else 1


def _tables(scale: float) -> _Tables:
    n_g, n_s, n_k = len(PRODUCTS), len(STAGES), len(DESTINATIONS)
    p = np.zeros((n_g, n_s, n_k))
    mu = np.zeros((n_g, n_s, 4))
    sigma = np.zeros((n_g, n_s, 4))
    stall_p = np.zeros((n_g, n_s, 4))
    kind = np.array([[_exit_kind(i, k) for k in range(n_k)] for i in range(n_s)], dtype=np.int64)
    for g, name in enumerate(PRODUCTS):
        prod = PRODUCT_PARAMS[name]
        for i, stage in enumerate(STAGES):
            base = BASE_P_EXIT[stage]
            lost = base["lost"] * prod.lost_odds / (base["lost"] * prod.lost_odds + 1.0 - base["lost"])
            for dest, share in base.items():
                k = DESTINATIONS.index(dest)
                p[g, i, k] = lost if dest == LOST else share * (1.0 - lost) / (1.0 - base["lost"])
            for j, kname in enumerate(EXIT_KINDS):
                median = STAGE_MEDIAN_DAYS[stage] * KIND_MEDIAN_FACTOR[kname] * prod.days
                mu[g, i, j] = math.log(median)
                sigma[g, i, j] = KIND_SIGMA[kname]
                stall_p[g, i, j] = KIND_STALL_PROB[kname]
    p /= p.sum(axis=2, keepdims=True)
    cum = np.cumsum(p, axis=2)
    cum[:, :, -1] = 1.0
    weekday = np.array(WEEKDAY_RAW) / np.mean(WEEKDAY_RAW)
    moq = np.array(MONTH_OF_QUARTER_RAW) / np.mean(MONTH_OF_QUARTER_RAW)
    prods = [PRODUCT_PARAMS[n] for n in PRODUCTS]
    return _Tables(
        p_exit=p,
        cum_exit=cum,
        kind=kind,
        mu=mu,
        sigma=sigma,
        stall_p=stall_p,
        stall_mu=np.log([STALL_MEDIAN_DAYS * q.days for q in prods]),
        stall_sigma=STALL_SIGMA,
        arrival_rate=np.array([ARRIVALS_PER_DAY * q.share * scale for q in prods]),
        weekday=weekday,
        month_of_quarter=moq,
        amount_mu=np.log([q.amount_median for q in prods]),
        amount_sigma=np.array([q.amount_sigma for q in prods]),
    )


def _absorption(p: np.ndarray) -> np.ndarray:
    """(S, 2) P(won), P(lost) from each open stage: B = (I - Q)^-1 R for one product's p_exit (S, K)."""
    n_s = len(STAGES)
    q, r = p[:, :n_s], p[:, n_s:]
    return np.linalg.solve(np.eye(n_s) - q, r)


# ---------------------------------------------------------------------------------------------
# Sampling


def _categorical(rng: np.random.Generator, cum: np.ndarray) -> np.ndarray:
    """One index per row of a (n, K) cumulative table (last column 1)."""
    u = rng.random(cum.shape[0])
    return (u[:, None] >= cum).sum(axis=1)


def _choice(rng: np.random.Generator, probs: dict[str, float], n: int) -> np.ndarray:
    cum = np.cumsum(list(probs.values()))
    cum[-1] = 1.0
    return np.minimum(np.searchsorted(cum, rng.random(n), side="right"), len(cum) - 1)


def _draw_spell(rng: np.random.Generator, t: _Tables, seg: np.ndarray, stage: np.ndarray):
    """Destination (int64, n) and whole days in the stage (int64, n) of n fresh spells."""
    dest = _categorical(rng, t.cum_exit[seg, stage])
    kind = t.kind[stage, dest]
    stall = rng.random(seg.size) < t.stall_p[seg, stage, kind]
    z = rng.standard_normal(seg.size)
    regular = t.mu[seg, stage, kind] + t.sigma[seg, stage, kind] * z
    log_x = np.where(stall, t.stall_mu[seg] + t.stall_sigma * z, regular)
    return dest, np.floor(np.exp(np.minimum(log_x, 15.0))).astype(np.int64)


def _erfc(x: np.ndarray) -> np.ndarray:
    """Complementary error function, relative error < 1.2e-7 everywhere (Numerical Recipes erfcc)."""
    z = np.abs(x)
    t = 1.0 / (1.0 + 0.5 * z)
    poly = -1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (-0.18628806 + t * (
        0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277))))))))
    r = t * np.exp(-z * z + poly)
    return np.where(x >= 0, r, 2.0 - r)


def _normal_above(rng: np.random.Generator, b: np.ndarray) -> np.ndarray:
    """Standard normal draws conditioned on z >= b, by rejection (exponential proposal for b > 0)."""
    z = np.empty_like(b)
    todo = np.arange(b.size)
    while todo.size:
        bb = b[todo]
        alpha = 0.5 * (bb + np.sqrt(bb * bb + 4.0))
        tail = bb > 0.0
        cand = np.where(tail, bb + rng.standard_exponential(todo.size) / alpha, rng.standard_normal(todo.size))
        u = rng.random(todo.size)
        ok = np.where(tail, u <= np.exp(-0.5 * (cand - alpha) ** 2), cand >= bb)
        z[todo[ok]] = cand[ok]
        todo = todo[~ok]
    return z


def _draw_spell_given_age(rng: np.random.Generator, t: _Tables, seg: np.ndarray, stage: np.ndarray,
                          age: np.ndarray):
    """Like _draw_spell, conditioned on the spell lasting at least ``age`` >= 1 whole days."""
    n, n_k = seg.size, len(DESTINATIONS)
    kinds = t.kind[stage]  # (n, K)
    log_a = np.log(age.astype(np.float64))[:, None]
    mu_r = t.mu[seg[:, None], stage[:, None], kinds]
    sd_r = t.sigma[seg[:, None], stage[:, None], kinds]
    mu_s = np.broadcast_to(t.stall_mu[seg][:, None], (n, n_k))
    b_r = (log_a - mu_r) / sd_r
    b_s = (log_a - mu_s) / t.stall_sigma
    pi = t.stall_p[seg[:, None], stage[:, None], kinds]
    p = t.p_exit[seg, stage]
    # floor(X) >= a  <=>  X >= a for whole a: weights P(dest, component, X >= a).
    sf_r, sf_s = 0.5 * _erfc(b_r / math.sqrt(2)), 0.5 * _erfc(b_s / math.sqrt(2))
    w = np.concatenate([p * (1 - pi) * sf_r, p * pi * sf_s], axis=1)
    total = w.sum(axis=1)
    lost_stalled = np.zeros(2 * n_k)
    lost_stalled[2 * n_k - 1] = 1.0  # underflow guard for absurd ages: a stalled lost spell
    w = np.where(total[:, None] > 0, w / np.where(total > 0, total, 1.0)[:, None], lost_stalled)
    cum = np.cumsum(w, axis=1)
    cum[:, -1] = 1.0
    pick = _categorical(rng, cum)
    dest, stalled = pick % n_k, pick >= n_k
    rows = np.arange(n)
    mu = np.where(stalled, mu_s[rows, dest], mu_r[rows, dest])
    sd = np.where(stalled, t.stall_sigma, sd_r[rows, dest])
    z = _normal_above(rng, np.where(stalled, b_s[rows, dest], b_r[rows, dest]))
    days = np.floor(np.exp(np.minimum(mu + sd * z, 15.0))).astype(np.int64)
    return dest, np.maximum(days, age)


@dataclass
class _Chains:
    status: np.ndarray  # (n,) int8: 0 open, 1 won, 2 lost
    closed: np.ndarray  # (n,) int64 day of the won/lost entry, -1 while open
    stage: np.ndarray  # (n,) int64 stage of the spell in progress at the horizon (open deals)
    entered: np.ndarray  # (n,) int64 day that spell began
    rows: tuple[np.ndarray, np.ndarray, np.ndarray] | None  # (deal, destination code, day), per deal in order


def _run_chains(rng: np.random.Generator, t: _Tables, seg: np.ndarray, stage: np.ndarray, entered: np.ndarray,
                horizon: int, *, record: bool, first: Callable | None = None) -> _Chains:
    """Walk every deal from (stage, entered) until won, lost or past ``horizon`` (a day number).

    One loop step advances all active deals by one spell. ``first(rng, idx)`` replaces the first spell's
    draw (used to condition open deals on their age). Rows record each stage entered on or before the
    horizon, the first one included.
    """
    n_s = len(STAGES)
    n = seg.size
    status = np.zeros(n, dtype=np.int8)
    closed = np.full(n, -1, dtype=np.int64)
    cur_stage = stage.astype(np.int64)
    cur_t = entered.astype(np.int64)
    parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    act = np.flatnonzero(cur_t <= horizon)
    step = 0
    while act.size:
        if record:
            parts.append((act, cur_stage[act], cur_t[act]))
        if step == 0 and first is not None:
            dest, days = first(rng, act)
        else:
            dest, days = _draw_spell(rng, t, seg[act], cur_stage[act])
        nt = cur_t[act] + days
        inside = nt <= horizon
        done = inside & (dest >= n_s)
        moved = inside & (dest < n_s)
        idx = act[done]
        status[idx] = dest[done] - n_s + 1
        closed[idx] = nt[done]
        if record:
            parts.append((idx, dest[done], nt[done]))
        act = act[moved]
        cur_stage[act] = dest[moved]
        cur_t[act] = nt[moved]
        step += 1
    rows = None
    if record:
        empty = np.zeros(0, dtype=np.int64)
        parts.append((empty, empty, empty))
        deal = np.concatenate([q[0] for q in parts])
        order = np.argsort(deal, kind="stable")  # parts are in time order per deal
        rows = (deal[order], np.concatenate([q[1] for q in parts])[order],
                np.concatenate([q[2] for q in parts])[order])
    return _Chains(status, closed, cur_stage, cur_t, rows)


def _months(days: np.ndarray) -> np.ndarray:
    """Months since 1970-01 of day numbers (days since 1970-01-01)."""
    return days.astype("datetime64[D]").astype("datetime64[M]").astype(np.int64)


def _arrivals(rng: np.random.Generator, t: _Tables, first_day: int, last_day: int, month_factor: Callable,
              reps: int = 1):
    """Creation day and product of the deals arriving on days first_day..last_day, for ``reps`` copies.

    ``month_factor(months)`` gives (reps, n_months) gamma factors. Returns (rep, day, product), sorted by
    rep, day, product.
    """
    days = np.arange(first_day, last_day + 1, dtype=np.int64)
    months = _months(days)
    uniq, m_idx = np.unique(months, return_inverse=True)
    factor = month_factor(uniq)[:, m_idx]  # (reps, D)
    daily = t.weekday[(days + 3) % 7] * t.month_of_quarter[(months % 12) % 3]
    lam = factor[:, :, None] * daily[None, :, None] * t.arrival_rate[None, None, :]
    counts = rng.poisson(lam).ravel()
    cell = np.repeat(np.arange(counts.size), counts)
    n_d, n_g = days.size, len(PRODUCTS)
    return cell // (n_d * n_g), days[(cell // n_g) % n_d], cell % n_g


def _attributes(rng: np.random.Generator, t: _Tables, seg: np.ndarray) -> dict[str, np.ndarray]:
    """Region, owner, source (codes), entry stage and amount of each new deal."""
    n = seg.size
    region = _choice(rng, REGIONS, n)
    sizes = np.array([len(OWNERS[r]) for r in REGIONS])
    offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    owner = offsets[region] + np.floor(rng.random(n) * sizes[region]).astype(np.int64)
    source = _choice(rng, SOURCES, n)
    entry = np.zeros(n, dtype=np.int64)
    u = rng.random(n)
    for s, name in enumerate(SOURCES):
        cum = np.cumsum([ENTRY_STAGE[name].get(st, 0.0) for st in STAGES])
        sel = source == s
        entry[sel] = np.minimum(np.searchsorted(cum, u[sel], side="right"), len(STAGES) - 1)
    amount = np.round(np.exp(t.amount_mu[seg] + t.amount_sigma[seg] * rng.standard_normal(n)))
    return {"region": region, "owner": owner, "source": source, "entry": entry, "amount": amount}


# ---------------------------------------------------------------------------------------------
# Expected revenue after the end of the data


def _future(rng: np.random.Generator, t: _Tables, end_day: int, month_g: dict[int, float], seg: np.ndarray,
            stage: np.ndarray, entered: np.ndarray, amount: np.ndarray, reps: int) -> dict[str, Any]:
    """Won amount in the HORIZON_DAYS after end_day given the open deals' stage and age, by Monte Carlo.

    Replicates the open pipeline ``reps`` times (first spell conditioned on its age), adds fresh arrivals,
    and walks everything to end_day + HORIZON_DAYS. Months already (partly) observed keep their gamma factor.
    """
    last = end_day + HORIZON_DAYS
    n_open = seg.size
    rep_open = np.repeat(np.arange(reps), n_open)
    o_seg, o_stage, o_ent = np.tile(seg, reps), np.tile(stage, reps), np.tile(entered, reps)
    o_age = end_day + 1 - o_ent

    def month_factor(months: np.ndarray) -> np.ndarray:
        fresh = rng.gamma(MONTH_GAMMA_SHAPE, 1.0 / MONTH_GAMMA_SHAPE, size=(reps, months.size))
        known = np.array([month_g.get(int(m), np.nan) for m in months])
        return np.where(np.isnan(known)[None, :], fresh, known[None, :])

    rep_new, day_new, seg_new = _arrivals(rng, t, end_day + 1, last, month_factor, reps)
    attrs = _attributes(rng, t, seg_new)

    def first(r: np.random.Generator, idx: np.ndarray):
        dest, days = _draw_spell(r, t, all_seg[idx], all_stage[idx])
        old = idx < o_seg.size
        if old.any():
            i = idx[old]
            d_old, n_old = _draw_spell_given_age(r, t, o_seg[i], o_stage[i], o_age[i])
            dest[old], days[old] = d_old, n_old
        return dest, days

    all_seg = np.concatenate([o_seg, seg_new])
    all_stage = np.concatenate([o_stage, attrs["entry"]])
    all_ent = np.concatenate([o_ent, day_new])
    all_amount = np.concatenate([np.tile(amount, reps), attrs["amount"]])
    all_rep = np.concatenate([rep_open, rep_new])
    is_new = np.arange(all_seg.size) >= o_seg.size
    ch = _run_chains(rng, t, all_seg, all_stage, all_ent, last, record=False, first=first)

    won = (ch.status == 1) & (ch.closed > end_day)
    month_first = np.unique(_months(np.arange(end_day + 1, last + 1)))
    m_of_won = np.searchsorted(month_first, _months(ch.closed[won]))
    n_m = month_first.size
    per_rep = np.bincount(all_rep[won], weights=all_amount[won], minlength=reps)
    per_rep_new = np.bincount(all_rep[won & is_new], weights=all_amount[won & is_new], minlength=reps)
    deals_rep = np.bincount(all_rep[won], minlength=reps).astype(np.float64)
    by_month = np.bincount(m_of_won, weights=all_amount[won], minlength=n_m) / reps
    deals_month = np.bincount(m_of_won, minlength=n_m) / reps
    as_of = _date(end_day + 1)
    months = [{
        "start": max(as_of, _month_start(m)).isoformat(),
        "end": min(_date(last), _month_start(m + 1) - dt.timedelta(days=1)).isoformat(),
        "won_amount_mean": _r(by_month[i]),
        "won_deals_mean": _r(deals_month[i]),
    } for i, m in enumerate(month_first)]
    q10, q50, q90 = np.quantile(per_rep, [0.1, 0.5, 0.9])
    mean = float(per_rep.mean())
    return {
        "as_of": as_of.isoformat(),
        "last_day": _date(last).isoformat(),
        "horizon_days": HORIZON_DAYS,
        "replications": reps,
        "won_amount": {"mean": _r(mean), "sd": _r(per_rep.std(ddof=1)),
                       "mean_se": _r(per_rep.std(ddof=1) / math.sqrt(reps)),
                       "p10": _r(q10), "p50": _r(q50), "p90": _r(q90)},
        "won_amount_open_pipeline_mean": _r(mean - per_rep_new.mean()),
        "won_amount_new_deals_mean": _r(per_rep_new.mean()),
        "won_deals_mean": _r(deals_rep.mean()),
        "by_month": months,
        "quota": _round_sig(mean),
    }


# ---------------------------------------------------------------------------------------------
# Public entry point


def generate(out_dir: str | Path, *, seed: int = 0, start: dt.date = dt.date(2023, 1, 1),
             end: dt.date = dt.date(2025, 12, 31), scale: float = 1.0) -> dict:
    """Write deals.parquet, stage_history.parquet, forecaster.yaml and truth.json into ``out_dir``.

    Deals are created on days ``start``..``end`` (both included) and observed up to ``end``; ``scale``
    multiplies the arrival rate (1.0: about 10,000 deals and 43,000 stage rows over three years). The
    same arguments give byte-identical files. Returns a summary: n_deals, n_history_rows, n_open,
    n_won, n_lost, as_of, quota and paths (name -> str).
    """
    seed, start, end, scale = _check_args(seed, start, end, scale)
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"cannot create output folder {out}: {e.strerror or e}") from None
    t = _tables(scale)
    rng_arrivals, rng_attrs, rng_walk, rng_future = (
        np.random.Generator(np.random.PCG64(s)) for s in np.random.SeedSequence(seed).spawn(4)
    )
    d0, d1 = _day(start), _day(end)

    month_g: dict[int, float] = {}

    def month_factor(months: np.ndarray) -> np.ndarray:
        g = rng_arrivals.gamma(MONTH_GAMMA_SHAPE, 1.0 / MONTH_GAMMA_SHAPE, size=months.size)
        month_g.update({int(m): float(x) for m, x in zip(months, g)})
        return g[None, :]

    _, created, seg = _arrivals(rng_arrivals, t, d0, d1, month_factor)
    attrs = _attributes(rng_attrs, t, seg)
    ch = _run_chains(rng_walk, t, seg, attrs["entry"], created, d1, record=True)
    open_ = ch.status == 0
    reps = int(np.clip(round(200 / scale), 16, 200))
    future = _future(rng_future, t, d1, month_g, seg[open_], ch.stage[open_], ch.entered[open_],
                     attrs["amount"][open_], reps)

    n = seg.size
    width = max(6, len(str(n)))
    deal_id = pa.array([f"D{i:0{width}d}" for i in range(1, n + 1)], type=pa.string())
    deals = pa.table({
        "deal_id": deal_id,
        "created_at": _date_array(created),
        "amount": pa.array(attrs["amount"], type=pa.float64()),
        "status": _labels(ch.status, ("open", WON, LOST)),
        "closed_at": _date_array(ch.closed, mask=open_),
        "product": _labels(seg, PRODUCTS),
        "region": _labels(attrs["region"], tuple(REGIONS)),
        "owner": _labels(attrs["owner"], tuple(o for r in REGIONS for o in OWNERS[r])),
        "source": _labels(attrs["source"], tuple(SOURCES)),
    })
    assert ch.rows is not None
    h_deal, h_stage, h_day = ch.rows
    history = pa.table({
        "deal_id": deal_id.take(pa.array(h_deal, type=pa.int64())),
        "stage": _labels(h_stage, DESTINATIONS),
        "entered_at": _date_array(h_day),
    })

    paths = {name: out / file for name, file in (
        ("deals", "deals.parquet"), ("stage_history", "stage_history.parquet"),
        ("config", "forecaster.yaml"), ("truth", "truth.json"))}
    write_with(paths["deals"], lambda p: pq.write_table(deals, p, compression="zstd"))
    write_with(paths["stage_history"], lambda p: pq.write_table(history, p, compression="zstd"))
    realized = {_month_start(m).strftime("%Y-%m"): g for m, g in sorted(month_g.items())}
    truth = _truth(t, seed, start, end, scale, future, realized)
    _write_text(paths["truth"], json.dumps(truth, indent=2) + "\n")
    _write_text(paths["config"], _config_text(future))
    return {
        "n_deals": int(n),
        "n_history_rows": int(h_deal.size),
        "n_open": int(open_.sum()),
        "n_won": int((ch.status == 1).sum()),
        "n_lost": int((ch.status == 2).sum()),
        "as_of": future["as_of"],
        "quota": future["quota"],
        "paths": {k: str(v) for k, v in paths.items()},
    }


def _check_args(seed: Any, start: Any, end: Any, scale: Any) -> tuple[int, dt.date, dt.date, float]:
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise ConfigError(f"generate: seed must be a whole number >= 0, got {seed!r}")
    if seed < 0:
        raise ConfigError(f"generate: seed must be >= 0, got {seed}")
    start, end = _as_date(start, "start"), _as_date(end, "end")
    if end < start:
        raise ConfigError(f"generate: end {end} is before start {start}")
    if isinstance(scale, bool) or not isinstance(scale, numbers.Real) or not math.isfinite(scale):
        raise ConfigError(f"generate: scale must be a finite number > 0, got {scale!r}")
    if scale <= 0:
        raise ConfigError(f"generate: scale must be > 0, got {scale}")
    return int(seed), start, end, float(scale)


def _as_date(value: Any, name: str) -> dt.date:
    parsed = as_date(value)
    if parsed is not None:
        return parsed
    raise ConfigError(f"generate: {name} must be a date YYYY-MM-DD, got {value!r}")


# ---------------------------------------------------------------------------------------------
# Output helpers


def _day(d: dt.date) -> int:
    return (d - dt.date(1970, 1, 1)).days


def _date(day: int) -> dt.date:
    return dt.date(1970, 1, 1) + dt.timedelta(days=int(day))


def _month_start(month: int) -> dt.date:
    """First day of a month given as months since 1970-01."""
    return dt.date(1970 + int(month) // 12, int(month) % 12 + 1, 1)


def _date_array(days: np.ndarray, mask: np.ndarray | None = None) -> pa.Array:
    arr = pa.array(days.astype(np.int32), type=pa.int32(), mask=mask)
    return arr.cast(pa.date32())


def _labels(codes: np.ndarray, names: tuple[str, ...]) -> pa.Array:
    dictionary = pa.array(list(names), type=pa.string())
    return pa.DictionaryArray.from_arrays(pa.array(codes.astype(np.int32)), dictionary).cast(pa.string())


def _r(x: float) -> float:
    """Round a Monte Carlo figure for truth.json (cents are noise)."""
    return round(float(x), 2)


def _round_sig(x: float, digits: int = 2) -> int:
    if x <= 0:
        return 0
    step = 10 ** max(0, math.floor(math.log10(x)) - digits + 1)
    return int(round(x / step) * step)


def _write_text(path: Path, text: str) -> None:
    write_atomic(path, text)


def _config_text(future: dict[str, Any]) -> str:
    return (
        "data:\n"
        "  deals: deals.parquet\n"
        "  stage_history: stage_history.parquet\n"
        f"stages: [{', '.join(STAGES)}]\n"
        f"won: {WON}\n"
        f"lost: {LOST}\n"
        "segment_by: [product]\n"
        "forecast:\n"
        f"  as_of: {future['as_of']}\n"
        "  trials: 10000\n"
        "  seed: 42\n"
        "  period: month\n"
        f"  quota: {future['quota']}\n"
    )


def _truth(t: _Tables, seed: int, start: dt.date, end: dt.date, scale: float,
           future: dict[str, Any], month_g: dict[str, float]) -> dict[str, Any]:
    """Every generating parameter, keyed by name (layout documented in the keys themselves)."""
    segments: dict[str, Any] = {}
    for g, name in enumerate(PRODUCTS):
        prod = PRODUCT_PARAMS[name]
        absorb = _absorption(t.p_exit[g])
        stages: dict[str, Any] = {}
        for i, stage in enumerate(STAGES):
            p_exit = {DESTINATIONS[k]: float(t.p_exit[g, i, k]) for k in range(len(DESTINATIONS))
                      if t.p_exit[g, i, k] > 0}
            kinds = sorted({int(t.kind[i, k]) for k in range(len(DESTINATIONS)) if t.p_exit[g, i, k] > 0})
            durations = {
                EXIT_KINDS[j]: {
                    "family": "lognormal",
                    "mu": float(t.mu[g, i, j]),
                    "sigma": float(t.sigma[g, i, j]),
                    "median_days": float(math.exp(t.mu[g, i, j])),
                    "stall_prob": float(t.stall_p[g, i, j]),
                }
                for j in kinds
            }
            stages[stage] = {
                "p_exit": p_exit,
                "durations": durations,
                "p_won": float(absorb[i, 0]),
                "p_lost": float(absorb[i, 1]),
            }
        entry = {st: sum(SOURCES[s] * ENTRY_STAGE[s].get(st, 0.0) for s in SOURCES) for st in STAGES}
        segments[name] = {
            "share": prod.share,
            "arrival_rate_per_day": float(t.arrival_rate[g]),
            "amount": {"family": "lognormal", "mu": float(t.amount_mu[g]), "sigma": float(t.amount_sigma[g]),
                       "median": prod.amount_median,
                       "mean": float(math.exp(t.amount_mu[g] + 0.5 * t.amount_sigma[g] ** 2)),
                       "rounding": "nearest whole unit"},
            "stall": {"family": "lognormal", "mu": float(t.stall_mu[g]), "sigma": t.stall_sigma,
                      "median_days": float(math.exp(t.stall_mu[g]))},
            "p_won_from_entry": float(sum(entry[st] * absorb[i, 0] for i, st in enumerate(STAGES))),
            "stages": stages,
        }
    return {
        "format_version": FORMAT_VERSION,
        "generator": "forecaster.generate",
        "seed": seed,
        "start": start.isoformat(),
        "end": end.isoformat(),
        "scale": scale,
        "stages": list(STAGES),
        "won": WON,
        "lost": LOST,
        "segment_by": ["product"],
        "process": (
            "Each spell draws its destination from segments.<product>.stages.<stage>.p_exit, then whole days "
            "floor(X): with probability durations.<kind>.stall_prob X ~ segments.<product>.stall, else "
            "X ~ lognormal(durations.<kind>.mu, sigma). kind: forward (a later stage), back (an earlier "
            "stage), won, lost. p_won/p_lost: absorption probabilities from that stage."
        ),
        "exit_kinds": list(EXIT_KINDS),
        "arrivals": {
            "model": "Poisson per day and product: rate_per_day[product] * weekday_factor[weekday] * "
                     "month_of_quarter_factor[(month-1) % 3] * g, g ~ Gamma(shape, 1/shape) per calendar month",
            "rate_per_day": {name: float(t.arrival_rate[g]) for g, name in enumerate(PRODUCTS)},
            "weekday_factor": [float(x) for x in t.weekday],
            "weekday_order": ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"],
            "month_of_quarter_factor": [float(x) for x in t.month_of_quarter],
            "month_gamma_shape": MONTH_GAMMA_SHAPE,
            "month_gamma_realized": month_g,
        },
        "attributes": {
            "region": dict(REGIONS),
            "owners": {r: list(o) for r, o in OWNERS.items()},
            "owner_within_region": "uniform",
            "source": dict(SOURCES),
            "entry_stage_by_source": {s: dict(v) for s, v in ENTRY_STAGE.items()},
            "note": "region and owner do not affect outcomes; source sets only the entry stage",
        },
        "segments": segments,
        "forecast": future,
    }
