"""The synthetic CRM's process, vectorised over deals: arrivals, attributes, spells (fresh and conditioned
on an age) and whole chains until a deal closes or the observation ends; the true future of the open
deals for truth.json. Parameters: synth.params."""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from forecaster.calendar import month_number, month_of_quarter, month_start, to_date, weekday
from forecaster.numeric import ratio
from forecaster.synth.params import (
    DESTINATIONS,
    ENTRY_STAGE,
    HORIZON_DAYS,
    MONTH_GAMMA_SHAPE,
    OWNERS,
    PRODUCTS,
    REGIONS,
    SOURCES,
    STAGES,
    Tables,
)


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


def _exit_shares(t: Tables, seg: np.ndarray, stage: np.ndarray, lost_mult: np.ndarray | None) -> np.ndarray:
    """(n, K) destination shares of n spells, the odds of losing times ``lost_mult`` where given."""
    p = t.p_exit[seg, stage]
    if lost_mult is None:
        return p
    p = p.copy()
    p[:, -1] *= lost_mult
    return p / p.sum(axis=1, keepdims=True)


def _draw_spell(rng: np.random.Generator, t: Tables, seg: np.ndarray, stage: np.ndarray,
                lost_mult: np.ndarray | None = None):
    """Destination (int64, n) and whole days in the stage (int64, n) of n fresh spells."""
    if lost_mult is None:
        cum = t.cum_exit[seg, stage]
    else:
        cum = np.cumsum(_exit_shares(t, seg, stage, lost_mult), axis=1)
        cum[:, -1] = 1.0
    dest = _categorical(rng, cum)
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


def _draw_spell_given_age(rng: np.random.Generator, t: Tables, seg: np.ndarray, stage: np.ndarray,
                          age: np.ndarray, lost_mult: np.ndarray | None = None):
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
    p = _exit_shares(t, seg, stage, lost_mult)
    # floor(X) >= a  <=>  X >= a for whole a: weights P(dest, component, X >= a).
    sf_r, sf_s = 0.5 * _erfc(b_r / math.sqrt(2)), 0.5 * _erfc(b_s / math.sqrt(2))
    w = np.concatenate([p * (1 - pi) * sf_r, p * pi * sf_s], axis=1)
    total = w.sum(axis=1)
    lost_stalled = np.zeros(2 * n_k)
    lost_stalled[2 * n_k - 1] = 1.0  # underflow guard for absurd ages: a stalled lost spell
    w = ratio(w, total[:, None], lost_stalled)
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


def run_chains(rng: np.random.Generator, t: Tables, seg: np.ndarray, stage: np.ndarray, entered: np.ndarray,
               horizon: int, *, record: bool, first: Callable | None = None, lost_odds: Callable | None = None,
               push: Callable | None = None) -> _Chains:
    """Walk every deal from (stage, entered) until won, lost or past ``horizon`` (a day number).

    One loop step advances all active deals by one spell. ``first(rng, idx, lost_mult)`` replaces the
    first spell's draw (used to condition open deals on their age). ``lost_odds(days)``: the multiplier of
    the odds of losing of spells starting on those days; ``push(dest, exit_day)``: exit days after the
    quarter-end push (synth.effects). Rows record each stage entered on or before the horizon, the first
    one included.
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
        mult = None if lost_odds is None else lost_odds(cur_t[act])
        if step == 0 and first is not None:
            dest, days = first(rng, act, mult)
        else:
            dest, days = _draw_spell(rng, t, seg[act], cur_stage[act], mult)
        nt = cur_t[act] + days
        if push is not None:
            nt = push(dest, nt)
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


def arrivals(rng: np.random.Generator, t: Tables, first_day: int, last_day: int, month_factor: Callable,
              reps: int = 1):
    """Creation day and product of the deals arriving on days first_day..last_day, for ``reps`` copies.

    ``month_factor(months)`` gives (reps, n_months) gamma factors. Returns (rep, day, product), sorted by
    rep, day, product.
    """
    days = np.arange(first_day, last_day + 1, dtype=np.int64)
    uniq, m_idx = np.unique(month_number(days), return_inverse=True)
    factor = month_factor(uniq)[:, m_idx]  # (reps, D)
    daily = t.weekday[weekday(days)] * t.month_of_quarter[month_of_quarter(days)]
    lam = factor[:, :, None] * daily[None, :, None] * t.arrival_rate[None, None, :]
    counts = rng.poisson(lam).ravel()
    cell = np.repeat(np.arange(counts.size), counts)
    n_d, n_g = days.size, len(PRODUCTS)
    return cell // (n_d * n_g), days[(cell // n_g) % n_d], cell % n_g


def attributes(rng: np.random.Generator, t: Tables, seg: np.ndarray) -> dict[str, np.ndarray]:
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


def true_future(rng: np.random.Generator, t: Tables, end_day: int, month_g: dict[int, float], seg: np.ndarray,
                stage: np.ndarray, entered: np.ndarray, amount: np.ndarray, reps: int,
                lost_odds: Callable | None = None, push: Callable | None = None) -> dict[str, Any]:
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

    rep_new, day_new, seg_new = arrivals(rng, t, end_day + 1, last, month_factor, reps)
    attrs = attributes(rng, t, seg_new)

    def first(r: np.random.Generator, idx: np.ndarray, mult: np.ndarray | None):
        dest, days = _draw_spell(r, t, all_seg[idx], all_stage[idx], mult)
        old = idx < o_seg.size
        if old.any():
            i = idx[old]
            d_old, n_old = _draw_spell_given_age(r, t, o_seg[i], o_stage[i], o_age[i],
                                                 None if mult is None else mult[old])
            dest[old], days[old] = d_old, n_old
        return dest, days

    all_seg = np.concatenate([o_seg, seg_new])
    all_stage = np.concatenate([o_stage, attrs["entry"]])
    all_ent = np.concatenate([o_ent, day_new])
    all_amount = np.concatenate([np.tile(amount, reps), attrs["amount"]])
    all_rep = np.concatenate([rep_open, rep_new])
    is_new = np.arange(all_seg.size) >= o_seg.size
    ch = run_chains(rng, t, all_seg, all_stage, all_ent, last, record=False, first=first, lost_odds=lost_odds,
                    push=push)

    won = (ch.status == 1) & (ch.closed > end_day)
    month_first = np.unique(month_number(np.arange(end_day + 1, last + 1)))
    m_of_won = np.searchsorted(month_first, month_number(ch.closed[won]))
    n_m = month_first.size
    per_rep = np.bincount(all_rep[won], weights=all_amount[won], minlength=reps)
    per_rep_new = np.bincount(all_rep[won & is_new], weights=all_amount[won & is_new], minlength=reps)
    deals_rep = np.bincount(all_rep[won], minlength=reps).astype(np.float64)
    by_month = np.bincount(m_of_won, weights=all_amount[won], minlength=n_m) / reps
    deals_month = np.bincount(m_of_won, minlength=n_m) / reps
    as_of = to_date(end_day + 1)
    months = [{
        "start": max(as_of, month_start(m)).isoformat(),
        "end": min(to_date(last), month_start(m + 1) - dt.timedelta(days=1)).isoformat(),
        "won_amount_mean": round_cents(by_month[i]),
        "won_deals_mean": round_cents(deals_month[i]),
    } for i, m in enumerate(month_first)]
    q10, q50, q90 = np.quantile(per_rep, [0.1, 0.5, 0.9])
    mean = float(per_rep.mean())
    return {
        "as_of": as_of.isoformat(),
        "last_day": to_date(last).isoformat(),
        "horizon_days": HORIZON_DAYS,
        "replications": reps,
        "won_amount": {"mean": round_cents(mean), "sd": round_cents(per_rep.std(ddof=1)),
                       "mean_se": round_cents(per_rep.std(ddof=1) / math.sqrt(reps)),
                       "p10": round_cents(q10), "p50": round_cents(q50), "p90": round_cents(q90)},
        "won_amount_open_pipeline_mean": round_cents(mean - per_rep_new.mean()),
        "won_amount_new_deals_mean": round_cents(per_rep_new.mean()),
        "won_deals_mean": round_cents(deals_rep.mean()),
        "by_month": months,
        "quota": round_sig(mean),
    }


def round_cents(x: float) -> float:
    """Round a Monte Carlo figure for truth.json (cents are noise)."""
    return round(float(x), 2)


def round_sig(x: float, digits: int = 2) -> int:
    if x <= 0:
        return 0
    step = 10 ** max(0, math.floor(math.log10(x)) - digits + 1)
    return int(round(x / step) * step)
