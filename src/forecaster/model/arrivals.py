"""Arrivals of new deals per segment: a daily rate with weekday and month-of-quarter factors, Pearson
overdispersion of 4-week counts (a per-trial Gamma rate multiplier when it is clear), the entry-stage
mix and the pool of amounts to bootstrap from."""

from __future__ import annotations

from typing import Any

import numpy as np

from forecaster.calendar import month_of_quarter, to_date, weekday
from forecaster.crm import Snapshot
from forecaster.model.survival import dirichlet_precision
from forecaster.model.stage import shares
from forecaster.model.tables import ArrivalTables
from forecaster.numeric import ratio

BLOCK_DAYS = 28  # arrival overdispersion is measured on 4-week blocks (whole weeks: weekday-balanced)


def fit_arrivals(snap: Snapshot, deal_group: np.ndarray, n_groups: int, lookback_days: int,
                 prior_strength: float | None, fiscal_year_start: int = 1,
                 block_days: int = BLOCK_DAYS) -> tuple[ArrivalTables, dict[str, Any]]:
    """New deals per day per group over the trailing window [as_of - lookback, as_of), not before the
    snapshot's observation start (before it, the export holds only the deals that survived to it)."""
    n_s = len(snap.stages)
    start = max(snap.as_of - lookback_days, int(snap.created.min()))
    if snap.observed_from is not None:
        start = max(start, min(snap.observed_from, snap.as_of - 1))
    span = snap.as_of - start
    recent = snap.created >= start
    days = np.arange(start, snap.as_of)
    created = snap.created[recent]
    g = deal_group[recent]
    counts = np.bincount(g, minlength=n_groups).astype(float)
    rate = counts / max(span, 1)
    overall = len(created) / max(span, 1)
    moq = lambda d: month_of_quarter(d, fiscal_year_start)  # noqa: E731
    wf, qf = _seasonality(days, created, overall, span, moq)
    shape, phi = _overdispersion(snap.as_of, created, span, overall, wf, qf, moq, block_days)
    gamma_shape = np.full(n_groups, np.inf)
    if np.isfinite(shape):
        # Same dispersion phi per group: Var = mu * phi, so a group's shape scales with its volume.
        gamma_shape = np.where(rate > 0, rate * block_days / (phi - 1.0), np.inf)

    # Entry stage: the first stage of each recent deal, shrunk toward the pooled entry mix.
    e_counts = np.zeros((n_groups, n_s))
    np.add.at(e_counts, (deal_group[recent], snap.entry_stage[recent]), 1.0)
    pooled = e_counts.sum(axis=0)
    pooled = pooled / pooled.sum() if pooled.sum() > 0 else np.eye(n_s)[0]
    entry_strength = prior_strength if prior_strength is not None else dirichlet_precision(e_counts)
    entry_p = shares(e_counts + entry_strength * pooled, pooled)

    # Amounts: each group's recent deals; a group with none borrows the pooled pool.
    order = np.argsort(g, kind="stable")
    amounts = snap.amount[recent][order]
    off = np.r_[0, np.cumsum(counts)].astype(np.int64)
    pool_parts, new_off = [], [0]
    for k in range(n_groups):
        part = amounts[off[k]:off[k + 1]]
        if len(part) == 0:
            part = snap.amount[recent] if recent.any() else snap.amount
        pool_parts.append(part)
        new_off.append(new_off[-1] + len(part))
    tables = ArrivalTables(
        rate=rate.astype(np.float64),
        weekday_factor=np.tile(wf, (n_groups, 1)).astype(np.float64),
        moq_factor=np.tile(qf, (n_groups, 1)).astype(np.float64),
        gamma_shape=gamma_shape.astype(np.float64),
        entry_p=entry_p.astype(np.float64),
        amount_pool=np.concatenate(pool_parts).astype(np.float64),
        amount_off=np.asarray(new_off, np.int64),
    )
    info = {"start": to_date(start).isoformat(), "days": int(span), "deals": int(len(created)),
            "dispersion": phi, "dispersion_block_days": int(block_days), "overdispersed": bool(np.isfinite(shape)),
            "entry_prior_strength": float(entry_strength)}
    return tables, info


def _seasonality(days: np.ndarray, created: np.ndarray, overall: float, span: int, month_of_quarter
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Weekday [7] and month-of-quarter [3] factors, pooled over groups (per-group factors would rest on few
    deals), rescaled together so that they reproduce the window's count exactly."""
    wd_days = np.bincount(weekday(days), minlength=7).astype(float)
    wd_deals = np.bincount(weekday(created), minlength=7).astype(float)
    mq_days = np.bincount(month_of_quarter(days), minlength=3).astype(float)
    mq_deals = np.bincount(month_of_quarter(created), minlength=3).astype(float)
    wf = np.where(wd_days > 0, ratio(wd_deals, wd_days) / max(overall, 1e-300), 1.0)
    qf = np.where(mq_days > 0, ratio(mq_deals, mq_days) / max(overall, 1e-300), 1.0)
    if len(created) == 0:
        wf, qf = np.ones(7), np.ones(3)
    norm = (wf[weekday(days)] * qf[month_of_quarter(days)]).mean() if span > 0 else 1.0
    qf = qf / norm if norm > 0 else qf
    return wf, qf


def _overdispersion(as_of: int, created: np.ndarray, span: int, overall: float, wf: np.ndarray,
                    qf: np.ndarray, month_of_quarter, block_days: int) -> tuple[float, float]:
    """(Gamma shape of the per-trial rate multiplier for counts over ``block_days``, inf when Poisson;
    dispersion phi): the Pearson dispersion of block counts around their seasonal expectation. Blocks as
    long as the forecast window: a shared rate multiplier for the whole window is what the trials draw,
    and dispersion measured on shorter blocks is too wide for a longer window."""
    n_blocks = span // block_days
    shape = np.inf
    phi = 1.0
    if n_blocks >= 4 and len(created):
        first = as_of - n_blocks * block_days
        bdays = np.arange(first, as_of)
        expect_day = overall * wf[weekday(bdays)] * qf[month_of_quarter(bdays)]
        expect = expect_day.reshape(n_blocks, block_days).sum(axis=1)
        obs = np.bincount((created[created >= first] - first) // block_days, minlength=n_blocks)[:n_blocks]
        phi = float(((obs - expect) ** 2 / np.maximum(expect, 1e-12)).sum() / (n_blocks - 1))
        # Overdispersed when phi exceeds 1 by more than 2 standard errors of a chi-square/df.
        if phi > 1.0 + 2.0 * np.sqrt(2.0 / (n_blocks - 1)):
            shape = float(expect.mean() / (phi - 1.0))
    return shape, phi
